"""The Node object of this agent: registration, status (capacity, conditions, nodeInfo), Lease.

Like the kubelet: the Node is created (or adopted) at start, its status is written when it
changes and at least every `status_period`, and a Lease in kube-node-lease is renewed every
`lease_period` as the cheap heartbeat the node lifecycle controller watches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from dataclasses import dataclass, field
from typing import Callable

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource

from . import machine

log = logging.getLogger("kyb.kubelet.node")

NODES = resource("v1", "Node")
LEASES = resource("coordination.k8s.io/v1", "Lease")
KUBELET_VERSION = "v1.33.0-kyb"
MAX_PODS = 110


def now_time() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class NodeConfig:
    name: str
    node_ip: str
    kubelet_port: int = 10250
    data_dir: str = "/var/lib/kybernetes/agent"
    labels: dict[str, str] = field(default_factory=dict)
    max_pods: int = MAX_PODS
    runtime_version: str = "containerd://unknown"


def capacity(data_dir: str, max_pods: int = MAX_PODS) -> dict[str, str]:
    disk, _ = machine.disk_bytes(data_dir)
    return {"cpu": str(machine.cpu_count()), "memory": f"{machine.memory_bytes() // 1024}Ki",
            "pods": str(max_pods), "ephemeral-storage": f"{disk // 1024}Ki",
            "hugepages-2Mi": "0", "hugepages-1Gi": "0"}


def pressure(data_dir: str) -> dict[str, bool]:
    """Whether each pressure condition holds, with the kubelet's default hard eviction
    thresholds (memory.available<100Mi, nodefs.available<10%)."""
    disk, free = machine.disk_bytes(data_dir)
    return {"MemoryPressure": machine.memory_available() < 100 * 2 ** 20,
            "DiskPressure": disk > 0 and free / disk < 0.10,
            "PIDPressure": False}


_REASONS = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
}


def conditions(old: list[dict], pressures: dict[str, bool], ready: bool, now: str) -> list[dict]:
    """Node conditions as the kubelet writes them; lastTransitionTime only moves on change."""
    previous = {c.get("type"): c for c in old or ()}
    out = []
    wanted = [(t, "True" if on else "False", *_REASONS[t][1 if on else 0])
              for t, on in pressures.items()]
    wanted.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready
                   else ("Ready", "False", "KubeletNotReady", "container runtime is down"))
    for type_, status, reason, message in wanted:
        prev = previous.get(type_) or {}
        out.append({"type": type_, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": prev.get("lastTransitionTime", now)
                    if prev.get("status") == status else now,
                    "reason": reason, "message": message})
    return out


def node_status(cfg: NodeConfig, old_status: dict, ready: bool = True,
                images: list[dict] | None = None,
                pressures: dict[str, bool] | None = None) -> dict:
    """`pressures` come from the eviction manager; without one, the default thresholds."""
    cap = capacity(cfg.data_dir, cfg.max_pods)
    now = now_time()
    return {
        "capacity": cap,
        "allocatable": dict(cap),
        "conditions": conditions((old_status or {}).get("conditions") or [],
                                 pressures if pressures is not None else pressure(cfg.data_dir),
                                 ready, now),
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip},
                      {"type": "Hostname", "address": cfg.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {
            "machineID": machine.machine_id(), "systemUUID": machine.machine_id(),
            "bootID": _boot_id(), "kernelVersion": machine.kernel_version(),
            "osImage": machine.os_image(), "containerRuntimeVersion": cfg.runtime_version,
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": machine.architecture(),
        },
        "images": images or [],
    }


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    arch = machine.architecture()
    return {"kubernetes.io/hostname": cfg.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch, **cfg.labels}


def _significant(status: dict) -> dict:
    """The status without heartbeat times: a change here is worth writing at once."""
    s = dict(status)
    s["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                       for c in s.get("conditions") or ()]
    return s


class NodeReporter:
    def __init__(self, client: Client, cfg: NodeConfig, *, lease_period: float = 10,
                 status_period: float = 300, check_period: float = 10,
                 pressures: Callable[[], dict[str, bool]] | None = None):
        self.client, self.cfg = client, cfg
        self.pressures = pressures
        self.lease_period, self.status_period, self.check_period = \
            lease_period, status_period, check_period
        self.node: dict = {}
        self.ready = True
        self._last_written: dict = {}
        self._last_write = 0.0
        self._tasks: list[asyncio.Task] = []
        self.images: list[dict] = []

    async def register(self) -> dict:
        """Create the Node, or take over an existing one of this name (as after a restart)."""
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.cfg.name, "labels": node_labels(self.cfg),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}}
        while True:
            try:
                try:
                    self.node = await self.client.create(NODES, body)
                except ApiError as e:
                    if e.code != 409:
                        raise
                    self.node = await self.client.patch(NODES, self.cfg.name, {
                        "metadata": {"labels": node_labels(self.cfg)}})
                await self.write_status(force=True)
                return self.node
            except ApiError as e:
                log.warning("registering node %s: %s; retrying", self.cfg.name, e)
                await asyncio.sleep(1)

    async def write_status(self, force: bool = False) -> None:
        status = node_status(self.cfg, self.node.get("status") or {}, self.ready, self.images,
                             self.pressures() if self.pressures else None)
        loop = asyncio.get_running_loop()
        if not force and _significant(status) == _significant(self._last_written) and \
                loop.time() - self._last_write < self.status_period:
            return
        self.node = await self.client.patch(NODES, self.cfg.name, {"status": status},
                                            subresource="status")
        self._last_written, self._last_write = status, loop.time()

    async def refresh(self) -> dict:
        self.node = await self.client.get(NODES, self.cfg.name)
        return self.node

    async def wait_pod_cidr(self, timeout: float) -> str | None:
        """spec.podCIDR once the nodeipam controller has set it, or None after timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                cidr = (await self.refresh()).get("spec", {}).get("podCIDR")
            except ApiError:
                cidr = None
            if cidr or loop.time() > deadline:
                return cidr
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lease_loop(), name="node-lease"),
                       asyncio.create_task(self._status_loop(), name="node-status")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    async def renew_lease(self) -> None:
        ns, name = "kube-node-lease", self.cfg.name
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}
        try:
            lease = await self.client.get(LEASES, name, ns)
            lease["spec"] = {**lease.get("spec", {}), **spec}
            await self.client.update(LEASES, lease)
        except ApiError as e:
            if e.code != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": name,
                     "uid": self.node.get("metadata", {}).get("uid", "")}
            await self.client.create(LEASES, {"metadata": {
                "name": name, "namespace": ns, "ownerReferences": [owner] if owner["uid"] else []},
                "spec": spec}, ns)

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except Exception as e:
                log.warning("renewing lease: %s", e)
            await asyncio.sleep(self.lease_period)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_period)
            try:
                await self.write_status()
            except Exception as e:
                log.warning("node status: %s", e)


def default_node_name() -> str:
    return socket.gethostname().lower()
