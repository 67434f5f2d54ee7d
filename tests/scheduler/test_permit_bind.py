"""Permit waiting pods, binding-cycle failures and profiles by spec.schedulerName, driven
through the Scheduler's own loop steps (queue.pop → schedule_one → binding cycle task) with a
stub client, as test_scheduler_loop.py does."""

from __future__ import annotations

import asyncio
import time

from kybernetes.scheduler.config import load
from kybernetes.scheduler.framework import Plugin, Wait, unschedulable
from kybernetes.scheduler.scheduler import Scheduler

from schedtest import RecordingBinder as Binder, StubClient


class Reserver(Plugin):
    name = "Reserver"

    def __init__(self):
        super().__init__()
        self.unreserved: list[tuple[str, str]] = []

    def reserve(self, state, pi, node_name):
        return None

    def unreserve(self, state, pi, node_name):
        self.unreserved.append((pi.key, node_name))


class Gate(Plugin):
    """Permit: Wait (up to `timeout`) for the pods named in `only` (all when None)."""

    def __init__(self, name: str, timeout: float = 30.0, only: set[str] | None = None):
        super().__init__()
        self.name = name
        self.timeout = timeout
        self.only = only

    def permit(self, state, pi, node_name):
        if self.only is None or pi.name in self.only:
            return Wait(self.timeout)
        return None


def node(name: str, cpu: str = "1") -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}


def pod(name: str, cpu: str = "100m", scheduler: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    return {"metadata": {"name": name, "namespace": "d", "uid": f"uid-{name}"}, "spec": spec}


def make(*permit: Plugin, config: str | None = None, binder: Binder | None = None):
    sched = Scheduler(StubClient(), load(text=config) if config else None)  # type: ignore[arg-type]
    binder = binder or Binder()
    reserver = Reserver()
    for prof in sched.profiles.values():
        prof.bind = [binder]
        prof.reserve = [reserver]
        prof.permit = list(permit)
    events: list[tuple[str, str, str]] = []   # (pod name, reason, message)
    sched.recorder.event = lambda obj, t, reason, msg: events.append(
        (obj["metadata"]["name"], reason, msg))
    return sched, binder, reserver, events


async def schedule_active(sched: Scheduler) -> None:
    while sched.queue._active:
        sched.schedule_one(await asyncio.wait_for(sched.queue.pop(), 5))


async def settle(sched: Scheduler) -> None:
    """Every binding cycle (and the status writes it spawns) to its end."""
    async with asyncio.timeout(10):
        while sched._tasks:
            await asyncio.gather(*list(sched._tasks))


async def until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def condition(sched: Scheduler, name: str) -> dict:
    """The last PodScheduled condition the scheduler wrote for pod `name`."""
    bodies = [b for _, n, b in sched.client.patches if n == name and "conditions" in b["status"]]
    return bodies[-1]["status"]["conditions"][0]


async def test_wait_then_allow_by_every_waiting_plugin_binds():
    """Upstream WaitingPod.Allow: the binding cycle's WaitOnPermit returns only once every
    plugin that returned Wait has allowed the pod; the pod stays assumed meanwhile and is
    reachable through the handle (GetWaitingPod / IterateOverWaitingPods)."""
    sched, binder, reserver, events = make(Gate("A"), Gate("B"))
    sched._on_node_add(node("n0"))
    sched._on_pod_add(pod("p"))
    await schedule_active(sched)
    await asyncio.sleep(0.01)
    wp = sched.get_waiting_pod("uid-p")
    assert wp is not None and sorted(wp.pending_plugins()) == ["A", "B"]
    seen: list[str] = []
    sched.iterate_over_waiting_pods(lambda w: seen.append(w.pod["metadata"]["name"]))
    assert seen == ["p"]
    assert sched.cache.is_assumed("d/p") and binder.bound == {}

    wp.allow("A")
    await asyncio.sleep(0.01)
    assert binder.bound == {} and wp.pending_plugins() == ["B"]
    wp.allow("B")
    await settle(sched)
    assert binder.bound == {"d/p": "n0"}
    assert sched.get_waiting_pod("uid-p") is None and reserver.unreserved == []
    assert [e[1] for e in events] == ["Scheduled"]


async def test_wait_then_reject_unreserves_forgets_and_requeues_with_the_message():
    """Upstream WaitingPod.Reject → WaitOnPermit returns Unschedulable from that plugin;
    handleBindingCycleError runs Unreserve, forgets the assumed pod, moves the other
    unschedulable pods (AssignedPodDelete, not the rejected pod itself), and the failure handler
    requeues the pod as unschedulable with the rejection message."""
    sched, binder, reserver, events = make(Gate("Gate", only={"p"}))
    sched._on_node_add(node("n0", cpu="1"))
    sched._on_pod_add(pod("p", cpu="600m"))
    sched._on_pod_add(pod("q", cpu="600m"))     # does not fit while p holds its reservation
    await schedule_active(sched)
    await asyncio.sleep(0.01)
    assert sched.queue.where["d/q"] == "unschedulable"
    assert sched.cache.nodes["n0"].req_cpu == 600

    sched.get_waiting_pod("uid-p").reject("Gate", "not now")
    await settle(sched)
    assert binder.bound == {}
    assert reserver.unreserved == [("d/p", "n0")]
    assert not sched.cache.is_assumed("d/p") and sched.cache.nodes["n0"].req_cpu == 0
    assert sched.queue.where["d/p"] == "unschedulable"
    assert sched.queue.pods["d/p"].rejectors == {"Gate"}
    assert sched.queue.where["d/q"] in ("backoff", "active")      # the freed room may fit q
    assert ("p", "FailedScheduling", "not now") in events
    cond = condition(sched, "p")
    assert cond["reason"] == "Unschedulable" and cond["message"] == "not now"
    assert sched.get_waiting_pod("uid-p") is None


async def test_wait_timeout_rejects_with_upstreams_message_and_requeues():
    """Upstream newWaitingPod arms one timer per waiting plugin; on expiry it rejects with
    'rejected due to timeout after waiting <duration> at plugin <name>'."""
    sched, binder, reserver, events = make(Gate("Slow", timeout=0.05))
    sched._on_node_add(node("n0"))
    sched._on_pod_add(pod("p"))
    await schedule_active(sched)
    await settle(sched)
    msg = "rejected due to timeout after waiting 50ms at plugin Slow"
    assert binder.bound == {} and reserver.unreserved == [("d/p", "n0")]
    assert not sched.cache.is_assumed("d/p")
    assert sched.queue.where["d/p"] == "unschedulable"
    assert ("p", "FailedScheduling", msg) in events
    assert condition(sched, "p")["message"] == msg


async def test_other_pods_are_scheduled_while_one_waits_on_its_reservation():
    """Upstream waits in the binding goroutine, so scheduling cycles go on; the waiting pod
    keeps its Reserve (it is assumed), so it still counts against its node."""
    sched, binder, reserver, events = make(Gate("Gate", only={"slow"}))
    sched._on_node_add(node("n0", cpu="1"))
    sched._on_pod_add(pod("slow", cpu="600m"))
    for name in ("a", "b", "c"):
        sched._on_pod_add(pod(name, cpu="200m"))
    await schedule_active(sched)
    await until(lambda: len(binder.bound) == 2)
    assert set(binder.bound) == {"d/a", "d/b"}
    assert sched.queue.where["d/c"] == "unschedulable"      # 600m + 2 × 200m fill the node
    assert sched.get_waiting_pod("uid-slow") is not None

    sched.get_waiting_pod("uid-slow").allow("Gate")
    await settle(sched)
    assert binder.bound["d/slow"] == "n0" and "d/slow" not in sched.queue.pods


async def test_deleting_a_waiting_pod_rejects_it_and_does_not_requeue():
    """Upstream deletePodFromSchedulingQueue calls RejectWaitingPod: the binding cycle ends,
    Unreserve runs, and nothing is requeued or reported for a pod that is gone."""
    sched, binder, reserver, events = make(Gate("Gate"))
    sched._on_node_add(node("n0"))
    p = pod("p")
    sched._on_pod_add(p)
    await schedule_active(sched)
    await asyncio.sleep(0.01)
    sched._on_pod_delete(p)
    await settle(sched)
    assert binder.bound == {} and reserver.unreserved == [("d/p", "n0")]
    assert "d/p" not in sched.queue.pods and sched.get_waiting_pod("uid-p") is None
    assert events == []


async def test_permit_rejection_in_the_scheduling_cycle_is_a_fit_error_on_that_node():
    """Upstream schedulingCycle: a rejecting Permit plugin (no wait) → Unreserve, forget, and a
    FitError over the one suggested node, with that plugin as the unschedulable plugin."""
    class No(Plugin):
        name = "No"

        def permit(self, state, pi, node_name):
            return unschedulable("not allowed")

    sched, binder, reserver, events = make(No())
    sched._on_node_add(node("n0"))
    sched._on_pod_add(pod("p"))
    await schedule_active(sched)
    await settle(sched)
    assert binder.bound == {} and reserver.unreserved == [("d/p", "n0")]
    assert sched.queue.where["d/p"] == "unschedulable"
    assert sched.queue.pods["d/p"].rejectors == {"No"}
    assert ("p", "FailedScheduling", "0/1 nodes are available: 1 not allowed.") in events


async def test_bind_failure_forgets_unreserves_and_backs_off():
    """Upstream handleBindingCycleError: Unreserve, ForgetPod, then the failure handler's
    AddUnschedulableIfNotPresent puts a pod that failed with an error in backoffQ (not activeQ)
    for its backoff duration (podInitialBackoffSeconds × 2^(attempts-1))."""
    backoff = 0.3
    sched, binder, reserver, events = make(
        config=f"podInitialBackoffSeconds: {backoff}\npodMaxBackoffSeconds: 5\n",
        binder=Binder(fail=1))
    sched._on_node_add(node("n0"))
    sched._on_pod_add(pod("p", cpu="600m"))
    await schedule_active(sched)
    before = time.monotonic()
    await settle(sched)
    after = time.monotonic()
    assert binder.bound == {} and reserver.unreserved == [("d/p", "n0")]
    assert not sched.cache.is_assumed("d/p") and sched.cache.nodes["n0"].req_cpu == 0
    assert sched.queue.where["d/p"] == "backoff" and not sched.queue._active
    qp = sched.queue.pods["d/p"]
    assert qp.attempts == 1
    assert before + backoff <= qp.backoff_until <= after + backoff
    assert ("p", "FailedScheduling", "Binding rejected: boom") in events
    assert condition(sched, "p")["reason"] == "SchedulerError"

    again = await asyncio.wait_for(sched.queue.pop(), 10)
    assert again is qp and time.monotonic() >= before + backoff
    sched.schedule_one(again)
    await settle(sched)
    assert binder.bound == {"d/p": "n0"}


async def test_each_profile_schedules_the_pods_naming_it_and_others_are_left_alone():
    """Upstream: one framework per KubeSchedulerConfiguration profile, chosen by
    spec.schedulerName; pods naming a scheduler no profile has are not this scheduler's
    (responsibleForPod): never queued, scheduled, or reported on."""
    config = """
profiles:
- schedulerName: default-scheduler
- schedulerName: no-fit
  plugins:
    filter:
      disabled: [{name: NodeResourcesFit}]
"""
    sched, binder, reserver, events = make(config=config)
    other = Binder()
    sched.profiles["no-fit"].bind = [other]
    sched._on_node_add(node("n0", cpu="1"))
    sched._on_pod_add(pod("plain", cpu="2"))
    sched._on_pod_add(pod("named", cpu="2", scheduler="no-fit"))
    sched._on_pod_add(pod("foreign", cpu="100m", scheduler="someone-else"))
    await schedule_active(sched)
    await settle(sched)
    assert other.bound == {"d/named": "n0"} and binder.bound == {}
    assert sched.queue.where["d/plain"] == "unschedulable"      # the default profile's Fit
    assert "d/foreign" not in sched.queue.pods
    assert [e for e in events if e[0] == "foreign"] == []
    assert [n for _, n, _ in sched.client.patches if n == "foreign"] == []
    assert ("named", "Scheduled", "Successfully assigned d/named to n0") in events
