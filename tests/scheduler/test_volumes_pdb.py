"""VolumeBinding's Reserve/Unreserve (upstream AssumePodVolumes / RevertAssumedPodVolumes over
the PV and PVC assume caches) and DefaultPreemption's PodDisruptionBudget handling (upstream
SelectVictimsOnNode with filterPodsWithPDBViolation, pickOneNodeForPreemption), driven through
the Scheduler's own steps with a stub client: informers are fed by hand and lag behind the
scheduler's own writes, as they do behind a real API server."""

from __future__ import annotations

import asyncio

from kybernetes.api.errors import ApiError
from kybernetes.scheduler.plugins.defaultpreemption import Candidate, pick_one
from kybernetes.scheduler.plugins.volumebinding import ERR_BIND, NO_PROVISIONER
from kybernetes.scheduler.podinfo import PodInfo
from kybernetes.scheduler.scheduler import Scheduler

import schedtest
from schedtest import RecordingBinder as Binder, run_preemption

NS = "d"


class StubClient(schedtest.StubClient):
    """The first `fail_pv` PersistentVolume patches fail (PreBind errors)."""

    fail_pv = 0

    async def patch(self, r, name, body, namespace=None, **kw):
        if r.plural == "persistentvolumes" and self.fail_pv:
            self.fail_pv -= 1
            raise ApiError(500, "InternalError", "etcd is down")
        return await super().patch(r, name, body, namespace, **kw)


def node(name: str, cpu: str = "4", pods: str = "110", memory: str = "4Gi") -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def make(*nodes: dict) -> tuple[Scheduler, Binder, list]:
    sched = Scheduler(StubClient())  # type: ignore[arg-type]
    binder = Binder()
    for prof in sched.profiles.values():
        prof.bind = [binder]
    sched.setup()
    for n in nodes:
        sched._on_node_add(n)
    events: list[tuple[str, str, str]] = []
    sched.recorder.event = lambda obj, t, reason, msg: events.append(
        (obj["metadata"]["name"], reason, msg))
    return sched, binder, events


def put(sched: Scheduler, kind: str, obj: dict) -> None:
    """The informer sees `obj` (added or updated)."""
    sched.informers[kind]._apply({"type": "ADDED", "object": obj})


# ---- volumes ----

def storage_class() -> dict:
    return {"metadata": {"name": "local", "resourceVersion": "1"}, "provisioner": NO_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer"}


def pv(name: str, rv: str = "1", size: str = "1Gi", claim: str | None = None) -> dict:
    spec: dict = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "local"}
    if claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": claim,
                            "uid": f"uid-{claim}"}
    return {"metadata": {"name": name, "resourceVersion": rv}, "spec": spec,
            "status": {"phase": "Bound" if claim else "Available"}}


def pvc(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "resourceVersion": "1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def vpod(name: str, claim: str) -> dict:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def volume_cluster(*pvs: dict, claims=("data-a", "data-b")):
    sched, binder, events = make(node("n0"))
    put(sched, "StorageClass", storage_class())
    for v in pvs:
        put(sched, "PersistentVolume", v)
    for c in claims:
        put(sched, "PersistentVolumeClaim", pvc(c))
    return sched, binder, events


def attempt(sched: Scheduler, pod: dict) -> None:
    """One scheduling cycle for `pod` (its binding cycle is spawned, not yet run)."""
    sched._on_pod_add(pod)
    key = f"{NS}/{pod['metadata']['name']}"
    sched.schedule_one(sched.queue.pods[key])


async def settle(sched: Scheduler) -> None:
    async with asyncio.timeout(10):
        while sched._tasks:
            await asyncio.gather(*list(sched._tasks))


def pv_claims(sched: Scheduler) -> list[tuple[str, str]]:
    """(PV, claim) of every claimRef PreBind wrote, in order."""
    return [(name, body["spec"]["claimRef"]["name"])
            for plural, name, body in sched.client.patches if plural == "persistentvolumes"]


def rejected(events: list, name: str) -> bool:
    return any(n == name and r == "FailedScheduling" and ERR_BIND in m for n, r, m in events)


async def test_back_to_back_pods_cannot_both_take_one_static_pv_until_unreserve():
    """Upstream AssumePodVolumes: Reserve prebinds the PV in the assume cache, so the next
    cycle's FindMatchingVolume sees it taken although the informer does not yet; PreBind's
    failure runs Unreserve (RevertAssumedPodVolumes) and the PV is free again."""
    sched, binder, events = volume_cluster(pv("pv0"))
    sched.client.fail_pv = 1                      # a's PreBind will fail
    attempt(sched, vpod("a", "data-a"))
    assert sched.cache.is_assumed(f"{NS}/a")
    attempt(sched, vpod("b", "data-b"))           # before a's binding cycle has even started
    assert not sched.cache.is_assumed(f"{NS}/b") and rejected(events, "b")
    await settle(sched)                           # a: PreBind error → Unreserve
    assert binder.bound == {} and pv_claims(sched) == []
    sched.schedule_one(sched.queue.pods[f"{NS}/b"])
    await settle(sched)
    assert binder.bound == {f"{NS}/b": "n0"} and pv_claims(sched) == [("pv0", "data-b")]


async def test_each_pod_gets_its_own_pv_the_smallest_free_one():
    """findMatchingVolumes picks the smallest matching PV; an assumed one is no candidate."""
    sched, binder, events = volume_cluster(pv("big", size="5Gi"), pv("small", size="1Gi"))
    attempt(sched, vpod("a", "data-a"))
    attempt(sched, vpod("b", "data-b"))
    await settle(sched)
    assert sorted(binder.bound) == [f"{NS}/a", f"{NS}/b"]
    assert pv_claims(sched) == [("small", "data-a"), ("big", "data-b")]


async def test_a_pod_sharing_the_claim_gets_the_pv_assumed_for_it():
    """The assumed PV has its claimRef on the claim: IsVolumeBoundToClaim makes it that claim's
    match (the claim counts as matched), while other claims still find it taken."""
    sched, binder, events = volume_cluster(pv("pv0"))
    attempt(sched, vpod("a", "data-a"))
    attempt(sched, vpod("a2", "data-a"))
    attempt(sched, vpod("b", "data-b"))
    await settle(sched)
    assert sorted(binder.bound) == [f"{NS}/a", f"{NS}/a2"] and rejected(events, "b")
    assert pv_claims(sched) == [("pv0", "data-a"), ("pv0", "data-a")]


async def test_assumption_ends_when_the_informer_shows_the_binding():
    """Upstream's assume cache: an informer update replaces the assumed object. Once the PV
    informer shows the claimRef, the PV is taken by the real binding and the assumption is
    gone: when the PV later becomes Available again (a bound, never unreserved) it is free."""
    sched, binder, events = volume_cluster(pv("pv0"))
    attempt(sched, vpod("a", "data-a"))
    await settle(sched)
    assert binder.bound == {f"{NS}/a": "n0"}
    vb = sched.profiles["default-scheduler"].plugins["VolumeBinding"]
    assert list(vb.assumed) == [("PersistentVolume", "pv0")]
    put(sched, "PersistentVolume", pv("pv0", rv="2", claim="data-a"))
    attempt(sched, vpod("b", "data-b"))
    assert rejected(events, "b") and vb.assumed == {}
    put(sched, "PersistentVolume", pv("pv0", rv="3"))       # released and made Available
    events.clear()
    sched.schedule_one(sched.queue.pods[f"{NS}/b"])
    await settle(sched)
    assert binder.bound[f"{NS}/b"] == "n0" and pv_claims(sched)[-1] == ("pv0", "data-b")


async def test_assumption_outlives_other_pv_writes_while_the_pod_binds():
    """An informer update that is not the binding (the PV controller setting its phase, say)
    does not end the assumption while its pod is still being bound, nor after the pod informer
    confirms the binding as long as the PV informer has not shown anything newer than what
    PreBind wrote over; then a newer, free PV (its claimRef dropped again) ends it."""
    sched, binder, events = volume_cluster(pv("pv0"))
    a = vpod("a", "data-a")
    attempt(sched, a)
    put(sched, "PersistentVolume", pv("pv0", rv="2"))          # not our write
    attempt(sched, vpod("b", "data-b"))
    assert rejected(events, "b")
    await settle(sched)
    sched._on_pod_update(a, {**a, "spec": {**a["spec"], "nodeName": "n0"}})
    assert binder.bound == {f"{NS}/a": "n0"} and not sched.cache.is_assumed(f"{NS}/a")
    events.clear()
    sched.schedule_one(sched.queue.pods[f"{NS}/b"])
    assert rejected(events, "b")                               # PreBind's write not seen yet
    put(sched, "PersistentVolume", pv("pv0", rv="3"))
    sched.schedule_one(sched.queue.pods[f"{NS}/b"])
    await settle(sched)
    assert binder.bound[f"{NS}/b"] == "n0" and pv_claims(sched)[-1] == ("pv0", "data-b")


# ---- PodDisruptionBudgets in preemption ----

HIGH, MID, LOW, VERY_HIGH = 1000, 100, 0, 10000


def ppod(name: str, priority: int, node_name: str = "", cpu: str = "", labels: dict | None = None,
         start: str | None = None) -> dict:
    req = {"cpu": cpu, "memory": cpu.rstrip("m")} if cpu else {}
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": req}}],
                  "priority": priority}
    if node_name:
        spec["nodeName"] = node_name
    p = {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                      "labels": labels or {}}, "spec": spec}
    if start:
        p["status"] = {"startTime": start}
    return p


def pdb(name: str, allowed: int, selector: dict | None, disrupted: tuple = ()) -> dict:
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed,
                       "disruptedPods": {p: "2024-01-01T00:00:00Z" for p in disrupted}}}


def preempt(sched: Scheduler, incoming: dict) -> Candidate | None:
    return run_preemption(sched, incoming)[0]


def pdb_cluster(nodes: list[dict], pods: list[dict], pdbs: list[dict]) -> Scheduler:
    sched, _, _ = make(*nodes)
    for p in pods:
        sched._on_pod_add(p)
    for b in pdbs:
        put(sched, "PodDisruptionBudget", b)
    return sched


def same_pdb_case(disrupted: tuple = (), n: int = 2) -> Candidate:
    """Upstream TestDryRunPreemption's node1 (500m) with medium (200m) pods p1.x labelled
    app=foo under one PDB allowing one disruption; the preemptor needs all 500m."""
    foo = {"matchLabels": {"app": "foo"}}
    sched = pdb_cluster([node("node1", cpu="500m", memory="500")],
                        [ppod(f"p1.{i}", MID, "node1", "200m", {"app": "foo"})
                         for i in range(1, n + 1)],
                        [pdb("foo", 1, foo, disrupted)])
    cand = preempt(sched, ppod("p", HIGH, cpu="500m"))
    assert cand is not None and cand.node == "node1"
    return cand


def test_dry_run_preemption_with_violation_of_same_pdb():
    """TestDryRunPreemption 'preemption with violation of same pdb': both go, one violates."""
    cand = same_pdb_case()
    assert sorted(v.name for v in cand.victims) == ["p1.1", "p1.2"]
    assert cand.pdb_violations == 1


def test_dry_run_preemption_victim_not_in_disrupted_pods():
    """'...pod whose eviction was processed, the victim doesn't belong to DisruptedPods'."""
    assert same_pdb_case(disrupted=("p2",)).pdb_violations == 1


def test_dry_run_preemption_victim_in_disrupted_pods():
    """'...the victim belongs to DisruptedPods': it does not use up the budget."""
    cand = same_pdb_case(disrupted=("p1.2",))
    assert len(cand.victims) == 2 and cand.pdb_violations == 0


def test_dry_run_preemption_disrupted_victim_treated_as_non_violating():
    """'...the victim which belongs to DisruptedPods is treated as nonViolating': of three,
    p1.3 is skipped, p1.1 uses the one allowed disruption, p1.2 violates."""
    cand = same_pdb_case(disrupted=("p1.3",), n=3)
    assert len(cand.victims) == 3 and cand.pdb_violations == 1


def test_pdb_violating_victims_are_reprieved_first():
    """SelectVictimsOnNode reprieves the PDB-violating pods before the others, each group from
    the highest priority: the protected low-priority pod stays, the unprotected higher one
    goes (by priority alone it would be the other way round)."""
    sched = pdb_cluster([node("n1", cpu="500m", memory="500")],
                        [ppod("protected", 10, "n1", "200m", {"app": "db"}),
                         ppod("plain", 20, "n1", "200m", {"app": "web"})],
                        [pdb("db", 0, {"matchLabels": {"app": "db"}})])
    cand = preempt(sched, ppod("p", HIGH, cpu="300m"))
    assert [v.name for v in cand.victims] == ["plain"] and cand.pdb_violations == 0


def test_pdb_selector_empty_or_pod_unlabelled_matches_nothing():
    """filterPodsWithPDBViolation: a pod without labels matches no PDB, and an empty selector
    matches nothing, even a NotIn selector that would match an empty label set."""
    sched = pdb_cluster([node("n1", cpu="500m", memory="500")],
                        [ppod("bare", MID, "n1", "200m"),
                         ppod("foo", MID, "n1", "200m", {"app": "foo"})],
                        [pdb("not-bar", 0, {"matchExpressions": [
                            {"key": "app", "operator": "NotIn", "values": ["bar"]}]}),
                         pdb("empty", 0, {})])
    cand = preempt(sched, ppod("p", HIGH, cpu="500m"))
    assert len(cand.victims) == 2 and cand.pdb_violations == 1      # only "foo" counts


def test_post_filter_min_highest_priority_node_among_equal_violations():
    """TestPostFilter 'pod can be made schedulable on minHighestPriority node': one pod per
    node; node1's victims violate one PDB as node2's victim does, and node2's highest victim
    has the lower priority."""
    viol, nonviol = {"v": "violating"}, {"v": "non-violating"}
    sched = pdb_cluster([node("node1", pods="1"), node("node2", pods="1")],
                        [ppod("p1", HIGH, "node1", labels=nonviol),
                         ppod("p2", LOW, "node1", labels=viol),
                         ppod("p3", MID, "node2", labels=viol)],
                        [pdb("violating-pdb", 0, {"matchLabels": viol}),
                         pdb("non-violating-pdb", 2**31 - 1, {"matchLabels": nonviol})])
    cand = preempt(sched, ppod("p", VERY_HIGH))
    assert cand.node == "node2" and [v.name for v in cand.victims] == ["p3"]


def test_fewest_pdb_violations_beats_lower_victim_priority():
    """pickOneNodeForPreemption's first criterion: the node with the fewest PDB violations,
    before the lowest highest-victim priority (node1's victim is cheaper but protected)."""
    sched = pdb_cluster([node("node1", pods="1"), node("node2", pods="1")],
                        [ppod("cheap", LOW, "node1", labels={"app": "db"}),
                         ppod("dear", MID, "node2", labels={"app": "web"})],
                        [pdb("db", 0, {"matchLabels": {"app": "db"}})])
    cand = preempt(sched, ppod("p", HIGH))
    assert cand.node == "node2" and cand.pdb_violations == 0
    sched2 = pdb_cluster([node("node1", pods="1"), node("node2", pods="1")],
                         [ppod("cheap", LOW, "node1", labels={"app": "db"}),
                          ppod("dear", MID, "node2", labels={"app": "web"})], [])
    assert preempt(sched2, ppod("p", HIGH)).node == "node1"     # without the PDB


def test_a_victim_not_started_counts_as_starting_now():
    """util.GetPodStartTime: no status.startTime is now (its creationTimestamp is no start),
    the latest start. MoreImportantPod then ranks it last among equal priorities, so it is
    reprieved last; and pickOneNodeForPreemption's last criterion prefers the node whose top
    victims started latest (TestSelectBestCandidate 'same priority, same number of victims,
    different start time for each node's pod')."""
    def pending(name, node_name=""):
        p = ppod(name, MID, node_name, "200m")
        p["metadata"]["creationTimestamp"] = "1970-01-01T00:00:01Z"
        return p
    sched = pdb_cluster([node("n1", cpu="500m", memory="500")],
                        [pending("new", "n1"),
                         ppod("old", MID, "n1", "200m", start="1970-01-01T00:00:05Z")], [])
    cand = preempt(sched, ppod("p", HIGH, cpu="300m"))
    assert [v.name for v in cand.victims] == ["new"]

    def victim(p):
        return PodInfo(p, MID)
    started = Candidate("started", [victim(ppod("a", MID, "n", start="1970-01-01T00:00:05Z"))], 0)
    early = Candidate("early", [victim(ppod("c", MID, "n", start="1970-01-01T00:00:02Z"))], 0)
    waiting = Candidate("waiting", [victim(pending("b", "n"))], 0)
    assert pick_one([early, started]).node == "started"
    assert pick_one([started, waiting]).node == "waiting"
