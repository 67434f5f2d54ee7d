"""DefaultPreemption with plugins whose PreFilter counts other pods. Upstream's
SelectVictimsOnNode works on a clone of the cycle state and tells the PreFilter plugins of each
pod it removes or puts back (RunPreFilterExtensionRemovePod/AddPod): InterPodAffinity and
PodTopologySpread then count without the victims, so evicting them can make room for
affinity and spread reasons too, not only for resources."""

from __future__ import annotations

from kybernetes.scheduler.scheduler import Scheduler

from schedtest import StubClient, run_preemption

HOST, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


def node(name: str, cpu: str = "4", zone: str = "z") -> dict:
    return {"metadata": {"name": name, "labels": {HOST: name, ZONE: zone}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}


def pod(name: str, labels: dict, priority: int, node_name: str = "", cpu: str = "100m",
        **spec) -> dict:
    s = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
         "priority": priority, **spec}
    if node_name:
        s["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "d", "uid": f"uid-{name}", "labels": labels},
            "spec": s}


def anti(app: str) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": HOST}]}}


def preempt(sched: Scheduler, incoming: dict):
    """(candidate node, victim names) or (None, the failure's reasons)."""
    cand, st = run_preemption(sched, incoming)
    if cand is None:
        return None, st.reasons
    return cand.node, sorted(v.name for v in cand.victims)


def cluster(*nodes: dict, pods: tuple = ()) -> Scheduler:
    sched = Scheduler(StubClient())  # type: ignore[arg-type]
    sched.setup()
    for n in nodes:
        sched._on_node_add(n)
    for p in pods:
        sched._on_pod_add(p)
    return sched


def test_evicting_the_pods_its_anti_affinity_selects_makes_room():
    sched = cluster(node("n0"), node("n1"), pods=(
        pod("low", {"app": "db"}, 10, "n0"),
        pod("keeper", {"app": "db"}, 5000, "n1"),       # higher than the incoming pod
        pod("bystander", {"app": "web"}, 10, "n0")))     # not selected: stays
    where, victims = preempt(sched, pod("vip", {"app": "vip"}, 1000, affinity=anti("db")))
    assert (where, victims) == ("n0", ["low"])


def test_evicting_a_pod_whose_anti_affinity_selects_the_incoming_one():
    sched = cluster(node("n0"), pods=(
        pod("grumpy", {"app": "x"}, 10, "n0", affinity=anti("vip")),
        pod("other", {"app": "y"}, 10, "n0")))
    assert preempt(sched, pod("vip", {"app": "vip"}, 1000)) == ("n0", ["grumpy"])


def _spread_case(max_skew: int):
    """Zone a holds two matching low-priority pods (priorities 10 and 20), zone b none, but b's
    node is full with a pod the incoming one cannot evict: only evictions in zone a help."""
    spread = [{"maxSkew": max_skew, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "web"}}}]
    sched = cluster(node("a1", zone="a"), node("b1", cpu="1", zone="b"), pods=(
        pod("web-a", {"app": "web"}, 10, "a1"),
        pod("web-a2", {"app": "web"}, 20, "a1"),
        pod("big", {"app": "other"}, 5000, "b1", cpu="1")))
    return preempt(sched, pod("web-new", {"app": "web"}, 1000, topologySpreadConstraints=spread))


def test_evicting_matching_pods_evens_the_spread():
    # maxSkew 1: both must go; with either one back, zone a has 1 + 1 against zone b's 0.
    assert _spread_case(1) == ("a1", ["web-a", "web-a2"])


def test_victims_are_only_those_needed_for_the_spread():
    # maxSkew 2: one may stay (1 + 1 - 0 = 2); the higher-priority one is reprieved.
    assert _spread_case(2) == ("a1", ["web-a"])


def test_a_self_matching_pod_may_go_first_once_the_matching_pods_are_evicted():
    """Upstream deletes topology pairs at zero: with every pod its affinity selects evicted, a
    pod that matches its own affinity counts as the first of its group and may land."""
    together = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}]}}
    sched = cluster(node("a1", cpu="1", zone="a"), pods=(
        pod("web-old", {"app": "web"}, 10, "a1", cpu="1"),))
    # web-old holds all of a1's cpu; the new pod needs it and selects web pods, itself too.
    where, victims = preempt(sched, pod("web-new", {"app": "web"}, 1000, cpu="1",
                                        affinity=together))
    assert (where, victims) == ("a1", ["web-old"])
