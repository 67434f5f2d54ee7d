"""StatefulSet controller: the pure decisions of a sync, then a real API server with the
controller manager, the scheduler and simulated nodes, read back with kubectl 1.33.

Behaviour matched: upstream pkg/controller/statefulset stateful_set_control.go
(updateStatefulSet: processReplica, processCondemned, the rolling-update loop with partition,
completeRollingUpdate), stateful_set_utils.go (names, identity, claims, retention owners),
stateful_pod_control.go (event reasons and messages), and kubectl's StatefulSet rollout
status/history/undo, which read ControllerRevisions owned by the set.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.controllers import history
from kybernetes.controllers import statefulset as ss
from kybtest import create_namespace, get_json, needs_kubectl, own_cluster, wait_for

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def mk_set(replicas=3, policy="OrderedReady", partition=0, strategy="RollingUpdate", **spec):
    s = {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "web", "namespace": "ns", "uid": "u-set", "generation": 1},
         "spec": {"replicas": replicas, "podManagementPolicy": policy, "serviceName": "web",
                  "selector": {"matchLabels": {"app": "web"}},
                  "updateStrategy": {"type": strategy},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    if strategy == "RollingUpdate":
        s["spec"]["updateStrategy"]["rollingUpdate"] = {"partition": partition}
    s["spec"].update(spec)
    return s


def mk_pod(ordinal, rev="r1", phase="Running", ready=True, terminating=False, ready_for=60):
    p = {"metadata": {"name": f"web-{ordinal}", "uid": f"u{ordinal}",
                      "labels": {"app": "web", ss.POD_NAME_LABEL: f"web-{ordinal}",
                                 ss.POD_INDEX_LABEL: str(ordinal), ss.REVISION_LABEL: rev}},
         "status": {"phase": phase, "conditions": [{
             "type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": (NOW - timedelta(seconds=ready_for)).strftime("%Y-%m-%dT%H:%M:%SZ")}]}}
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return p


def actions(steps):
    return [(s.action, s.ordinal) for s in steps]


# ---- pure logic ---------------------------------------------------------------------------------

def test_ordered_ready_creates_one_at_a_time_and_waits_for_ready():
    """processReplica: in OrderedReady the first missing ordinal is created and the sync stops;
    a pod that is not Running and Ready blocks everything above it."""
    s = mk_set(3)
    assert actions(ss.plan(s, {}, "r1", "r1", NOW)) == [("create", 0)]
    assert actions(ss.plan(s, {0: mk_pod(0, ready=False)}, "r1", "r1", NOW)) == []
    assert actions(ss.plan(s, {0: mk_pod(0, phase="Pending", ready=False)}, "r1", "r1", NOW)) == []
    assert actions(ss.plan(s, {0: mk_pod(0)}, "r1", "r1", NOW)) == [("create", 1)]
    # A hole below is filled first, even when higher ordinals exist.
    assert actions(ss.plan(s, {1: mk_pod(1), 2: mk_pod(2)}, "r1", "r1", NOW)) == [("create", 0)]


def test_min_ready_seconds_gates_the_next_ordinal():
    s = mk_set(2, minReadySeconds=30)
    assert actions(ss.plan(s, {0: mk_pod(0, ready_for=10)}, "r1", "r1", NOW)) == []
    assert actions(ss.plan(s, {0: mk_pod(0, ready_for=40)}, "r1", "r1", NOW)) == [("create", 1)]


def test_parallel_creates_and_deletes_without_waiting():
    s = mk_set(3, policy="Parallel")
    assert actions(ss.plan(s, {}, "r1", "r1", NOW)) == [("create", 0), ("create", 1), ("create", 2)]
    s = mk_set(1, policy="Parallel")
    pods = {i: mk_pod(i, ready=False) for i in range(3)}
    assert actions(ss.plan(s, pods, "r1", "r1", NOW)) == [("delete", 2), ("delete", 1)]


def test_scale_down_removes_highest_ordinal_first_one_at_a_time():
    """processCondemned: descending ordinals; a terminating pod blocks in OrderedReady."""
    s = mk_set(1)
    pods = {i: mk_pod(i) for i in range(3)}
    assert actions(ss.plan(s, pods, "r1", "r1", NOW)) == [("delete", 2)]
    pods[2] = mk_pod(2, terminating=True)
    assert actions(ss.plan(s, pods, "r1", "r1", NOW)) == []


def test_failed_pod_is_deleted_to_be_recreated():
    s = mk_set(2)
    pods = {0: mk_pod(0, phase="Failed", ready=False), 1: mk_pod(1)}
    assert actions(ss.plan(s, pods, "r1", "r1", NOW)) == [("delete", 0)]


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 6), partition=st.integers(0, 7),
       updated=st.sets(st.integers(0, 5)))
def test_rolling_update_takes_highest_outdated_at_or_above_partition(replicas, partition, updated):
    """The rolling-update loop: from N-1 down to the partition, the first pod not at the
    update revision is deleted; nothing below the partition is touched."""
    s = mk_set(replicas, partition=partition)
    pods = {i: mk_pod(i, rev="r2" if i in updated else "r1") for i in range(replicas)}
    steps = ss.plan(s, pods, "r1", "r2", NOW)
    outdated = [i for i in range(replicas - 1, partition - 1, -1) if i not in updated]
    assert actions(steps) == ([("delete", outdated[0])] if outdated else [])


def test_rolling_update_waits_for_the_replaced_pod():
    s = mk_set(3)
    pods = {0: mk_pod(0, rev="r1"), 1: mk_pod(1, rev="r1"), 2: mk_pod(2, rev="r2", ready=False)}
    # ordinal 2 is not ready: OrderedReady already blocks in processReplica.
    assert actions(ss.plan(s, pods, "r1", "r2", NOW)) == []
    s = mk_set(3, policy="Parallel")
    assert actions(ss.plan(s, pods, "r1", "r2", NOW)) == []


def test_max_unavailable_deletes_several_outdated_pods():
    s = mk_set(4, policy="Parallel")
    s["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 2
    pods = {i: mk_pod(i, rev="r1") for i in range(4)}
    assert actions(ss.plan(s, pods, "r1", "r2", NOW)) == [("delete", 3), ("delete", 2)]
    pods[3] = mk_pod(3, rev="r2", ready=False)
    assert actions(ss.plan(s, pods, "r1", "r2", NOW)) == [("delete", 2)]


def test_on_delete_never_replaces_pods():
    s = mk_set(2, strategy="OnDelete")
    pods = {i: mk_pod(i, rev="r1") for i in range(2)}
    assert ss.plan(s, pods, "r1", "r2", NOW) == []


def test_missing_pod_below_partition_is_made_from_the_current_revision():
    """newVersionedStatefulSetPod: ordinals below the partition keep the current revision."""
    s = mk_set(3, partition=2)
    pods = {1: mk_pod(1), 2: mk_pod(2, rev="r2")}
    assert [(x.ordinal, x.revision) for x in ss.plan(s, pods, "r1", "r2", NOW)] == [(0, "r1")]
    s = mk_set(3, partition=0)
    assert [(x.ordinal, x.revision) for x in ss.plan(s, {1: mk_pod(1)}, "r1", "r2", NOW)] == [(0, "r2")]


def test_new_pod_identity_and_claims():
    s = mk_set(3, volumeClaimTemplates=[{"metadata": {"name": "www"},
                                         "spec": {"accessModes": ["ReadWriteOnce"],
                                                  "resources": {"requests": {"storage": "1Gi"}}}}])
    s["spec"]["template"]["spec"]["volumes"] = [{"name": "other", "emptyDir": {}}]
    pod = ss.new_pod(s, 2, "web-abc")
    assert pod["metadata"]["name"] == "web-2"
    assert pod["metadata"]["labels"] == {"app": "web", ss.POD_NAME_LABEL: "web-2",
                                         ss.POD_INDEX_LABEL: "2", ss.REVISION_LABEL: "web-abc"}
    assert pod["spec"]["hostname"] == "web-2" and pod["spec"]["subdomain"] == "web"
    assert pod["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}},
                                      {"name": "other", "emptyDir": {}}]
    claim = ss.claims_for(s, 2)["www"]
    assert claim["metadata"]["name"] == "www-web-2"
    assert claim["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize("deleted,scaled,ordinal,want", [
    ("Retain", "Retain", 1, (False, False)),
    ("Delete", "Retain", 1, (True, False)),
    ("Delete", "Retain", 5, (True, False)),
    ("Retain", "Delete", 1, (False, False)),
    ("Retain", "Delete", 5, (False, True)),
    ("Delete", "Delete", 5, (False, True)),
    ("Delete", "Delete", 0, (True, False)),
])
def test_claim_retention_owners(deleted, scaled, ordinal, want):
    """claimOwnerMatchesSetAndPod: who owns a claim under each retention policy."""
    s = mk_set(3, persistentVolumeClaimRetentionPolicy={"whenDeleted": deleted, "whenScaled": scaled})
    assert ss.claim_owners_wanted(s, ordinal) == want


def test_status_completes_rolling_update():
    s = mk_set(2)
    pods = [mk_pod(0, rev="r2"), mk_pod(1, rev="r2")]
    st_ = ss.compute_status(s, pods, "r1", "r2", 0, NOW)
    assert st_["currentRevision"] == "r2" and st_["currentReplicas"] == 2 and st_["updatedReplicas"] == 2
    pods = [mk_pod(0, rev="r1"), mk_pod(1, rev="r2")]
    st_ = ss.compute_status(s, pods, "r1", "r2", 0, NOW)
    assert (st_["currentRevision"], st_["currentReplicas"], st_["updatedReplicas"]) == ("r1", 1, 1)


def test_revision_hash_depends_on_data_and_collision_count():
    a = history.template_patch(mk_set())
    b = history.template_patch(mk_set(image="x"))
    assert history.hash_data(a, 0) == history.hash_data(a, 0)
    assert history.hash_data(a, 0) != history.hash_data(a, 1)
    s2 = mk_set()
    s2["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert history.hash_data(a, 0) != history.hash_data(history.template_patch(s2), 0)
    assert a["spec"]["template"]["$patch"] == "replace" and b
    assert history.fnv32(b"") == 2166136261 and history.fnv32(b"a") == 0x050c5d7e  # Go fnv.New32


# ---- against a real cluster ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Own API server + controller-manager + scheduler + 3 simulated nodes."""
    with own_cluster(tmp_path_factory.mktemp("sts-cluster"),
                     "statefulset,persistentvolume-binder,local-path-provisioner,garbagecollector",
                     ["--count", "3", "--name-prefix", "sts-sim", "--ready-delay", "0.3",
                      "--stop-delay", "0.1"]) as server:
        yield server


@pytest.fixture
def ns(k):
    return create_namespace(k, "sts")


def pods(k, ns):
    return {p["metadata"]["name"]: p for p in get_json(k, "pods", "-n", ns)["items"]}


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def web(replicas=3, image="nginx:1.25", **spec):
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "serviceName": "web",
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}
    body["spec"].update(spec)
    return json.dumps(body)


def rolled_out(k, ns, n):
    s = get_json(k, "statefulset", "web", "-n", ns)
    st_ = s.get("status") or {}
    return (st_.get("observedGeneration") == s["metadata"]["generation"]
            and st_.get("readyReplicas") == n and st_.get("updatedReplicas") == n
            and st_.get("currentRevision") == st_.get("updateRevision")) and s


@needs_kubectl
def test_ordered_start_stable_identity_storage_and_scale_down(k, ns):
    k("apply", "-n", ns, "-f", "-", input=web(3))
    # Watch the pods appear: a pod is created only after every lower ordinal is Running+Ready.
    seen_order: list[str] = []

    def all_ready():
        ps = pods(k, ns)
        for name in sorted(ps, key=lambda n: ps[n]["metadata"]["creationTimestamp"] + n):
            if name not in seen_order:
                seen_order.append(name)
                ordinal = int(name.rsplit("-", 1)[1])
                for lower in range(ordinal):
                    low = ps.get(f"web-{lower}")
                    assert low is not None and ready(low), f"{name} created before web-{lower} was ready"
        return len(ps) == 3 and all(ready(p) for p in ps.values()) and ps

    ps = wait_for(all_ready, what="3 ready pods")
    assert seen_order == ["web-0", "web-1", "web-2"]
    assert {p["spec"]["hostname"] for p in ps.values()} == {"web-0", "web-1", "web-2"}
    assert {p["spec"]["subdomain"] for p in ps.values()} == {"web"}
    claims = {c["metadata"]["name"]: c for c in get_json(k, "pvc", "-n", ns)["items"]}
    assert set(claims) == {"www-web-0", "www-web-1", "www-web-2"}
    # Dynamic provisioning through local-path: every claim ends Bound to a volume on its pod's node.
    def bound():
        cs = get_json(k, "pvc", "-n", ns)["items"]
        return all(c.get("status", {}).get("phase") == "Bound" for c in cs) and cs
    for c in wait_for(bound, what="claims bound"):
        pv = get_json(k, "pv", c["spec"]["volumeName"])
        node = pods(k, ns)[c["metadata"]["name"].removeprefix("www-")]["spec"]["nodeName"]
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node]
    msgs = [e["message"] for e in get_json(k, "events", "-n", ns)["items"] if e["reason"] == "SuccessfulCreate"]
    assert "create Pod web-0 in StatefulSet web successful" in msgs

    # A deleted pod comes back with the same name and the same claim.
    old_uid = ps["web-1"]["metadata"]["uid"]
    k("delete", "pod", "web-1", "-n", ns, "--wait=false")
    back = wait_for(lambda: (p := pods(k, ns).get("web-1")) and p["metadata"]["uid"] != old_uid
                    and ready(p) and p, what="web-1 recreated")
    assert back["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "www-web-1"

    # Scale down: the highest ordinal goes first; claims stay (whenScaled: Retain).
    k("scale", "statefulset", "web", "-n", ns, "--replicas=1")
    def shrunk():
        ps = pods(k, ns)
        live = sorted(n for n, p in ps.items() if not p["metadata"].get("deletionTimestamp"))
        if "web-2" in live:
            assert "web-1" in live, "web-1 removed before web-2"
        return live == ["web-0"] and len(ps) == 1
    wait_for(shrunk, what="scale down to 1")
    assert {c["metadata"]["name"] for c in get_json(k, "pvc", "-n", ns)["items"]} == \
        {"www-web-0", "www-web-1", "www-web-2"}


@needs_kubectl
def test_partitioned_rolling_update_history_and_undo(k, ns):
    k("apply", "-n", ns, "-f", "-", input=web(3))
    wait_for(lambda: rolled_out(k, ns, 3), what="first rollout")
    out = k("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    # The defaulted partition (0) makes kubectl report a partitioned rollout, as against Kubernetes.
    assert "partitioned roll out complete: 3 new pods have been updated" in out

    k("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p",
      json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}))
    k("set", "image", "statefulset/web", "-n", ns, "nginx=nginx:1.26")

    def partitioned():
        s = get_json(k, "statefulset", "web", "-n", ns)
        ps = pods(k, ns)
        images = {n: p["spec"]["containers"][0]["image"] for n, p in ps.items()}
        return (s["status"].get("updatedReplicas") == 1 and len(ps) == 3
                and all(ready(p) for p in ps.values()) and images)
    images = wait_for(partitioned, what="partitioned update")
    assert images == {"web-0": "nginx:1.25", "web-1": "nginx:1.25", "web-2": "nginx:1.26"}
    out = k("rollout", "status", "statefulset/web", "-n", ns, "--timeout=90s", timeout=120)
    assert "partitioned roll out complete: 1 new pods have been updated" in out

    k("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p",
      json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))
    wait_for(lambda: rolled_out(k, ns, 3), what="full update")
    assert {p["spec"]["containers"][0]["image"] for p in pods(k, ns).values()} == {"nginx:1.26"}

    hist = k("rollout", "history", "statefulset/web", "-n", ns)
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"]
    assert "nginx:1.25" in k("rollout", "history", "statefulset/web", "-n", ns, "--revision=1")

    k("rollout", "undo", "statefulset/web", "-n", ns)
    wait_for(lambda: rolled_out(k, ns, 3)
             and {p["spec"]["containers"][0]["image"] for p in pods(k, ns).values()} == {"nginx:1.25"},
             what="undo rollout")
    hist = k("rollout", "history", "statefulset/web", "-n", ns)
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["2", "3"]


@needs_kubectl
def test_retention_policy_deletes_claims_on_scale_down(k, ns):
    k("apply", "-n", ns, "-f", "-", input=web(
        2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Delete"}))
    wait_for(lambda: rolled_out(k, ns, 2), what="rollout")
    k("scale", "statefulset", "web", "-n", ns, "--replicas=1")
    wait_for(lambda: {c["metadata"]["name"] for c in get_json(k, "pvc", "-n", ns)["items"]
                      if not c["metadata"].get("deletionTimestamp")} == {"www-web-0"},
             what="claim of web-1 deleted")
