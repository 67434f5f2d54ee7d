"""Plugins checked case by case against kube-scheduler's own unit tests and semantics
(pkg/scheduler/framework/plugins/<plugin>/*_test.go). Each test names the upstream test or
function it follows; expected numbers are derived by hand from upstream's formulas."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from kybernetes.api.selectors import label_selector_from_object
from kybernetes.scheduler.cache import Cache, NodeInfo
from kybernetes.scheduler.framework import SKIP, UNRESOLVABLE, UNSCHEDULABLE, CycleState
from kybernetes.scheduler.plugins.imagelocality import (ImageLocality, calculate_priority,
                                                        normalized_image)
from kybernetes.scheduler.plugins.interpodaffinity import InterPodAffinity
from kybernetes.scheduler.plugins.nodeaffinity import ERR_ENFORCED, NodeAffinity
from kybernetes.scheduler.plugins.nodename import NodeName
from kybernetes.scheduler.plugins.nodeports import NodePorts
from kybernetes.scheduler.plugins.noderesources import (NodeResourcesBalancedAllocation,
                                                        NodeResourcesFit, broken_linear)
from kybernetes.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from kybernetes.scheduler.plugins.podtopologyspread import SYSTEM_DEFAULTS, PodTopologySpread
from kybernetes.scheduler.plugins.tainttoleration import TaintToleration
from kybernetes.scheduler.podinfo import PodInfo
from kybernetes.scheduler.scheduler import Scheduler

MB = 1024 * 1024
ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


def node_obj(name, labels=None, alloc=None, taints=None, unschedulable=False, images=None):
    status = {"allocatable": alloc or {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    if images:
        status["images"] = [{"names": names, "sizeBytes": size} for names, size in images]
    spec = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": status}


def mknode(name="n", **kw) -> NodeInfo:
    return NodeInfo(node_obj(name, **kw))


def mkpod(name="p", labels=None, node_name="", requests=(), ns="d", **spec) -> PodInfo:
    """`requests`: one requests dict per container (no containers when empty, like
    upstream's st.MakePod().Obj())."""
    s = {"containers": [{"name": f"c{i}", "resources": {"requests": r}}
                        for i, r in enumerate(requests)], **spec}
    if node_name:
        s["nodeName"] = node_name
    return PodInfo({"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": s})


def scores_of(plugin, pi, nodes, state=None):
    """PreScore, Score on every node, NormalizeScore: what the framework does."""
    state = state if state is not None else CycleState()
    st_ = plugin.pre_score(state, pi, nodes) if hasattr(plugin, "pre_score") else None
    if st_ is not None:
        return st_
    out = [plugin.score(state, pi, ni) for ni in nodes]
    if hasattr(plugin, "normalize_score"):
        plugin.normalize_score(state, pi, out)
    return out


class Handle:
    """The scheduler's handle as plugins see it: the cache, namespaces, DefaultSelector."""

    def __init__(self, cache=None, selector=None):
        self.cache = cache
        self.selector = selector

    def namespace_labels(self):
        return {}

    def default_selector(self, pi):
        return self.selector


def cache_with(nodes, pods=()):
    cache = Cache()
    for n in nodes:
        cache.add_node(n)
    for p in pods:
        cache.add_pod(p)
    return cache


# ---- NodeName ----

@pytest.mark.parametrize("pod_node,node,ok", [
    ("", "foo", True),       # upstream TestNodeName "no host specified"
    ("foo", "foo", True),    # "host matches"
    ("bar", "foo", False),   # "host doesn't match"
])
def test_nodename_upstream_TestNodeName(pod_node, node, ok):
    """Upstream calls Filter alone (NodeName has no PreFilter); a mismatch is
    UnschedulableAndUnresolvable "node(s) didn't match the requested node name"."""
    st_ = NodeName().filter(CycleState(), mkpod(node_name=pod_node), mknode(node))
    if ok:
        assert st_ is None
    else:
        assert st_.code == UNRESOLVABLE
        assert st_.reasons == ["node(s) didn't match the requested node name"]


# ---- NodeUnschedulable ----

@pytest.mark.parametrize("cordoned,tolerations,ok", [
    (True, [], False),      # "Does not schedule pod to unschedulable node"
    (False, [], True),      # "Schedule pod to normal node"
    # "Schedule pod with toleration to unschedulable node": key + effect, operator Equal, no value
    (True, [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}], True),
    # ToleratesTaint: an empty key with Exists tolerates every taint
    (True, [{"operator": "Exists"}], True),
    # ToleratesTaint: a non-empty effect must equal the taint's (NoSchedule)
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
             "effect": "NoExecute"}], False),
])
def test_nodeunschedulable_upstream_TestNodeUnschedulable(cordoned, tolerations, ok):
    ni = mknode(unschedulable=cordoned)
    st_ = NodeUnschedulable().filter(CycleState(), mkpod(tolerations=tolerations), ni)
    if ok:
        assert st_ is None
    else:
        assert st_.code == UNRESOLVABLE and st_.reasons == ["node(s) were unschedulable"]


# ---- NodePorts ----

def ports(*infos):
    """'PROTO/IP/PORT' strings, as upstream's node_ports_test newPod takes them."""
    out = []
    for s in infos:
        proto, ip, port = s.split("/")
        out.append({"containerPort": int(port), "hostPort": int(port), "hostIP": ip,
                    "protocol": proto})
    return out


def port_pod(name, infos, node_name=""):
    s = {"containers": [{"name": "c", "ports": ports(*infos)}]}
    if node_name:
        s["nodeName"] = node_name
    return PodInfo({"metadata": {"name": name, "namespace": "d"}, "spec": s})


def nodeports_filter(pi, existing):
    ni = mknode("m1")
    for i, e in enumerate(existing):
        ni.add_pod(port_pod(f"e{i}", e, "m1"))
    plugin, state = NodePorts(), CycleState()
    st_ = plugin.pre_filter(state, pi, [ni])
    if st_ is not None:
        return st_
    return plugin.filter(state, pi, ni)


NODEPORTS_CASES = [  # upstream TestNodePorts: (name, pod ports, existing pods' ports, conflict)
    ("other port", ["UDP/127.0.0.1/8080"], [["UDP/127.0.0.1/9090"]], False),
    ("same udp port", ["UDP/127.0.0.1/8080"], [["UDP/127.0.0.1/8080"]], True),
    ("same tcp port", ["TCP/127.0.0.1/8080"], [["TCP/127.0.0.1/8080"]], True),
    ("different host ip", ["TCP/127.0.0.1/8080"], [["TCP/127.0.0.2/8080"]], False),
    ("different protocol", ["UDP/127.0.0.1/8080"], [["TCP/127.0.0.1/8080"]], False),
    ("second udp port conflict", ["UDP/127.0.0.1/8000", "UDP/127.0.0.1/8080"],
     [["UDP/127.0.0.1/8080"]], True),
    ("first tcp port conflict", ["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8080"],
     [["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8081"]], True),
    ("first tcp port conflict due to 0.0.0.0 hostIP", ["TCP/0.0.0.0/8001"],
     [["TCP/127.0.0.1/8001"]], True),
    ("TCP hostPort conflict due to 0.0.0.0 hostIP", ["TCP/10.0.10.10/8001", "TCP/0.0.0.0/8001"],
     [["TCP/127.0.0.1/8001"]], True),
    ("second tcp port conflict to 0.0.0.0 hostIP", ["TCP/127.0.0.1/8001"],
     [["TCP/0.0.0.0/8001"]], True),
    ("second different protocol", ["UDP/127.0.0.1/8001"], [["TCP/0.0.0.0/8001"]], False),
    ("UDP hostPort conflict due to 0.0.0.0 hostIP", ["UDP/127.0.0.1/8001"],
     [["TCP/0.0.0.0/8001", "UDP/0.0.0.0/8001"]], True),
    # API defaulting: an empty hostIP binds all addresses (0.0.0.0), like upstream's
    # DefaultBindAllHostIP; it conflicts with any address on the same port and protocol.
    ("empty hostIP is 0.0.0.0", ["TCP//8001"], [["TCP/127.0.0.1/8001"]], True),
    ("empty hostIP on the node side", ["TCP/10.1.1.1/8001"], [["TCP//8001"]], True),
]


@pytest.mark.parametrize("name,want,existing,conflict", NODEPORTS_CASES,
                         ids=[c[0] for c in NODEPORTS_CASES])
def test_nodeports_upstream_TestNodePorts(name, want, existing, conflict):
    st_ = nodeports_filter(port_pod("p", want), existing)
    if conflict:
        assert st_.code == UNSCHEDULABLE
        assert st_.reasons == ["node(s) didn't have free ports for the requested pod ports"]
    else:
        assert st_ is None


def test_nodeports_protocol_defaults_to_tcp():
    """ContainerPort.protocol defaults to TCP: no protocol conflicts with TCP, not with UDP."""
    pi = PodInfo({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [
        {"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}})
    assert nodeports_filter(pi, [["TCP/0.0.0.0/80"]]) is not None
    assert nodeports_filter(pi, [["UDP/0.0.0.0/80"]]) is None


def _init_port_pod(sidecar: bool) -> PodInfo:
    c = {"name": "init", "ports": [{"containerPort": 8001, "hostPort": 8001, "protocol": "TCP"}]}
    if sidecar:
        c["restartPolicy"] = "Always"
    return PodInfo({"metadata": {"name": "p", "namespace": "d"},
                    "spec": {"initContainers": [c], "containers": [{"name": "c"}]}})


def test_nodeports_upstream_init_containers():
    """TestNodePorts "non-sidecar initContainer using hostPort" (PreFilter skips: a plain init
    container has exited before the app runs) and "TCP hostPort conflict from sidecar
    initContainer" (a restartable init container holds its port)."""
    st_ = nodeports_filter(_init_port_pod(sidecar=False), [["TCP/0.0.0.0/8001"]])
    assert st_ is not None and st_.code == SKIP
    st_ = nodeports_filter(_init_port_pod(sidecar=True), [["TCP/0.0.0.0/8001"]])
    assert st_.code == UNSCHEDULABLE


def test_nodeports_existing_sidecar_holds_its_port():
    """Upstream NodeInfo counts a running pod's sidecar host ports as used."""
    ni = mknode("m1")
    existing = _init_port_pod(sidecar=True)
    ni.add_pod(existing)
    plugin, state, pi = NodePorts(), CycleState(), port_pod("p", ["TCP/127.0.0.1/8001"])
    assert plugin.pre_filter(state, pi, [ni]) is None
    assert plugin.filter(state, pi, ni) is not None


_port = st.tuples(st.sampled_from(["0.0.0.0", "127.0.0.1", "10.0.0.1"]),
                  st.sampled_from(["TCP", "UDP", "SCTP"]), st.sampled_from([80, 8080]))


@settings(max_examples=60, deadline=None)
@given(st.lists(_port, min_size=1, max_size=3), st.lists(_port, max_size=3))
def test_nodeports_conflict_rule(want, used):
    """HostPortInfo.CheckConflict: same port and protocol, and the same IP or either side on
    0.0.0.0."""
    expect = any(p == u and pr == ur and (ip == uip or "0.0.0.0" in (ip, uip))
                 for ip, pr, p in want for uip, ur, u in used)
    pi = port_pod("p", [f"{pr}/{ip}/{p}" for ip, pr, p in want])
    got = nodeports_filter(pi, [[f"{pr}/{ip}/{p}" for ip, pr, p in used]] if used else [])
    assert (got is not None) == expect


# ---- NodeResourcesFit: RequestedToCapacityRatio and extended resources ----

def rtcr(shape, resources=(("cpu", 1), ("memory", 1))):
    return NodeResourcesFit(args={"scoringStrategy": {
        "type": "RequestedToCapacityRatio",
        "resources": [{"name": n, "weight": w} for n, w in resources],
        "requestedToCapacityRatio": {"shape": [{"utilization": u, "score": s}
                                               for u, s in shape]}}})


@pytest.mark.parametrize("points,checks", [
    # upstream TestBrokenLinearFunction case 0..2 (p → expected)
    ([(10, 1), (90, 9)], {-10: 1, 0: 1, 9: 1, 10: 1, 15: 1, 19: 1, 20: 2, 89: 8, 90: 9, 99: 9,
                          100: 9, 110: 9}),
    ([(0, 2), (40, 10), (100, 0)], {-10: 2, 0: 2, 20: 6, 30: 8, 40: 10, 70: 5, 100: 0, 110: 0}),
    ([(0, 2), (40, 2), (100, 2)], {-10: 2, 0: 2, 20: 2, 30: 2, 40: 2, 70: 2, 100: 2, 110: 2}),
    # helper.BuildBrokenLinearFunction divides int64s: Go truncates toward zero on a falling
    # segment, 10 + (-10*10)/60 = 10 - 1 = 9 (flooring would give 8).
    ([(0, 2), (40, 10), (100, 0)], {50: 9, 45: 10, 99: 1}),
])
def test_broken_linear_upstream_TestBrokenLinearFunction(points, checks):
    f = broken_linear(points)
    assert {p: f(p) for p in checks} == checks


def test_rtcr_upstream_TestRequestedToCapacityRatioScoringStrategy():
    """Shape {0: 10, 100: 0} (scores ×10 to 0..100); no-container pods request nothing.
    "nothing scheduled, resources requested, differently sized nodes": node1 cpu 3000/4000 →
    25, memory 5000/10000 → 50, round(37.5) = 38; node2 cpu 3000/6000 → 50, memory 50 → 50.
    "no resources requested, pods scheduled with resources": the same numbers from the node."""
    shape = [(0, 10), (100, 0)]
    n1 = mknode("node1", alloc={"cpu": "4000", "memory": "10000", "pods": "110"})
    n2 = mknode("node2", alloc={"cpu": "6000", "memory": "10000", "pods": "110"})
    for i in range(2):
        n1.add_pod(mkpod(f"e{i}", node_name="node1"))
    pi = mkpod(requests=[{"cpu": "1000", "memory": "2000"}, {"cpu": "2000", "memory": "3000"}])
    assert [rtcr(shape).score(CycleState(), pi, n) for n in (n1, n2)] == [38, 50]
    # "nothing scheduled, nothing requested": utilization 0 everywhere → MaxNodeScore
    assert [rtcr(shape).score(CycleState(), mkpod(), n) for n in (n1, n2)] == [100, 100]

    m1 = mknode("node1", alloc={"cpu": "4000", "memory": "10000", "pods": "110"})
    m2 = mknode("node2", alloc={"cpu": "6000", "memory": "10000", "pods": "110"})
    m1.add_pod(mkpod("e1", node_name="node1", requests=[{"cpu": "3000", "memory": "5000"}]))
    m2.add_pod(mkpod("e2", node_name="node2", requests=[{"cpu": "3000", "memory": "5000"}]))
    assert [rtcr(shape).score(CycleState(), mkpod(), n) for n in (m1, m2)] == [38, 50]


def test_rtcr_zero_scores_stay_out_of_the_weight_sum():
    """requested_to_capacity_ratio.go adds a resource (and its weight) only when its score is
    above 0: cpu at 100% scores 0 under shape {0: 10, 100: 0}, memory at 50% scores 50, so the
    node scores 50 (not (0 + 50) / 2)."""
    ni = mknode(alloc={"cpu": "4", "memory": "10000", "pods": "110"})
    pi = mkpod(requests=[{"cpu": "4", "memory": "5000"}])
    assert rtcr([(0, 10), (100, 0)]).score(CycleState(), pi, ni) == 50
    # both at zero: weightSum 0 → 0
    pi = mkpod(requests=[{"cpu": "4", "memory": "10000"}])
    assert rtcr([(0, 10), (100, 0)]).score(CycleState(), pi, ni) == 0


def test_rtcr_shape_truncates_like_go():
    """Shape {0: 10, 60: 0} scales to {0: 100, 60: 0}; 1 of 4 cpus is 25%:
    100 + (-100*25)/60 = 100 - 41 (Go truncation) = 59."""
    ni = mknode(alloc={"cpu": "4", "memory": "10000", "pods": "110"})
    plugin = rtcr([(0, 10), (60, 0)], resources=[("cpu", 1)])
    assert plugin.score(CycleState(), mkpod(requests=[{"cpu": "1"}]), ni) == 59


def _ext_node(name, ext):
    alloc = {"cpu": "4", "memory": f"{10000 * MB}", "pods": "110"}
    alloc.update({k: str(v) for k, v in ext.items()})
    return mknode(name, alloc=alloc)


def test_rtcr_upstream_TestResourceBinPackingSingleExtended():
    """Shape {0: 0, 100: 1} → {0: 0, 100: 10}; resource intel.com/foo weight 1; node1 has 8,
    node2 4. Pod asks 2: 2/8 = 25% → 2 (10*25/100 truncated), 2/4 = 50% → 5. With a pod of 2
    already on node2: 4/4 → 10. Pod asks 4: 50% → 5 and 100% → 10. Pod asks none: 0, 0."""
    plugin = rtcr([(0, 0), (100, 1)], resources=[("intel.com/foo", 1)])

    def nodes():
        return _ext_node("node1", {"intel.com/foo": 8}), _ext_node("node2", {"intel.com/foo": 4})
    n1, n2 = nodes()
    assert [plugin.score(CycleState(), mkpod(requests=[{}]), n) for n in (n1, n2)] == [0, 0]
    pi2 = mkpod(requests=[{"intel.com/foo": "2"}])
    assert [plugin.score(CycleState(), pi2, n) for n in (n1, n2)] == [2, 5]
    n2.add_pod(mkpod("e", node_name="node2", requests=[{"intel.com/foo": "2"}]))
    assert [plugin.score(CycleState(), pi2, n) for n in (n1, n2)] == [2, 10]
    n1, n2 = nodes()
    pi4 = mkpod(requests=[{"intel.com/foo": "4"}])
    assert [plugin.score(CycleState(), pi4, n) for n in (n1, n2)] == [5, 10]


def test_rtcr_upstream_TestResourceBinPackingMultipleExtended():
    """Weights foo 3, bar 5; node1 foo 8 bar 4, node2 foo 4 bar 8; pod asks foo 2 bar 2:
    node1 (2*3 + 5*5)/8 = 3.875 → 4, node2 (5*3 + 2*5)/8 = 3.125 → 3 (math.Round)."""
    plugin = rtcr([(0, 0), (100, 1)], resources=[("intel.com/foo", 3), ("intel.com/bar", 5)])
    n1 = _ext_node("node1", {"intel.com/foo": 8, "intel.com/bar": 4})
    n2 = _ext_node("node2", {"intel.com/foo": 4, "intel.com/bar": 8})
    pi = mkpod(requests=[{"intel.com/foo": "2", "intel.com/bar": "2"}])
    assert [plugin.score(CycleState(), pi, n) for n in (n1, n2)] == [4, 3]


def test_least_allocated_skips_extended_resources_the_pod_does_not_request():
    """resource_allocation.go calculateResourceAllocatableRequest returns (0, 0) for a scalar
    resource the pod doesn't request, so it is not scored: cpu 3/4 → 25, memory 5000/10000 →
    50, (25 + 50) / 2 = 37 — the node's free GPUs don't lift the score."""
    ni = mknode(alloc={"cpu": "4", "memory": "10000", "pods": "110", "example.com/gpu": "4"})
    pi = mkpod(requests=[{"cpu": "3", "memory": "5000"}])
    res = [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1},
           {"name": "example.com/gpu", "weight": 1}]
    fit = NodeResourcesFit(args={"scoringStrategy": {"type": "LeastAllocated", "resources": res}})
    assert fit.score(CycleState(), pi, ni) == 37
    # when requested, it counts: gpu 1/4 used → 75; (25 + 50 + 75) / 3 = 50
    pi = mkpod(requests=[{"cpu": "3", "memory": "5000", "example.com/gpu": "1"}])
    assert fit.score(CycleState(), pi, ni) == 50
    # BalancedAllocation uses the same helper: cpu 0.75, memory 0.5 → std 0.125 → 87
    bal = NodeResourcesBalancedAllocation(args={"resources": res})
    assert bal.score(CycleState(), mkpod(requests=[{"cpu": "3", "memory": "5000"}]), ni) == 87


def test_fit_extended_resources_upstream_fit_test():
    """fit_test: "extended resource capacity enforced" (Insufficient <name>), "extended resource
    allocatable enforced for unknown resource", pods not asking for it still fit, and
    ignoredResources / ignoredResourceGroups skip extended resources."""
    fit = NodeResourcesFit()
    ni = mknode(alloc={"cpu": "4", "memory": "8Gi", "pods": "110", "example.com/gpu": "1"})
    ni.add_pod(mkpod("used", node_name="n", requests=[{"example.com/gpu": "1"}]))
    gpu = mkpod(requests=[{"cpu": "1", "example.com/gpu": "1"}])
    st_ = fit.filter(CycleState(), gpu, ni)
    assert st_.code == UNSCHEDULABLE and st_.reasons == ["Insufficient example.com/gpu"]
    assert fit.filter(CycleState(), mkpod(requests=[{"cpu": "1"}]), ni) is None
    bare = mknode("bare")
    assert fit.filter(CycleState(), gpu, bare).reasons == ["Insufficient example.com/gpu"]
    for args in ({"ignoredResources": ["example.com/gpu"]},
                 {"ignoredResourceGroups": ["example.com"]}):
        assert NodeResourcesFit(args=args).filter(CycleState(), gpu, bare) is None
    # both cpu and the extended resource short: every reason, cpu first
    st_ = fit.filter(CycleState(), mkpod(requests=[{"cpu": "5", "example.com/gpu": "1"}]), ni)
    assert st_.reasons == ["Insufficient cpu", "Insufficient example.com/gpu"]


# ---- NodeAffinity preferred terms ----

def pref(weight, **labels):
    return {"weight": weight, "preference": {"matchExpressions": [
        {"key": k, "operator": "In", "values": [v]} for k, v in labels.items()]}}


def node_affinity_pod(*terms):
    return mkpod(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": list(terms)}})


LABEL1, LABEL2, LABEL3 = {"foo": "bar"}, {"key": "value"}, {"az": "az1"}
LABEL4, LABEL5 = {"abc": "az11", "def": "az22"}, {"foo": "bar", "key": "value", "az": "az1"}
AFFINITY1 = [pref(2, foo="bar")]
AFFINITY2 = [pref(2, foo="bar"), pref(4, key="value"), pref(5, foo="bar", key="value", az="az1")]


@pytest.mark.parametrize("terms,labels,want", [
    # "no node matches preferred scheduling requirements ..."
    (AFFINITY1, [LABEL4, LABEL2, LABEL3], [0, 0, 0]),
    # "only node1 matches the preferred scheduling requirements of pod"
    (AFFINITY1, [LABEL1, LABEL2, LABEL3], [100, 0, 0]),
    # "all nodes matches ... but with different priorities": 2, 11, 4 → 100*s/11 → 18, 100, 36
    (AFFINITY2, [LABEL1, LABEL5, LABEL2], [18, 100, 36]),
])
def test_node_affinity_upstream_TestNodeAffinityPriority(terms, labels, want):
    nodes = [mknode(f"n{i}", labels=l) for i, l in enumerate(labels)]
    assert scores_of(NodeAffinity(), node_affinity_pod(*terms), nodes) == want


def test_node_affinity_skips_without_preferred_terms():
    """TestNodeAffinityPriority "Skip is returned in PreScore when NodeAffinity is nil"."""
    st_ = NodeAffinity().pre_score(CycleState(), mkpod(), [mknode(labels=LABEL1)])
    assert st_.code == SKIP


def test_node_affinity_ignores_zero_weight_and_empty_terms():
    """component-helpers NewPreferredSchedulingTerms drops weight-0 terms and empty
    preferences (an empty term matches nothing)."""
    pi = node_affinity_pod({"weight": 0, "preference": pref(1, foo="bar")["preference"]},
                           {"weight": 7, "preference": {}})
    nodes = [mknode("a", labels=LABEL1), mknode("b")]
    assert scores_of(NodeAffinity(), pi, nodes) == [0, 0]


def test_node_affinity_upstream_added_affinity():
    """TestNodeAffinityPriority "added affinity" and "added affinity and pod has default
    affinity" (NodeAffinityArgs.addedAffinity weight 3 on key=value, pod's own weight 2 on
    foo=bar: 2, 3, 5 → 40, 60, 100); a required addedAffinity filters with upstream's
    "node(s) didn't match scheduler-enforced node affinity"."""
    added = NodeAffinity(args={"addedAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": AFFINITY1}})
    nodes = [mknode("n1", labels=LABEL1), mknode("n2", labels=LABEL2)]
    assert scores_of(added, mkpod(), nodes) == [100, 0]
    added = NodeAffinity(args={"addedAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [pref(3, key="value")]}})
    nodes = [mknode("n1", labels=LABEL1), mknode("n2", labels=LABEL2), mknode("n3", labels=LABEL5)]
    assert scores_of(added, node_affinity_pod(*AFFINITY1), nodes) == [40, 60, 100]
    required = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "foo", "operator": "In", "values": ["bar"]}]}]}
    enforced = NodeAffinity(args={"addedAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": required}})
    state = CycleState()
    assert enforced.pre_filter(state, mkpod(), nodes) is None
    assert enforced.filter(state, mkpod(), nodes[0]) is None
    st_ = enforced.filter(state, mkpod(), nodes[1])
    assert st_.code == UNRESOLVABLE and st_.reasons == [ERR_ENFORCED]
    assert ERR_ENFORCED == "node(s) didn't match scheduler-enforced node affinity"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=4).flatmap(
    lambda ws: st.tuples(st.just(ws), st.lists(st.lists(st.booleans(), min_size=len(ws),
                                                        max_size=len(ws)),
                                               min_size=1, max_size=5))))
def test_node_affinity_scores_sum_weights_then_default_normalize(case):
    """Score = sum of the weights of matching terms; NormalizeScore = helper.DefaultNormalizeScore
    (100 * s / max in integers; all 0 when the max is 0)."""
    weights, matrix = case
    terms = [pref(w, **{f"k{i}": "v"}) for i, w in enumerate(weights)]
    nodes = [mknode(f"n{j}", labels={f"k{i}": "v" for i, m in enumerate(row) if m})
             for j, row in enumerate(matrix)]
    raw = [sum(w for w, m in zip(weights, row) if m) for row in matrix]
    top = max(raw)
    want = [100 * s // top for s in raw] if top else [0] * len(raw)
    assert scores_of(NodeAffinity(), node_affinity_pod(*terms), nodes) == want


# ---- TaintToleration PreferNoSchedule scoring ----

def taint(key, value, effect="PreferNoSchedule"):
    return {"key": key, "value": value, "effect": effect}


def tol(key, value, effect="PreferNoSchedule"):
    return {"key": key, "operator": "Equal", "value": value, "effect": effect}


@pytest.mark.parametrize("tolerations,node_taints,want", [
    # "node with taints tolerated by the pod, gets a higher score than those node with
    # intolerable taints"
    ([tol("foo", "bar")], [[taint("foo", "bar")], [taint("foo", "blah")]], [100, 0]),
    # "the nodes that all of their taints are tolerated by the pod, get the same score"
    ([tol("cpu-type", "arm64"), tol("disk-type", "ssd")],
     [[], [taint("cpu-type", "arm64")], [taint("cpu-type", "arm64"), taint("disk-type", "ssd")]],
     [100, 100, 100]),
    # "the more intolerable taints a node has, the lower score it gets."
    ([tol("foo", "bar")],
     [[], [taint("cpu-type", "arm64")], [taint("cpu-type", "arm64"), taint("disk-type", "ssd")]],
     [100, 50, 0]),
    # "only taints and tolerations that have effect PreferNoSchedule are checked"
    ([tol("cpu-type", "arm64", "NoSchedule"), tol("disk-type", "ssd", "NoSchedule")],
     [[], [taint("cpu-type", "arm64", "NoSchedule")],
      [taint("cpu-type", "arm64"), taint("disk-type", "ssd")]],
     [100, 100, 0]),
    # "Default behaviour No taints and tolerations, lands on node with no taints"
    ([], [[], [taint("cpu-type", "arm64")]], [100, 0]),
])
def test_taint_toleration_upstream_TestTaintTolerationScore(tolerations, node_taints, want):
    nodes = [mknode(f"n{i}", taints=t) for i, t in enumerate(node_taints)]
    assert scores_of(TaintToleration(), mkpod(tolerations=tolerations), nodes) == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=6), st.integers(0, 3))
def test_taint_toleration_reverse_normalized_count(bad_counts, tolerated):
    """Score counts intolerable PreferNoSchedule taints; DefaultNormalizeScore(reverse): 100 -
    100*c/max (every node 100 when no node has one). Tolerated taints never count."""
    pi = mkpod(tolerations=[tol(f"ok{i}", "v") for i in range(tolerated)])
    nodes = [mknode(f"n{j}", taints=[taint(f"bad{i}", "v") for i in range(c)]
                    + [taint(f"ok{i}", "v") for i in range(tolerated)])
             for j, c in enumerate(bad_counts)]
    top = max(bad_counts)
    want = [100 - 100 * c // top for c in bad_counts] if top else [100] * len(bad_counts)
    assert scores_of(TaintToleration(), pi, nodes) == want


# ---- PodTopologySpread: cluster default constraints ----

class _Informer:
    def __init__(self, objs):
        self.objs = objs

    def by_index(self, index, ns):
        return [o for o in self.objs if o["metadata"].get("namespace") == ns]

    def get(self, key):
        ns, name = key.split("/", 1)
        for o in self.objs:
            if (o["metadata"].get("namespace"), o["metadata"]["name"]) == (ns, name):
                return o
        return None


def _fake_scheduler(services=(), replicasets=(), statefulsets=(), rcs=()):
    informers = {"Service": _Informer(list(services)), "ReplicaSet": _Informer(list(replicasets)),
                 "StatefulSet": _Informer(list(statefulsets)),
                 "ReplicationController": _Informer(list(rcs))}
    return SimpleNamespace(informers=informers, get=lambda kind, key: informers[kind].get(key))


def _owned_pod(labels, kind="ReplicaSet", owner="rs1", ns="default"):
    return PodInfo({"metadata": {"name": "p", "namespace": ns, "labels": labels,
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind,
                                                      "name": owner, "controller": True}]},
                    "spec": {"containers": [{"name": "c"}]}})


def test_default_selector_upstream_DefaultSelector():
    """helper.DefaultSelector: the labels of every service (in the pod's namespace) whose
    selector matches the pod, ANDed with the controlling ReplicaSet's selector; nothing
    (no default spreading) for a pod without either."""
    def svc(name, sel, ns="default"):
        return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": sel}}
    rs = {"metadata": {"name": "rs1", "namespace": "default"},
          "spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}}
    sched = _fake_scheduler(
        services=[svc("web", {"app": "web"}), svc("other", {"app": "db"}), svc("nil", None),
                  svc("elsewhere", {"env": "prod"}, ns="other")],
        replicasets=[rs])
    pi = _owned_pod({"app": "web", "tier": "fe", "env": "prod"})
    sel = Scheduler.default_selector(sched, pi)
    assert sel.matches({"app": "web", "tier": "x"})
    assert not sel.matches({"app": "web"})                    # RS requirement
    assert not sel.matches({"tier": "x"})                     # service requirement
    assert sel.matches({"app": "web", "tier": "x", "env": "dev"})  # other-ns service ignored
    lone = PodInfo({"metadata": {"name": "q", "namespace": "default", "labels": {"x": "y"}},
                    "spec": {"containers": [{"name": "c"}]}})
    assert Scheduler.default_selector(sched, lone) is None
    # The owner counts by group/version and kind: an extensions/v1beta1 ReplicaSet does not.
    old_api = _owned_pod({"app": "other-svc-less"})
    old_api.pod["metadata"]["ownerReferences"][0]["apiVersion"] = "extensions/v1beta1"
    assert Scheduler.default_selector(sched, old_api) is None


def _spread_cluster(zones, pods):
    """zones: node name → zone (None: no zone label); every node has its hostname label."""
    nodes = []
    for name, zone in zones.items():
        labels = {HOST: name}
        if zone:
            labels[ZONE] = zone
        nodes.append(node_obj(name, labels=labels))
    return cache_with(nodes, pods)


WEB = label_selector_from_object({"matchLabels": {"app": "web"}})


def test_spread_system_defaults_are_upstreams():
    """podtopologyspread/plugin.go systemDefaultConstraints."""
    assert SYSTEM_DEFAULTS == [
        {"maxSkew": 3, "topologyKey": HOST, "whenUnsatisfiable": "ScheduleAnyway"},
        {"maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"}]


def test_spread_system_defaults_score_nodes_without_a_zone():
    """scoring_test TestPreScoreStateEmptyNodes "system default constraints and a replicaset":
    with the system defaults a node lacking the zone label is not ignored (requireAllTopologies
    is false); the missing zone is one more domain for the weights. Nodes a, b in zone mars, c, d
    without a zone; matching pods: 2 on a, 1 on c. Weights: hostname log(4+2), zone log(2+2).
    Scores (count*weight + maxSkew-1, rounded): a 2*log6+2 + 2*log4+4 = 12.36 → 12,
    b 0+2 + 2*log4+4 = 8.77 → 9, c log6+2 = 3.79 → 4, d 2.
    NormalizeScore 100*(max+min-s)/max with min 2, max 12: 16, 41, 83, 100."""
    pods = [mkpod("a0", {"app": "web"}, "a"), mkpod("a1", {"app": "web"}, "a"),
            mkpod("c0", {"app": "web"}, "c"), mkpod("x", {"app": "db"}, "b")]
    cache = _spread_cluster({"a": "mars", "b": "mars", "c": None, "d": None}, pods)
    plugin = PodTopologySpread(Handle(cache, WEB))
    pi = mkpod("new", {"app": "web"})
    assert scores_of(plugin, pi, cache.node_list) == [16, 41, 83, 100]


def test_spread_list_defaults_require_every_key():
    """With defaultingType List, requireAllTopologies holds: a node without the zone is
    ignored (score 0); the others: zone z1 has 1 pod, z2 none; weight log(2+2); maxSkew 1:
    a = log4 = 1.39 → 1, b = 0 → NormalizeScore (min 0, max 1): a 0, b 100, c ignored → 0."""
    cache = _spread_cluster({"a": "z1", "b": "z2", "c": None}, [mkpod("a0", {"app": "web"}, "a")])
    plugin = PodTopologySpread(Handle(cache, WEB), args={
        "defaultingType": "List",
        "defaultConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                "whenUnsatisfiable": "ScheduleAnyway"}]})
    assert scores_of(plugin, mkpod("new", {"app": "web"}), cache.node_list) == [0, 100, 0]


def test_spread_defaults_only_for_pods_without_constraints():
    """buildDefaultConstraints runs only when the pod has no constraints of its own: a pod
    with just a DoNotSchedule constraint has no soft constraint → PreScore Skip (scoring_test
    "default constraints and a replicaset, but pod has constraints"); and an empty default
    selector (no service, no controller) skips too (TestPreScoreSkip)."""
    cache = _spread_cluster({"a": "z1", "b": "z2"}, [])
    own = mkpod("new", {"app": "web"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "web"}}}])
    assert PodTopologySpread(Handle(cache, WEB)).pre_score(
        CycleState(), own, cache.node_list).code == SKIP
    assert PodTopologySpread(Handle(cache, None)).pre_score(
        CycleState(), mkpod("new", {"app": "web"}), cache.node_list).code == SKIP


def test_spread_hard_list_defaults_filter():
    """filtering.go calPreFilterState also builds default constraints (DoNotSchedule ones):
    zone z1 holds 1 matching pod, z2 none; maxSkew 1: a would make 2 - 0 > 1."""
    cache = _spread_cluster({"a": "z1", "b": "z2"}, [mkpod("a0", {"app": "web"}, "a")])
    plugin = PodTopologySpread(Handle(cache, WEB), args={
        "defaultingType": "List",
        "defaultConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                "whenUnsatisfiable": "DoNotSchedule"}]})
    pi, state = mkpod("new", {"app": "web"}), CycleState()
    assert plugin.pre_filter(state, pi, cache.node_list) is None
    a, b = cache.node_list
    assert plugin.filter(state, pi, a).code == UNSCHEDULABLE
    assert plugin.filter(state, pi, b) is None


# ---- InterPodAffinity preferred terms ----

def weighted(weight, topology, op="In", values=("S1",), key="security"):
    expr = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = list(values)
    return {"weight": weight, "podAffinityTerm": {
        "labelSelector": {"matchExpressions": [expr]}, "topologyKey": topology}}


STAY_S1_REGION = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
    weighted(5, "region")]}}
AWAY_S1_AZ = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
    weighted(5, "az")]}}
AFFINITY3 = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
    {"weight": 8, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
        {"key": "security", "operator": "NotIn", "values": ["S1"]},
        {"key": "security", "operator": "In", "values": ["S2"]}]}, "topologyKey": "region"}},
    {"weight": 2, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
        {"key": "security", "operator": "Exists"},
        {"key": "wrongkey", "operator": "DoesNotExist"}]}, "topologyKey": "region"}}]}}
STAY_S1_REGION_AWAY_S2_AZ = {
    "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [weighted(8, "region")]},
    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        weighted(5, "az", values=("S2",))]}}
HARD_AFFINITY = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchExpressions": [
        {"key": "security", "operator": "In", "values": ["S1", "value2"]}]},
     "topologyKey": "region"},
    {"labelSelector": {"matchExpressions": [
        {"key": "security", "operator": "Exists"},
        {"key": "wrongkey", "operator": "DoesNotExist"}]}, "topologyKey": "region"}]}}
S1, S2 = {"security": "S1"}, {"security": "S2"}
CHINA, INDIA, AZ1, AZ2 = {"region": "China"}, {"region": "India"}, {"az": "az1"}, {"az": "az2"}


def ipa_scores(incoming, node_labels, existing, args=None):
    """existing: (node index, labels, affinity or None)."""
    nodes = [mknode(f"node{i + 1}", labels=l) for i, l in enumerate(node_labels)]
    for j, (i, labels, aff) in enumerate(existing):
        spec = {"affinity": aff} if aff else {}
        nodes[i].add_pod(mkpod(f"e{j}", labels, nodes[i].name, **spec))
    return scores_of(InterPodAffinity(args=args), incoming, nodes)


def test_interpod_upstream_affinity_matches_topology_and_pods():
    """TestPreferredAffinity "Affinity: pod that matches topology key & pods in nodes will get
    high score comparing to others": (region China) +5 → 100, 0, 0."""
    pi = mkpod("p", S1, affinity=STAY_S1_REGION)
    got = ipa_scores(pi, [CHINA, INDIA, AZ1], [(0, S1, None), (1, S2, None), (2, S1, None)])
    assert got == [100, 0, 0]


def test_interpod_upstream_label_operators():
    """"Affinity: different Label operators and values ...": the weight-8 term matches the S2
    pod (India +8), the weight-2 term every pod with a region (China +2, India +2):
    2, 10, 0 → normalized by (s - min) / (max - min): 20, 100, 0."""
    pi = mkpod("p", S1, affinity=AFFINITY3)
    got = ipa_scores(pi, [CHINA, INDIA, AZ1], [(0, S1, None), (1, S2, None), (2, S1, None)])
    assert got == [20, 100, 0]


def test_interpod_upstream_anti_affinity_subtracts():
    """"Anti Affinity: one node has more matching pods comparing to other node": two S1 pods
    in az1 → -10 on node1, 0 on node2 → 0, 100."""
    pi = mkpod("p", S1, affinity=AWAY_S1_AZ)
    got = ipa_scores(pi, [AZ1, INDIA], [(0, S1, None), (0, S1, None), (1, S2, None)])
    assert got == [0, 100]


def test_interpod_upstream_affinity_anti_affinity_and_symmetry():
    """"Affinity and Anti Affinity and symmetry": weights 8 (own affinity, China), -5 (own
    anti-affinity, az1), 8 (an existing pod's preferred affinity selects the incoming pod,
    India), -5 (an existing pod's anti-affinity, az2) → 100, 0, 100, 0."""
    pi = mkpod("p", S1, affinity=STAY_S1_REGION_AWAY_S2_AZ)
    got = ipa_scores(pi, [CHINA, AZ1, INDIA, AZ2],
                     [(0, S1, None), (1, S2, None), (2, {}, STAY_S1_REGION_AWAY_S2_AZ),
                      (3, {}, AWAY_S1_AZ)])
    assert got == [100, 0, 100, 0]


def test_interpod_upstream_required_affinity_symmetry_uses_hard_weight():
    """"Affinity symmetry: considered RequiredDuringSchedulingIgnoredDuringExecution in pod
    affinity symmetry": existing pods' required terms selecting the incoming pod add
    hardPodAffinityWeight (default 1) per term: China 2, India 2 → 100, 100, 0; weight 0
    turns that off (nothing to score → Skip)."""
    pi = mkpod("p", S1)
    existing = [(0, S1, HARD_AFFINITY), (1, S2, HARD_AFFINITY)]
    assert ipa_scores(pi, [CHINA, INDIA, AZ1], existing) == [100, 100, 0]
    got = ipa_scores(pi, [CHINA, INDIA, AZ1], existing, args={"hardPodAffinityWeight": 0})
    assert got.code == SKIP


def test_interpod_normalize_scales_in_float_like_upstream():
    """NormalizeScore computes float64(MaxNodeScore) * (s - min) / (max - min) and truncates:
    raw 0, 29, 100 → 0, int(28.999999999999996) = 28, 100."""
    pi = mkpod("p", affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        weighted(29, "region", values=("a",), key="app"),
        weighted(100, "region", values=("b",), key="app")]}})
    got = ipa_scores(pi, [AZ1, {"region": "R1"}, {"region": "R2"}],
                     [(1, {"app": "a"}, None), (2, {"app": "b"}, None)])
    assert got == [0, 28, 100]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-500, 500), min_size=1, max_size=8))
def test_interpod_normalize_property(raw):
    """Upstream NormalizeScore: min → 0, max → 100, float64 scaling truncated; all 0 when
    every score is equal."""
    scores = list(raw)
    InterPodAffinity().normalize_score(CycleState(), None, scores)
    lo, hi = min(raw), max(raw)
    assert all(0 <= s <= 100 for s in scores)
    if hi == lo:
        assert scores == [0] * len(raw)
    else:
        assert scores == [int(100.0 * ((r - lo) / (hi - lo))) for r in raw]
        assert scores[raw.index(hi)] == 100 and scores[raw.index(lo)] == 0


# ---- ImageLocality ----

IMAGES_1 = [(["gcr.io/40:latest", "gcr.io/40:v1"], 40 * MB),
            (["gcr.io/300:latest", "gcr.io/300:v1"], 300 * MB),
            (["gcr.io/2000:latest"], 2000 * MB)]
IMAGES_2 = [(["gcr.io/250:latest"], 250 * MB), (["gcr.io/10:latest", "gcr.io/10:v1"], 10 * MB)]


def image_scores(images_per_node, containers, init=()):
    cache = cache_with([node_obj(f"n{i}", images=imgs) for i, imgs in enumerate(images_per_node)])
    spec = {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": img} for i, img in enumerate(init)]
    pi = PodInfo({"metadata": {"name": "p", "namespace": "d"}, "spec": spec})
    return scores_of(ImageLocality(Handle(cache)), pi, cache.node_list)


@pytest.mark.parametrize("containers,nodes,want", [
    # "two images spread on two nodes, prefer the larger image one": node1 40MB/2 = 20MB <
    # 23MB → 0; node2 250MB/2 = 125MB → 100*(125-23)/(2*1000-23) = 5
    (["gcr.io/40", "gcr.io/250"], [IMAGES_1, IMAGES_2], [0, 5]),
    # "two images on one node, prefer this node": (20 + 150 - 23)MB*100/1977MB = 7
    (["gcr.io/40", "gcr.io/300"], [IMAGES_1, IMAGES_2], [7, 0]),
    # "if exceed limit, use limit": 2000MB/2 = 1000MB → 100*977/1977 = 49; 10MB/2 → 0
    (["gcr.io/10", "gcr.io/2000"], [IMAGES_1, IMAGES_2], [49, 0]),
    # "... (with node which has no images present)": int(2000MB * 1/3) = 699050666 bytes →
    # 100*(699050666 - 23MB)/1977MB = 32
    (["gcr.io/10", "gcr.io/2000"], [IMAGES_1, IMAGES_2, []], [32, 0, 0]),
])
def test_image_locality_upstream_TestImageLocalityPriority(containers, nodes, want):
    assert image_scores(nodes, containers) == want


def test_image_locality_spread_and_init_containers():
    """scaledImageScore = int(size * numNodes/totalNodes); one container: max 1000MB.
    250MB on 2 of 2 nodes: 100*(250-23)/977 = 23; on 2 of 3: int(250MB*2/3) = 174762666 →
    100*(174762666 - 23MB)/977MB = 14. Init containers count (sumImageScores, and
    numContainers): 250MB twice on a single node, max 2000MB: 100*(500-23)/1977 = 24."""
    img = [(["gcr.io/250:latest"], 250 * MB)]
    assert image_scores([img, img], ["gcr.io/250"]) == [23, 23]
    assert image_scores([img, img, []], ["gcr.io/250"]) == [14, 14, 0]
    assert image_scores([img], ["gcr.io/250"], init=["gcr.io/250:latest"]) == [24]


@pytest.mark.parametrize("name,want", [
    # upstream TestNormalizedImageName
    ("root", "root:latest"), ("gcr.io:5000/root", "gcr.io:5000/root:latest"),
    ("root:tag", "root:tag"), ("root@sha256:" + "a" * 64, "root@sha256:" + "a" * 64),
])
def test_image_locality_upstream_TestNormalizedImageName(name, want):
    assert normalized_image(name) == want


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5000 * MB), st.integers(1, 4))
def test_image_locality_calculate_priority_bounds(total, containers):
    """calculatePriority: 0 at or below 23MB, 100 at or above containers*1000MB, monotone,
    within [0, 100]."""
    got = calculate_priority(total, containers)
    assert 0 <= got <= 100
    if total <= 23 * MB:
        assert got == 0
    if total >= containers * 1000 * MB:
        assert got == 100
    assert calculate_priority(total + MB, containers) >= got
    top = containers * 1000 * MB
    assert got == 100 * (min(max(total, 23 * MB), top) - 23 * MB) // (top - 23 * MB)


@pytest.mark.parametrize("scores,reverse,expected", [
    ([10, 5, 0], False, [100, 50, 0]),
    ([10, 5, 0], True, [0, 50, 100]),
    ([0, 0], True, [100, 100]),
    ([-4, -2], False, [-4, -2]),         # maximum starts at 0: all-negative scores stay as they are
    ([3, -1], False, [100, -33]),        # int64 division truncates toward zero (-33.3 → -33)
])
def test_default_normalize_upstream_DefaultNormalizeScore(scores, reverse, expected):
    """upstream helper.DefaultNormalizeScore: scale by the largest score (at least 0)."""
    from kybernetes.scheduler.framework import default_normalize

    default_normalize(scores, reverse)
    assert scores == expected
