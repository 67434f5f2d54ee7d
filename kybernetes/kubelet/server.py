"""The kubelet's HTTPS API: /healthz, /pods, /containerLogs, /exec, /attach, /portForward,
/stats/summary, /metrics. Callers (the API server) authenticate with a client certificate
from the cluster CA.

exec runs `runc exec` against the container containerd started (its state lives under
containerd's runc root) and speaks kubectl's protocols through kybernetes.streaming, so every
kubectl version's WebSocket or SPDY upgrade is served by one implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import pty
import signal
import socket
import ssl
import struct
import termios
import threading
from pathlib import Path

import orjson
from aiohttp import web

from kybernetes.streaming.portforward import serve_portforward
from kybernetes.streaming.remotecommand import ExecIO, serve_exec

from . import logs, podspec
from .cri.client import CRI, CRIError
from .cri.client import messages as pb

log = logging.getLogger("kyb.kubelet.server")
RUNC_ROOT = "/run/containerd/runc/k8s.io"
CLONE_NEWNET = 0x40000000


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.Response(status=code, content_type="application/json", body=orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code}))


class KubeletServer:
    def __init__(self, cri: CRI, pods_of: callable, *, port: int, bind: str = "0.0.0.0",
                 cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                 stats=None):
        self.cri, self.pods_of, self.port, self.bind = cri, pods_of, port, bind
        self.cert, self.key, self.ca = cert, key, ca
        self.stats = stats
        self.runner: web.AppRunner | None = None
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.exec)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self.port_forward)
        app.router.add_get("/stats/summary", self.summary)
        app.router.add_get("/metrics", self.metrics)
        self.app = app

    async def start(self) -> None:
        ctx = None
        if self.cert and self.key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.cert), str(self.key))
            if self.ca:
                ctx.load_verify_locations(str(self.ca))
                ctx.verify_mode = ssl.CERT_OPTIONAL  # /healthz is open; the rest needs a cert
        self.runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.bind, self.port, ssl_context=ctx).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path != "/healthz" and self.ca is not None:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            if not peer:
                return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    # ---- lookups ----

    def _pod(self, ns: str, name: str) -> dict | None:
        return next((p for p in self.pods_of() if p["metadata"]["namespace"] == ns
                     and p["metadata"]["name"] == name), None)

    async def _containers(self, uid: str, name: str) -> list:
        out = await self.cri.list_containers(filter=pb.ContainerFilter(label_selector={
            podspec.POD_UID: uid, podspec.CONTAINER_NAME: name}))
        return sorted(out.containers, key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)

    async def _container(self, request: web.Request) -> tuple[dict | None, object | None]:
        m = request.match_info
        pod = self._pod(m["ns"], m["pod"])
        if pod is None:
            return None, None
        runs = await self._containers(pod["metadata"]["uid"], m["container"])
        return pod, (runs[0] if runs else None)

    # ---- handlers ----

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                  "items": self.pods_of()}, dumps=lambda o: orjson.dumps(o).decode())

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        pod = self._pod(m["ns"], m["pod"])
        if pod is None:
            return _status(404, "NotFound", f'pod "{m["pod"]}" not found')
        runs = await self._containers(pod["metadata"]["uid"], m["container"])
        previous = request.query.get("previous") in ("true", "1")
        pick = runs[1] if previous and len(runs) > 1 else (runs[0] if runs and not previous else None)
        if pick is None:
            what = "previous terminated container" if previous else "container"
            return _status(400, "BadRequest",
                           f'{what} "{m["container"]}" in pod "{m["pod"]}" not found')
        try:
            opts = logs.LogOptions.from_query(request.query)
        except ValueError as e:
            return _status(400, "BadRequest", str(e))
        cst = (await self.cri.container_status(container_id=pick.id)).status
        path = Path(cst.log_path)

        async def running() -> bool:
            try:
                s = (await self.cri.container_status(container_id=pick.id)).status
                return s.state in (pb.CONTAINER_RUNNING, pb.CONTAINER_CREATED)
            except CRIError:
                return False

        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        async for chunk in logs.stream(path, opts, running):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod, c = await self._container(request)
        if pod is None or c is None:
            return _status(404, "NotFound", "container not found (%r)" % request.match_info["container"])
        if c.state != pb.CONTAINER_RUNNING:
            return _status(400, "BadRequest", "container not running (%s)" % c.id)
        attach = request.path.startswith("/attach/")

        async def handler(io: ExecIO) -> int:
            if attach:
                return await self._attach(c.id, io)
            return await run_exec(c.id, io.options.command, io)

        return await serve_exec(request, handler)

    async def _attach(self, cid: str, io: ExecIO) -> int:
        """Attach shows the container's output as it is written (its log)."""
        st = (await self.cri.container_status(container_id=cid)).status
        path = Path(st.log_path)
        _, offset = logs.read_entries(path)
        while True:
            s = (await self.cri.container_status(container_id=cid)).status
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            if end:
                offset += end
                for line in data[:end].splitlines(keepends=True):
                    e = logs.parse_line(line)
                    if e:
                        out = e.message + (b"\n" if e.full else b"")
                        await (io.stderr(out) if e.stream == "stderr" else io.stdout(out))
            elif s.state != pb.CONTAINER_RUNNING:
                return s.exit_code
            else:
                await asyncio.sleep(0.1)

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        pod = self._pod(m["ns"], m["pod"])
        if pod is None:
            return _status(404, "NotFound", f'pod "{m["pod"]}" not found')
        netns = await self._netns(pod["metadata"]["uid"])

        async def connect(port: int):
            if netns is None:
                return await asyncio.open_connection("127.0.0.1", port)
            sock = await asyncio.to_thread(_socket_in_netns, netns, port)
            return await asyncio.open_connection(sock=sock)

        return await serve_portforward(request, connect)

    async def _netns(self, uid: str) -> str | None:
        out = await self.cri.list_pod_sandbox(filter=pb.PodSandboxFilter(
            state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY),
            label_selector={podspec.POD_UID: uid}))
        for sb in out.items:
            st = await self.cri.pod_sandbox_status(pod_sandbox_id=sb.id, verbose=True)
            info = json.loads(st.info.get("info", "{}") or "{}")
            if st.status.linux.namespaces.options.network == pb.NODE:
                return None
            path = info.get("netNamespacePath") or (f"/proc/{info['pid']}/ns/net" if info.get("pid") else None)
            if path:
                return path
        return None

    async def summary(self, request: web.Request) -> web.Response:
        body = await self.stats.summary() if self.stats else {}
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        lines = ["# HELP kubelet_running_pods Number of pods that have a running pod sandbox",
                 "# TYPE kubelet_running_pods gauge"]
        out = await self.cri.list_pod_sandbox(filter=pb.PodSandboxFilter(
            state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)))
        lines.append(f"kubelet_running_pods {len(out.items)}")
        running = await self.cri.list_containers(filter=pb.ContainerFilter(
            state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))
        lines += ["# HELP kubelet_running_containers Number of containers currently running",
                  "# TYPE kubelet_running_containers gauge",
                  f'kubelet_running_containers{{container_state="running"}} {len(running.containers)}']
        return web.Response(text="\n".join(lines) + "\n",
                            content_type="text/plain", charset="utf-8")


def _socket_in_netns(netns: str, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:port made inside the pod's network namespace: this thread
    enters the namespace for the connect and returns to the host's afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            return sock
        finally:
            libc.setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)


async def run_exec(cid: str, command: list[str], io: ExecIO, runc_root: str = RUNC_ROOT) -> int:
    """`runc exec` in the container; with a TTY through a pseudo-terminal we own (runc's
    foreground mode copies between it and the container's console, and resizes on SIGWINCH)."""
    args = ["runc", "--root", runc_root, "exec"] + (["-t"] if io.tty else []) + [cid, *command]
    if io.tty:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(*args, stdin=slave, stdout=slave,
                                                    stderr=slave, start_new_session=True)
        os.close(slave)
        return await _pump_tty(proc, master, io)
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE if io.stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def copy(reader, write) -> None:
        while chunk := await reader.read(65536):
            await write(chunk)

    async def feed() -> None:
        async for chunk in io.stdin:
            proc.stdin.write(chunk)
            await proc.stdin.drain()
        proc.stdin.close()

    tasks = [asyncio.create_task(copy(proc.stdout, io.stdout)),
             asyncio.create_task(copy(proc.stderr, io.stderr))]
    feeder = asyncio.create_task(feed()) if io.stdin else None
    try:
        await asyncio.gather(*tasks)
        return await proc.wait()
    finally:
        if feeder:
            feeder.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _pump_tty(proc: asyncio.subprocess.Process, master: int, io: ExecIO) -> int:
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
        out.put_nowait(data)

    loop.add_reader(master, readable)

    async def pump_out() -> None:
        while data := await out.get():
            await io.stdout(data)

    async def pump_in() -> None:
        if io.stdin is None:
            return
        async for chunk in io.stdin:
            os.write(master, chunk)

    async def resizes() -> None:
        while True:
            size = await io.resizes.get()
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGWINCH)

    helpers = [asyncio.create_task(pump_in()), asyncio.create_task(resizes())]
    reader = asyncio.create_task(pump_out())
    try:
        code = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 2)
        return code
    finally:
        for t in helpers + [reader]:
            t.cancel()
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
