"""Pod workers: one level-triggered sync loop per pod bound to this node.

A sync reads the runtime's state for the pod (by the CRI labels io.kubernetes.pod.uid etc., so
an agent restart adopts what is running), decides the next actions like the kubelet's
computePodActions (sandbox, init containers in order, containers with restart policy and
CrashLoopBackOff), acts, and writes pods/status when it changed. A relist loop (the kubelet's
PLEG) wakes a pod's worker when its containers change state — not for what the worker did
itself, nor does the informer's echo of its own status write wake it. New sandboxes are made a
few at a time (START_CONCURRENCY): a burst then finishes in order instead of all at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource

from . import hooks, podspec, status as st
from .cri.client import CRI, CRIError
from .cri.client import messages as pb
from .imagepull import Backoff, ImageError, ImageManager
from .probes import ProbeManager
from .timeline import Timelines
from .volumes import VolumeError

log = logging.getLogger("kyb.kubelet.pods")

PODS = resource("v1", "Pod")
CONFIGMAPS = resource("v1", "ConfigMap")
SECRETS = resource("v1", "Secret")
_STATE = {pb.CONTAINER_CREATED: st.CREATED, pb.CONTAINER_RUNNING: st.RUNNING,
          pb.CONTAINER_EXITED: st.EXITED, pb.CONTAINER_UNKNOWN: "unknown"}
_PB_STATE = {v: k for k, v in _STATE.items()}
RELIST_PERIOD = 1.0
RESYNC = 10.0
TERMINAL = ("Succeeded", "Failed")
# configMap/secret/token files are refreshed at most this often (every periodic sync), not on
# every wake-up: each refresh costs API reads.
VOLUME_REFRESH = RESYNC / 2
# Pods whose sandbox and containers are being created at once. Sandbox creation is CPU-bound in
# containerd/runc/CNI: beyond a few at a time they only slow each other down, and a queue lets the
# first pods of a burst finish early instead of all finishing late.
START_CONCURRENCY = 4


def crash_backoff(restart_count: int, start: float = 10, cap: float = 300) -> float:
    """Delay before the next restart of a container that has restarted `restart_count` times:
    the first restart is immediate, then 10 s doubling to 300 s (kubelet's container back-off)."""
    if restart_count <= 0:
        return 0.0
    return min(cap, start * 2 ** (restart_count - 1))


def grace_period(pod: dict) -> int:
    m, spec = pod["metadata"], pod.get("spec") or {}
    g = m.get("deletionGracePeriodSeconds")
    if g is None:
        g = spec.get("terminationGracePeriodSeconds", 30)
    return max(int(g), 0)


class PodWorkers:
    def __init__(self, client: Client, cri: CRI, *, node_name: str, host_ip: str,
                 logs_root: str, cluster_dns: str | None = None,
                 allocatable: Callable[[], dict] | None = None,
                 volumes=None, recorder=None, start_concurrency: int = START_CONCURRENCY):
        self.client, self.cri = client, cri
        self.node_name, self.host_ip, self.logs_root = node_name, host_ip, logs_root
        self.cluster_dns = cluster_dns
        self.images = ImageManager(cri)
        self.allocatable = allocatable or (lambda: {})
        self.volumes = volumes
        self.recorder = recorder
        self.probes = ProbeManager(cri, self._kick_if_known, self._event, self._liveness_failed)
        self.pods: dict[str, dict] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._written: dict[str, dict] = {}
        self._signatures: dict[str, tuple] = {}
        self._relist_task: asyncio.Task | None = None
        self.synced = False  # the pod informer has listed: unknown sandboxes are orphans
        self.start_failures = Backoff()
        self.timelines = Timelines()
        self._start_slots = asyncio.Semaphore(start_concurrency)
        self._volumes_at: dict[str, float] = {}
        self._own_rv: dict[str, str] = {}  # uid → resourceVersion of our last status write

    # ---- informer side ----

    def upsert(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        old = self.pods.get(uid)
        if old is None and uid not in self._written:
            self.timelines.seen(uid)
        self.pods[uid] = pod
        own = self._own_rv.get(uid)
        if own is not None and pod is not old and pod["metadata"].get("resourceVersion") == own:
            return  # the informer's echo of our own status write: nothing new to act on
        self._kick(uid)

    def remove(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        self.pods.pop(uid, None)
        self._kick(uid)

    def _kick(self, uid: str) -> None:
        ev = self._wake.get(uid)
        if ev is None:
            ev = self._wake[uid] = asyncio.Event()
            self._tasks[uid] = asyncio.create_task(self._run(uid), name=f"pod-{uid[:8]}")
        ev.set()

    def _kick_if_known(self, uid: str) -> None:
        if uid in self._wake:
            self._wake[uid].set()

    def _event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:  # informer items may lack kind/apiVersion
            self.recorder.event({**pod, "kind": "Pod", "apiVersion": "v1"}, type_, reason, message)

    def mark_synced(self) -> None:
        """The pod informer has listed: from now on, sandboxes of unknown pods are orphans."""
        self.synced = True
        self._signatures = {}

    # ---- lifecycle ----

    def start(self) -> None:
        self._relist_task = asyncio.create_task(self._relist_loop(), name="pleg")

    async def stop(self) -> None:
        """Stop the workers, leaving the pods running (a restarted agent adopts them)."""
        tasks = [t for t in [self._relist_task, *self._tasks.values()] if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.probes.stop()

    async def _run(self, uid: str) -> None:
        ev = self._wake[uid]
        while True:
            ev.clear()
            try:
                t0 = time.monotonic()
                delay = await self.sync(uid)
                log.debug("synced pod %s in %.3fs", uid[:8], time.monotonic() - t0)
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise
                # A library's own CancelledError (no one cancelled this task): an error like any
                # other, or the pod would never be synced again.
                log.exception("syncing pod %s", uid)
                delay = 2.0
            except Exception:
                log.exception("syncing pod %s", uid)
                delay = 2.0
            if delay is None:  # the pod is gone and cleaned up
                self._wake.pop(uid, None)
                self._tasks.pop(uid, None)
                self._written.pop(uid, None)
                self._volumes_at.pop(uid, None)
                self._own_rv.pop(uid, None)
                self.timelines.forget(uid)
                self.images.backoff.forget(uid)
                return
            # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation that comes as
            # the event is set, and the worker then lives on for another sync (slow agent exit).
            try:
                async with asyncio.timeout(delay):
                    await ev.wait()
            except TimeoutError:
                pass

    # ---- runtime views ----

    async def _sandboxes(self, uid: str) -> list:
        return await pod_sandboxes(self.cri, uid)

    async def _runs(self, sandbox_id: str) -> dict[str, list[st.Instance]]:
        out = await self.cri.list_containers(filter=pb.ContainerFilter(pod_sandbox_id=sandbox_id))
        runs: dict[str, list[st.Instance]] = {}
        statuses = await asyncio.gather(*(self.cri.container_status(container_id=c.id)
                                          for c in out.containers))
        for c, resp in zip(out.containers, statuses):
            s = resp.status
            runs.setdefault(c.metadata.name, []).append(st.Instance(
                id=c.id, name=c.metadata.name, attempt=c.metadata.attempt,
                state=_STATE.get(s.state, "unknown"), created_at=s.created_at,
                started_at=s.started_at, finished_at=s.finished_at, exit_code=s.exit_code,
                reason=s.reason, message=s.message, image=s.image.image, image_ref=s.image_ref))
        for v in runs.values():
            v.sort(key=lambda r: (r.attempt, r.created_at), reverse=True)
        return runs

    # ---- sync ----

    def resend_status(self, uid: str) -> None:
        """Write the pod's status again at its next sync even if unchanged (a recreated mirror
        pod starts without one)."""
        self._written.pop(uid, None)
        if uid in self.pods:
            self._kick(uid)

    async def sync(self, uid: str) -> float | None:
        pod = self.pods.get(uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            await self.kill(uid, pod)
            if pod is not None:
                await self._confirm_deletion(pod)
            return None
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        self.timelines.mark(uid, "sync")
        sandboxes = await self._sandboxes(uid)
        ready = next((s for s in sandboxes if s.state == pb.SANDBOX_READY), None)
        if terminal:
            if ready:
                await self._stop_sandbox(ready.id, grace_period(pod), pod)
            return RESYNC * 6
        obs = st.Observed(host_ip=self.host_ip)
        waits: list[float] = []
        last = self._volumes_at.get(uid)
        if self.volumes is not None and (last is None or
                                         time.monotonic() - last >= VOLUME_REFRESH):
            try:
                await self.volumes.setup(pod)  # also refreshes configMap/secret/token files
                self._volumes_at[uid] = time.monotonic()
            except VolumeError as e:
                self._event(pod, "Warning", "FailedMount", str(e))
                if ready is None:
                    await self._write(pod, obs)
                    return 2.0
            self.timelines.mark(uid, "volumes")
        if ready is not None:
            return await self._sync_sandbox(pod, sandboxes, ready, obs, waits)
        if self._start_slots.locked():
            # It has to wait for a start slot: say so meanwhile (containers ContainerCreating,
            # as upstream's kubelet reports a pod it is starting), not leave it bare Pending.
            await self._write(pod, obs)
        async with self._start_slots:
            pod = self.pods.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return 0.0  # deleted while queued: the next sync cleans up
            return await self._sync_sandbox(pod, sandboxes, None, obs, waits)

    async def _sync_sandbox(self, pod: dict, sandboxes: list, ready, obs: st.Observed,
                            waits: list[float]) -> float:
        """Make the pod's sandbox and containers what its spec asks for; write its status."""
        uid, spec = pod["metadata"]["uid"], pod.get("spec") or {}
        if ready is None:
            for old in sandboxes:  # a dead sandbox: its containers start over in a new one
                await self._remove_sandbox(old.id)
            config = podspec.sandbox_config(pod, len(sandboxes), self.logs_root, self.cluster_dns)
            try:
                sandbox_id = (await self.cri.run_pod_sandbox(config=config)).pod_sandbox_id
                self.timelines.mark(uid, "sandbox")
            except CRIError as e:
                log.warning("pod %s: sandbox: %s", _name(pod), e.details)
                await self._write(pod, obs)
                return 2.0
        else:
            sandbox_id = ready.id
            config = podspec.sandbox_config(pod, ready.metadata.attempt, self.logs_root,
                                            self.cluster_dns)
        sst = (await self.cri.pod_sandbox_status(pod_sandbox_id=sandbox_id)).status
        obs.sandbox_ready = sst.state == pb.SANDBOX_READY
        obs.pod_ip = sst.network.ip if sst.HasField("network") else ""
        if spec.get("hostNetwork"):
            obs.pod_ip = self.host_ip
        pod = self._with_ips(pod, obs)
        obs.runs = await self._runs(sandbox_id) if ready is not None else {}
        policy = spec.get("restartPolicy") or "Always"
        init_done = True
        for c in spec.get("initContainers") or ():
            runs = obs.runs.get(c["name"]) or []
            cur = runs[0] if runs else None
            if cur is not None and cur.state == st.EXITED and cur.exit_code == 0:
                continue
            init_done = False
            if cur is None:
                await self._start(pod, c, "init", 0, sandbox_id, config, obs, waits)
            elif cur.state == st.EXITED and policy != "Never":
                await self._restart(pod, c, "init", cur, sandbox_id, config, obs, waits)
            break
        if init_done:
            for c in spec.get("containers") or ():
                runs = obs.runs.get(c["name"]) or []
                cur = runs[0] if runs else None
                if cur is None:
                    await self._start(pod, c, "regular", 0, sandbox_id, config, obs, waits)
                elif cur.state == st.EXITED and (policy == "Always" or
                                                 (policy == "OnFailure" and cur.exit_code != 0)):
                    await self._restart(pod, c, "regular", cur, sandbox_id, config, obs, waits)
        obs.runs = await self._runs(sandbox_id)
        # What the next relist will see of this pod, so it does not wake us for our own work.
        self._signatures[uid] = tuple(sorted(
            [(s.id, s.state) for s in sandboxes if ready is not None] +
            [(sandbox_id, pb.SANDBOX_READY)] * (ready is None) +
            [(r.id, _PB_STATE.get(r.state, pb.CONTAINER_UNKNOWN))
             for runs in obs.runs.values() for r in runs]))
        running = {name: runs[0].id for name, runs in obs.runs.items()
                   if runs and runs[0].state == st.RUNNING}
        self.probes.sync(pod, running, obs.pod_ip)
        obs.ready, obs.started_probe = self.probes.results(uid)
        await self._write(pod, obs)
        return min(waits + [RESYNC])

    def _with_ips(self, pod: dict, obs: st.Observed) -> dict:
        """The pod as downward API sees it once the sandbox has its IP."""
        status = dict(pod.get("status") or {})
        if obs.pod_ip:
            status["podIP"], status["podIPs"] = obs.pod_ip, [{"ip": obs.pod_ip}]
        status["hostIP"], status["hostIPs"] = self.host_ip, [{"ip": self.host_ip}]
        return {**pod, "status": status}

    async def _restart(self, pod, c, kind, cur: st.Instance, sandbox_id, config, obs, waits):
        delay = crash_backoff(cur.attempt)
        left = cur.finished_at / 1e9 + delay - time.time()
        if left > 0:
            m = pod["metadata"]
            obs.waiting[c["name"]] = ("CrashLoopBackOff", (
                f"back-off {int(delay)}s restarting failed container={c['name']} "
                f"pod={m['name']}_{m['namespace']}({m['uid']})"))
            waits.append(left)
            return
        await self._start(pod, c, kind, cur.attempt + 1, sandbox_id, config, obs, waits)

    async def _start(self, pod, c, kind, attempt, sandbox_id, config, obs, waits) -> None:
        uid = pod["metadata"]["uid"]
        try:
            image_ref = await self.images.ensure(uid, c, config)
            self.timelines.mark(uid, "image")
        except ImageError as e:
            obs.waiting[c["name"]] = (e.reason, e.message)
            # Right after a failed pull, look again soon so ImagePullBackOff shows (as upstream).
            left = self.images.backoff.remaining((uid, c.get("image", "")))
            waits.append(1.0 if e.reason == "ErrImagePull" else max(1.0, left))
            return
        mounts = await self.volumes.mounts(pod, c) if self.volumes is not None else []
        try:
            cfg = await podspec.container_config(pod, c, attempt=attempt, kind=kind,
                                                 image_ref=image_ref, lookup=self._lookup,
                                                 mounts=mounts,
                                                 node_allocatable=self.allocatable())
        except podspec.ConfigError as e:
            obs.waiting[c["name"]] = ("CreateContainerConfigError", str(e))
            waits.append(2.0)
            return
        try:
            cid = (await self.cri.create_container(pod_sandbox_id=sandbox_id, config=cfg,
                                                   sandbox_config=config)).container_id
            self.timelines.mark(uid, "created")
        except CRIError as e:
            obs.waiting[c["name"]] = ("CreateContainerError", e.details)
            waits.append(2.0)
            return
        try:
            await self.cri.start_container(container_id=cid)
            self.timelines.mark(uid, "started")
        except CRIError as e:
            obs.waiting[c["name"]] = ("RunContainerError", e.details)
            waits.append(2.0)
        else:
            await self._post_start(pod, c, cid, obs.pod_ip)
        # Keep the newest finished run for `logs --previous`; older ones go.
        for old in (obs.runs.get(c["name"]) or [])[1:]:
            try:
                await self.cri.remove_container(container_id=old.id)
            except CRIError:
                pass

    async def _post_start(self, pod: dict, c: dict, cid: str, pod_ip: str) -> None:
        handler = (c.get("lifecycle") or {}).get("postStart")
        if not handler:
            return
        r = await hooks.run_hook(self.cri, handler, c, cid, pod_ip, grace_period(pod) or 30)
        if r.ok:
            return
        self._event(pod, "Warning", "FailedPostStartHook",
                    hooks.failure_message("PostStartHook", handler, r))
        self._event(pod, "Normal", "Killing", "FailedPostStartHook")
        await self._stop_container(pod, c, cid, grace_period(pod), pod_ip, hook=False)

    async def _liveness_failed(self, pod: dict, c: dict, cid: str, message: str) -> None:
        self._event(pod, "Normal", "Killing", message)
        uid = pod["metadata"]["uid"]
        pod = self.pods.get(uid, pod)
        ip = (pod.get("status") or {}).get("podIP", "")
        await self._stop_container(pod, c, cid, grace_period(pod), ip)
        self._kick_if_known(uid)

    async def _stop_container(self, pod: dict | None, c: dict | None, cid: str, grace: int,
                              pod_ip: str, hook: bool = True) -> None:
        """preStop (within the grace period), then SIGTERM and SIGKILL after what is left."""
        if hook and pod is not None and c is not None:
            result, left = await hooks.pre_stop(self.cri, c, cid, pod_ip, grace)
            if result is not None and not result.ok:
                handler = c["lifecycle"]["preStop"]
                self._event(pod, "Warning", "FailedPreStopHook",
                            hooks.failure_message("PreStopHook", handler, result))
            grace = int(left + 0.999) if result is not None else grace
        try:
            # `timeout` of the request is the grace period; the call's deadline is longer.
            await self.cri.stop_container(
                pb.StopContainerRequest(container_id=cid, timeout=grace), timeout=grace + 30)
        except CRIError as e:
            log.info("stopping %s: %s", cid[:12], e.details)

    async def _lookup(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return await self.client.get(CONFIGMAPS if kind == "ConfigMap" else SECRETS,
                                         name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def _write(self, pod: dict, obs: st.Observed) -> None:
        from .node import now_time

        uid = pod["metadata"]["uid"]
        status = st.pod_status(pod, obs, now_time(), podspec.qos_class(pod))
        compare = _without_times(status)
        if self._written.get(uid) == compare:
            return
        latest = self.pods.get(uid) or pod
        if (latest.get("status") or {}).get("phase") in TERMINAL and status["phase"] not in TERMINAL:
            # As upstream's status manager: a pod that ended (e.g. evicted while this sync
            # ran) never goes back to Pending or Running.
            log.info("pod %s: not moving status from %s to %s", _name(pod),
                     latest["status"]["phase"], status["phase"])
            return
        m = pod["metadata"]
        try:
            out = await self.client.patch(PODS, m["name"], {"status": status}, m["namespace"],
                                          subresource="status")
            if out["metadata"].get("uid") == uid and uid in self.pods:
                self.pods[uid] = out
                self._own_rv[uid] = out["metadata"].get("resourceVersion")
            self._written[uid] = compare
            if status["phase"] != "Pending":
                self.timelines.mark(uid, "patched")
                self.timelines.done(uid, _name(pod))
        except ApiError as e:
            log.info("pod %s status: %s", _name(pod), e)

    # ---- teardown ----

    async def kill(self, uid: str, pod: dict | None) -> None:
        """Stop every container (SIGTERM, SIGKILL after the grace period), then the sandbox."""
        grace = grace_period(pod) if pod else 2
        self.probes.forget(uid)
        for sb in await self._sandboxes(uid):
            await self._stop_sandbox(sb.id, grace, pod)
            await self._remove_sandbox(sb.id)
        if self.volumes is not None:
            await self.volumes.teardown(uid)

    async def _stop_sandbox(self, sandbox_id: str, grace: int, pod: dict | None = None) -> None:
        out = await self.cri.list_containers(filter=pb.ContainerFilter(pod_sandbox_id=sandbox_id))
        running = [c for c in out.containers if c.state == pb.CONTAINER_RUNNING]
        spec = (pod or {}).get("spec") or {}
        by_name = {c["name"]: c for c in podspec._all_containers(spec)}
        ip = ((pod or {}).get("status") or {}).get("podIP", "")

        async def stop(cid: str, name: str) -> None:
            c = by_name.get(name)
            if pod is not None and c is not None:
                self._event(pod, "Normal", "Killing", f"Stopping container {name}")
            await self._stop_container(pod, c, cid, grace, ip)

        await asyncio.gather(*(stop(c.id, c.metadata.name) for c in running))
        try:
            await self.cri.stop_pod_sandbox(pod_sandbox_id=sandbox_id)
        except CRIError as e:
            log.info("stopping sandbox %s: %s", sandbox_id[:12], e.details)

    async def _remove_sandbox(self, sandbox_id: str) -> None:
        try:
            await self.cri.stop_pod_sandbox(pod_sandbox_id=sandbox_id)
            await self.cri.remove_pod_sandbox(pod_sandbox_id=sandbox_id)
        except CRIError as e:
            log.info("removing sandbox %s: %s", sandbox_id[:12], e.details)

    async def _confirm_deletion(self, pod: dict) -> None:
        await force_delete(self.client, pod)

    async def kill_all(self) -> None:
        """Remove every pod of this agent from the runtime (used when tearing a node down)."""
        out = await self.cri.list_pod_sandbox()

        async def one(sandbox_id: str) -> None:
            await self._stop_sandbox(sandbox_id, 2)
            await self._remove_sandbox(sandbox_id)

        # All at once: each may wait out its grace period (one after another, N × 2 s).
        await asyncio.gather(*(one(sb.id) for sb in out.items))

    # ---- PLEG ----

    async def _relist_loop(self) -> None:
        while True:
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("relist: %s", e)
            await asyncio.sleep(RELIST_PERIOD)

    async def relist(self) -> None:
        sandboxes = (await self.cri.list_pod_sandbox()).items
        containers = (await self.cri.list_containers()).containers
        sigs: dict[str, list] = {}
        for s in sandboxes:
            uid = s.labels.get(podspec.POD_UID)
            if uid:
                sigs.setdefault(uid, []).append((s.id, s.state))
        for c in containers:
            uid = c.labels.get(podspec.POD_UID)
            if uid:
                sigs.setdefault(uid, []).append((c.id, c.state))
        fresh = {uid: tuple(sorted(v)) for uid, v in sigs.items()}
        for uid, sig in fresh.items():
            if self._signatures.get(uid) != sig:
                if uid in self.pods or uid in self._tasks or self.synced:
                    self._kick(uid)  # an unknown pod's sandbox is an orphan: its worker kills it
        self._signatures = fresh


def _name(pod: dict) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"


def _without_times(status: dict) -> dict:
    """Status without condition times, to tell a real change from a re-computation."""
    s = dict(status)
    s["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")}
                       for c in status.get("conditions") or ()]
    return s


async def force_delete(client: Client, pod: dict) -> None:
    """Delete this very pod (its UID) at once; gone already or replaced is fine."""
    m = pod["metadata"]
    try:
        await client.delete(PODS, m["name"], m["namespace"], grace_seconds=0,
                            preconditions={"uid": m["uid"]})
    except ApiError as e:
        if e.code not in (404, 409):
            raise


async def pod_sandboxes(cri: CRI, uid: str) -> list:
    """The runtime's sandboxes of one pod, newest first."""
    out = await cri.list_pod_sandbox(filter=pb.PodSandboxFilter(
        label_selector={podspec.POD_UID: uid}))
    return sorted(out.items, key=lambda s: s.created_at, reverse=True)
