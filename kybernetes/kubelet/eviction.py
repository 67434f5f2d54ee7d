"""Node-pressure eviction (the kubelet's eviction manager, pkg/kubelet/eviction).

Every `period` the manager observes the eviction signals, compares them with the hard
thresholds (`--eviction-hard memory.available<100Mi,...`), keeps the pressure node conditions
(True for `transition_period` after the threshold was last met, as upstream) and, while a memory
threshold is met, evicts one pod per cycle: ranked by usage above requests, then priority, then
how far above requests (rankMemoryPressure). The pod is killed with a 1 s grace period and
its status becomes phase Failed, reason Evicted. While the node has conditions, new pods are
admitted as upstream's Admit does (only non-BestEffort pods, or BestEffort ones tolerating the
memory-pressure taint, under memory pressure alone).

memory.available is the machine's: capacity minus the root memory cgroup's working set, from
the summary stats (like cAdvisor's root container upstream). Only memory pressure evicts pods;
the disk and PID signals set their conditions (and thus block admission) but reclaim nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from kybernetes.api.errors import ApiError
from kybernetes.api.quantity import BINARY_SI, Quantity
from kybernetes.client import resource

from . import podspec, static
from .cri.client import messages as pb
from .podworkers import pod_sandboxes
from .status import rfc3339

log = logging.getLogger("kyb.kubelet.eviction")

PODS = resource("v1", "Pod")
REASON = "Evicted"
DEFAULT_HARD = ("memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,"
                "imagefs.available<15%,imagefs.inodesFree<5%")
MEMORY_PRESSURE_TAINT = "node.kubernetes.io/memory-pressure"
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
GRACE_OVERRIDE = 1  # upstream immediateEvictionGracePeriodSeconds
CLEANUP_TIMEOUT = 30.0

# signal → (resource it reclaims, node condition it drives)
SIGNALS = {
    "memory.available": ("memory", "MemoryPressure"),
    "allocatableMemory.available": ("memory", "MemoryPressure"),
    "nodefs.available": ("ephemeral-storage", "DiskPressure"),
    "nodefs.inodesFree": ("inodes", "DiskPressure"),
    "imagefs.available": ("ephemeral-storage", "DiskPressure"),
    "imagefs.inodesFree": ("inodes", "DiskPressure"),
    "containerfs.available": ("ephemeral-storage", "DiskPressure"),
    "containerfs.inodesFree": ("inodes", "DiskPressure"),
    "pid.available": ("pids", "PIDPressure"),
}


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True)
class Threshold:
    signal: str
    quantity: Quantity | None = None
    percentage: float = 0.0  # a share of capacity (0.1 for 10%) when there is no quantity

    def amount(self, capacity: int) -> Quantity:
        if self.quantity is not None:
            return self.quantity
        return Quantity(int(capacity * self.percentage), BINARY_SI)

    def met(self, available: int, capacity: int) -> bool:
        return self.amount(capacity).value() > available


@dataclass
class Observation:
    available: int
    capacity: int


def parse_statements(text: str) -> dict[str, str]:
    """`a<1,b<2` into {a: 1, b: 2} (the flag's langle-separated map; the last one wins)."""
    out: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("<")
        if not sep:
            raise ThresholdError("malformed pair, expect string<string")
        out[key.strip()] = value.strip()
    return out


def parse_threshold(signal: str, value: str) -> Threshold | None:
    """One statement as upstream parseThresholdStatement; None for the ignored 0% and 100%."""
    if signal not in SIGNALS:
        raise ThresholdError(f"unsupported eviction signal {signal}")
    if value.endswith("%"):
        if value in ("0%", "100%"):
            return None
        try:
            pct = float(value.rstrip("%")) / 100
        except ValueError:
            raise ThresholdError(f"invalid eviction percentage {value!r}") from None
        if pct < 0:
            raise ThresholdError(f"eviction percentage threshold {signal} must be >= 0%: {value}")
        if pct > 1:
            raise ThresholdError(f"eviction percentage threshold {signal} must be <= 100%: {value}")
        return Threshold(signal, percentage=pct)
    try:
        q = Quantity.parse(value)
    except ValueError as e:
        raise ThresholdError(str(e)) from None
    if q.amount <= 0:
        raise ThresholdError(f"eviction threshold {signal} must be positive: {q}")
    return Threshold(signal, quantity=q)


def parse_thresholds(text: str) -> list[Threshold]:
    """The value of --eviction-hard; an empty string means no thresholds."""
    out = []
    for signal, value in parse_statements(text).items():
        t = parse_threshold(signal, value)
        if t is not None:
            out.append(t)
    return out


# ---- pods ----

def _memory(res: dict | None) -> int:
    v = ((res or {}).get("requests") or {}).get("memory")
    return Quantity.parse(v).value() if v is not None else 0


def memory_request(pod: dict) -> int:
    """The pod's effective memory request: containers plus sidecars, at least any init
    container's, plus overhead (upstream GetResourceRequestQuantity)."""
    spec = pod.get("spec") or {}
    total = sum(_memory(c.get("resources")) for c in spec.get("containers") or ())
    sidecars, init_max = 0, 0
    for c in spec.get("initContainers") or ():
        r = _memory(c.get("resources"))
        if c.get("restartPolicy") == "Always":
            sidecars += r
            init_max = max(init_max, sidecars)
        else:
            init_max = max(init_max, sidecars + r)
    total = max(total + sidecars, init_max)
    overhead = (spec.get("overhead") or {}).get("memory")
    return total + (Quantity.parse(overhead).value() if overhead else 0)


def priority(pod: dict) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def is_static(pod: dict) -> bool:
    source = ((pod.get("metadata") or {}).get("annotations") or {}).get(static.SOURCE)
    return bool(source) and source != "api"


def is_critical(pod: dict) -> bool:
    """Static, mirror and system-critical pods are never evicted (kubelettypes.IsCriticalPod)."""
    return is_static(pod) or static.is_mirror(pod) or priority(pod) >= SYSTEM_CRITICAL_PRIORITY


def rank_memory_pressure(pods: list[dict], usage: Callable[[dict], int | None]) -> list[dict]:
    """Eviction order under memory pressure: pods without stats first, then those whose
    working set exceeds their request, then lower priority, then more memory above request."""
    def key(pod: dict) -> tuple:
        used = usage(pod)
        if used is None:
            return (0, priority(pod), 0)
        request = memory_request(pod)
        return (1 if used > request else 2, priority(pod), -(used - request))
    return sorted(pods, key=key)


def tolerates_memory_pressure(pod: dict) -> bool:
    for t in (pod.get("spec") or {}).get("tolerations") or ():
        if t.get("effect") not in (None, "", "NoSchedule"):
            continue
        if t.get("key") and t["key"] != MEMORY_PRESSURE_TAINT:
            continue
        if not t.get("key") and t.get("operator") != "Exists":
            continue
        if t.get("operator") == "Exists" or not t.get("value"):
            return True
    return False


def admit_message(pod: dict, conditions: list[str]) -> str | None:
    """None when the pod may start on a node with these conditions (upstream Admit), else
    the rejection message."""
    if not conditions or is_critical(pod):
        return None
    if conditions == ["MemoryPressure"]:
        if podspec.qos_class(pod) != "BestEffort" or tolerates_memory_pressure(pod):
            return None
    return f"The node had condition: [{' '.join(conditions)}]. "


def eviction_message(resource_name: str, pod: dict, pod_stats: dict | None,
                     threshold: Quantity | None, available: int | None) -> str:
    """Upstream's evictionMessage: the starved resource, the threshold and what was available,
    and every container using more than it requested."""
    msg = f"The node was low on resource: {resource_name}. "
    if threshold is not None and available is not None:
        msg += f"Threshold quantity: {threshold}, available: {Quantity(available, BINARY_SI)}. "
    if not pod_stats or resource_name != "memory":
        return msg
    spec = pod.get("spec") or {}
    by_name = {c["name"]: c for c in [*(spec.get("containers") or ()),
                                       *(spec.get("initContainers") or ())]}
    for cs in pod_stats.get("containers") or ():
        c = by_name.get(cs.get("name"))
        ws = (cs.get("memory") or {}).get("workingSetBytes")
        if c is None or ws is None:
            continue
        request = _memory(c.get("resources"))
        if ws > request:
            req_q = ((c.get("resources") or {}).get("requests") or {}).get("memory", "0")
            msg += (f"Container {c['name']} was using {Quantity(ws, BINARY_SI)}, request is "
                    f"{Quantity.parse(req_q)}, has larger consumption of {resource_name}. ")
    return msg


# ---- observations ----

def fs_observations(path: str) -> dict[str, Observation]:
    try:
        st = os.statvfs(path)
    except OSError:
        return {}
    out = {"nodefs.available": Observation(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)}
    if st.f_files:
        out["nodefs.inodesFree"] = Observation(st.f_favail, st.f_files)
    # The runtime's images and containers live in the agent's data dir: the same filesystem.
    for name in ("imagefs", "containerfs"):
        out[f"{name}.available"] = out["nodefs.available"]
        if "nodefs.inodesFree" in out:
            out[f"{name}.inodesFree"] = out["nodefs.inodesFree"]
    return out


def pid_observation() -> Observation | None:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        running = sum(1 for d in os.listdir("/proc") if d.isdigit())
    except (OSError, ValueError):
        return None
    return Observation(pid_max - running, pid_max)


def memory_observation(node_stats: dict) -> Observation | None:
    mem = node_stats.get("memory") or {}
    if "availableBytes" not in mem or "workingSetBytes" not in mem:
        return None
    return Observation(mem["availableBytes"], mem["availableBytes"] + mem["workingSetBytes"])


class EvictionManager:
    def __init__(self, thresholds: list[Threshold], *, client, cri, stats, workers, recorder,
                 node_name: str, data_dir: str, period: float = 10.0,
                 transition_period: float = 300.0,
                 on_change: Callable[[], Awaitable[None]] | None = None):
        self.thresholds = thresholds
        self.client, self.cri, self.stats, self.workers = client, cri, stats, workers
        self.recorder, self.node_name, self.data_dir = recorder, node_name, data_dir
        self.period, self.transition_period = period, transition_period
        self.on_change = on_change
        self.conditions: list[str] = []
        self._last_observed: dict[str, float] = {}
        self._tasks: list[asyncio.Task] = []
        self._rejects: asyncio.Queue[tuple[dict, str]] = asyncio.Queue()
        self._rejecting: set[str] = set()

    # ---- the node's view ----

    def pressures(self) -> dict[str, bool]:
        return {c: c in self.conditions for c in ("MemoryPressure", "DiskPressure", "PIDPressure")}

    def observe(self, summary: dict) -> dict[str, Observation]:
        obs = fs_observations(self.data_dir)
        mem = memory_observation(summary.get("node") or {})
        if mem:
            obs["memory.available"] = mem
        if any(t.signal == "pid.available" for t in self.thresholds):
            pid = pid_observation()
            if pid:
                obs["pid.available"] = pid
        return obs

    # ---- loop ----

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name="eviction"),
                       asyncio.create_task(self._reject_loop(), name="admission-reject")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            evicted = None
            try:
                evicted = await self.synchronize()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("eviction manager: %s", e)
            if evicted is not None:
                await self._wait_cleanup(evicted)
            else:
                await asyncio.sleep(self.period)

    async def synchronize(self) -> dict | None:
        """One cycle: observe, update conditions, evict at most one pod. Returns that pod."""
        if not self.thresholds:
            return None
        summary = await self.stats.summary()
        obs = self.observe(summary)
        met = [t for t in self.thresholds
               if t.signal in obs and t.met(obs[t.signal].available, obs[t.signal].capacity)]
        now = time.monotonic()
        for t in met:
            self._last_observed[SIGNALS[t.signal][1]] = now
        conditions = [c for c, at in self._last_observed.items()
                      if now - at < self.transition_period]
        if sorted(conditions) != sorted(self.conditions):
            log.info("eviction manager: node conditions %s", conditions or "none")
            self.conditions = conditions
            if self.on_change is not None:
                await self.on_change()
        memory = next((t for t in met if SIGNALS[t.signal][0] == "memory"), None)
        if memory is None:
            return None
        o = obs[memory.signal]
        quantity = memory.amount(o.capacity)
        self._node_event("Warning", "EvictionThresholdMet", "Attempting to reclaim memory")
        stats_by_uid = {p["podRef"]["uid"]: p for p in summary.get("pods") or ()}

        def usage(pod: dict) -> int | None:
            s = stats_by_uid.get(pod["metadata"]["uid"])
            return None if s is None else (s.get("memory") or {}).get("workingSetBytes", 0)

        # Running pods only: a pod still starting uses little, and its worker (which writes
        # status as it goes) could overwrite the Failed phase with Running.
        active = [p for p in self.workers.pods.values()
                  if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") == "Running"]
        if not active:
            log.warning("eviction manager: thresholds met, but no pods are active to evict")
            return None
        for pod in rank_memory_pressure(active, usage):
            if is_critical(pod):
                continue
            message = eviction_message("memory", pod, stats_by_uid.get(pod["metadata"]["uid"]),
                                       quantity, o.available)
            await self.evict(pod, message)
            return pod
        log.info("eviction manager: unable to evict any pods from the node")
        return None

    # ---- acting ----

    async def evict(self, pod: dict, message: str) -> None:
        m = pod["metadata"]
        log.info("evicting pod %s/%s: %s", m["namespace"], m["name"], message)
        self._pod_event(pod, "Warning", REASON, message)
        status = pod.get("status") or {}
        from .node import now_time
        now = now_time()
        conditions = [dict(c, status="False", reason="PodFailed", lastTransitionTime=now)
                      if c.get("type") in ("Ready", "ContainersReady") and c.get("status") == "True"
                      else c for c in status.get("conditions") or ()
                      if c.get("type") != "DisruptionTarget"]
        conditions.append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now, "reason": "TerminationByKubelet",
                           "message": message})
        patch = {"status": {"phase": "Failed", "reason": REASON, "message": message,
                            "conditions": conditions}}
        try:
            out = await self.client.patch(PODS, m["name"], patch, m["namespace"],
                                          subresource="status")
        except ApiError as e:
            log.warning("evicting %s/%s: %s", m["namespace"], m["name"], e)
            out = {**pod, "status": {**status, **patch["status"]}}
        if out["metadata"].get("uid") == m["uid"]:
            # The worker sees a terminal pod at once: it stops the sandbox and restarts nothing.
            self.workers.upsert(out)
        await self._stop_containers(m["uid"])

    async def _sandboxes(self, uid: str) -> list:
        return await pod_sandboxes(self.cri, uid)

    async def _stop_containers(self, uid: str) -> None:
        for sb in await self._sandboxes(uid):
            out = await self.cri.list_containers(filter=pb.ContainerFilter(pod_sandbox_id=sb.id))
            running = [c for c in out.containers if c.state == pb.CONTAINER_RUNNING]
            await asyncio.gather(*(self._stop(c.id) for c in running))

    async def _stop(self, cid: str) -> None:
        try:
            await self.cri.stop_container(
                pb.StopContainerRequest(container_id=cid, timeout=GRACE_OVERRIDE),
                timeout=GRACE_OVERRIDE + 30)
        except Exception as e:
            log.info("eviction: stopping %s: %s", cid[:12], e)

    async def _wait_cleanup(self, pod: dict) -> None:
        """Like upstream: the next cycle waits until the evicted pod's sandbox is down."""
        uid = pod["metadata"]["uid"]
        deadline = time.monotonic() + CLEANUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if not any(s.state == pb.SANDBOX_READY for s in await self._sandboxes(uid)):
                    break
            except Exception:
                pass
            await asyncio.sleep(1.0)
        await self._write_terminated(pod)

    async def _write_terminated(self, pod: dict) -> None:
        """Container statuses as terminated once the containers are down (the pod worker
        writes nothing more for a terminal pod)."""
        uid, m = pod["metadata"]["uid"], pod["metadata"]
        ended: dict[str, dict] = {}
        try:
            for sb in await self._sandboxes(uid):
                out = await self.cri.list_containers(filter=pb.ContainerFilter(pod_sandbox_id=sb.id))
                for c in out.containers:
                    s = (await self.cri.container_status(container_id=c.id)).status
                    if s.state != pb.CONTAINER_EXITED:
                        continue
                    prev = ended.get(c.metadata.name)
                    if prev is None or s.finished_at > prev["_at"]:
                        ended[c.metadata.name] = {"_at": s.finished_at, "exitCode": s.exit_code,
                                                  "reason": s.reason or "Error",
                                                  "containerID": f"containerd://{c.id}",
                                                  "startedAt": rfc3339(s.started_at),
                                                  "finishedAt": rfc3339(s.finished_at)}
        except Exception as e:
            log.info("eviction: container states of %s: %s", m["name"], e)
            return
        current = self.workers.pods.get(uid) or pod
        statuses = []
        for cs in (current.get("status") or {}).get("containerStatuses") or ():
            t = ended.get(cs.get("name"))
            if t is not None and "running" in (cs.get("state") or {}):
                t = {k: v for k, v in t.items() if k != "_at"}
                cs = {**cs, "state": {"terminated": t}, "ready": False, "started": False}
            statuses.append(cs)
        if not statuses:
            return
        try:
            await self.client.patch(PODS, m["name"], {"status": {"containerStatuses": statuses}},
                                    m["namespace"], subresource="status")
        except ApiError as e:
            log.info("eviction: status of %s: %s", m["name"], e)

    # ---- admission ----

    def admit(self, pod: dict) -> bool:
        """False (and the pod is rejected in the background) when the node's conditions refuse
        a new pod. Pods already running or finished are not new."""
        uid = pod["metadata"]["uid"]
        if uid in self._rejecting:
            return False
        if pod["metadata"].get("deletionTimestamp") or \
                (pod.get("status") or {}).get("phase") not in (None, "", "Pending"):
            return True
        message = admit_message(pod, self.conditions)
        if message is None:
            return True
        self._rejecting.add(uid)
        self._rejects.put_nowait((pod, message))
        return False

    async def _reject_loop(self) -> None:
        while True:
            pod, message = await self._rejects.get()
            try:
                await self._reject(pod, message)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("rejecting pod %s: %s", pod["metadata"].get("name"), e)
            finally:
                self._rejecting.discard(pod["metadata"]["uid"])

    async def _reject(self, pod: dict, message: str) -> None:
        m = pod["metadata"]
        log.info("pod %s/%s rejected: %s", m["namespace"], m["name"], message)
        self._pod_event(pod, "Warning", REASON, message)
        out = await self.client.patch(PODS, m["name"], {"status": {
            "phase": "Failed", "reason": REASON, "message": "Pod was rejected: " + message}},
            m["namespace"], subresource="status")
        if out["metadata"].get("uid") == m["uid"]:
            self.workers.upsert(out)  # terminal: the worker never starts it, and confirms deletion

    # ---- events ----

    def _pod_event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event({**pod, "kind": "Pod", "apiVersion": "v1"}, type_, reason, message)

    def _node_event(self, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:  # upstream's node reference carries the name as its UID
            self.recorder.event({"kind": "Node", "apiVersion": "v1", "metadata": {
                "name": self.node_name, "uid": self.node_name}}, type_, reason, message)
