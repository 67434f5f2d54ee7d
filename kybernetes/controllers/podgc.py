"""Pod garbage collector (upstream pkg/controller/podgc).

Every period (20 s) it force-deletes: terminated pods beyond `terminated-pod-gc-threshold`
(oldest first, evicted ones before others), terminating pods on NotReady nodes tainted
`node.kubernetes.io/out-of-service`, pods bound to nodes that are still missing after a 40 s
quarantine (marked Failed with a DisruptionTarget condition first), and terminating pods that
were never scheduled. Pods not yet Succeeded/Failed are patched to Failed before deletion so
that Job controllers see them end.

The threshold is the manager's --terminated-pod-gc-threshold (default 12500; 0 disables). The
period and the quarantine are fixed upstream; tests shorten them through the constructor or
KYB_PODGC_PERIOD / KYB_PODGC_QUARANTINE (seconds).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

from kybernetes.api.duration import parse_time
from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource

from .options import OPTIONS
from .replicas import now_rfc3339

log = logging.getLogger(__name__)

PODS = resource("v1", "Pod")
NODES = resource("v1", "Node")
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
_KEY = "podgc"


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def is_terminated(pod: dict) -> bool:
    """Upstream isPodTerminated: any phase other than Pending, Running or Unknown."""
    return (pod.get("status") or {}).get("phase") not in ("Pending", "Running", "Unknown")


def is_evicted(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" and status.get("reason") == "Evicted"


def _gc_order(a: dict, b: dict) -> int:
    """Evicted first, then oldest first, names breaking ties."""
    ea, eb = is_evicted(a), is_evicted(b)
    if ea != eb:
        return -1 if ea else 1
    ta = parse_time(a["metadata"].get("creationTimestamp"))
    tb = parse_time(b["metadata"].get("creationTimestamp"))
    if ta == tb or ta is None or tb is None:
        na, nb = a["metadata"]["name"], b["metadata"]["name"]
        return (na > nb) - (na < nb)
    return -1 if ta < tb else 1


def terminated_to_delete(pods: list[dict], threshold: int) -> list[dict]:
    """The terminated pods over the threshold, in the order upstream deletes them."""
    terminated = [p for p in pods if is_terminated(p)]
    excess = len(terminated) - threshold
    if threshold <= 0 or excess <= 0:
        return []
    return sorted(terminated, key=functools.cmp_to_key(_gc_order))[:excess]


def node_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def out_of_service(node: dict) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    return not node_ready(node) and any(t.get("key") == OUT_OF_SERVICE_TAINT for t in taints)


class PodGCController(Controller):
    name = "podgc"
    workers = 1

    def __init__(self, client, factory, recorder=None, *, threshold: int | None = None,
                 period: float | None = None, quarantine: float | None = None):
        self.threshold = int(threshold if threshold is not None
                             else OPTIONS.terminated_pod_gc_threshold)
        self.period = period if period is not None else _env_number("KYB_PODGC_PERIOD", 20.0)
        self.quarantine = (quarantine if quarantine is not None
                           else _env_number("KYB_PODGC_QUARANTINE", 40.0))
        # node name → when a pod was first seen bound to it while it was missing
        self._suspects: dict[str, float] = {}
        super().__init__(client, factory, recorder)

    def setup(self) -> None:
        self.pods = self.factory.informer(PODS)
        self.nodes = self.factory.informer(NODES)
        self.queue.add(_KEY)  # periodic: one key, requeued after every pass

    async def reconcile(self, key: str) -> float | None:
        await self.gc()
        return self.period

    async def gc(self) -> None:
        pods = self.pods.list()
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        if self.threshold > 0:
            await self._delete_all(terminated_to_delete(pods, self.threshold))
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")
                       and (p.get("spec") or {}).get("nodeName") in nodes
                       and out_of_service(nodes[p["spec"]["nodeName"]])]
        await self._delete_all(sorted(terminating, key=functools.cmp_to_key(_gc_order)))
        await self._gc_orphaned(pods, nodes)
        await self._delete_all([p for p in pods if p["metadata"].get("deletionTimestamp")
                                and not (p.get("spec") or {}).get("nodeName")])

    async def _gc_orphaned(self, pods: list[dict], nodes: dict[str, dict]) -> None:
        now = time.monotonic()
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node and node not in nodes:
                self._suspects.setdefault(node, now)
        gone: set[str] = set()
        for node, since in list(self._suspects.items()):
            if now - since < self.quarantine:
                continue
            del self._suspects[node]
            if node in nodes:
                continue
            try:  # the cache may lag: ask the API server before deleting anything
                await self.client.get(NODES, node)
            except ApiError as e:
                if e.code == 404:
                    gone.add(node)
                else:
                    log.warning("podgc: getting node %s: %s", node, e)
        if gone:
            condition = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                         "message": "PodGC: node no longer exists"}
            await self._delete_all([p for p in pods if (p.get("spec") or {}).get("nodeName") in gone],
                                   condition)

    async def _delete_all(self, pods: list[dict], condition: dict | None = None) -> None:
        if pods:
            await asyncio.gather(*(self._fail_and_delete(p, condition) for p in pods))

    async def _fail_and_delete(self, pod: dict, condition: dict | None) -> None:
        meta = pod["metadata"]
        name, ns = meta["name"], meta.get("namespace")
        try:
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                # Nothing else will end it (its kubelet is gone): mark it Failed first.
                status: dict = {"phase": "Failed"}
                if condition:
                    status["conditions"] = [dict(condition, lastTransitionTime=now_rfc3339())]
                await self.client.patch(PODS, name, {"metadata": {"uid": meta.get("uid")},
                                                     "status": status},
                                        ns, type="strategic", subresource="status")
            log.info("podgc: force deleting pod %s/%s", ns, name)
            await self.client.delete(PODS, name, ns, grace_seconds=0)
        except ApiError as e:
            if e.code != 404:
                log.warning("podgc: deleting pod %s/%s: %s", ns, name, e)
