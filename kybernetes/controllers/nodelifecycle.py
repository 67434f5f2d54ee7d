"""Node lifecycle: node health from Leases, condition taints, and taint-based eviction.

Following pkg/controller/nodelifecycle and pkg/controller/tainteviction:

- Health: a node is alive while its Lease (kube-node-lease/<node>) or its Ready heartbeat keeps
  changing. Time is measured on our own clock from when we saw the last change (no clock skew
  between nodes matters). After the grace period (40 s; --node-monitor-grace-period) the node's
  conditions turn Unknown ("Kubelet stopped posting node status."); a node that never posted
  status gets the startup grace (60 s; --node-startup-grace-period).
- Taints follow conditions: Ready=False → node.kubernetes.io/not-ready, Ready=Unknown →
  node.kubernetes.io/unreachable (both NoSchedule and NoExecute), pressure conditions and
  spec.unschedulable → their NoSchedule taints. They go away when the condition clears.
- On a node that is not Ready the pods' Ready condition is set False (MarkPodsNotReady).
- Eviction: a pod not tolerating every NoExecute taint of its node is deleted at once; one that
  tolerates them for tolerationSeconds is deleted that long after we first saw it tainted.
- Dead kubelets never confirm graceful deletion: a deleting pod on an unreachable node is
  force-deleted (grace 0) once its grace period has passed. Upstream leaves that to PodGC and
  the out-of-service taint; we do it here so workloads move without an operator.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import dataclass

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource
from kybernetes.api.clock import now_rfc3339

from .options import OPTIONS

log = logging.getLogger(__name__)

NODES = resource("v1", "Node")
PODS = resource("v1", "Pod")
LEASES = resource("coordination.k8s.io/v1", "Lease")
LEASE_NAMESPACE = "kube-node-lease"

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# condition type → {status → taint key} for NoSchedule taints (upstream's condition map).
CONDITION_TAINTS = {
    "Ready": {"False": NOT_READY, "Unknown": UNREACHABLE},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
}
MANAGED_KEYS = {k for m in CONDITION_TAINTS.values() for k in m.values()} | {UNSCHEDULABLE}
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---- pure helpers ----

def condition(node: dict, type_: str) -> dict | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def ready_status(node: dict) -> str | None:
    c = condition(node, "Ready")
    return c.get("status") if c else None


def desired_taints(node: dict) -> set[tuple[str, str]]:
    """(key, effect) of the taints the node's conditions call for."""
    out: set[tuple[str, str]] = set()
    for c in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINTS.get(c.get("type"), {}).get(c.get("status"))
        if key:
            out.add((key, "NoSchedule"))
    ready = ready_status(node)
    if ready == "False":
        out.add((NOT_READY, "NoExecute"))
    elif ready == "Unknown":
        out.add((UNREACHABLE, "NoExecute"))
    if (node.get("spec") or {}).get("unschedulable"):
        out.add((UNSCHEDULABLE, "NoSchedule"))
    return out


def reconcile_taints(taints: list[dict], want: set[tuple[str, str]], now: str) -> list[dict]:
    """The node's taints with ours made to match `want`; everybody else's kept as they are."""
    out, have = [], set()
    for t in taints:
        pair = (t.get("key"), t.get("effect"))
        if t.get("key") in MANAGED_KEYS and pair not in want:
            continue
        have.add(pair)
        out.append(t)
    for key, effect in sorted(want - have):
        t = {"key": key, "effect": effect}
        if effect == "NoExecute":
            t["timeAdded"] = now
        out.append(t)
    return out


def tolerates(toleration: dict, taint: dict) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def min_toleration_seconds(tolerations: list[dict], taints: list[dict]) -> float | None:
    """How long the pod may stay: 0 if some taint is not tolerated, None for ever, else the
    shortest tolerationSeconds among the tolerations used (upstream's rule)."""
    shortest: float | None = None
    for taint in taints:
        used = next((t for t in tolerations if tolerates(t, taint)), None)
        if used is None:
            return 0.0
        secs = used.get("tolerationSeconds")
        if secs is None:
            continue
        secs = max(float(secs), 0.0)
        shortest = secs if shortest is None else min(shortest, secs)
    return shortest


def unknown_conditions(node: dict, now: str) -> list[dict]:
    """The node's conditions after the kubelet went silent."""
    conds = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    by_type = {c.get("type"): c for c in conds}
    for type_ in MONITORED_CONDITIONS:
        c = by_type.get(type_)
        if c is None:
            conds.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                          "message": "Kubelet never posted node status.",
                          "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                          "lastTransitionTime": now})
        elif c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.", lastTransitionTime=now)
    return conds


@dataclass
class Health:
    probe: float                # our clock when we last saw the kubelet alive
    renew: str | None           # lease spec.renewTime then
    heartbeat: str | None       # Ready condition lastHeartbeatTime then
    ready: str | None = None    # Ready status we last acted on


# ---- the controller ----

class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    workers = 4

    def setup(self) -> None:
        self.grace = OPTIONS.node_monitor_grace_period
        self.startup_grace = OPTIONS.node_startup_grace_period
        self.health: dict[str, Health] = {}
        self.tainted_since: dict[str, tuple[float, str]] = {}  # pod uid → (first seen, node)
        self.nodes = self.factory.informer(NODES)
        self.leases = self.factory.informer(LEASES, LEASE_NAMESPACE)
        self.pods = self.factory.informer(PODS)
        self.pods.add_index("node", lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else [])
        self.nodes.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.leases.add_handler(self._lease, lambda old, new: self._lease(new))
        self.pods.add_handler(self._pod, lambda old, new: self._pod(new))

    def _lease(self, lease: dict) -> None:
        self.queue.add(lease["metadata"]["name"])

    def _pod(self, pod: dict) -> None:
        name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.get(name) if name else None
        if node is None:
            return
        if ready_status(node) != "True" or any(
                t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or []):
            self.queue.add(name)

    # ---- health ----

    def _observe(self, node: dict) -> Health:
        name = node["metadata"]["name"]
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        ready = condition(node, "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready else None
        now = time.monotonic()
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = Health(now, renew, heartbeat, ready_status(node))
            self.recorder.event(node, "Normal", "RegisteredNode",
                                f"Node {name} event: Registered Node {name} in Controller")
        elif renew != h.renew or heartbeat != h.heartbeat:
            h.probe, h.renew, h.heartbeat = now, renew, heartbeat
        return h

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            self.health.pop(key, None)
            return None
        h = self._observe(node)
        grace = self.grace if condition(node, "Ready") else self.startup_grace
        left = h.probe + grace - time.monotonic()
        if left <= 0 and any((condition(node, t) or {}).get("status") != "Unknown"
                             for t in MONITORED_CONDITIONS):
            node = copy.deepcopy(node)
            node.setdefault("status", {})["conditions"] = unknown_conditions(node, now_rfc3339())
            node = await self.client.update_status(NODES, node)
        ready = ready_status(node)
        if h.ready == "True" and ready != "True":
            self.recorder.event(node, "Normal", "NodeNotReady", f"Node {key} status is now: NodeNotReady")
        h.ready = ready
        node = await self._sync_taints(node)
        if ready != "True":
            await self._mark_pods_not_ready(node)
        after = await self._evict(node)
        waits = [w for w in (left if left > 0 else None, after) if w is not None]
        return min(waits) + 0.05 if waits else None

    async def _sync_taints(self, node: dict) -> dict:
        taints = (node.get("spec") or {}).get("taints") or []
        new = reconcile_taints(taints, desired_taints(node), now_rfc3339())
        if new == taints:
            return node
        node = copy.deepcopy(node)
        node.setdefault("spec", {})["taints"] = new
        if not new:
            del node["spec"]["taints"]
        return await self.client.update(NODES, node)

    async def _mark_pods_not_ready(self, node: dict) -> None:
        for pod in self.pods.by_index("node", node["metadata"]["name"]):
            status = pod.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            conds = status.get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                continue
            pod = copy.deepcopy(pod)
            for c in pod["status"]["conditions"]:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=now_rfc3339())
            try:
                await self.client.update_status(PODS, pod)
            except ApiError as e:
                if e.code != 404:
                    raise
                continue
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    # ---- taint-based eviction ----

    async def _evict(self, node: dict) -> float | None:
        name = node["metadata"]["name"]
        noexec = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        pods = self.pods.by_index("node", name)
        uids = {p["metadata"].get("uid") for p in pods}
        for uid, (_, on) in list(self.tainted_since.items()):
            if on == name and (not noexec or uid not in uids):
                del self.tainted_since[uid]
                pod = next((p for p in pods if p["metadata"].get("uid") == uid), None)
                if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                    self._event(pod, "Cancelling deletion of Pod")
        if not noexec:
            return None
        unreachable = ready_status(node) == "Unknown"
        now = time.monotonic()
        next_check: float | None = None
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                if unreachable:
                    wait = await self._force_delete_when_due(pod)
                    if wait is not None:
                        next_check = wait if next_check is None else min(next_check, wait)
                continue
            allowed = min_toleration_seconds((pod.get("spec") or {}).get("tolerations") or [], noexec)
            if allowed is None:
                continue
            since, _ = self.tainted_since.setdefault(meta.get("uid"), (now, name))
            due = since + allowed - now
            if due > 0:
                next_check = due if next_check is None else min(next_check, due)
                continue
            await self._delete_pod(pod)
            next_check = 1.0 if unreachable and next_check is None else next_check
        return next_check

    async def _delete_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        self._event(pod, "Marking for deletion Pod")
        target = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                  "message": "Taint manager: deleting due to NoExecute taint",
                  "lastTransitionTime": now_rfc3339()}
        try:
            body = copy.deepcopy(pod)
            conds = [c for c in (body.get("status") or {}).get("conditions") or []
                     if c.get("type") != "DisruptionTarget"]
            body.setdefault("status", {})["conditions"] = conds + [target]
            await self.client.update_status(PODS, body)
        except ApiError as e:
            log.debug("DisruptionTarget on %s/%s: %s", ns, name, e)
        try:
            await self.client.delete(PODS, name, ns, preconditions={"uid": meta.get("uid")})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        self.tainted_since.pop(meta.get("uid"), None)

    async def _force_delete_when_due(self, pod: dict) -> float | None:
        meta = pod["metadata"]
        due = parse_time(meta.get("deletionTimestamp"))
        wait = (due or 0) - time.time()
        if wait > 0:
            return wait
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_seconds=0,
                                     preconditions={"uid": meta.get("uid")})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return None

    def _event(self, pod: dict, what: str) -> None:
        meta = pod["metadata"]
        self.recorder.event(pod, "Normal", "TaintManagerEviction",
                            f"{what} {meta['namespace']}/{meta['name']}")
