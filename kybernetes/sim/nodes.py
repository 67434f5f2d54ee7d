"""SimNodes: many hollow kubelets in one process.

Scale comes from sharing: one Node informer and one Pod informer (bound pods, filtered here by
node name) for every simulated node, one timer heap that spreads each node's Lease renewal and
status heartbeat over the period, a fixed pool of renewal workers, and the shared controller
loop (work queue + workers) for pods. Nothing runs per node.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import random
import time

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, Controller, InformerFactory, resource, split_key

from . import objects
from .objects import LEASE_NAMESPACE, NodeTemplate, is_frozen
from .podstatus import PodIPs, Timing, plan

log = logging.getLogger("kyb.sim")
NODES = resource("v1", "Node")
PODS = resource("v1", "Pod")
LEASES = resource("coordination.k8s.io/v1", "Lease")


class PodPlayer(Controller):
    """Plays every pod bound to one of our nodes: Pending → Running → Ready (→ exit), and
    confirms deletions. Level-triggered: each pass reads the pod and writes what comes next."""
    name = "sim-pods"

    def __init__(self, sim: "SimNodes", workers: int):
        self.sim = sim
        self.workers = workers
        super().__init__(sim.client, sim.factory)

    def setup(self) -> None:
        self.pods = self.factory.informer(PODS, field_selector="spec.nodeName!=")
        self.pods.add_index("node", lambda p: [p["spec"].get("nodeName") or ""])
        self.pods.add_handler(self._on_pod, lambda old, new: self._on_pod(new), self._on_gone)
        self._seen: dict[str, float] = {}     # uid → when first seen (wall clock)
        self._started: dict[str, float] = {}  # uid → when its containers started
        self._ips: dict[str, tuple[str, str]] = {}  # uid → (node, pod IP)

    def _on_pod(self, pod: dict) -> None:
        node = pod["spec"].get("nodeName")
        if node not in self.sim.indexes:
            return
        ip = (pod.get("status") or {}).get("podIP")
        uid = pod["metadata"].get("uid", "")
        if ip and uid not in self._ips and not pod["spec"].get("hostNetwork"):
            self._ips[uid] = (node, ip)  # already running (we restarted): keep its address
            self.sim.pod_ips(node).take(ip)
        self.enqueue(pod)

    def _on_gone(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        self._seen.pop(uid, None)
        self._started.pop(uid, None)
        node, ip = self._ips.pop(uid, (None, None))
        if node:
            self.sim.pod_ips(node).release(ip)

    def requeue_node(self, node: str) -> None:
        for pod in self.pods.by_index("node", node):
            self.enqueue(pod)

    async def reconcile(self, key: str) -> float | None:
        pod = self.pods.get(key)
        if pod is None:
            return None
        node = pod["spec"].get("nodeName")
        if node not in self.sim.indexes or self.sim.frozen(node):
            return None  # a frozen kubelet does nothing; unfreezing requeues its pods
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta.get("uid", "")
        now = time.time()
        seen = self._seen.setdefault(uid, now)
        ip = None
        if not status.get("startTime") and not pod["spec"].get("hostNetwork") \
                and not meta.get("deletionTimestamp"):
            if uid not in self._ips:
                new_ip = self.sim.pod_ips(node).allocate()
                if new_ip is None:
                    log.warning("%s: no pod address left on %s", key, node)
                    return 5.0
                self._ips[uid] = (node, new_ip)
            ip = self._ips[uid][1]
        step = plan(pod, now=now, seen=seen, started=self._started.get(uid),
                    host_ip=self.sim.host_ip(node), pod_ip=ip, timing=self.sim.timing)
        ns, name = split_key(key)
        try:
            if step.status is not None:
                updated = dict(pod, status=step.status)
                await self.client.update_status(PODS, updated)
                if not status.get("startTime"):
                    self._started[uid] = min(now, seen + self.sim.timing.start_delay)
                    self.sim.pods_started += 1
            if step.delete:
                await self.client.delete(PODS, name, ns, grace_seconds=0,
                                         preconditions={"uid": uid})
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return max(step.wake, 0.005) if step.wake is not None else None


class SimNodes:
    """`count` simulated nodes named `{prefix}{i}`. `await start()` registers them and starts
    playing; `await stop()` stops (the Nodes stay registered, as when kubelets die)."""

    def __init__(self, client: Client, *, count: int, name_prefix: str = "sim-",
                 template: NodeTemplate | None = None, timing: Timing | None = None,
                 lease_period: float = 10.0, status_period: float = 300.0,
                 concurrency: int = 64, pod_workers: int = 32):
        self.client = client
        self.template = template or NodeTemplate()
        self.timing = timing or Timing()
        self.lease_period, self.status_period = lease_period, status_period
        self.concurrency = concurrency
        self.names = [f"{name_prefix}{i}" for i in range(count)]
        self.indexes = {n: i for i, n in enumerate(self.names)}
        self.factory = InformerFactory(client)
        self.nodes = self.factory.informer(NODES, label_selector=f"{objects.MARKER_LABEL}={objects.MARKER_VALUE}")
        self.nodes.add_handler(None, self._on_node_update)
        self.player = PodPlayer(self, pod_workers)
        self._leases: dict[str, dict] = {}
        self._ips: dict[str, PodIPs] = {}
        self._tasks: list[asyncio.Task] = []
        self.renewals = 0       # counters for benchmarks and tests
        self.pods_started = 0

    # ---- node facts ----

    def frozen(self, name: str) -> bool:
        return is_frozen(self.nodes.get(name))

    def host_ip(self, name: str) -> str:
        return objects.node_ip(self.indexes[name])

    def pod_ips(self, name: str) -> PodIPs:
        cidr = (self.nodes.get(name) or {}).get("spec", {}).get("podCIDR") \
            or objects.fake_pod_cidr(self.indexes[name])
        ips = self._ips.get(name)
        if ips is None or str(ips.net) != cidr:
            fresh = PodIPs(cidr)
            if ips is not None:  # keep addresses in use that fall in the new range
                fresh.used = {ip for ip in ips.used if ipaddress.ip_address(ip) in fresh.net}
            self._ips[name] = ips = fresh
        return ips

    def _on_node_update(self, old: dict, new: dict) -> None:
        if is_frozen(old) and not is_frozen(new) and new["metadata"]["name"] in self.indexes:
            self.player.requeue_node(new["metadata"]["name"])

    # ---- lifecycle ----

    async def start(self) -> None:
        started = time.monotonic()
        await self.register()
        log.info("registered %d nodes in %.2fs", len(self.names), time.monotonic() - started)
        self.factory.start()
        await self.factory.wait_for_sync()
        queue: asyncio.Queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._schedule(queue), name="sim-renew-schedule"),
                       asyncio.create_task(self.player.run(), name="sim-pods")]
        self._tasks += [asyncio.create_task(self._renew_worker(queue), name=f"sim-renew-{i}")
                        for i in range(self.concurrency)]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.factory.stop()

    async def __aenter__(self) -> "SimNodes":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---- registration ----

    async def register(self) -> None:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(name: str) -> None:
            async with sem:
                await self._register(name)

        await asyncio.gather(*(one(n) for n in self.names))

    async def _register(self, name: str) -> None:
        index, now = self.indexes[name], objects.now_time()
        want = objects.build_node(name, index, self.template, now)
        try:
            node = await self.client.create(NODES, want)
        except ApiError as e:
            if e.code != 409:
                raise
            # Already registered (an earlier run): report ourselves healthy again, as a
            # restarted kubelet does.
            node = await self.client.get(NODES, name)
            labels = dict(node["metadata"].get("labels") or {}, **want["metadata"]["labels"])
            node = await self.client.patch(NODES, name, {"metadata": {"labels": labels}})
            node = await self._write_status(name, node)
        jobs = [self._create_lease(name, node)]
        if not (node.get("status") or {}).get("conditions"):  # status dropped on create
            jobs.append(self._write_status(name, node))
        await asyncio.gather(*jobs)

    async def _create_lease(self, name: str, node: dict) -> None:
        lease = objects.build_lease(node, objects.now_micro())
        try:
            self._leases[name] = await self.client.create(LEASES, lease)
        except ApiError as e:
            if e.code != 409:
                raise
            self._leases[name] = await self._renew_existing(name)

    async def _write_status(self, name: str, node: dict) -> dict:
        status = objects.node_status(name, self.indexes[name], self.template, objects.now_time(),
                                     objects.heartbeat_transitions(node))
        return await self.client.patch(NODES, name, {"status": status}, subresource="status")

    # ---- heartbeats ----

    async def _schedule(self, queue: asyncio.Queue) -> None:
        """One timer heap for every node: each renewal is spread over its period (with jitter)
        so N nodes make a steady N/period requests per second, not bursts."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap: list[tuple[float, str, str]] = []
        n = max(len(self.names), 1)
        for i, name in enumerate(self.names):
            heap.append((now + self.lease_period * (i + random.random()) / n, "lease", name))
            heap.append((now + self.status_period * (i + random.random()) / n, "status", name))
        heapq.heapify(heap)
        pending: set[tuple[str, str]] = set()
        while True:
            now = loop.time()
            while heap and heap[0][0] <= now + 0.02:
                due, kind, name = heapq.heappop(heap)
                period = self.lease_period if kind == "lease" else self.status_period
                heapq.heappush(heap, (max(due + period, now), kind, name))
                if (kind, name) not in pending:  # the API is behind: skip rather than pile up
                    pending.add((kind, name))
                    queue.put_nowait((kind, name, pending))
            await asyncio.sleep(max(heap[0][0] - loop.time(), 0.01) if heap else 1)

    async def _renew_worker(self, queue: asyncio.Queue) -> None:
        while True:
            kind, name, pending = await queue.get()
            try:
                if not self.frozen(name):
                    if kind == "lease":
                        await self.renew_lease(name)
                    else:
                        await self.heartbeat(name)
                    self.renewals += 1
            except ApiError as e:
                log.debug("%s %s: %s", kind, name, e)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s %s failed", kind, name)
            finally:
                pending.discard((kind, name))

    async def renew_lease(self, name: str) -> None:
        lease = self._leases.get(name)
        if lease is None:
            self._leases[name] = await self._renew_existing(name)
            return
        lease["spec"]["renewTime"] = objects.now_micro()
        try:
            self._leases[name] = await self.client.update(LEASES, lease)
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self._leases.pop(name, None)
            self._leases[name] = await self._renew_existing(name)

    async def _renew_existing(self, name: str) -> dict:
        """Fetch (or re-create) the Lease and renew it: after a conflict or a deletion."""
        try:
            lease = await self.client.get(LEASES, name, LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            node = self.nodes.get(name) or await self.client.get(NODES, name)
            return await self.client.create(LEASES, objects.build_lease(node, objects.now_micro()))
        lease["spec"].update(holderIdentity=name, leaseDurationSeconds=objects.LEASE_DURATION,
                             renewTime=objects.now_micro())
        return await self.client.update(LEASES, lease)

    async def heartbeat(self, name: str) -> None:
        """The kubelet's periodic node status: conditions with a fresh lastHeartbeatTime."""
        node = self.nodes.get(name)
        if node is None:
            return  # deleted by someone: a real kubelet does not re-register either
        conds = objects.conditions(objects.now_time(), objects.heartbeat_transitions(node))
        await self.client.patch(NODES, name, {"status": {"conditions": conds}}, subresource="status")

