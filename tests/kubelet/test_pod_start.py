"""Pod workers starting many pods at once, against an in-memory CRI: a bounded number of
sandboxes in the making, one status write per pod when it runs (plus a ContainerCreating one for
a pod that waits for a start slot), and the informer's echo of a write not waking the pod's
worker again."""

from __future__ import annotations

import asyncio
import itertools

from kybernetes.kubelet import podspec
from kybernetes.kubelet.cri.client import messages as pb
from kybernetes.kubelet.podworkers import PodWorkers


class MemoryCRI:
    """Just enough of the CRI for a pod's first start; sandbox creation yields to the loop."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.sandboxes: dict[str, pb.PodSandbox] = {}
        self.containers: dict[str, pb.Container] = {}
        self.making = self.most_making = 0

    async def list_pod_sandbox(self, filter=None, **_):
        uid = filter.label_selector.get(podspec.POD_UID) if filter else None
        return pb.ListPodSandboxResponse(items=[
            s for s in self.sandboxes.values() if uid is None or s.labels[podspec.POD_UID] == uid])

    async def run_pod_sandbox(self, config, **_):
        self.making += 1
        self.most_making = max(self.most_making, self.making)
        await asyncio.sleep(0.01)
        self.making -= 1
        sid = f"sb{next(self.ids)}"
        self.sandboxes[sid] = pb.PodSandbox(id=sid, metadata=config.metadata,
                                            state=pb.SANDBOX_READY, labels=config.labels)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sid)

    async def pod_sandbox_status(self, pod_sandbox_id, **_):
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(
            id=pod_sandbox_id, state=pb.SANDBOX_READY,
            network=pb.PodSandboxNetworkStatus(ip=f"10.0.0.{pod_sandbox_id[2:]}")))

    async def image_status(self, image, **_):
        return pb.ImageStatusResponse(image=pb.Image(id="sha256:img"))

    async def create_container(self, pod_sandbox_id, config, **_):
        cid = f"c{next(self.ids)}"
        self.containers[cid] = pb.Container(id=cid, pod_sandbox_id=pod_sandbox_id,
                                            metadata=config.metadata,
                                            state=pb.CONTAINER_CREATED, labels=config.labels)
        return pb.CreateContainerResponse(container_id=cid)

    async def start_container(self, container_id, **_):
        self.containers[container_id].state = pb.CONTAINER_RUNNING
        return pb.StartContainerResponse()

    async def list_containers(self, filter=None, **_):
        return pb.ListContainersResponse(containers=[
            c for c in self.containers.values()
            if not filter or not filter.pod_sandbox_id or c.pod_sandbox_id == filter.pod_sandbox_id])

    async def container_status(self, container_id, **_):
        c = self.containers[container_id]
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(
            id=c.id, metadata=c.metadata, state=c.state, created_at=1, started_at=2))


class StatusSink:
    """The API side: records each pods/status patch and answers with a new resourceVersion."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict]] = []
        self.rv = itertools.count(100)

    async def patch(self, resource, name, body, namespace, subresource=None):
        self.patches.append((name, body["status"]))
        return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                             "resourceVersion": str(next(self.rv))},
                "spec": _pod(name)["spec"], "status": body["status"]}


def _pod(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "resourceVersion": "1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                                                       "imagePullPolicy": "IfNotPresent"}]},
            "status": {"phase": "Pending"}}


async def test_a_burst_is_started_a_few_at_a_time_and_the_waiting_ones_show_container_creating(tmp_path):
    cri, api = MemoryCRI(), StatusSink()
    workers = PodWorkers(api, cri, node_name="n1", host_ip="192.0.2.1",
                         logs_root=str(tmp_path), start_concurrency=3)
    names = [f"p{i}" for i in range(12)]
    try:
        for n in names:
            workers.upsert(_pod(n))
        for _ in range(500):
            if len({n for n, s in api.patches if s["phase"] == "Running"}) == len(names):
                break
            await asyncio.sleep(0.02)
        running = [n for n, s in api.patches if s["phase"] == "Running"]
        assert sorted(running) == sorted(names)
        assert 1 < cri.most_making <= 3
        # A pod that got a start slot at once is written once, Running; one that had to wait is
        # first written Pending with its containers ContainerCreating (as upstream shows it).
        waited = [n for n, s in api.patches if s["phase"] == "Pending"]
        assert waited and len(waited) == len(set(waited)) <= len(names) - 3
        for n in waited:
            first = next(s for m, s in api.patches if m == n)
            assert first["phase"] == "Pending"
            assert [c["state"] for c in first["containerStatuses"]] == \
                [{"waiting": {"reason": "ContainerCreating"}}]
        assert len(api.patches) == len(names) + len(waited)

        # The informer brings our own write back (a new copy, same resourceVersion): no wake-up.
        for n in names:
            uid = f"uid-{n}"
            echo = dict(workers.pods[uid])
            workers._wake[uid].clear()
            workers.upsert(echo)
            assert not workers._wake[uid].is_set()
        # Someone else's change (a newer resourceVersion) does wake it.
        other = {**workers.pods["uid-p0"], "metadata": {**workers.pods["uid-p0"]["metadata"],
                                                        "resourceVersion": "999"}}
        workers.upsert(other)
        assert workers._wake["uid-p0"].is_set()
    finally:
        await workers.stop()


class FlakySink(StatusSink):
    """Its first patch raises CancelledError though nobody cancelled the caller (as a library's
    internal cancellation can)."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    async def patch(self, resource, name, body, namespace, subresource=None):
        if not self.raised:
            self.raised = True
            raise asyncio.CancelledError()
        return await super().patch(resource, name, body, namespace, subresource)


async def test_a_stray_cancelled_error_does_not_end_the_pods_worker(tmp_path, monkeypatch):
    monkeypatch.setattr("kybernetes.kubelet.podworkers.RESYNC", 0.05)
    cri, api = MemoryCRI(), FlakySink()
    workers = PodWorkers(api, cri, node_name="n1", host_ip="192.0.2.1", logs_root=str(tmp_path))
    try:
        workers.upsert(_pod("p"))
        for _ in range(300):
            if any(s["phase"] == "Running" for _, s in api.patches):
                break
            await asyncio.sleep(0.02)
        assert api.raised and [s["phase"] for _, s in api.patches] == ["Running"]
        assert not workers._tasks["uid-p"].done()
    finally:
        await workers.stop()
