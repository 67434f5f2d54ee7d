"""DaemonSet controller: node eligibility, manage and rolling-update decisions as pure functions,
then a real API server with the controller manager, the scheduler and simulated nodes.

Behaviour matched: upstream pkg/controller/daemon daemon_controller.go (NodeShouldRunDaemonPod,
podsShouldBeOnNode, updateDaemonSetStatus), update.go (rollingUpdate with and without surge,
findUpdatedPodsOnNode), util/daemonset_util.go (default tolerations, metadata.name node
affinity) and kubectl's DaemonSet rollout status.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kybtest
from kybernetes.controllers import daemonset as dsc
from kybtest import (create_namespace, get_json, needs_kubectl, own_cluster, start_sim_nodes,
                     stop_process)

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def mk_ds(strategy=None, **tspec):
    spec = {"containers": [{"name": "c", "image": "agent"}]}
    spec.update(tspec)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u-ds", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}}


def mk_node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def mk_pod(name, node, hash_="h1", ready=True, phase="Running", created="2025-01-01T00:00:00Z"):
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "labels": {"app": "agent", dsc.HASH_LABEL: hash_}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "lastTransitionTime": (NOW - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")}]}}


# ---- pure logic ---------------------------------------------------------------------------------

def test_eligibility_selector_affinity_taints():
    ds = mk_ds(nodeSelector={"disk": "ssd"})
    assert dsc.should_run(ds, mk_node("a", {"disk": "ssd"})) == (True, True)
    assert dsc.should_run(ds, mk_node("b")) == (False, False)
    ds = mk_ds()
    dedicated = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
    assert dsc.should_run(ds, mk_node("c", taints=[dedicated])) == (False, True)
    evict = {"key": "dedicated", "value": "infra", "effect": "NoExecute"}
    assert dsc.should_run(ds, mk_node("c", taints=[evict])) == (False, False)
    tolerant = mk_ds(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert dsc.should_run(tolerant, mk_node("c", taints=[dedicated, evict])) == (True, True)


def test_default_tolerations_keep_daemons_on_troubled_nodes():
    """AddOrUpdateDaemonPodTolerations: cordoned, not-ready and pressured nodes still qualify."""
    ds = mk_ds()
    for key, effect in [("node.kubernetes.io/unschedulable", "NoSchedule"),
                        ("node.kubernetes.io/not-ready", "NoExecute"),
                        ("node.kubernetes.io/memory-pressure", "NoSchedule")]:
        assert dsc.should_run(ds, mk_node("n", taints=[{"key": key, "effect": effect}])) == (True, True)
    net = [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]
    assert dsc.should_run(ds, mk_node("n", taints=net))[0] is False
    assert dsc.should_run(mk_ds(hostNetwork=True), mk_node("n", taints=net))[0] is True


def test_new_pod_is_pinned_by_node_affinity_not_node_name():
    ds = mk_ds(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}})
    pod = dsc.new_daemon_pod(ds, "node-7", "h1")
    assert "nodeName" not in pod["spec"]
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["node-7"]}]}]}
    assert dsc.target_node(pod) == "node-7"
    assert pod["metadata"]["labels"][dsc.HASH_LABEL] == "h1"
    assert pod["metadata"]["generateName"] == "agent-"


def test_manage_creates_missing_deletes_extra_failed_and_misplaced():
    ds = mk_ds(nodeSelector={"role": "worker"})
    nodes = [mk_node("a", {"role": "worker"}), mk_node("b", {"role": "worker"}), mk_node("c")]
    node_pods = {
        "b": [mk_pod("p1", "b", created="2025-01-01T00:00:00Z"), mk_pod("p2", "b", created="2025-01-01T00:00:05Z")],
        "c": [mk_pod("p3", "c")],
        "gone": [mk_pod("p4", "gone")],
    }
    plan = dsc.plan_manage(ds, nodes, node_pods, "h1", NOW)
    assert plan.create == ["a"]
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["p2", "p3", "p4"]
    failed = {"a": [mk_pod("f", "a", phase="Failed", ready=False)]}
    plan = dsc.plan_manage(ds, nodes, failed, "h1", NOW)
    assert [p["metadata"]["name"] for p in plan.failed] == ["f"] and plan.create == ["b"]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 8), max_unavailable=st.integers(1, 4), unready=st.sets(st.integers(0, 7)))
def test_rolling_update_without_surge_stays_within_max_unavailable(n, max_unavailable, unready):
    """No surge: old pods that are unavailable are replaced at once; of the available ones
    only as many as maxUnavailable leaves room for."""
    ds = mk_ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}})
    nodes = [mk_node(f"n{i}") for i in range(n)]
    node_pods = {f"n{i}": [mk_pod(f"p{i}", f"n{i}", hash_="old", ready=i not in unready)] for i in range(n)}
    delete, create = dsc.plan_rolling_update(ds, nodes, node_pods, "new", NOW)
    assert create == []
    bad = {f"p{i}" for i in range(n) if i in unready}
    names = {p["metadata"]["name"] for p in delete}
    assert bad <= names
    assert len(names - bad) == max(0, min(max_unavailable, n - len(bad)))


def test_rolling_update_with_surge_starts_new_beside_old_then_removes_old():
    ds = mk_ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    nodes = [mk_node("a"), mk_node("b")]
    node_pods = {"a": [mk_pod("a-old", "a", hash_="old")], "b": [mk_pod("b-old", "b", hash_="old")]}
    delete, create = dsc.plan_rolling_update(ds, nodes, node_pods, "new", NOW)
    assert delete == [] and create == ["a"]                  # at most maxSurge new pods at once
    node_pods["a"].append(mk_pod("a-new", "a", hash_="new", ready=False))
    assert dsc.plan_rolling_update(ds, nodes, node_pods, "new", NOW) == ([], [])
    node_pods["a"][1] = mk_pod("a-new", "a", hash_="new")
    delete, create = dsc.plan_rolling_update(ds, nodes, node_pods, "new", NOW)
    assert [p["metadata"]["name"] for p in delete] == ["a-old"] and create == ["b"]


def test_surge_and_unavailable_rounding():
    ds = mk_ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}})
    assert dsc.max_surge_unavailable(ds, 15) == (0, 2)     # rounded up
    ds = mk_ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert dsc.max_surge_unavailable(ds, 5) == (0, 1)      # impossible config → 1 unavailable


def test_status_counts():
    ds = mk_ds(nodeSelector={"role": "worker"})
    nodes = [mk_node("a", {"role": "worker"}), mk_node("b", {"role": "worker"}), mk_node("c")]
    node_pods = {"a": [mk_pod("pa", "a")], "b": [mk_pod("pb", "b", hash_="old", ready=False)],
                 "c": [mk_pod("pc", "c")]}
    s = dsc.compute_status(ds, nodes, node_pods, "h1", NOW)
    assert (s["desiredNumberScheduled"], s["currentNumberScheduled"], s["numberMisscheduled"],
            s["numberReady"], s["numberAvailable"], s["updatedNumberScheduled"],
            s["numberUnavailable"]) == (2, 2, 1, 1, 1, 1, 1)


# ---- against a real cluster ---------------------------------------------------------------------

def sim(prefix, *extra):
    """Arguments of a `sim nodes` whose pods start and stop quickly."""
    return ["--name-prefix", prefix, "--ready-delay", "0.2", "--stop-delay", "0.1", *extra]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("ds-cluster")
    with own_cluster(logs, "daemonset,garbagecollector", sim("ds-sim", "--count", "3"),
                     sim("ds-tainted", "--count", "1", "--taints", "dedicated=infra:NoSchedule")) as server:
        server.logs = logs
        yield server


def wait_for(fn, what="condition"):
    # Five simulated nodes and a rolling update: slower than most waits on a busy machine.
    return kybtest.wait_for(fn, 90.0, what)


def agent(image="agent:1", **tspec):
    spec = {"containers": [{"name": "agent", "image": image}]}
    spec.update(tspec)
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                       "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}})


def placement(k, ns):
    """node → images of the live, ready pods on it."""
    out: dict[str, list[str]] = {}
    for p in get_json(k, "pods", "-n", ns)["items"]:
        if p["metadata"].get("deletionTimestamp") or not p["spec"].get("nodeName"):
            continue
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []):
            out.setdefault(p["spec"]["nodeName"], []).append(p["spec"]["containers"][0]["image"])
    return out


@needs_kubectl
def test_one_pod_per_node_joins_taints_and_rolling_update(cluster, k):
    ns = create_namespace(k, "ds")
    k("apply", "-n", ns, "-f", "-", input=agent())

    def untainted_nodes():
        nodes = {n["metadata"]["name"] for n in get_json(k, "nodes")["items"]}
        found = {n for n in nodes if not n.startswith("ds-tainted")}
        return found if len(found) == 3 else None

    untainted = wait_for(untainted_nodes, what="the three simulated nodes")  # slow on busy machines
    wait_for(lambda: set(placement(k, ns)) == untainted and
             all(len(v) == 1 for v in placement(k, ns).values()), what="one pod per untainted node")
    out = k("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=90s", timeout=120)
    assert 'daemon set "agent" successfully rolled out' in out

    # A node joining later gets its pod.
    late = start_sim_nodes(cluster.kubeconfig, cluster.logs / "sim-late.log",
                           *sim("ds-late", "--count", "1", "--labels", "disk=ssd"))
    try:
        def with_late():
            got = placement(k, ns)
            return any(n.startswith("ds-late") for n in got) and len(got) == 4 and got
        wait_for(with_late, what="pod on the late node")

        # nodeSelector: only the labelled node keeps (gets) a pod; tolerations reach the tainted one.
        ns2 = create_namespace(k, "ds")
        k("apply", "-n", ns2, "-f", "-", input=agent(nodeSelector={"disk": "ssd"}))
        wait_for(lambda: [n[:7] for n in placement(k, ns2)] == ["ds-late"], what="only the ssd node")
        ns3 = create_namespace(k, "ds")
        k("apply", "-n", ns3, "-f", "-", input=agent(
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]))
        wait_for(lambda: len(placement(k, ns3)) == 5, what="tolerating pods on all 5 nodes")

        # Rolling update (maxUnavailable 1): every node ends with one pod of the new image.
        k("set", "image", "daemonset/agent", "-n", ns, "agent=agent:2")
        k("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=90s", timeout=120)
        got = wait_for(lambda: (p := placement(k, ns)) and all(v == ["agent:2"] for v in p.values())
                       and len(p) == 4 and p, what="updated everywhere")
        assert len(got) == 4
        hist = k("rollout", "history", "daemonset/agent", "-n", ns)
        assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"]
        ds = get_json(k, "daemonset", "agent", "-n", ns)
        s = ds["status"]
        assert (s["desiredNumberScheduled"], s["updatedNumberScheduled"], s["numberReady"]) == (4, 4, 4)
    finally:
        stop_process(late)
    # The late node's kubelet is gone but its Node stays; delete it: its daemon pod goes too.
    late_node = next(n for n in nodes_now(k) if n.startswith("ds-late"))
    k("delete", "node", late_node)
    wait_for(lambda: len(placement(k, ns)) == 3 and not any(
        p["spec"].get("nodeName") == late_node for p in get_json(k, "pods", "-n", ns)["items"]),
        what="pod of the removed node gone")


def nodes_now(k):
    return [n["metadata"]["name"] for n in get_json(k, "nodes")["items"]]
