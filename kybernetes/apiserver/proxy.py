"""pods/log, exec, attach, portforward and nodes/proxy, pods/proxy: proxied to the kubelet.

The API server finds the pod's node, opens a TLS connection to the kubelet's endpoint with its
own client certificate (kubelets trust the cluster CA; their serving certificates are issued by
it too), and passes the request on. For upgrades (WebSocket, SPDY/3.1) it relays the kubelet's
101 and then splices bytes both ways without looking at the framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import logging
import ssl
from typing import Awaitable, Callable
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from kybernetes.api import errors
from kybernetes.streaming.channels import ExecOptions
from kybernetes.streaming.upgrade import hijack

from .certs import CertificateAuthority

log = logging.getLogger("kyb.apiserver.proxy")

KUBELET_CLIENT = ("kubelet-client", "kube-apiserver-kubelet-client")
DEFAULT_KUBELET_PORT = 10250
LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines",
              "limitBytes")
# Not passed on: who the client is (we speak as ourselves) and hop-by-hop framing.
_DROP_REQUEST = {"host", "authorization", "content-length", "transfer-encoding", "keep-alive",
                 "proxy-connection", "te", "trailer"}
_DROP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive", "date",
                  "server", "content-encoding"}

GetNode = Callable[[str], Awaitable[dict]]


def kubelet_serving_cert(ca: CertificateAuthority, node_name: str,
                         addresses: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A kubelet's serving certificate (cert PEM, key PEM) for its node's addresses: the API
    server verifies kubelets against the cluster CA, so kubelets get their certificates here."""
    import ipaddress

    ips, dns = [], [node_name]
    for a in addresses:
        try:
            ipaddress.ip_address(a)
            ips.append(a)
        except ValueError:
            dns.append(a)
    return ca.issue(f"system:node:{node_name}", organizations=("system:nodes",),
                    dns_names=tuple(dict.fromkeys(dns)), ips=tuple(dict.fromkeys(ips)),
                    server=True)


def kubelet_endpoint(node: dict) -> tuple[str, int]:
    status = node.get("status") or {}
    addrs = status.get("addresses") or []
    host = next((a.get("address") for t in ("InternalIP", "Hostname") for a in addrs
                 if a.get("type") == t and a.get("address")), None)
    name = node["metadata"]["name"]
    if not host:
        raise errors.unavailable(f"no preferred addresses found for node {name!r}; "
                                 f"known addresses: {addrs}")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    return host, int(port or DEFAULT_KUBELET_PORT)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _names(containers) -> list[str]:
    return [c.get("name", "") for c in containers or ()]


def resolve_container(pod: dict, wanted: str) -> str:
    """The container a request means: the named one, or the only one; else 400 as upstream."""
    spec, name = pod.get("spec") or {}, pod["metadata"]["name"]
    regular = _names(spec.get("containers"))
    if not wanted:
        if len(regular) == 1:
            return regular[0]
        init = _names(spec.get("initContainers"))
        msg = f"a container name must be specified for pod {name}, choose one of: {regular}"
        if init:
            msg += f" or one of the init containers: {init}"
        raise errors.bad_request(msg)
    valid = regular + _names(spec.get("initContainers")) + _names(spec.get("ephemeralContainers"))
    if wanted not in valid:
        raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


class NodeProxy:
    def __init__(self, ca: CertificateAuthority, get_node: GetNode):
        self.ca = ca
        self.get_node = get_node
        cert, key = ca.ensure(*KUBELET_CLIENT, organizations=("system:masters",), client=True)
        self.ssl = ssl.create_default_context(cafile=str(ca.cert_path))
        self.ssl.load_cert_chain(str(cert), str(key))
        self.insecure = ssl.create_default_context()
        self.insecure.check_hostname = False
        self.insecure.verify_mode = ssl.CERT_NONE
        self.insecure.load_cert_chain(str(cert), str(key))
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False)
        return self._session

    # ---- entry point ----

    async def handle(self, request: web.Request, pod_or_node: dict,
                     sub: str) -> web.StreamResponse:
        kind = pod_or_node.get("kind") or ("Node" if "namespace" not in
                                           pod_or_node.get("metadata", {}) else "Pod")
        if kind == "Node":
            if sub != "proxy":
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            host, port = kubelet_endpoint(pod_or_node)
            path = "/" + proxy_suffix(request.path)
            return await self._plain(request, f"https://{_host(host)}:{port}{path}",
                                     list(request.query.items()), self.ssl)
        pod = pod_or_node
        if sub == "proxy":
            return await self._pod_proxy(request, pod)
        if sub == "log":
            return await self._log(request, pod)
        if sub in ("exec", "attach", "portforward"):
            return await self._stream(request, pod, sub)
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")

    # ---- subresources ----

    async def _node_of(self, pod: dict) -> tuple[str, int]:
        name = (pod.get("spec") or {}).get("nodeName")
        node = await self.get_node(name)
        return kubelet_endpoint(node)

    async def _log(self, request: web.Request, pod: dict) -> web.StreamResponse:
        q = request.query
        container = resolve_container(pod, q.get("container", ""))
        if not (pod.get("spec") or {}).get("nodeName"):
            # Upstream: a pod without a host has no logs yet; an empty body, not an error.
            return web.Response(text="", content_type="text/plain")
        for p in ("sinceSeconds", "tailLines", "limitBytes"):
            if p in q:
                try:
                    if int(q[p]) < (1 if p != "tailLines" else 0):
                        raise ValueError
                except ValueError:
                    raise errors.bad_request(f"invalid value {q[p]!r} for {p}") from None
        host, port = await self._node_of(pod)
        meta = pod["metadata"]
        path = f"/containerLogs/{quote(meta['namespace'])}/{quote(meta['name'])}/{quote(container)}"
        params = [(p, q[p]) for p in LOG_PARAMS if p in q]
        insecure = q.get("insecureSkipTLSVerifyBackend") in ("true", "1")
        return await self._plain(request, f"https://{_host(host)}:{port}{path}", params,
                                 self.insecure if insecure else self.ssl, method="GET",
                                 body=False)

    async def _stream(self, request: web.Request, pod: dict, sub: str) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "")
        if not upgrade or "upgrade" not in request.headers.get("Connection", "").lower():
            raise errors.bad_request("Upgrade request required")
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns, name = quote(meta["namespace"]), quote(meta["name"])
        if sub == "portforward":
            path = f"/portForward/{ns}/{name}"
            query = [("port", p) for p in request.query.getall("ports", [])]
        else:
            opts = ExecOptions.from_query(request.query)
            container = quote(resolve_container(pod, opts.container))
            if sub == "exec" and not opts.command:
                raise errors.bad_request("you must specify at least one command for the container")
            if not (opts.stdin or opts.stdout or opts.stderr):
                raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
            path = f"/{sub}/{ns}/{name}/{container}"
            query = opts.kubelet_query() if sub == "exec" else \
                [kv for kv in opts.kubelet_query() if kv[0] != "command"]
        if not spec.get("nodeName"):
            raise errors.bad_request(f"pod {meta['name']} does not have a host assigned")
        if sub != "portforward" and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise errors.bad_request(
                f"cannot {sub} into a container in a completed pod; current phase is "
                f"{pod['status']['phase']}")
        host, port = await self._node_of(pod)
        target = path + ("?" + urlencode(query) if query else "")
        return await self._upgrade(request, host, port, target)

    async def _pod_proxy(self, request: web.Request, pod: dict) -> web.StreamResponse:
        """pods/[scheme:]NAME[:port]/proxy/PATH goes straight to the pod IP, as upstream."""
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise errors.unavailable(f"address not allowed: pod {pod['metadata']['name']} "
                                     "has no IP address")
        segment = request.path.split("/proxy", 1)[0].rsplit("/", 1)[-1]
        parts = segment.split(":")
        scheme, port = "http", ""
        if len(parts) == 3:
            scheme, port = parts[0] or "http", parts[2]
        elif len(parts) == 2:
            port = parts[1]
        if not port:
            ports = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or ()
                     for p in c.get("ports") or ()]
            port = str(ports[0]) if ports else "80"
        path = "/" + proxy_suffix(request.path)
        return await self._plain(request, f"{scheme}://{_host(ip)}:{port}{path}",
                                 list(request.query.items()),
                                 self.insecure if scheme == "https" else None)

    # ---- plain HTTP ----

    async def _plain(self, request: web.Request, url: str, params: list[tuple[str, str]],
                     ctx: ssl.SSLContext | None, *, method: str | None = None,
                     body: bool = True) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST
                   and k.lower() not in ("connection", "upgrade")}
        data = await request.read() if body and request.can_read_body else None
        try:
            upstream = await self._client().request(method or request.method, url,
                                                    params=params, headers=headers, data=data,
                                                    ssl=ctx if ctx is not None else False,
                                                    allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _dial_error(url, e) from None
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _DROP_RESPONSE:
                    resp.headers.add(k, v)
            if upstream.headers.get("Content-Encoding"):
                resp.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)  # each write goes out at once: `logs -f` streams
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.debug("upstream %s ended: %s", url, e)
            await resp.write_eof()
            return resp

    # ---- upgrades ----

    async def _upgrade(self, request: web.Request, host: str, port: int,
                       target: str) -> web.StreamResponse:
        insecure = request.query.get("insecureSkipTLSVerifyBackend") in ("true", "1")
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self.insecure if insecure else self.ssl,
                    server_hostname=host, limit=2 ** 20)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise _dial_error(f"https://{_host(host)}:{port}", e) from None
        try:
            head = [f"{request.method} {target} HTTP/1.1", f"Host: {_host(host)}:{port}"]
            head += [f"{k}: {v}" for k, v in request.headers.items()
                     if k.lower() not in _DROP_REQUEST]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            async with asyncio.timeout(30):
                raw = await reader.readuntil(b"\r\n\r\n")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            writer.close()
            raise errors.unavailable(f"error talking to the kubelet at {host}:{port}: "
                                     f"{e or type(e).__name__}") from None
        status_line, _, rest = raw.partition(b"\r\n")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            writer.close()
            raise errors.unavailable(f"the kubelet at {host}:{port} sent a bad response") from None
        headers = http.client.parse_headers(io.BytesIO(rest))
        if status != 101:
            return await self._relay_refusal(reader, writer, status, headers)
        conn = await hijack(request, 101, [(k, v) for k, v in headers.items()
                                           if k.lower() not in ("date", "server", "content-length")])
        await _splice(conn, reader, writer)
        return conn.response

    async def _relay_refusal(self, reader, writer, status: int, headers) -> web.Response:
        """The kubelet declined the upgrade: pass its answer (usually a Status) on."""
        try:
            async with asyncio.timeout(10):
                length = headers.get("Content-Length")
                body = await (reader.readexactly(int(length)) if length else reader.read(1 << 20))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            body = b""
        finally:
            writer.close()
        out = web.Response(status=status, body=body)
        out.content_type = (headers.get("Content-Type") or "text/plain").split(";")[0]
        return out


async def _splice(conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy both ways until either side hangs up (kubectl and the kubelet never half-close a
    TLS connection, so one side ending ends the exchange)."""

    async def client_to_kubelet() -> None:
        while data := await conn.read():
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()

    async def kubelet_to_client() -> None:
        while data := await reader.read(65536):
            await conn.write(data)

    up = asyncio.create_task(client_to_kubelet())
    down = asyncio.create_task(kubelet_to_client())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        pass
    finally:
        for t in (up, down):
            t.cancel()
        for t in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        writer.close()
        await conn.close()


def proxy_suffix(path: str) -> str:
    """What follows `/proxy/` in a nodes/NAME/proxy/... or pods/NAME/proxy/... path."""
    _, sep, suffix = path.partition("/proxy/")
    return suffix if sep else ""


def _dial_error(where: str, e: BaseException) -> errors.ApiError:
    return errors.ApiError(503, "ServiceUnavailable",
                           f"error dialing backend: {where}: {e or type(e).__name__}")
