"""The cache's pod groups (podgroups.py), kept current pod by pod and node by node, must equal a
count from scratch; and the plugins' Filter stated as label checks (filter_labels, used by the
cycle over many nodes at once) must decide exactly as their Filter does."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from kybernetes.scheduler.cache import Cache, NodeInfo
from kybernetes.scheduler.config import build_profile
from kybernetes.scheduler.cycle import NodeStatuses, find_feasible, label_verdict
from kybernetes.scheduler.framework import CycleState
from kybernetes.scheduler.podgroups import PodGroups
from kybernetes.scheduler.podinfo import PodInfo
from kybernetes.scheduler.profile import Profile
from kybernetes.scheduler.plugins.interpodaffinity import InterPodAffinity
from kybernetes.scheduler.plugins.podtopologyspread import PodTopologySpread

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"
APPS = ["web", "db", "cache"]


def node(i: int, zone: int | None) -> dict:
    labels = {HOST: f"n{i}", "pool": "a"}
    if zone is not None:
        labels[ZONE] = f"z{zone}"
    return {"metadata": {"name": f"n{i}", "labels": labels},
            "status": {"allocatable": {"cpu": "64", "memory": "64Gi", "pods": "100"}}}


def term(app: str, key: str) -> dict:
    return {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}


def pod(j: int, app: str, node_name: str = "", anti: str | None = None,
        terminating: bool = False, ns: str = "d") -> PodInfo:
    meta: dict = {"name": f"p{j}", "namespace": ns, "labels": {"app": app}, "uid": f"u{j}"}
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec: dict = {"containers": [{"name": "c"}]}
    if node_name:
        spec["nodeName"] = node_name
    if anti:
        spec["affinity"] = {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term(anti, HOST)]}}
    return PodInfo({"metadata": meta, "spec": spec})


pod_st = st.tuples(st.sampled_from(APPS), st.sampled_from([None, "web", "db"]), st.booleans(),
                   st.sampled_from(["d", "e"]))
op_st = st.one_of(
    st.tuples(st.just("node"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 2))),
    st.tuples(st.just("rmnode"), st.integers(0, 5)),
    st.tuples(st.just("assume"), st.integers(0, 9), st.integers(0, 5), pod_st),
    st.tuples(st.just("add"), st.integers(0, 9), st.integers(0, 5), pod_st),
    st.tuples(st.just("remove"), st.integers(0, 9)),
    st.tuples(st.just("forget"), st.integers(0, 9)),
    st.tuples(st.just("confirm"), st.integers(0, 9)),
    st.tuples(st.just("query")),
)
QUERIES = [(ZONE, ()), (HOST, ()), (ZONE, (HOST, ZONE))]


def _touch(groups: PodGroups) -> None:
    """Build every lazy domain count, so later changes must update them in place."""
    for g in list(groups.by_labels.values()) + list(groups.anti_terms.values()):
        for key, req in QUERIES:
            g.by_domain(groups.nodes, key, req)
    for key, req in QUERIES:
        groups.domains(key, req)


def _snapshot(groups: PodGroups) -> dict:
    out: dict = {}
    for name, table in (("labels", groups.by_labels), ("anti", groups.anti_terms)):
        for k, g in table.items():
            out[(name, k)] = [g.by_domain(groups.nodes, key, req) for key, req in QUERIES]
    for key, req in QUERIES:
        out[("domains", key, req)] = groups.domains(key, req)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(op_st, max_size=40))
def test_incremental_groups_equal_a_count_from_scratch(ops):
    cache = Cache()
    for op in ops:
        kind = op[0]
        if kind == "node":
            cache.add_node(node(op[1], op[2]))
        elif kind == "rmnode":
            cache.remove_node(f"n{op[1]}")
        elif kind in ("assume", "add"):
            j, i, (app, anti, terminating, ns) = op[1], op[2], op[3]
            if kind == "assume":
                if cache.pod(f"{ns}/p{j}") is None:
                    cache.assume(pod(j, app, anti=anti, terminating=terminating, ns=ns), f"n{i}")
            else:
                cache.add_pod(pod(j, app, f"n{i}", anti, terminating, ns))
        elif kind == "remove":
            for ns in ("d", "e"):
                cache.remove_pod(f"{ns}/p{op[1]}")
        elif kind == "forget":
            for ns in ("d", "e"):
                cache.forget(f"{ns}/p{op[1]}")
        elif kind == "confirm":     # the informer delivers our binding of an assumed pod
            for ns in ("d", "e"):
                key = f"{ns}/p{op[1]}"
                if cache.is_assumed(key):
                    old, where = cache.pod(key), cache.pod_nodes[key]
                    cache.add_pod(old.with_pod({**old.pod, "spec": {**old.pod["spec"], "nodeName": where}}))
                    assert not cache.is_assumed(key) and cache.pod(key).node_name == where
        else:
            _touch(cache.groups)
            cache.column(ZONE)
    assert cache.sids == [ni.sig_id for ni in cache.node_list]   # what the cycle reads
    assert cache.column(ZONE) == [ni.labels.get(ZONE) for ni in cache.node_list]
    for ni in cache.nodes.values():     # running totals equal a node rebuilt from its pods
        again = NodeInfo(ni.node) if ni.node is not None else NodeInfo(name=ni.name)
        for p in ni.pods.values():
            again.add_pod(p)
        assert (again.requested, again.req_cpu, again.nonzero_memory, again.ports,
                set(again.affinity_pods), set(again.anti_affinity_pods)) == \
            (ni.requested, ni.req_cpu, ni.nonzero_memory, ni.ports,
             set(ni.affinity_pods), set(ni.anti_affinity_pods))
        assert all(ni.pods[k] is p for k, p in ni.affinity_pods.items())
    fresh = PodGroups.of(cache.nodes.values())
    assert _snapshot(cache.groups) == _snapshot(fresh)
    # Groups hold exactly the pods the nodes hold.
    counted = sum(sum(g.nodes.values()) for g in cache.groups.by_labels.values())
    assert counted == sum(len(ni.pods) for ni in cache.nodes.values())


class Handle:
    def __init__(self, cache: Cache):
        self.cache = cache

    def namespace_labels(self) -> dict:
        return {}


existing_st = st.lists(st.tuples(st.integers(0, 7), pod_st), max_size=14)
incoming_st = st.fixed_dictionaries({
    "app": st.sampled_from(APPS),
    "affinity": st.sampled_from([None, ("web", ZONE), ("db", ZONE), ("cache", HOST)]),
    "anti": st.sampled_from([None, ("web", HOST), ("db", ZONE)]),
    "spread": st.sampled_from([None, (1, ZONE), (2, ZONE), (1, HOST)]),
    "min_domains": st.sampled_from([None, 4]),
})


def incoming(o: dict) -> PodInfo:
    spec: dict = {"containers": [{"name": "c"}]}
    aff: dict = {}
    if o["affinity"]:
        aff["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term(*o["affinity"])]}
    if o["anti"]:
        aff["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term(*o["anti"])]}
    if aff:
        spec["affinity"] = aff
    if o["spread"]:
        c = {"maxSkew": o["spread"][0], "topologyKey": o["spread"][1],
             "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": o["app"]}}}
        if o["min_domains"]:
            c["minDomains"] = o["min_domains"]
        spec["topologySpreadConstraints"] = [c]
    return PodInfo({"metadata": {"name": "new", "namespace": "d", "labels": {"app": o["app"]}},
                    "spec": spec})


def _key(s):
    return None if s is None else (s.code, tuple(s.reasons))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=1, max_size=8), existing_st,
       incoming_st, st.integers(0, 7), st.integers(1, 8))
def test_label_checks_decide_as_filter(zones, existing, o, start, want):
    cache = Cache()
    for i, z in enumerate(zones):
        cache.add_node(node(i, z))
    for j, (i, (app, anti, terminating, ns)) in enumerate(existing):
        cache.add_pod(pod(j, app, f"n{i % len(zones)}", anti, terminating, ns))
    nodes = cache.node_list
    pi = incoming(o)
    for plugin_cls in (InterPodAffinity, PodTopologySpread):
        with_cache, without = plugin_cls(Handle(cache)), plugin_cls()
        s1, s2 = CycleState(), CycleState()
        r1, r2 = with_cache.pre_filter(s1, pi, nodes), without.pre_filter(s2, pi, nodes)
        assert _key(r1) == _key(r2)
        if r1 is not None:
            continue
        checks = with_cache.filter_labels(s1, pi)
        for ni in nodes:
            want_st = _key(without.filter(s2, pi, ni))
            assert _key(with_cache.filter(s1, pi, ni)) == want_st
            assert _key(label_verdict(checks, ni.labels)) == want_st

    # The whole Filter phase: the cycle's bulk path against plugin-by-plugin, node by node.
    fw = Profile(build_profile(), Handle(cache))
    state = CycleState()
    if fw.run_pre_filter(state, pi, nodes) is not None:
        return
    start %= len(nodes)
    plain, plain_statuses, examined = [], {}, 0
    for k in range(len(nodes)):
        ni = nodes[(start + k) % len(nodes)]
        examined += 1
        s = fw.run_filters(state, pi, ni)
        if s is None:
            plain.append(ni.name)
            if len(plain) >= want:
                break
        else:
            plain_statuses[ni.name] = (s.plugin, _key(s))
    for extra in ({}, {"sids": cache.sids, "column": cache.column}):   # as the scheduler calls it
        statuses = NodeStatuses()
        feasible, processed, _ = find_feasible(state["filters"], state, pi, nodes, start, want,
                                               statuses, **extra)
        assert [ni.name for ni in feasible] == plain
        assert processed == examined
        assert {k: (s.plugin, _key(s)) for k, s in statuses.items()} == plain_statuses


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=1, max_size=8), existing_st,
       st.sampled_from(APPS))
def test_spread_scores_from_groups_equal_the_node_by_node_count(zones, existing, app):
    """A nodeSelector every node satisfies makes the plugin count node by node (eligibility);
    without it the pod groups count: the scores must be the same."""
    cache = Cache()
    for i, z in enumerate(zones):
        cache.add_node(node(i, z))
    for j, (i, (papp, anti, terminating, ns)) in enumerate(existing):
        cache.add_pod(pod(j, papp, f"n{i % len(zones)}", anti, terminating, ns))
    nodes = cache.node_list
    soft = [{"maxSkew": 1, "topologyKey": k, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app": app}}} for k in (ZONE, HOST)]
    results = []
    for extra in ({}, {"nodeSelector": {"pool": "a"}}):
        pi = PodInfo({"metadata": {"name": "new", "namespace": "d", "labels": {"app": app}},
                      "spec": {"containers": [{"name": "c"}], "topologySpreadConstraints": soft,
                               **extra}})
        plugin = PodTopologySpread(Handle(cache))
        state = CycleState()
        assert plugin.pre_score(state, pi, nodes) is None
        scores = [plugin.score(state, pi, ni) for ni in nodes]
        plugin.normalize_score(state, pi, scores)
        results.append(scores)
    assert results[0] == results[1]


def test_node_label_change_reaches_columns_and_domain_counts():
    cache = Cache()
    cache.add_node(node(0, 0))
    cache.add_pod(pod(1, "web", "n0", anti="web"))
    g = next(iter(cache.groups.by_labels.values()))
    assert cache.column(ZONE) == ["z0"]
    assert g.by_domain(cache.nodes, ZONE) == {"z0": 1}
    assert cache.groups.domains(ZONE) == {"z0": 1}
    cache.add_node(node(0, 1))           # relabelled into another zone
    assert cache.column(ZONE) == ["z1"]
    assert g.by_domain(cache.nodes, ZONE) == {"z1": 1}
    assert cache.groups.domains(ZONE) == {"z1": 1}
    cache.remove_node("n0")              # its pod stays, but no longer counts in a domain
    assert cache.column(ZONE) == [] and g.by_domain(cache.nodes, ZONE) == {}


def test_interpod_filter_reports_in_upstream_order():
    """filtering.go Filter: the pod's affinity, then its anti-affinity, then existing pods'
    anti-affinity; a node failing the last two reports the pod's own anti-affinity."""
    cache = Cache()
    cache.add_node(node(0, 0))
    cache.add_pod(pod(1, "web", "n0", anti="web"))       # rejects web pods; is one itself
    pi = pod(2, "web", anti="web")
    plugin = InterPodAffinity(Handle(cache))
    state = CycleState()
    assert plugin.pre_filter(state, pi, cache.node_list) is None
    ni = cache.node_list[0]
    assert plugin.filter(state, pi, ni).reasons == ["node(s) didn't match pod anti-affinity rules"]
    assert label_verdict(plugin.filter_labels(state, pi), ni.labels) is plugin.filter(state, pi, ni)
