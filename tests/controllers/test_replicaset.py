"""ReplicaSet controller: pure parts (upstream controller_utils.go / replica_set.go) and the
controller process against a real API server, read back with kubectl 1.33."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api.errors import ApiError
from kybernetes.client import resource
from kybernetes.controllers.replicas import (Expectations, calculate_status, is_pod_available,
                                             pod_from_template, pods_to_delete, rank_for_deletion,
                                             slow_start_batch, slow_start_sizes)
from kybtest import controller_manager_running, new_namespace, until

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
PODS = resource("v1", "Pod")
RS = resource("apps/v1", "ReplicaSet")
PRIORITY_CLASSES = resource("scheduling.k8s.io/v1", "PriorityClass")


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_pod(name: str, *, node: str = "", phase: str = "Pending", ready: bool = False,
             ready_ago: float = 100, created_ago: float = 1000, restarts: int = 0,
             cost: int | None = None) -> dict:
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": ts(ready_ago)}]
    meta: dict = {"name": name, "uid": f"uid-{name}", "creationTimestamp": ts(created_ago)}
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


# ---- slow start ----------------------------------------------------------------------------------

@given(st.integers(0, 5000), st.integers(1, 8))
def test_slow_start_batches_double_and_cover_the_count(count, initial):
    sizes = slow_start_sizes(count, initial)
    assert sum(sizes) == count
    if count:
        assert sizes[0] == min(count, initial)
    for prev, cur in zip(sizes, sizes[1:]):
        assert cur <= 2 * prev
    for prev, cur in zip(sizes, sizes[1:-1]):
        assert cur == 2 * prev  # only the last batch may be cut short


@given(st.integers(1, 300), st.integers(0, 300))
async def test_slow_start_stops_after_the_first_batch_with_an_error(count, fail_from):
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        if calls > fail_from:
            raise RuntimeError("quota")

    ok, err = await slow_start_batch(count, fn)
    if fail_from >= count:
        assert (ok, err, calls) == (count, None, count)
        return
    assert isinstance(err, RuntimeError)
    assert ok == fail_from
    # every call of the failing batch was made, none of a later one
    done = 0
    for size in slow_start_sizes(count):
        done += size
        if done > fail_from:
            break
    assert calls == done


# ---- expectations --------------------------------------------------------------------------------

def test_expectations_hold_a_sync_until_own_writes_are_observed():
    clock = [0.0]
    exp = Expectations(clock=lambda: clock[0])
    assert exp.satisfied("ns/a")  # nothing recorded yet
    exp.expect_creations("ns/a", 2)
    assert not exp.satisfied("ns/a")
    exp.creation_observed("ns/a")
    assert not exp.satisfied("ns/a")
    exp.creation_observed("ns/a")
    assert exp.satisfied("ns/a")

    exp.expect_deletions("ns/a", ["ns/p1", "ns/p2"])
    exp.deletion_observed("ns/a", "ns/unrelated")  # not one we deleted: does not count
    exp.deletion_observed("ns/a", "ns/p1")
    exp.deletion_observed("ns/a", "ns/p1")  # seen twice (update then delete): counts once
    assert not exp.satisfied("ns/a")
    exp.deletion_observed("ns/a", "ns/p2")
    assert exp.satisfied("ns/a")


def test_expectations_expire_after_five_minutes():
    clock = [100.0]
    exp = Expectations(clock=lambda: clock[0])
    exp.expect_creations("ns/a", 3)
    clock[0] += 299
    assert not exp.satisfied("ns/a")
    clock[0] += 2
    assert exp.satisfied("ns/a")
    exp.delete("ns/a")
    assert exp.pending("ns/a") == (0, 0)


# ---- deletion ranking ----------------------------------------------------------------------------

pod_strategy = st.builds(
    lambda i, node, phase, ready, ready_ago, created_ago, restarts, cost: make_pod(
        f"p{i}", node=node, phase=phase, ready=ready, ready_ago=ready_ago,
        created_ago=created_ago, restarts=restarts, cost=cost),
    st.integers(0, 10**6), st.sampled_from(["", "n1", "n2", "n3"]),
    st.sampled_from(["Pending", "Unknown", "Running"]), st.booleans(),
    st.integers(1, 10**6), st.integers(1, 10**6), st.integers(0, 3),
    st.one_of(st.none(), st.integers(-5, 5)))


def _priority(pod: dict, rank: int) -> tuple:
    """The first five upstream ranking keys, which form a total preorder."""
    status = pod["status"]
    cost = int((pod["metadata"].get("annotations") or {}).get(
        "controller.kubernetes.io/pod-deletion-cost", 0))
    return (bool(pod["spec"].get("nodeName")),
            {"Pending": 0, "Unknown": 1, "Running": 2}[status["phase"]],
            status["conditions"][0]["status"] == "True", cost, -rank)


@settings(max_examples=100)
@given(st.lists(pod_strategy, max_size=25, unique_by=lambda p: p["metadata"]["name"]))
def test_ranking_orders_by_the_upstream_keys(pods):
    ordered = rank_for_deletion(pods, pods, NOW)
    assert sorted(p["metadata"]["name"] for p in ordered) == sorted(p["metadata"]["name"] for p in pods)
    on_node: dict[str, int] = {}
    for p in pods:
        on_node[p["spec"].get("nodeName", "")] = on_node.get(p["spec"].get("nodeName", ""), 0) + 1
    keys = [_priority(p, on_node[p["spec"].get("nodeName", "")]) for p in ordered]
    assert keys == sorted(keys)


@pytest.mark.parametrize("first, second", [
    (make_pod("unassigned"), make_pod("assigned", node="n1")),
    (make_pod("pending", node="n1"), make_pod("running", node="n1", phase="Running")),
    (make_pod("unknown", node="n1", phase="Unknown"), make_pod("running", node="n1", phase="Running")),
    (make_pod("notready", node="n1", phase="Running"),
     make_pod("ready", node="n1", phase="Running", ready=True)),
    (make_pod("cheap", node="n1", cost=-1), make_pod("dear", node="n1", cost=10)),
    (make_pod("fresh-ready", node="n1", phase="Running", ready=True, ready_ago=10),
     make_pod("old-ready", node="n1", phase="Running", ready=True, ready_ago=100000)),
    (make_pod("restarty", node="n1", restarts=5), make_pod("steady", node="n1", restarts=0)),
    (make_pod("young", node="n1", created_ago=5), make_pod("old", node="n1", created_ago=100000)),
])
def test_ranking_prefers_deleting(first, second):
    for pods in ([first, second], [second, first]):
        assert [p["metadata"]["name"] for p in pods_to_delete(pods, pods, 1, NOW)] == \
            [first["metadata"]["name"]]


def test_ranking_prefers_pods_doubled_up_on_a_node():
    crowded = [make_pod(f"c{i}", node="busy") for i in range(3)]
    alone = make_pod("alone", node="quiet", created_ago=1)  # youngest, but alone on its node
    victims = pods_to_delete([alone, *crowded], [alone, *crowded], 2, NOW)
    assert all(p["spec"]["nodeName"] == "busy" for p in victims)


def test_pods_to_delete_takes_all_when_asked_for_all():
    pods = [make_pod(f"p{i}") for i in range(3)]
    assert len(pods_to_delete(pods, pods, 5, NOW)) == 3


# ---- pods from the template and status -----------------------------------------------------------

def test_pod_from_template_copies_template_and_owner():
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u",
           "controller": True, "blockOwnerDeletion": True}
    template = {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "1"},
                             "finalizers": ["x/y"]},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    pod = pod_from_template(template, ref, "web")
    assert pod["metadata"] == {"generateName": "web-", "labels": {"app": "web"},
                               "annotations": {"a": "1"}, "finalizers": ["x/y"],
                               "ownerReferences": [ref]}
    pod["spec"]["containers"][0]["image"] = "changed"
    assert template["spec"]["containers"][0]["image"] == "nginx"  # a copy, not shared
    with pytest.raises(ValueError, match="no labels"):
        pod_from_template({"spec": {}}, ref, "web")


def test_status_counts_and_replica_failure_condition():
    rs = {"metadata": {"name": "web", "generation": 4},
          "spec": {"minReadySeconds": 60, "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}}
    pods = [make_pod("a", phase="Running", ready=True, ready_ago=120),
            make_pod("b", phase="Running", ready=True, ready_ago=5),
            make_pod("c")]
    pods[0]["metadata"]["labels"] = {"app": "web", "tier": "x"}
    pods[1]["metadata"]["labels"] = {"app": "web"}
    status = calculate_status(rs, pods, None, 0, NOW)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                      "availableReplicas": 1, "observedGeneration": 4}
    assert is_pod_available(pods[1], 0, NOW) and not is_pod_available(pods[1], 60, NOW)

    failed = calculate_status(rs, pods, RuntimeError("exceeded quota"), -2, NOW)
    cond = failed["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == \
        ("ReplicaFailure", "True", "FailedCreate", "exceeded quota")
    assert calculate_status(dict(rs, status=failed), pods, RuntimeError("x"), 2, NOW)["conditions"] == [cond]
    assert "conditions" not in calculate_status(dict(rs, status=failed), pods, None, 0, NOW)


# ---- against the API server ----------------------------------------------------------------------

@pytest.fixture
async def ns(client):
    return await new_namespace(client, "rs")


@pytest.fixture(scope="module")
def controller(apiserver, tmp_path_factory):
    """One controller-manager for this module's tests (each test has its own namespace)."""
    with controller_manager_running(apiserver.kubeconfig, "replicaset",
                                    tmp_path_factory.mktemp("rs") / "controller-manager.log") as proc:
        yield proc


def replicaset(name: str, replicas: int, **spec) -> dict:
    template_spec = spec.pop("template_spec", {})
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}],
                                           **template_spec}},
                     **spec}}


async def owned_pods(client, ns, rs_name) -> list[dict]:
    items = (await client.list(PODS, ns))["items"]
    return [p for p in items
            if any(r.get("controller") and r["name"] == rs_name for r in p["metadata"].get("ownerReferences") or [])
            and not p["metadata"].get("deletionTimestamp")]


async def set_running(client, ns, name, *, ready: bool, node: str | None = None):
    if node:
        await client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"kind": "Node", "name": node}})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    await client.patch(PODS, name, {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}},
        ns, subresource="status")


async def test_creates_replaces_and_reports(client, ns, controller, kubectl133):
    """SuccessfulCreate "Created pod: NAME" events and DESIRED/CURRENT/READY as upstream shows."""
    await client.create(RS, replicaset("web", 3), ns)
    pods = await until(lambda: _count(client, ns, "web", 3))
    names = {p["metadata"]["name"] for p in pods}
    for p in pods:
        assert p["metadata"]["name"].startswith("web-")
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == \
            ("ReplicaSet", "web", True, True)

    victim = sorted(names)[0]
    await client.delete(PODS, victim, ns)
    replaced = await until(lambda: _count(client, ns, "web", 3, exclude=victim))
    assert victim not in {p["metadata"]["name"] for p in replaced}

    await set_running(client, ns, replaced[0]["metadata"]["name"], ready=True, node="node-a")

    async def status_caught_up():
        rs = await client.get(RS, "web", ns)
        s = rs.get("status") or {}
        return s.get("replicas") == 3 and s.get("readyReplicas") == 1 and \
            s.get("observedGeneration") == rs["metadata"]["generation"]
    await until(status_caught_up)
    table = kubectl133("get", "rs", "web", "-n", ns).splitlines()
    assert table[0].split()[:4] == ["NAME", "DESIRED", "CURRENT", "READY"]
    assert table[1].split()[:4] == ["web", "3", "3", "1"]

    async def described():
        out = kubectl133("describe", "rs", "web", "-n", ns)
        return out if out.count("SuccessfulCreate") >= 4 else None
    out = await until(described)
    for name in names | {p["metadata"]["name"] for p in replaced}:
        assert f"Created pod: {name}" in out
    assert "replicaset-controller" in out


async def _count(client, ns, rs_name, n, exclude: str | None = None):
    pods = await owned_pods(client, ns, rs_name)
    pods = [p for p in pods if p["metadata"]["name"] != exclude]
    return pods if len(pods) == n else None


async def test_scale_down_deletes_unscheduled_then_not_ready_first(client, ns, controller):
    await client.create(RS, replicaset("db", 4), ns)
    pods = await until(lambda: _count(client, ns, "db", 4))
    names = sorted(p["metadata"]["name"] for p in pods)
    ready_a, ready_b, not_ready, unscheduled = names
    await set_running(client, ns, ready_a, ready=True, node="node-a")
    await set_running(client, ns, ready_b, ready=True, node="node-b")
    await set_running(client, ns, not_ready, ready=False, node="node-c")

    await client.patch(RS, "db", {"spec": {"replicas": 3}}, ns)
    left = await until(lambda: _count(client, ns, "db", 3))
    assert unscheduled not in {p["metadata"]["name"] for p in left}
    await client.patch(RS, "db", {"spec": {"replicas": 2}}, ns)
    left = await until(lambda: _count(client, ns, "db", 2))
    assert {p["metadata"]["name"] for p in left} == {ready_a, ready_b}


async def test_adopts_orphans_and_releases_pods_that_stop_matching(client, ns, controller):
    orphan = {"metadata": {"name": "orphan", "labels": {"app": "api"}},
              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    await client.create(PODS, orphan, ns)
    await client.create(RS, replicaset("api", 2), ns)
    pods = await until(lambda: _count(client, ns, "api", 2))
    assert "orphan" in {p["metadata"]["name"] for p in pods}  # adopted: only one created

    other = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"] != "orphan")
    await client.patch(PODS, other, {"metadata": {"labels": {"app": "elsewhere"}}}, ns)

    async def released():
        pod = await client.get(PODS, other, ns)
        return not pod["metadata"].get("ownerReferences")
    await until(released)
    await until(lambda: _count(client, ns, "api", 2, exclude=other))

    extra = dict(orphan, metadata={"name": "extra", "labels": {"app": "api"}})
    await client.create(PODS, extra, ns)  # one too many: adopted, then the newest goes

    async def back_to_two():
        pods = await owned_pods(client, ns, "api")
        alive = {p["metadata"]["name"] for p in (await client.list(PODS, ns))["items"]
                 if p["metadata"].get("labels", {}).get("app") == "api"}
        return len(pods) == 2 and len(alive) == 2
    await until(back_to_two)


async def test_failed_create_sets_replica_failure_and_event(client, ns, controller):
    """Priority admission refuses an unknown class: FailedCreate "Error creating: ..." and a
    ReplicaFailure condition (reason FailedCreate), as upstream's manageReplicas reports."""
    pc = f"missing-{ns}"
    probe = {"metadata": {"name": "probe"},
             "spec": {"priorityClassName": pc, "containers": [{"name": "c", "image": "nginx"}]}}
    try:
        await client.create(PODS, probe, ns, dry_run=True)
        pytest.skip("this API server does not refuse pods with an unknown PriorityClass yet")
    except ApiError as e:
        assert e.code == 403
    await client.create(RS, replicaset("bad", 2, template_spec={"priorityClassName": pc}), ns)

    async def failed():
        rs = await client.get(RS, "bad", ns)
        conds = (rs.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "ReplicaFailure"), None)
    cond = await until(failed)
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert pc in cond["message"]

    async def event():
        evs = (await client.list(resource("v1", "Event"), ns))["items"]
        return [e for e in evs if e["reason"] == "FailedCreate"]
    evs = await until(event)
    assert evs[0]["type"] == "Warning" and evs[0]["message"].startswith("Error creating: ")
    assert await owned_pods(client, ns, "bad") == []

    # Once pods can be created, the condition goes away.
    await client.create(PRIORITY_CLASSES, {"metadata": {"name": pc}, "value": 10})

    async def recovered():
        rs = await client.get(RS, "bad", ns)
        conds = (rs.get("status") or {}).get("conditions") or []
        return rs.get("status", {}).get("replicas") == 2 and not conds
    await until(recovered)


async def test_available_after_min_ready_seconds(client, ns, controller):
    await client.create(RS, replicaset("slow", 1, minReadySeconds=1), ns)
    pods = await until(lambda: _count(client, ns, "slow", 1))
    await set_running(client, ns, pods[0]["metadata"]["name"], ready=True, node="node-a")

    async def ready_not_yet_available():
        s = (await client.get(RS, "slow", ns)).get("status") or {}
        return s.get("readyReplicas") == 1 and s
    first = await until(ready_not_yet_available)
    assert not first.get("availableReplicas")  # ready for less than a second when counted

    async def available():
        s = (await client.get(RS, "slow", ns)).get("status") or {}
        return s.get("availableReplicas") == 1
    await until(available)


async def test_no_adoption_while_being_deleted(client, ns, controller):
    body = replicaset("old", 1)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await client.create(RS, body, ns)
    pods = await until(lambda: _count(client, ns, "old", 1))
    await client.delete(RS, "old", ns)  # finalizer keeps it, with a deletionTimestamp
    await client.create(PODS, {"metadata": {"name": "stray", "labels": {"app": "old"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}, ns)
    # A readiness change makes the controller sync after it has seen the stray pod.
    await set_running(client, ns, pods[0]["metadata"]["name"], ready=True, node="node-a")

    async def synced():
        s = (await client.get(RS, "old", ns)).get("status") or {}
        return s.get("readyReplicas") == 1
    await until(synced)
    stray = await client.get(PODS, "stray", ns)
    assert not stray["metadata"].get("ownerReferences")
    await client.patch(RS, "old", {"metadata": {"finalizers": None}}, ns)


# ---- reconcile with a stand-in API (no server): expectations and create failures ----------------

class FakeApi:
    """Just enough of Client for one reconcile: records writes, fails creates on request."""

    def __init__(self, owner: dict, fail_create: ApiError | None = None):
        self.owner, self.fail_create = owner, fail_create
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.statuses: list[dict] = []
        self.events: list[dict] = []

    async def create(self, r, obj, namespace=None, **kw):
        if r.kind == "Event":
            self.events.append(obj)
            return obj
        if self.fail_create:
            raise self.fail_create
        n = len(self.created)
        pod = dict(obj, metadata=dict(obj["metadata"], name=f"{obj['metadata']['generateName']}{n:05d}",
                                      namespace=namespace, uid=f"pod-uid-{n}",
                                      resourceVersion=str(n + 1)),
                   status={"phase": "Pending"})
        self.created.append(pod)
        return pod

    async def delete(self, r, name, namespace=None, **kw):
        self.deleted.append(name)
        return {}

    async def update_status(self, r, obj, **kw):
        self.statuses.append(obj["status"])
        return obj

    async def get(self, r, name, namespace=None):
        return self.owner


def _stand_in(replicas: int, fail_create: ApiError | None = None):
    from kybernetes.client import InformerFactory
    from kybernetes.controllers.replicaset import ReplicaSetController
    owner = replicaset("web", replicas)
    owner["apiVersion"], owner["kind"] = "apps/v1", "ReplicaSet"
    owner["metadata"].update(namespace="ns", uid="rs-uid", generation=1, resourceVersion="1")
    api = FakeApi(owner, fail_create)
    ctl = ReplicaSetController(api, InformerFactory(api))
    ctl.owners._put("ns/web", owner)
    return api, ctl


async def test_reconcile_waits_for_its_own_creates_to_be_observed():
    api, ctl = _stand_in(3)
    await ctl.reconcile("ns/web")
    assert len(api.created) == 3
    await ctl.reconcile("ns/web")  # the informer has not shown them yet: no second round
    assert len(api.created) == 3
    for pod in api.created[:2]:
        ctl.pods._put(f"ns/{pod['metadata']['name']}", pod)
    await ctl.reconcile("ns/web")
    assert len(api.created) == 3  # still one creation unobserved
    ctl.pods._put(f"ns/{api.created[2]['metadata']['name']}", api.created[2])
    await ctl.reconcile("ns/web")
    assert len(api.created) == 3 and api.statuses[-1]["replicas"] == 3
    await ctl.recorder.flush()
    assert sorted(e["message"] for e in api.events if e["reason"] == "SuccessfulCreate") == \
        sorted(f"Created pod: {p['metadata']['name']}" for p in api.created)


async def test_reconcile_reports_a_failed_create_once_per_slow_start():
    msg = 'pods "web-" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=0, limited: pods=0'
    api, ctl = _stand_in(50, ApiError(403, "Forbidden", msg))
    with pytest.raises(ApiError):
        await ctl.reconcile("ns/web")
    await ctl.recorder.flush()
    failed = [e for e in api.events if e["reason"] == "FailedCreate"]
    assert [(e["type"], e["message"]) for e in failed] == [("Warning", f"Error creating: {msg}")]
    cond = api.statuses[-1]["conditions"][0]
    assert (cond["type"], cond["reason"], cond["message"]) == ("ReplicaFailure", "FailedCreate", msg)
    assert ctl.expectations.satisfied("ns/web")  # the next try is not blocked by expectations
    assert ctl.expectations.pending("ns/web") == (0, 0)
