"""PodTopologySpread and InterPodAffinity against upstream's semantics, KubeSchedulerConfiguration
parsing, and the scheduler's event queue."""

from __future__ import annotations

import asyncio

import pytest

from kybernetes.scheduler.cache import Cache, NodeInfo
from kybernetes.scheduler.config import load
from kybernetes.client import EventRecorder
from kybernetes.scheduler.events import LimitedWrites
from kybernetes.scheduler.framework import SKIP, UNRESOLVABLE, UNSCHEDULABLE, CycleState
from kybernetes.scheduler.plugins import DEFAULT_PLUGINS
from kybernetes.scheduler.plugins.interpodaffinity import (ERR_AFFINITY, ERR_ANTI, ERR_EXISTING_ANTI,
                                                           InterPodAffinity)
from kybernetes.scheduler.plugins.podtopologyspread import (ERR_MISMATCH, ERR_MISSING_LABEL,
                                                            PodTopologySpread)
from kybernetes.scheduler.podinfo import PodInfo

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


def node(name: str, zone: str | None) -> NodeInfo:
    labels = {HOST: name}
    if zone:
        labels[ZONE] = zone
    return NodeInfo({"metadata": {"name": name, "labels": labels},
                     "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "100"}}})


def pod(name: str, labels: dict | None = None, node_name: str = "", **spec) -> PodInfo:
    s = {"containers": [{"name": "c"}], **spec}
    if node_name:
        s["nodeName"] = node_name
    return PodInfo({"metadata": {"name": name, "namespace": "d", "labels": labels or {"app": "web"}},
                    "spec": s})


def spread(max_skew=1, key=ZONE, min_domains=None, when="DoNotSchedule"):
    c = {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
         "labelSelector": {"matchLabels": {"app": "web"}}}
    if min_domains:
        c["minDomains"] = min_domains
    return [c]


def place(ni: NodeInfo, n: int, labels: dict | None = None) -> None:
    for i in range(n):
        ni.add_pod(pod(f"{ni.name}-{i}", labels, node_name=ni.name))


def run_filter(plugin, pi, nodes):
    state = CycleState()
    st = plugin.pre_filter(state, pi, nodes)
    if st is not None:
        return st
    return {ni.name: plugin.filter(state, pi, ni) for ni in nodes}


# ---- PodTopologySpread ----

def test_spread_max_skew_against_the_global_minimum():
    """filtering.go: count in the node's domain + 1 (self matches) - min over domains <= maxSkew."""
    a, b, c = node("a", "z1"), node("b", "z2"), node("c", "z2")
    place(a, 1)
    place(b, 2)
    got = run_filter(PodTopologySpread(), pod("new", spread=None, topologySpreadConstraints=spread()),
                     [a, b, c])
    assert got["a"] is None
    assert got["b"].code == UNSCHEDULABLE and got["b"].reasons == [ERR_MISMATCH]
    assert got["c"].reasons == [ERR_MISMATCH]          # same domain as b


def test_spread_node_without_the_key_is_unresolvable():
    a, nolabel = node("a", "z1"), node("x", None)
    got = run_filter(PodTopologySpread(), pod("new", topologySpreadConstraints=spread()), [a, nolabel])
    assert got["a"] is None
    assert got["x"].code == UNRESOLVABLE and got["x"].reasons == [ERR_MISSING_LABEL]


def test_spread_min_domains_makes_the_minimum_zero():
    """With fewer eligible domains than minDomains the global minimum counts as 0."""
    a, b = node("a", "z1"), node("b", "z2")
    place(a, 1)
    place(b, 1)
    pi = pod("new", topologySpreadConstraints=spread(min_domains=3))
    got = run_filter(PodTopologySpread(), pi, [a, b])
    assert got["a"].reasons == [ERR_MISMATCH] and got["b"].reasons == [ERR_MISMATCH]
    got = run_filter(PodTopologySpread(), pod("new", topologySpreadConstraints=spread()), [a, b])
    assert got == {"a": None, "b": None}


def test_spread_counts_only_matching_pods_and_ignores_terminating_ones():
    a, b = node("a", "z1"), node("b", "z2")
    place(a, 3, {"app": "other"})
    term = PodInfo({"metadata": {"name": "t", "namespace": "d", "labels": {"app": "web"},
                                 "deletionTimestamp": "2024-01-01T00:00:00Z"},
                    "spec": {"nodeName": "a", "containers": [{"name": "c"}]}})
    a.add_pod(term)
    place(b, 1)
    got = run_filter(PodTopologySpread(), pod("new", topologySpreadConstraints=spread()), [a, b])
    assert got["a"] is None and got["b"] is not None


def test_spread_count_memo_follows_pod_changes():
    """A node's memoised count must not survive a pod landing on it."""
    a, b = node("a", "z1"), node("b", "z2")
    plugin = PodTopologySpread()
    pi = pod("new", topologySpreadConstraints=spread())
    assert run_filter(plugin, pi, [a, b]) == {"a": None, "b": None}
    place(a, 1)
    got = run_filter(plugin, pi, [a, b])
    assert got["a"] is not None and got["b"] is None


def test_spread_without_constraints_skips():
    st = PodTopologySpread().pre_filter(CycleState(), pod("new"), [node("a", "z1")])
    assert st.code == SKIP


def test_spread_score_prefers_the_emptier_domain():
    a, b = node("a", "z1"), node("b", "z2")
    place(a, 2)
    plugin = PodTopologySpread()
    pi = pod("new", topologySpreadConstraints=spread(when="ScheduleAnyway"))
    state = CycleState()
    assert plugin.pre_score(state, pi, [a, b]) is None
    scores = [plugin.score(state, pi, ni) for ni in (a, b)]
    plugin.normalize_score(state, pi, scores)
    assert scores[1] > scores[0]


# ---- InterPodAffinity ----

ANTI = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST}]}}
AFF = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": ZONE}]}}


def test_required_anti_affinity_one_per_host():
    a, b = node("a", "z1"), node("b", "z1")
    place(a, 1)
    got = run_filter(InterPodAffinity(), pod("new", affinity=ANTI), [a, b])
    assert got["a"].code == UNSCHEDULABLE and got["a"].reasons == [ERR_ANTI]
    assert got["b"] is None


def test_existing_pods_anti_affinity_is_symmetric():
    """A pod without terms still may not join a pod whose anti-affinity selects it."""
    a, b = node("a", "z1"), node("b", "z1")
    a.add_pod(pod("old", node_name="a", affinity=ANTI))
    got = run_filter(InterPodAffinity(), pod("new"), [a, b])
    assert got["a"].reasons == [ERR_EXISTING_ANTI] and got["b"] is None


def test_existing_anti_affinity_found_through_the_cache_index():
    """With a handle, only the nodes the cache lists as holding anti-affinity pods are read."""
    cache = Cache()
    for n, z in (("a", "z1"), ("b", "z2")):
        cache.add_node({"metadata": {"name": n, "labels": {HOST: n, ZONE: z}},
                        "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})
    cache.add_pod(pod("old", node_name="b", affinity=ANTI))

    class Handle:
        def __init__(self):
            self.cache = cache

        def namespace_labels(self):
            return {}
    got = run_filter(InterPodAffinity(Handle()), pod("new"), cache.node_list)
    assert got["a"] is None and got["b"].reasons == [ERR_EXISTING_ANTI]


def test_counts_of_several_groups_are_merged_without_changing_the_caches():
    """Two label groups selected by the anti-affinity over one topology key: their counts per
    host add up in the cycle state, and the cache's own counts stay as they were."""
    cache = Cache()
    for n in ("a", "b", "c"):
        cache.add_node({"metadata": {"name": n, "labels": {HOST: n, ZONE: "z1"}},
                        "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})
    cache.add_pod(pod("one", {"app": "web", "v": "1"}, node_name="a"))
    cache.add_pod(pod("two", {"app": "web", "v": "2"}, node_name="b"))
    cache.add_pod(pod("three", {"app": "web", "v": "2"}, node_name="b"))

    class Handle:
        def __init__(self):
            self.cache = cache

        def namespace_labels(self):
            return {}
    plugin = InterPodAffinity(Handle())
    before = [dict(g.by_domain(cache.groups.nodes, HOST)) for g in cache.groups.by_labels.values()]
    state = CycleState()
    assert plugin.pre_filter(state, pod("new", affinity=ANTI), cache.node_list) is None
    assert state["InterPodAffinity"][2] == {HOST: {"a": 1, "b": 2}}
    after = [g.by_domain(cache.groups.nodes, HOST) for g in cache.groups.by_labels.values()]
    assert after == before == [{"a": 1}, {"b": 2}]
    got = {ni.name: plugin.filter(state, pod("new", affinity=ANTI), ni) for ni in cache.node_list}
    assert got["a"].reasons == [ERR_ANTI] and got["b"].reasons == [ERR_ANTI] and got["c"] is None


def test_required_affinity_needs_a_match_in_the_domain():
    a, b = node("a", "z1"), node("b", "z2")
    place(a, 1, {"app": "db"})
    got = run_filter(InterPodAffinity(), pod("new", affinity=AFF), [a, b])
    assert got["a"] is None
    assert got["b"].code == UNRESOLVABLE and got["b"].reasons == [ERR_AFFINITY]


def test_first_pod_of_a_self_selecting_group_may_go_anywhere():
    """filtering.go: no pod matches the affinity anywhere but the pod matches its own terms."""
    a, b = node("a", "z1"), node("b", "z2")
    got = run_filter(InterPodAffinity(), pod("new", {"app": "db"}, affinity=AFF), [a, b])
    assert got == {"a": None, "b": None}
    got = run_filter(InterPodAffinity(), pod("new", {"app": "web"}, affinity=AFF), [a, b])
    assert all(s is not None for s in got.values())


def test_interpod_without_terms_anywhere_skips():
    st = InterPodAffinity().pre_filter(CycleState(), pod("new"), [node("a", "z1")])
    assert st.code == SKIP


# ---- configuration ----

def test_default_profile_has_upstream_plugins_and_weights():
    cfg = load()
    prof = cfg.profiles[0]
    assert prof.scheduler_name == "default-scheduler"
    assert prof.points["filter"][:4] == ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity"]
    assert prof.weights["TaintToleration"] == 3 and prof.weights["PodTopologySpread"] == 2
    assert set(prof.points["score"]) == {n for n, w in DEFAULT_PLUGINS if w}
    assert cfg.initial_backoff == 1.0 and cfg.max_backoff == 10.0


def test_config_disables_enables_weights_and_args():
    cfg = load(text="""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
podInitialBackoffSeconds: 2
podMaxBackoffSeconds: 20
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  percentageOfNodesToScore: 70
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    filter:
      disabled: [{name: TaintToleration}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
""")
    assert cfg.percentage_of_nodes_to_score == 30
    assert (cfg.initial_backoff, cfg.max_backoff) == (2.0, 20.0)
    default, packer = cfg.profiles
    assert packer.scheduler_name == "packer" and packer.percentage_of_nodes_to_score == 70
    assert packer.points["score"] == ["NodeResourcesFit"] and packer.weights == {"NodeResourcesFit": 5}
    assert "TaintToleration" not in packer.points["filter"]
    assert "TaintToleration" in packer.points["score"] or packer.points["score"] == ["NodeResourcesFit"]
    assert packer.args["NodeResourcesFit"]["scoringStrategy"]["type"] == "MostAllocated"
    assert "TaintToleration" in default.points["filter"]


def test_multipoint_disable_all_then_enable():
    cfg = load(text="""
profiles:
- plugins:
    multiPoint:
      disabled: [{name: "*"}]
      enabled: [{name: PrioritySort}, {name: NodeResourcesFit, weight: 3}, {name: DefaultBinder}]
""")
    prof = cfg.profiles[0]
    assert prof.points["filter"] == ["NodeResourcesFit"]
    assert prof.points["queue_sort"] == ["PrioritySort"] and prof.points["bind"] == ["DefaultBinder"]
    assert prof.weights == {"NodeResourcesFit": 3}


def test_unknown_plugin_is_an_error():
    with pytest.raises(ValueError, match="NoSuchPlugin"):
        load(text="profiles: [{plugins: {filter: {enabled: [{name: NoSuchPlugin}]}}}]")


# ---- events ----

class _Sink:
    def __init__(self):
        self.gate = asyncio.Event()
        self.written: list[str] = []

    async def create(self, r, body, ns=None, **kw):
        await self.gate.wait()
        self.written.append(body["message"])
        return body

    async def patch(self, *a, **kw):
        await self.gate.wait()
        return {}


async def test_event_writes_are_limited_and_all_land():
    """Event writes queue behind a small limit (upstream: one sink goroutine) yet all complete."""
    sink = _Sink()
    limited = LimitedWrites(sink, limit=2)
    rec = EventRecorder(limited, "default-scheduler")
    for i in range(10):
        rec.event({"metadata": {"name": f"p{i}", "namespace": "d", "uid": f"u{i}"}},
                  "Normal", "Scheduled", f"m{i}")
    await asyncio.sleep(0.05)
    assert limited.in_flight == 2
    sink.gate.set()
    await rec.flush()
    assert sorted(sink.written) == sorted(f"m{i}" for i in range(10)) and limited.peak == 2
