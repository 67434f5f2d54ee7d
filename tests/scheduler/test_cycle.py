"""The fast scheduling cycle (cycle.py) against the plain one: Filter every node in turn with
every plugin, Score every feasible node with every plugin (upstream findNodesThatPassFilters /
prioritizeNodes). Evaluating node_state_only plugins once per distinct node state must not
change which nodes are examined, which pass, the reasons of those that fail, or the best score."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from kybernetes.scheduler.cache import NodeInfo
from kybernetes.scheduler.config import build_profile
from kybernetes.scheduler.cycle import NodeStatuses, find_feasible, score_and_pick
from kybernetes.scheduler.framework import UNSCHEDULABLE, CycleState, Status
from kybernetes.scheduler.podinfo import PodInfo
from kybernetes.scheduler.profile import Profile

TAINTS = [[], [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
          [{"key": "soft", "value": "x", "effect": "PreferNoSchedule"}]]


def make_node(i: int, cpu: int, taints: int, cordoned: bool, zone: int, pods: int,
              image: bool) -> NodeInfo:
    name = f"n{i}"
    status = {"allocatable": {"cpu": str(cpu), "memory": "8Gi", "pods": "4"}}
    if image:
        status["images"] = [{"names": ["img:1"], "sizeBytes": 500 * 1024 * 1024}]
    ni = NodeInfo({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                         "zone": f"z{zone}", "disk": "ssd" if i % 2 else "hdd"}},
                   "spec": {"taints": TAINTS[taints], "unschedulable": cordoned},
                   "status": status})
    for k in range(pods):
        ni.add_pod(PodInfo({"metadata": {"name": f"{name}-p{k}", "namespace": "d", "labels": {"app": "web"}},
                            "spec": {"nodeName": name, "containers": [{"name": "c", "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"}}}]}}))
    return ni


node_st = st.tuples(st.sampled_from([1, 2, 4]), st.integers(0, 2), st.booleans(),
                    st.integers(0, 2), st.integers(0, 4), st.booleans())

pod_st = st.fixed_dictionaries({
    "cpu": st.sampled_from(["100m", "900m", "2"]),
    "tolerate": st.booleans(),
    "selector": st.booleans(),
    "spread": st.booleans(),
    "anti": st.booleans(),
    "image": st.booleans(),
})


def make_pod(o: dict) -> PodInfo:
    spec: dict = {"containers": [{"name": "c", "image": "img:1" if o["image"] else "other",
                                  "resources": {"requests": {"cpu": o["cpu"], "memory": "1Gi"}}}]}
    if o["tolerate"]:
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    if o["selector"]:
        spec["nodeSelector"] = {"disk": "ssd"}
    if o["spread"]:
        spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "zone",
                                              "whenUnsatisfiable": "DoNotSchedule",
                                              "labelSelector": {"matchLabels": {"app": "web"}}}]
    if o["anti"]:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    return PodInfo({"metadata": {"name": "new", "namespace": "d", "labels": {"app": "web"}}, "spec": spec})


@settings(max_examples=150, deadline=None)
@given(st.lists(node_st, min_size=1, max_size=30), pod_st, st.integers(0, 29), st.integers(1, 30))
def test_fast_cycle_matches_plain_cycle(node_specs, pod_opts, start, want):
    nodes = [make_node(i, *s) for i, s in enumerate(node_specs)]
    start %= len(nodes)
    pi = make_pod(pod_opts)
    fw = Profile(build_profile(), None)

    state = CycleState()
    if fw.run_pre_filter(state, pi, nodes) is not None:
        return
    plain_feasible, plain_statuses, examined = [], {}, 0
    for k in range(len(nodes)):
        ni = nodes[(start + k) % len(nodes)]
        examined += 1
        s = fw.run_filters(state, pi, ni)
        if s is None:
            plain_feasible.append(ni)
            if len(plain_feasible) >= want:
                break
        else:
            plain_statuses[ni.name] = (s.plugin, s.code, s.reasons)

    state2 = CycleState()
    fw.run_pre_filter(state2, pi, nodes)
    statuses = NodeStatuses()
    feasible, processed, reps = find_feasible(state2["filters"], state2, pi, nodes, start, want, statuses)
    assert [n.name for n in feasible] == [n.name for n in plain_feasible]
    assert processed == examined
    assert {k: (s.plugin, s.code, s.reasons) for k, s in statuses.items()} == plain_statuses
    assert {ni.sig() for ni in feasible} == set(reps)

    if len(feasible) > 1:
        totals = fw.run_scores(state, pi, plain_feasible)
        best = max(totals)
        winners = {n.name for n, t in zip(plain_feasible, totals) if t == best}
        random.seed(len(feasible))
        host = score_and_pick(fw.scorers(state2, pi, feasible), state2, pi, feasible, reps)
        assert host.name in winners


def test_pick_is_uniform_among_best():
    """Ties are broken at random among all best nodes (upstream selectHost reservoir sampling)."""
    nodes = [make_node(i, 4, 0, False, 0, 0, False) for i in range(5)]
    pi = make_pod({"cpu": "100m", "tolerate": False, "selector": False, "spread": False,
                   "anti": False, "image": False})
    fw = Profile(build_profile(), None)
    picked = set()
    for seed in range(200):
        random.seed(seed)
        state = CycleState()
        fw.run_pre_filter(state, pi, nodes)
        feasible, _, reps = find_feasible(state["filters"], state, pi, nodes, 0, 5, {})
        picked.add(score_and_pick(fw.scorers(state, pi, feasible), state, pi, feasible, reps).name)
    assert picked == {n.name for n in nodes}


def test_node_state_signature_tracks_pods_and_taints():
    a, b = make_node(0, 4, 0, False, 0, 1, False), make_node(1, 4, 0, False, 1, 1, False)
    assert a.sig() == b.sig()             # labels differ, state does not
    b.remove_pod("d/n1-p0")
    assert a.sig() != b.sig()
    c = make_node(2, 4, 1, False, 0, 1, False)
    assert c.sig() != a.sig()             # taints are part of the state


def test_node_statuses_name_batches_only_when_read_in_the_order_written():
    """Nodes rejected together are kept as one batch; every read sees them named, and a later
    single write still wins, as with a plain dict written in the same order."""
    a, b, c = (NodeInfo({"metadata": {"name": n}}) for n in "abc")
    first, second = Status(UNSCHEDULABLE, "one"), Status(UNSCHEDULABLE, "two")
    st = NodeStatuses()
    assert not st and len(st) == 0
    st.later([a, b], first)
    assert st._later  # not named yet
    assert st.get("a") is first and "b" in st and not st._later
    st.later([c], first)
    st["c"] = second
    assert dict(st.items()) == {"a": first, "b": first, "c": second}
    assert list(st) == ["a", "b", "c"] and list(st.values()) == [first, first, second]
    assert st["b"] is first and st.get("z") is None
