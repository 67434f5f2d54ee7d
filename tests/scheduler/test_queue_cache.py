"""SchedulingQueue (upstream scheduling_queue.go) and the scheduler Cache (cache.go): order,
backoff, unschedulable pods moved by the events their rejecting plugins named, assumed pods."""

from __future__ import annotations

import asyncio

import pytest

from kybernetes.scheduler.cache import Cache
from kybernetes.scheduler.plugins.prioritysort import PrioritySort
from kybernetes.scheduler.podinfo import PodInfo
from kybernetes.scheduler.queue import SchedulingQueue

EVENTS = {"NodeResourcesFit": ("Pod/Delete", "Node/Add", "Node/Update"),
          "TaintToleration": ("Node/Add", "Node/Update")}


def pod(name: str, priority: int = 0, cpu: str = "100m", node: str = "", anti: bool = False) -> PodInfo:
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    if anti:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    return PodInfo({"metadata": {"name": name, "namespace": "d", "labels": {"a": "b"}}, "spec": spec},
                   priority)


def node(name: str, cpu: str = "1") -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"}}}


def make_queue(**kw) -> SchedulingQueue:
    return SchedulingQueue(PrioritySort().sort_key, events_of=lambda n: EVENTS.get(n, ()), **kw)


async def test_pop_order_priority_then_arrival():
    """PrioritySort: higher priority first; equal priority in arrival order."""
    q = make_queue()
    for name, prio in [("a", 0), ("b", 10), ("c", 0), ("d", 10)]:
        q.add(pod(name, prio))
    got = [(await q.pop()).info.name for _ in range(4)]
    assert got == ["b", "d", "a", "c"]


def test_backoff_doubles_and_caps():
    """podInitialBackoffSeconds × 2^(attempts-1), capped at podMaxBackoffSeconds."""
    q = make_queue(initial_backoff=1.0, max_backoff=10.0)
    q.add(pod("a"))
    qp = q.pods["d/a"]
    durations = []
    for attempts in range(1, 7):
        qp.attempts = attempts
        durations.append(q._backoff_duration(qp))
    assert durations == [1, 2, 4, 8, 10, 10]


async def test_unschedulable_moves_only_on_events_its_rejectors_named():
    q = make_queue(initial_backoff=0.0)
    q.add(pod("a"))
    qp = await q.pop()
    q.requeue(qp, {"TaintToleration"})
    assert q.where["d/a"] == "unschedulable"
    assert q.on_event("Pod/Delete") == 0          # a deleted pod doesn't remove a taint
    assert q.where["d/a"] == "unschedulable"
    assert q.on_event("Node/Update") == 1
    assert (await q.pop()).info.name == "a"


async def test_volume_binding_rejects_move_on_storage_class_changes():
    """upstream VolumeBinding EventsToRegister: StorageClass Add|Update (a class's binding mode
    or allowed topologies may have changed), not pod deletions."""
    from kybernetes.scheduler.plugins import REGISTRY

    q = SchedulingQueue(PrioritySort().sort_key, events_of=lambda n: REGISTRY[n].events,
                        initial_backoff=0.0)
    q.add(pod("a"))
    q.requeue(await q.pop(), {"VolumeBinding"})
    assert q.on_event("Pod/Delete") == 0
    assert q.on_event("StorageClass/Update") == 1


async def test_event_while_in_flight_sends_pod_to_backoff_not_unschedulable():
    """A cluster event during the attempt may have made the pod fit: retry after backoff."""
    q = make_queue(initial_backoff=0.0)
    q.add(pod("a"))
    qp = await q.pop()
    q.on_event("Node/Add")
    q.requeue(qp, {"NodeResourcesFit"})
    assert q.where["d/a"] in ("active", "backoff")


async def test_gated_pod_waits_until_ungated():
    q = make_queue()
    q.add(pod("a"), gated=True)
    q.add(pod("b"))
    assert (await q.pop()).info.name == "b"
    assert q.where["d/a"] == "gated"
    q.update(pod("a"), gated=False)
    assert (await asyncio.wait_for(q.pop(), 1)).info.name == "a"


def test_flush_unschedulable_after_the_maximum_wait():
    q = make_queue()
    q.add(pod("a"))
    qp = q.pods["d/a"]
    q._set("d/a", "inflight")
    q.requeue(qp, {"NodeResourcesFit"})
    q.flush_unschedulable(older_than=1e9)
    assert q.where["d/a"] == "unschedulable"
    qp.backoff_until -= 400
    q.flush_unschedulable()
    assert q.where["d/a"] in ("active", "backoff")


def test_deleted_pod_is_never_popped():
    q = make_queue()
    q.add(pod("a"))
    q.add(pod("b"))
    q.delete("d/a")
    assert len(q) == 1 and q.pending() == {"active": 1}


# ---- cache ----

def test_assumed_pod_counts_until_confirmed_once():
    c = Cache()
    c.add_node(node("n1"))
    p = pod("a", cpu="300m")
    c.assume(p, "n1")
    assert c.nodes["n1"].req_cpu == 300 and c.is_assumed("d/a")
    c.add_pod(pod("a", cpu="300m", node="n1"))     # the informer confirms: no double count
    assert c.nodes["n1"].req_cpu == 300 and not c.is_assumed("d/a")
    c.forget("d/a")                                  # only assumed pods can be forgotten
    assert c.nodes["n1"].req_cpu == 300


def test_forget_releases_an_assumed_pod():
    c = Cache()
    c.add_node(node("n1"))
    c.assume(pod("a", cpu="300m"), "n1")
    c.forget("d/a")
    assert c.nodes["n1"].req_cpu == 0 and c.pod("d/a") is None


def test_node_removed_with_pods_leaves_the_list_but_keeps_accounting():
    c = Cache()
    for n in ("n1", "n2", "n3"):
        c.add_node(node(n))
    c.add_pod(pod("a", node="n2"))
    c.remove_node("n2")
    assert [ni.name for ni in c.node_list] == ["n1", "n3"]
    assert c.pod("d/a") is not None
    c.remove_pod("d/a")
    assert "n2" not in c.nodes
    c.add_node(node("n2"))
    assert [ni.name for ni in c.node_list] == ["n1", "n3", "n2"]


def test_pod_seen_before_its_node():
    c = Cache()
    c.add_pod(pod("a", cpu="200m", node="late"))
    assert c.node_list == []
    c.add_node(node("late"))
    assert [ni.name for ni in c.node_list] == ["late"] and c.nodes["late"].req_cpu == 200


def test_affinity_accounting_follows_pods():
    c = Cache()
    c.add_node(node("n1"))
    c.assume(pod("a", anti=True), "n1")
    c.add_pod(pod("b", node="n1"))
    assert c.affinity_pods == 1 and c.anti_affinity_nodes == {"n1": 1}
    c.add_pod(pod("a", node="n1", anti=True))        # confirmation keeps the counts
    assert c.affinity_pods == 1 and c.anti_affinity_nodes == {"n1": 1}
    c.remove_pod("d/a")
    assert c.affinity_pods == 0 and c.anti_affinity_nodes == {}


@pytest.mark.parametrize("change", ["add", "remove", "node"])
def test_node_signature_changes_with_state(change):
    c = Cache()
    ni = c.add_node(node("n1"))
    c.add_pod(pod("a", node="n1"))
    before = ni.sig()
    if change == "add":
        c.add_pod(pod("b", node="n1"))
    elif change == "remove":
        c.remove_pod("d/a")
    else:
        c.update_node(node("n1", cpu="2"))
    assert ni.sig() != before
