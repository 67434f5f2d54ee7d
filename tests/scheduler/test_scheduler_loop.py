"""The Scheduler's own loop without an API server: informer handlers feed cache and queue, a
recording binder stands in for pods/binding, and the informer's confirmation of the binding is
played back (upstream: assumed pod → AddPod confirms it)."""

from __future__ import annotations

import asyncio

from kybernetes.scheduler.scheduler import Scheduler

from schedtest import RecordingBinder as Binder, StubClient


def node(name: str, cpu: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}


def pod(name: str, cpu: str) -> dict:
    return {"metadata": {"name": name, "namespace": "d", "uid": f"uid-{name}", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}


async def schedule_all(sched: Scheduler) -> None:
    while sched.queue._active:
        sched.schedule_one(await sched.queue.pop())
    await asyncio.gather(*list(sched._tasks))


async def test_pods_fill_nodes_and_confirmation_reuses_the_assumed_pod():
    sched = Scheduler(StubClient())   # type: ignore[arg-type]
    binder = Binder()
    for prof in sched.profiles.values():
        prof.bind = [binder]
    sched.setup()
    for i in range(3):
        sched._on_node_add(node(f"n{i}", "1"))
    pods = {f"p{i}": pod(f"p{i}", "400m") for i in range(6)}
    for p in pods.values():
        sched._on_pod_add(p)
    await schedule_all(sched)
    assert len(binder.bound) == 6
    per_node = {}
    for n in binder.bound.values():
        per_node[n] = per_node.get(n, 0) + 1
    assert sorted(per_node.values()) == [2, 2, 2]       # 2 × 400m fit in 1 cpu, 3 do not

    key = "d/p0"
    assumed = sched.cache.pod(key)
    old = pods["p0"]
    new = {**old, "spec": {**old["spec"], "nodeName": binder.bound[key]}}
    sched._on_pod_update(old, new)
    confirmed = sched.cache.pod(key)
    assert not sched.cache.is_assumed(key) and confirmed.pod is new and confirmed.requests is assumed.requests
    assert sched.cache.nodes[binder.bound[key]].req_cpu == 800     # counted once

    # A pod changed in more than nodeName is parsed afresh.
    key = "d/p1"
    old = pods["p1"]
    new = {**old, "spec": {**old["spec"], "nodeName": binder.bound[key],
                           "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}
    sched._on_pod_update(old, new)
    assert sched.cache.pod(key).cpu == 100

    sched._on_pod_add(pod("big", "900m"))
    await schedule_all(sched)
    assert "d/big" not in binder.bound and sched.queue.where["d/big"] == "unschedulable"
    await sched.recorder.flush()


async def test_the_pod_informer_drops_managed_fields_as_upstreams_does():
    """kube-scheduler's newPodInformer sets a transform that drops metadata.managedFields."""
    sched = Scheduler(StubClient())   # type: ignore[arg-type]
    p = pod("p", "1")
    p["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]
    trimmed = sched.informers["Pod"].transform(p)
    assert "managedFields" not in trimmed["metadata"] and trimmed["metadata"]["name"] == "p"
    assert sched.informers["Node"].transform is None
