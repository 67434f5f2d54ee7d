"""logs, exec, attach, port-forward and nodes/proxy through the real API server to a fake kubelet,
driven by real kubectl (SPDY for ≤1.29, WebSocket v5 and tunnelled SPDY for ≥1.30)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, strategies as st

from kybernetes.apiserver.proxy import NodeProxy, kubelet_serving_cert
from kybernetes.apiserver.server import ApiServer, Config
from kybernetes.streaming import channels, spdy
from kybernetes.streaming.portforward import serve_portforward
from kybernetes.streaming.remotecommand import ExecIO, serve_exec

from kybtest import kubectl_binary

VERSIONS = ("1.27", "1.29", "1.30", "1.31", "1.33")
LOG_LINES = [f"line {i}" for i in range(1, 6)]
_STREAM_PATH = re.compile(r"^/api/v1/(?:namespaces/([^/]+)/)?(pods|nodes)/([^/]+)/"
                          r"(log|exec|attach|portforward|proxy)(?:/.*)?$")


# ---- the fake kubelet ----

async def _exec_handler(io: ExecIO) -> int:
    """`out=X` → stdout, `err=X` → stderr, `cat` → stdin to stdout, `exit=N` → exit code."""
    code = 0
    for arg in io.options.command:
        if arg.startswith("out="):
            await io.stdout(arg[4:].encode() + b"\n")
        elif arg.startswith("err="):
            await io.stderr(arg[4:].encode() + b"\n")
        elif arg == "cat" and io.stdin is not None:
            async for chunk in io.stdin:
                await io.stdout(chunk)
        elif arg.startswith("exit="):
            code = int(arg[5:])
    return code


class FakeKubelet:
    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []  # (path, query, client CN)
        self.upgrades: list[tuple[str, str]] = []  # (Upgrade, Sec-WebSocket-Protocol)

    def _record(self, request: web.Request) -> None:
        cert = request.transport.get_extra_info("peercert") or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        self.requests.append((request.path, request.query_string, cn))
        if "Upgrade" in request.headers:
            self.upgrades.append((request.headers["Upgrade"].lower(),
                                  request.headers.get("Sec-WebSocket-Protocol", "")))

    async def logs(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        lines = list(LOG_LINES)
        if "tailLines" in request.query:
            lines = lines[-int(request.query["tailLines"]):] if int(request.query["tailLines"]) else []
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for line in lines:
            await resp.write(f"{request.match_info['container']}: {line}\n".encode())
            if request.query.get("follow") == "true":
                await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        return await serve_exec(request, _exec_handler)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        self._record(request)

        async def attached(io: ExecIO) -> int:
            await io.stdout(b"attached to " + request.match_info["container"].encode() + b"\n")
            return 0
        return await serve_exec(request, attached)

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        return await serve_portforward(request, lambda port: asyncio.open_connection("127.0.0.1", port))

    async def healthz(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text=f"kubelet ok {request.method} {request.query_string}")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_route("*", "/attach/{ns}/{pod}/{container}", self.attach)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self.portforward)
        app.router.add_route("*", "/healthz", self.healthz)
        return app


async def _pod_http(request: web.Request) -> web.Response:
    return web.Response(text=f"hello from the pod, path {request.path}")


# ---- the cluster: API server + fake kubelet + a "pod" HTTP server, in one background loop ----

def _wire_proxy(server: ApiServer) -> None:
    """Until the lead routes streaming subresources to NodeProxy, route them here."""
    original = server._route
    local: list[NodeProxy] = []

    async def route(request: web.Request) -> web.StreamResponse:
        m = _STREAM_PATH.match(request.path)
        if m is None or getattr(server, "node_proxy", None) is not None:
            return await original(request)
        ns, plural, name, sub = m.groups()
        if not local:
            nodes = server.registry.get("", "v1", "nodes")
            local.append(NodeProxy(server.ca, lambda n: server.objects.get(nodes, None, n)))
        if ":" in name:
            parts = name.split(":")
            name = parts[1] if len(parts) == 3 else parts[0]
        obj = await server.objects.get(server.registry.get("", "v1", plural), ns, name)
        return await local[0].handle(request, obj, sub)

    server._route = route  # type: ignore[method-assign]
    server._test_proxies = local  # type: ignore[attr-defined]


class Cluster:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.kubelet = FakeKubelet()
        self.runners: list[web.AppRunner] = []
        self.call(self._start())

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _serve(self, app: web.Application, ctx: ssl.SSLContext | None = None) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.runners.append(runner)
        return site._server.sockets[0].getsockname()[1]

    async def _start(self) -> None:
        self.server = ApiServer(Config(data_dir=self.data_dir, secure_port=0))
        _wire_proxy(self.server)
        await self.server.start()
        ca = self.server.ca
        cert, key = kubelet_serving_cert(ca, "node-a", ("127.0.0.1",))
        (self.data_dir / "kubelet.crt").write_bytes(cert)
        (self.data_dir / "kubelet.key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.data_dir / "kubelet.crt", self.data_dir / "kubelet.key")
        ctx.load_verify_locations(cafile=str(ca.cert_path))
        ctx.verify_mode = ssl.CERT_REQUIRED  # only the API server may talk to a kubelet
        self.kubelet_port = await self._serve(self.kubelet.app(), ctx)
        app = web.Application()
        app.router.add_get("/{tail:.*}", _pod_http)
        self.pod_port = await self._serve(app)

    def stop(self) -> None:
        async def stop():
            for r in self.runners:
                await r.cleanup()
            for proxy in [getattr(self.server, "node_proxy", None),
                          *getattr(self.server, "_test_proxies", ())]:
                if proxy is not None:
                    await proxy.close()
            await self.server.stop()
        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kubectl(cluster: Cluster, version: str, *args: str, input: str | None = None,
             cache: Path) -> subprocess.CompletedProcess:
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} is not installed")
    return subprocess.run([str(binary), "--kubeconfig", str(cluster.kubeconfig),
                           "--cache-dir", str(cache), *args],
                          input=input, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("streaming"))
    cache = tmp_path_factory.mktemp("kubectl-cache")

    def ok(*args: str, input: str | None = None) -> None:
        p = _kubectl(c, "1.33", *args, input=input, cache=cache)
        assert p.returncode == 0, p.stderr

    nodes = [("node-a", c.kubelet_port), ("node-gone", _free_port())]
    for name, port in nodes:
        ok("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
        ok("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                      {"type": "Hostname", "address": name}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
    for pod, node, containers in (("web", "node-a", ["app"]), ("two", "node-a", ["app", "side"]),
                                  ("nohost", None, ["app"]), ("lost", "node-gone", ["app"])):
        spec = {"containers": [{"name": n, "image": "busybox"} for n in containers]}
        if node:
            spec["nodeName"] = node
        ok("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "default"},
             "spec": spec}))
        ok("patch", "pod", pod, "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Running", "podIP": "127.0.0.1"}}))
    yield c
    c.stop()


@pytest.fixture(params=VERSIONS)
def kubectl(request, cluster, tmp_path):
    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return _kubectl(cluster, request.param, *args, input=input, cache=tmp_path / "cache")
    run.version = request.param
    return run


# ---- logs ----

def test_logs(kubectl, cluster):
    p = kubectl("logs", "web")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"app: {line}" for line in LOG_LINES]
    p = kubectl("logs", "two", "-c", "side", "--tail=2")
    assert p.stdout.splitlines() == [f"side: {line}" for line in LOG_LINES[-2:]]
    path, query, cn = cluster.kubelet.requests[-1]
    assert path == "/containerLogs/default/two/side" and "tailLines=2" in query
    assert cn == "kube-apiserver-kubelet-client"


def test_logs_follow_streams_until_the_kubelet_ends(kubectl):
    p = kubectl("logs", "-f", "web")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"app: {line}" for line in LOG_LINES]


def test_logs_errors(kubectl):
    p = kubectl("logs", "web", "-c", "nope")
    assert p.returncode != 0 and "container nope is not valid for pod web" in p.stderr
    p = kubectl("logs", "lost")
    assert p.returncode != 0 and "error dialing backend" in p.stderr


# ---- exec / attach ----

def _websocket_era(version: str, since: tuple[int, int] = (1, 30)) -> bool:
    """exec/attach use WebSockets from kubectl 1.30, port-forward from 1.31."""
    return tuple(map(int, version.split("."))) >= since


@pytest.mark.parametrize("code", [0, 3])
def test_exec_output_and_exit_code(kubectl, cluster, code):
    p = kubectl("exec", "web", "--", "out=hello", "err=oops", f"exit={code}")
    assert p.returncode == code, p.stderr
    assert p.stdout == "hello\n"
    assert "oops" in p.stderr
    path, query, _ = cluster.kubelet.requests[-1]
    assert path == "/exec/default/web/app"
    assert "command=out%3Dhello" in query and "output=1" in query and "error=1" in query
    upgrade, protocols = cluster.kubelet.upgrades[-1]
    if _websocket_era(kubectl.version):
        assert upgrade == "websocket" and "v5.channel.k8s.io" in protocols
    else:
        assert upgrade == "spdy/3.1"


def test_exec_with_stdin(kubectl):
    text = "first line\nsecond line\n" + "x" * 100_000 + "\n"
    p = kubectl("exec", "-i", "web", "--", "cat", "out=done", input=text)
    assert p.returncode == 0, p.stderr
    assert p.stdout == text + "done\n"


def test_exec_errors(kubectl):
    p = kubectl("exec", "nohost", "--", "out=x")
    assert p.returncode != 0 and "pod nohost does not have a host assigned" in p.stderr
    p = kubectl("exec", "web", "-c", "nope", "--", "out=x")
    assert p.returncode != 0 and "container nope is not valid for pod web" in p.stderr


def test_attach(kubectl):
    p = kubectl("attach", "two", "-c", "side")
    assert p.returncode == 0, p.stderr
    assert "attached to side" in p.stdout


# ---- port-forward ----

def test_port_forward(kubectl, cluster):
    binary = kubectl_binary(kubectl.version)
    local = _free_port()
    cache = cluster.data_dir / f"pf-cache-{kubectl.version}"
    proc = subprocess.Popen([str(binary), "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                             str(cache), "port-forward", "pod/web", f"{local}:{cluster.pod_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "Forwarding from" in line, line + proc.stderr.read() if proc.poll() else line
        for i in range(3):  # several connections over one session
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/hello/{i}", timeout=10) as r:
                assert r.read().decode() == f"hello from the pod, path /hello/{i}"
    finally:
        proc.terminate()
        proc.wait(10)
    upgrade, protocols = cluster.kubelet.upgrades[-1]
    if _websocket_era(kubectl.version, (1, 31)):
        assert (upgrade, protocols) == ("websocket", "SPDY/3.1+portforward.k8s.io")
    else:
        assert upgrade == "spdy/3.1"


# ---- nodes/proxy and plain requests ----

def test_node_proxy(kubectl):
    p = kubectl("get", "--raw", "/api/v1/nodes/node-a/proxy/healthz?x=1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "kubelet ok GET x=1"


def test_pod_proxy(kubectl, cluster):
    p = kubectl("get", "--raw", f"/api/v1/namespaces/default/pods/web:{cluster.pod_port}/proxy/a/b")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from the pod, path /a/b"


def test_exec_without_upgrade_is_a_status(cluster):
    ctx = ssl.create_default_context(cafile=str(cluster.server.ca.cert_path))
    ctx.load_cert_chain(*map(str, cluster.server.admin))
    url = f"https://127.0.0.1:{cluster.server.port}/api/v1/namespaces/default/pods/web/exec?command=x&stdout=true"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), context=ctx, timeout=10)
    status = json.loads(e.value.read())
    assert (e.value.code, status["kind"], status["reason"]) == (400, "Status", "BadRequest")


# ---- the protocol pieces on their own ----

_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
_values = st.lists(st.text(st.characters(blacklist_characters="\x00", codec="utf-8"),
                           max_size=30), min_size=1, max_size=3)


@given(st.lists(st.dictionaries(_names, _values, max_size=6), min_size=1, max_size=5))
def test_spdy_header_blocks_survive_one_compression_context(blocks):
    client, server = spdy.Codec(), spdy.Codec()
    for i, headers in enumerate(blocks):  # later blocks depend on the shared zlib state
        wire = client.syn_stream(2 * i + 1, headers)
        frame = server.decode(wire[:8], wire[8:])
        assert (frame.type, frame.stream_id) == (spdy.SYN_STREAM, 2 * i + 1)
        assert frame.headers == headers


@given(st.binary(max_size=5000), st.booleans(), st.integers(1, 2**31 - 1))
def test_spdy_data_frames(payload, fin, stream_id):
    wire = spdy.Codec.data(stream_id, payload, fin)
    frame = spdy.Codec().decode(wire[:8], wire[8:])
    assert (frame.type, frame.stream_id, frame.data, bool(frame.flags & spdy.FLAG_FIN)) == \
        (0, stream_id, payload, fin)


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), max_size=5),
       st.integers(1, 7))
def test_resize_stream_decodes_across_chunk_boundaries(sizes, cut):
    raw = "".join(json.dumps({"Width": w, "Height": h}) for w, h in sizes).encode()
    decoder, got = channels.ResizeDecoder(), []
    for i in range(0, len(raw), cut):
        got += decoder.feed(raw[i:i + cut])
    assert got == [channels.TerminalSize(w, h) for w, h in sizes]


@given(st.integers(0, 255))
def test_exit_status_round_trip(code):
    assert channels.parse_exit_status(channels.exit_status(code)) == code
