"""Unit tests of the plugins and helpers, against upstream's semantics."""

from __future__ import annotations

from hypothesis import given, strategies as st

from kybernetes.scheduler.cache import NodeInfo
from kybernetes.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE, CycleState, unschedulable
from kybernetes.scheduler.plugins.nodeaffinity import required_matches
from kybernetes.scheduler.plugins.noderesources import NodeResourcesBalancedAllocation, NodeResourcesFit
from kybernetes.scheduler.plugins.tainttoleration import TaintToleration, tolerates
from kybernetes.scheduler.podinfo import PodInfo, pod_requests
from kybernetes.scheduler.scheduler import fit_error_message, num_feasible_nodes_to_find


def mkpod(cpu=None, mem=None, name="p", **spec):
    req = {}
    if cpu:
        req["cpu"] = cpu
    if mem:
        req["memory"] = mem
    return PodInfo({"metadata": {"name": name, "namespace": "d"},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": req}}], **spec}})


def mknode(cpu="4", mem="8Gi", pods="110", taints=None, labels=None, name="n"):
    return NodeInfo({"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []},
                     "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}}})


def test_requests_init_containers_sidecars_overhead():
    """Upstream resource helper: max(sum(containers)+sidecars, each init + earlier sidecars) + overhead."""
    spec = {"containers": [{"resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "500m"}}, "restartPolicy": "Always"},
                               {"resources": {"requests": {"cpu": "2"}}}],
            "overhead": {"cpu": "100m"}}
    assert pod_requests(spec)["cpu"] == 2500 + 100


def test_fit_filter_insufficient_cpu_and_memory_reasons():
    """noderesources fit_test 'too many resources fails': every insufficient resource is a reason."""
    ni = mknode(cpu="1", mem="1Gi")
    ni.add_pod(mkpod("800m", "800Mi", name="x"))
    st = NodeResourcesFit().filter(CycleState(), mkpod("500m", "500Mi"), ni)
    assert st.code == UNSCHEDULABLE and st.reasons == ["Insufficient cpu", "Insufficient memory"]
    assert NodeResourcesFit().filter(CycleState(), mkpod("200m", "200Mi"), ni) is None


def test_fit_too_many_pods():
    ni = mknode(pods="1")
    ni.add_pod(mkpod(name="x"))
    assert NodeResourcesFit().filter(CycleState(), mkpod(), ni).reasons == ["Too many pods"]


def test_least_allocated_score_upstream_example():
    """least_allocated_test: 4000m/10000 alloc, requests 3000m+0 → ((4000-3000)*100/4000 + ...)/2."""
    ni = mknode(cpu="4", mem="10000")
    pi = mkpod("3", "5000")
    assert NodeResourcesFit().score(CycleState(), pi, ni) == (25 + 50) // 2


def test_most_allocated_and_balanced():
    ni = mknode(cpu="4", mem="10000")
    pi = mkpod("3", "5000")
    fit = NodeResourcesFit(args={"scoringStrategy": {"type": "MostAllocated"}})
    assert fit.score(CycleState(), pi, ni) == (75 + 50) // 2
    # balanced: fractions 0.75 and 0.5 → std 0.125 → 87
    assert NodeResourcesBalancedAllocation().score(CycleState(), pi, ni) == 87


def test_untolerated_taint_message():
    """taint_toleration.go: 'node(s) had untolerated taint {key: value}', UnschedulableAndUnresolvable."""
    ni = mknode(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    st = TaintToleration().filter(CycleState(), mkpod(), ni)
    assert st.code == UNRESOLVABLE and st.reasons == ["node(s) had untolerated taint {dedicated: db}"]
    tol = mkpod(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert TaintToleration().filter(CycleState(), tol, ni) is None


@given(st.sampled_from(["", "NoSchedule", "PreferNoSchedule"]), st.sampled_from(["NoSchedule", "NoExecute"]))
def test_toleration_effect_matching(tol_effect, taint_effect):
    """An empty toleration effect matches every effect; otherwise effects must be equal."""
    t = {"key": "k", "operator": "Exists", "effect": tol_effect}
    assert tolerates(t, {"key": "k", "effect": taint_effect}) == (tol_effect in ("", taint_effect))


def test_node_affinity_selector_and_terms():
    spec = {"nodeSelector": {"a": "1"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "b", "operator": "Gt", "values": ["3"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]}}}}
    assert required_matches(spec, {"a": "1", "b": "5"}, "x")
    assert not required_matches(spec, {"a": "1", "b": "2"}, "x")
    assert required_matches(spec, {"a": "1"}, "n9")
    assert not required_matches(spec, {"a": "2"}, "n9")


@given(st.integers(min_value=1, max_value=20000))
def test_num_feasible_nodes_adaptive(n):
    """generic_scheduler numFeasibleNodesToFind: <100 → all; else max(n*(50-n/125 ≥5)%, 100)."""
    got = num_feasible_nodes_to_find(0, n)
    if n < 100:
        assert got == n
    else:
        pct = max(50 - n // 125, 5)
        assert got == max(n * pct // 100, 100)


def test_fit_error_message_format():
    """FitError.Error(): sorted '<count> <reason>' histogram, then the PostFilter message."""
    statuses = {"a": unschedulable("Insufficient cpu"),
                "b": unschedulable("node(s) had untolerated taint {key: value}"),
                "c": unschedulable("node(s) had untolerated taint {key: value}")}
    msg = fit_error_message(3, statuses, None, "preemption: 0/3 nodes are available: "
                            "3 Preemption is not helpful for scheduling.")
    assert msg == ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint "
                   "{key: value}. preemption: 0/3 nodes are available: 3 Preemption is not "
                   "helpful for scheduling.")
