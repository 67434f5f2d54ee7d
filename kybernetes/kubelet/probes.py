"""Container probes (liveness, readiness, startup) as the kubelet's prober runs them.

One worker per (pod, container, probe kind) while the container runs: it waits
initialDelaySeconds, then probes every periodSeconds with timeoutSeconds, and flips its result
after successThreshold successes / failureThreshold failures (pkg/kubelet/prober/worker.go).
Liveness and readiness wait until a startup probe has succeeded. Readiness starts as failed;
liveness counts as passing until it fails failureThreshold times in a row.
Results are kept here; the pod worker reads them into the status and acts on liveness failure.

`run_action` performs one exec/httpGet/tcpSocket check; lifecycle hooks use it too.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp

from .cri.client import CRI, CRIError
from .cri.client import messages as pb

log = logging.getLogger("kyb.kubelet.probes")

USER_AGENT = "kube-probe/1.33"
KINDS = (("startupProbe", "Startup"), ("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"))
_MAX_OUTPUT = 10 * 1024


@dataclass
class Result:
    ok: bool
    message: str = ""


def resolve_port(port, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or ():
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port {port!r} in container")


async def run_action(cri: CRI, action: dict, container: dict, container_id: str, pod_ip: str,
                     timeout: float) -> Result:
    """One check: exec (CRI ExecSync), httpGet (from the node to the pod's IP), tcpSocket."""
    try:
        if "exec" in action:
            return await _exec(cri, action["exec"].get("command") or [], container_id, timeout)
        if "httpGet" in action:
            return await _http(action["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in action:
            return await _tcp(action["tcpSocket"], container, pod_ip, timeout)
        if "sleep" in action:
            await asyncio.sleep(int(action["sleep"].get("seconds") or 0))
            return Result(True)
    except ValueError as e:
        return Result(False, str(e))
    return Result(False, "missing probe handler")


async def _exec(cri: CRI, cmd: list[str], container_id: str, timeout: float) -> Result:
    try:
        # `timeout` of the request bounds the command; the call's own deadline is a bit longer.
        out = await cri.exec_sync(pb.ExecSyncRequest(container_id=container_id, cmd=cmd,
                                                     timeout=max(1, int(timeout))),
                                  timeout=timeout + 5)
    except CRIError as e:
        if e.code.name == "DEADLINE_EXCEEDED" or "timeout" in e.details:
            return Result(False, f"command {cmd!r} timed out")
        return Result(False, e.details)
    output = (out.stdout + out.stderr)[:_MAX_OUTPUT].decode(errors="replace")
    if out.exit_code != 0:
        return Result(False, output or f"command {cmd!r} exited with {out.exit_code}")
    return Result(True, output)


async def _http(get: dict, container: dict, pod_ip: str, timeout: float) -> Result:
    scheme = (get.get("scheme") or "HTTP").lower()
    host = get.get("host") or pod_ip
    port = resolve_port(get.get("port"), container)
    path = get.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in get.get("httpHeaders") or ():
        headers[h["name"]] = h.get("value", "")
    ctx: ssl.SSLContext | bool = False  # upstream skips certificate verification for probes
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get(url, headers=headers, ssl=ctx, allow_redirects=True) as r:
                body = (await r.content.read(_MAX_OUTPUT)).decode(errors="replace")
                if 200 <= r.status < 400:
                    return Result(True, body)
                return Result(False, f"HTTP probe failed with statuscode: {r.status}")
    except asyncio.TimeoutError:
        return Result(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded '
                             f'while awaiting headers)')
    except (aiohttp.ClientError, OSError) as e:
        return Result(False, f'Get "{url}": {_reason(e)}')


async def _tcp(sock: dict, container: dict, pod_ip: str, timeout: float) -> Result:
    host = sock.get("host") or pod_ip
    port = resolve_port(sock.get("port"), container)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        w.close()
        return Result(True)
    except asyncio.TimeoutError:
        return Result(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return Result(False, f"dial tcp {host}:{port}: connect: {_reason(e)}")


def _reason(e: Exception) -> str:
    """Go's wording for the errors probes report most."""
    err = getattr(e, "os_error", None) or e
    if isinstance(err, ConnectionRefusedError) or getattr(err, "errno", None) == 111:
        return "connection refused"
    return str(err)


# ---- workers ----

@dataclass
class ContainerProbes:
    """Probe state of one running container instance."""
    container_id: str
    started: bool = False          # startup probe passed (or none)
    ready: bool = False            # readiness result
    tasks: list[asyncio.Task] = field(default_factory=list)


Notify = Callable[[str], None]                                  # pod uid → wake its worker
OnEvent = Callable[[dict, str, str, str], None]                 # pod, type, reason, message
OnLivenessFailure = Callable[[dict, dict, str, str], Awaitable[None]]  # pod, c, cid, message


class ProbeManager:
    def __init__(self, cri: CRI, notify: Notify, event: OnEvent, liveness_failed: OnLivenessFailure):
        self.cri = cri
        self.notify, self.event, self.liveness_failed = notify, event, liveness_failed
        self.state: dict[tuple[str, str], ContainerProbes] = {}  # (uid, container) → probes

    def sync(self, pod: dict, running: dict[str, str], pod_ip: str) -> None:
        """Start workers for newly running containers (name → container id), stop the others."""
        uid = pod["metadata"]["uid"]
        spec = pod.get("spec") or {}
        for c in spec.get("containers") or ():
            key = (uid, c["name"])
            cid = running.get(c["name"])
            cur = self.state.get(key)
            if cur is not None and cur.container_id != cid:
                self._cancel(key)
                cur = None
            if cid is None or cur is not None:
                continue
            cp = self.state[key] = ContainerProbes(cid, started="startupProbe" not in c,
                                                   ready="readinessProbe" not in c)
            for field_, kind in KINDS:
                if field_ in c:
                    cp.tasks.append(asyncio.create_task(
                        self._worker(pod, c, cp, field_, kind, pod_ip),
                        name=f"probe-{kind}-{uid[:8]}-{c['name']}"))

    def results(self, uid: str) -> tuple[dict[str, bool], dict[str, bool]]:
        """(ready, started) by container name for the pod status."""
        ready, started = {}, {}
        for (u, name), cp in self.state.items():
            if u == uid:
                ready[name], started[name] = cp.ready, cp.started
        return ready, started

    def forget(self, uid: str) -> None:
        for key in [k for k in self.state if k[0] == uid]:
            self._cancel(key)

    def _cancel(self, key) -> None:
        cp = self.state.pop(key, None)
        for t in cp.tasks if cp else ():
            t.cancel()

    async def stop(self) -> None:
        tasks = [t for cp in self.state.values() for t in cp.tasks]
        self.state.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self, pod: dict, c: dict, cp: ContainerProbes, field_: str, kind: str,
                      pod_ip: str) -> None:
        probe = c[field_]
        period = max(1, int(probe.get("periodSeconds") or 10))
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        need_ok = max(1, int(probe.get("successThreshold") or 1))
        need_fail = max(1, int(probe.get("failureThreshold") or 3))
        await asyncio.sleep(int(probe.get("initialDelaySeconds") or 0))
        oks = fails = 0
        while True:
            if kind != "Startup" and not cp.started:
                await asyncio.sleep(min(period, 1))
                continue
            if kind == "Startup" and cp.started:
                return  # the startup probe is done for this container's life
            r = await run_action(self.cri, probe, c, cp.container_id, pod_ip, timeout)
            if r.ok:
                oks, fails = oks + 1, 0
            else:
                oks, fails = 0, fails + 1
                self.event(pod, "Warning", "Unhealthy", f"{kind} probe failed: {r.message}".strip())
            if kind == "Readiness":
                if (r.ok and oks >= need_ok) if not cp.ready else (not r.ok and fails >= need_fail):
                    cp.ready = not cp.ready
                    log.info("pod %s/%s container %s: readiness %s (%s)",
                             pod["metadata"].get("namespace"), pod["metadata"]["name"], c["name"],
                             "passed" if cp.ready else "failed",
                             r.message[:200].strip() or "no output")
                    self.notify(pod["metadata"]["uid"])
            elif kind == "Startup":
                if r.ok:
                    cp.started = True
                    self.notify(pod["metadata"]["uid"])
                    return
                if fails >= need_fail:
                    await self.liveness_failed(pod, c, cp.container_id,
                                               f"Container {c['name']} failed startup probe, "
                                               f"will be restarted")
                    return
            elif not r.ok and fails >= need_fail:
                await self.liveness_failed(pod, c, cp.container_id,
                                           f"Container {c['name']} failed liveness probe, "
                                           f"will be restarted")
                return
            await asyncio.sleep(period)
