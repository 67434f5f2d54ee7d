"""The API server process: TLS, authentication, routing, bootstrap objects, lifecycle."""

from __future__ import annotations

import asyncio
import bisect
import logging
import signal
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from kybernetes.api import certificates, errors
from kybernetes.api.registry import Registry
from kybernetes.store import Store, open_store

from . import certs, connection, csr, discovery, kinds
from .authn import PUBLIC_PATHS, Authenticator, TokenFile, User
from .objects import Objects
from .satokens import TokenSigner
from .request import MAX_BODY, parse_path
from .rest import Rest, json_response
from .subresources import Subresources
from .watchcache import WatchCache

log = logging.getLogger("kyb.apiserver")

USER = web.RequestKey("user", User)
_PATH_INFO = web.RequestKey("path_info", object)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_REVIEWS = {"selfsubjectaccessreviews", "subjectaccessreviews", "localsubjectaccessreviews",
            "selfsubjectrulesreviews", "selfsubjectreviews", "tokenreviews"}
_STREAMING = {"log", "exec", "attach", "portforward", "proxy"}
# Paths served without authentication; /cacerts is the CA bundle, public as in k3s (joins pin
# its hash).
_PUBLIC = frozenset(PUBLIC_PATHS) | {"/cacerts"}
_PUBLIC_PREFIXES = tuple(p + "/" for p in PUBLIC_PATHS)
_PRIORITY_CLASSES = "/registry/scheduling.k8s.io/priorityclasses/"


@dataclass
class Config:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443
    store_url: str | None = None  # default: sqlite in data_dir
    advertise: str | None = None  # the address written into kubeconfigs
    extra_sans: tuple[str, ...] = ()
    history_seconds: int = 300
    merge_kubeconfig: Path | None = None  # also merge the admin kubeconfig into this file


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """apiserver_request_total and apiserver_request_duration_seconds, counted in plain dicts
    and turned into metric families only when scraped: prometheus_client's own Counter and
    Histogram lock and validate on every call, ~2.4 µs of each request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[str, list] = {}  # verb → [count per bucket (+Inf last), sum]
        self.registry.register(self)

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        key = (verb, resource, code)
        self._requests[key] = self._requests.get(key, 0) + 1
        h = self._latency.get(verb)
        if h is None:
            h = self._latency[verb] = [0] * (len(_LATENCY_BUCKETS) + 1) + [0.0]
        h[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        h[-1] += seconds

    def collect(self):
        requests = CounterMetricFamily("apiserver_request", "Requests by verb, resource and code",
                                       labels=["verb", "resource", "code"])
        for (verb, resource, code), n in self._requests.items():
            requests.add_metric([verb, resource, str(code)], n)
        latency = HistogramMetricFamily("apiserver_request_duration_seconds", "Request latency",
                                        labels=["verb"])
        for verb, h in self._latency.items():
            cumulative, buckets = 0, []
            for le, n in zip([*map(floatToGoString, _LATENCY_BUCKETS), "+Inf"], h):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric([verb], buckets, h[-1])
        return [requests, latency]


def authorize(user: User, attrs: dict) -> tuple[bool, str]:
    """Every authenticated user may do everything until RBAC plugs in here."""
    return True, ""


class ApiServer:
    def __init__(self, config: Config):
        self.config = config
        self.registry = Registry()
        self.store: Store | None = None
        self.cache: WatchCache | None = None
        self.metrics = Metrics()
        self.runner: web.ServerRunner | None = None
        self.ready = False
        self._classes: tuple[dict, list[dict]] | None = None  # (cache.objects, PriorityClasses)
        self.port = config.secure_port

    # ---- lifecycle ----

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        url = cfg.store_url or f"sqlite:///{cfg.data_dir / 'state.db'}"
        self.store = await open_store(url, history_seconds=cfg.history_seconds) \
            if url.startswith("sqlite") else await open_store(url)
        self.cache = WatchCache(self.store)
        self.cache.on_event.append(self._on_event)
        await self.cache.start()
        for key, obj in list(self.cache.objects.items()):
            if key.startswith("/registry/apiextensions.k8s.io/customresourcedefinitions/"):
                kinds.sync_crds(self.registry, "ADDED", obj, None)
        self.objects = Objects(self.store, self.cache)
        self.rest = Rest(self.registry, self.objects, self.cache)
        self.rest.kind_hooks = {
            ("", "services"): kinds.ServiceHooks(self.store),
            ("", "pods"): kinds.PodHooks(self._priority_classes),
            ("apiextensions.k8s.io", "customresourcedefinitions"): kinds.CrdHooks(self.registry, self.rest),
            ("certificates.k8s.io", "certificatesigningrequests"): csr.CsrHooks(),
        }
        self.subs = Subresources(self.rest)
        self._setup_auth()
        from .proxy import NodeProxy

        nodes_r = self.registry.get("", "v1", "nodes")
        self.node_proxy = NodeProxy(self.ca, lambda n: self.objects.get(nodes_r, None, n))
        await self._bootstrap()
        # aiohttp's low-level server: one handler for every path, without an Application's
        # router, middleware chain and per-request match info (they showed in profiles).
        loop = asyncio.get_running_loop()

        def new_request(message, payload, protocol, writer, task) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop,
                                   client_max_size=MAX_BODY)

        server_class = connection.ApiHttpServer if connection.supported() else web.Server
        server = server_class(self._handle, request_factory=new_request,
                              handler_cancellation=True, access_log=None)
        self.runner = web.ServerRunner(server)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.bind_address, cfg.secure_port,
                           ssl_context=self._ssl_context(), reuse_address=True)
        await site.start()
        if cfg.secure_port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._write_kubeconfig()
        self.ready = True
        log.info("serving on https://%s:%d", cfg.bind_address, self.port)

    async def stop(self) -> None:
        self.ready = False
        if self.runner:
            await self.runner.cleanup()
        if getattr(self, "node_proxy", None):
            await self.node_proxy.close()
        if self.cache:
            await self.cache.stop()
        if self.store:
            await self.store.close()

    def _priority_classes(self) -> list[dict]:
        """Every pod create reads them: listed once, again after one changes (_on_event) or
        the cache reloads (a new objects dict)."""
        objects = self.cache.objects
        if self._classes is None or self._classes[0] is not objects:
            items, _ = self.cache.list(_PRIORITY_CLASSES)
            self._classes = (objects, [o for _, o in items])
        return self._classes[1]

    def _on_event(self, ev) -> None:
        if ev.key.startswith(_PRIORITY_CLASSES):
            self._classes = None
        if ev.key.startswith("/registry/apiextensions.k8s.io/customresourcedefinitions/"):
            kinds.sync_crds(self.registry, ev.type, ev.obj, ev.prev)

    # ---- security ----

    def _setup_auth(self) -> None:
        tls = self.config.data_dir / "tls"
        self.ca = certs.CertificateAuthority(tls)
        self.serving = certs.serving_cert(self.ca, self.config.extra_sans +
                                          ((self.config.advertise,) if self.config.advertise else ()))
        self.admin = self.ca.ensure("admin", "kubernetes-admin",
                                    organizations=("system:masters",), client=True)
        self.tokens = TokenFile(self.config.data_dir / "tokens.csv")
        node_token = self.config.data_dir / "node-token"
        if not node_token.exists():
            token = certs.new_token()
            node_token.write_text(token + "\n")
            node_token.chmod(0o600)
            self.tokens.add(token, User("kyb:node-join", ("system:bootstrappers", "system:nodes")))
        # The join token pins the CA for joining agents (k3s' form: K10<sha256 of /cacerts>::secret).
        join = self.config.data_dir / "join-token"
        join.write_text(f"K10{certificates.ca_hash(self.ca.pem)}::{node_token.read_text().strip()}\n")
        join.chmod(0o600)
        self.signer = TokenSigner(self.config.data_dir / "tls" / "sa.key")
        self.authn = Authenticator(self.tokens, self._service_account_user)
        self.rest.token_lookup = self._token_user
        self.subs.signer = self.signer

    def _service_account_user(self, token: str) -> User | None:
        """A ServiceAccount JWT is valid while its signature, expiry and account all hold."""
        claims = self.signer.verify(token)
        if not claims:
            return None
        info = claims.get("kubernetes.io") or {}
        ns, sa = info.get("namespace", ""), (info.get("serviceaccount") or {})
        sa_r = self.registry.get("", "v1", "serviceaccounts")
        live = self.cache.get(sa_r.key(ns, sa.get("name", "")))
        if live is None or live["metadata"].get("uid") != sa.get("uid"):
            return None
        return User(f"system:serviceaccount:{ns}:{sa['name']}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
                    sa.get("uid", ""))

    def _token_user(self, token: str) -> User | None:
        user = self.tokens.tokens.get(token)
        return user or (self._service_account_user(token) if token.count(".") == 2 else None)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*map(str, self.serving))
        ctx.load_verify_locations(cafile=str(self.ca.cert_path))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.options |= ssl.OP_NO_RENEGOTIATION  # authn reads a connection's certificate once
        return ctx

    def _write_kubeconfig(self) -> None:
        host = self.config.advertise or self.config.bind_address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        server = f"https://{host}:{self.port}"
        path = self.config.data_dir / "kubeconfig.yaml"
        certs.write_kubeconfig(path, server=server, ca_pem=self.ca.pem, user="admin",
                               cert_path=self.admin[0], key_path=self.admin[1])
        if self.config.merge_kubeconfig:
            certs.merge_kubeconfig(path, self.config.merge_kubeconfig)

    # ---- bootstrap ----

    async def _bootstrap(self) -> None:
        """The namespaces, system PriorityClasses and `kubernetes` Service every cluster has."""
        from . import admission
        from .admission_plugins import SYSTEM_PRIORITY_CLASSES

        pc_r = self.registry.get("scheduling.k8s.io", "v1", "priorityclasses")
        for name, value in SYSTEM_PRIORITY_CLASSES.items():
            if self.cache.get(pc_r.key(None, name)) is None:
                pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                      "metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority",
                      "description": "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
                      if name == "system-cluster-critical" else
                      "Used for system critical pods that must not be moved from their current node."}
                admission.apply_defaults(pc_r, pc)
                admission.prepare_create(pc_r, pc, None)
                try:
                    await self.objects.create(pc_r, pc)
                except errors.ApiError as e:
                    if e.code != 409:
                        raise

        ns_r = self.registry.get("", "v1", "namespaces")
        for name in DEFAULT_NAMESPACES:
            if self.cache.get(ns_r.key(None, name)) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                admission.prepare_create(ns_r, obj, None)
                try:
                    await self.objects.create(ns_r, obj)
                except errors.ApiError as e:
                    if e.code != 409:
                        raise
        svc_r = self.registry.get("", "v1", "services")
        if self.cache.get(svc_r.key("default", "kubernetes")) is None:
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "kubernetes", "namespace": "default",
                                "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1",
                            "sessionAffinity": "None",
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                       "targetPort": self.port or 6443}]}}
            admission.apply_defaults(svc_r, svc)
            admission.prepare_create(svc_r, svc, "default")
            try:
                await self.rest.kind_hooks[("", "services")].before_create(svc)
                await self.objects.create(svc_r, svc)
            except errors.ApiError as e:
                if e.code not in (409, 422):
                    raise

    # ---- HTTP ----

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: authentication, errors as Status objects, metrics; then _route."""
        start = time.perf_counter()
        code = 500
        try:
            if request.headers.get("Expect"):
                await _expect(request)
            path = request.path
            if path not in _PUBLIC and not path.startswith(_PUBLIC_PREFIXES):
                user = self.authn.authenticate(request)
                if user is None:
                    raise errors.unauthorized()
                request[USER] = user
                csr.REQUEST_USER.set(user)
            resp = await self._route(request)
            code = resp.status
            return resp
        except errors.ApiError as e:
            code = e.code
            return json_response(e.status(), e.code)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            # aiohttp's own refusals (body over the limit, ...) answer as a Status too.
            code = e.status
            return json_response(_http_error(e).status(), e.status)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # a bug: say so as a Status, keep serving
            log.exception("internal error on %s %s", request.method, request.path)
            code = 500
            return json_response(errors.internal(str(e)).status(), 500)
        finally:
            info = request.get(_PATH_INFO)
            self.metrics.observe(request.method, info.plural if info else "-", code,
                                 time.perf_counter() - start)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path.startswith("/readyz") and not self.ready:
                return web.Response(status=500, text="[-]ready failed\nreadyz check failed")
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.KUBE_VERSION)
        if path == "/cacerts" and request.method == "GET":
            return web.Response(body=self.ca.pem, content_type="text/plain")
        if path == "/metrics":
            return web.Response(body=generate_latest(self.metrics.registry),
                                content_type="text/plain")
        if path in ("/api", "/apis"):
            return self._discovery_root(request, path == "/api")
        if path.startswith("/openapi/"):
            return self._openapi(request, path)
        info = parse_path(path)
        if info is None:
            return self._discovery_doc(path)
        request[_PATH_INFO] = info  # for the metrics, without parsing the path again
        return await self._resource(request, info)

    def _discovery_root(self, request: web.Request, core: bool) -> web.Response:
        version = discovery.wants_aggregated(request.headers.get("Accept"))
        if version:
            body = discovery.aggregated(self.registry, core, version)
            return web.Response(body=body, headers={
                "Content-Type": discovery.aggregated_content_type(version),
                "Vary": "Accept"})
        if core:
            addr = f"{self.config.advertise or self.config.bind_address}:{self.port}"
            return json_response(discovery.api_versions(addr))
        return json_response(discovery.api_group_list(self.registry))

    def _discovery_doc(self, path: str) -> web.Response:
        parts = [p for p in path.split("/") if p]
        doc = None
        if len(parts) == 2 and parts[0] == "api":
            doc = discovery.resource_list(self.registry, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(self.registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = discovery.resource_list(self.registry, parts[1], parts[2])
        if doc is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    def _openapi(self, request: web.Request, path: str) -> web.Response:
        from kybernetes.api.openapi import OpenAPI

        if not hasattr(self, "_openapi_docs"):
            self._openapi_docs = OpenAPI(self.registry)
        docs = self._openapi_docs
        if path == "/openapi/v3":
            return json_response(docs.v3_root())
        if path.startswith("/openapi/v3/"):
            body = docs.v3_group_version(path[len("/openapi/v3/"):])
            if body is not None:
                return web.Response(body=body, content_type="application/json",
                                    headers={"Cache-Control": "public, immutable" if request.query.get("hash") else "no-cache"})
        if path == "/openapi/v2":
            # kubectl 1.27/1.28 ask for the protobuf form only; later tools take JSON.
            if "protobuf" in request.headers.get("Accept", ""):
                from kybernetes.api.openapi import V2_PROTOBUF

                return web.Response(body=docs.v2_protobuf(), headers={"Content-Type": V2_PROTOBUF})
            return web.Response(body=docs.v2(), content_type="application/json")
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")

    async def _resource(self, request: web.Request, info) -> web.StreamResponse:
        r = self.registry.get(info.group, info.version, info.plural)
        if r is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, name, sub, method = info.namespace, info.name, info.subresource, request.method
        if (ns is not None) != r.namespaced and not (ns is None and name is None):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not r.namespaced:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        rest = self.rest
        if r.plural in _REVIEWS and not r.group.startswith("apps"):
            if method != "POST" or name:
                raise errors.method_not_allowed()
            return await self.subs.review(request, r, request[USER], authorize)
        if r.plural == "bindings" and not r.group:
            if ns is None:  # namespaced and not listable: no cluster-wide path exists
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            if method != "POST":
                raise errors.method_not_allowed()
            return await self.subs.binding(request, ns, None)
        if info.watch_path:
            if method != "GET":
                raise errors.method_not_allowed()
            return await rest.watch(request, r, ns, name)
        if sub:
            if sub not in r.subresources:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            if sub in _STREAMING:
                obj_name = name
                if sub == "proxy" and ":" in name:  # [scheme:]name[:port]
                    parts = name.split(":")
                    obj_name = parts[1] if len(parts) == 3 else parts[0]
                obj = await self.objects.get(r, ns, obj_name)
                return await self.node_proxy.handle(request, obj, sub)
            if sub == "binding" and method == "POST":
                return await self.subs.binding(request, ns, name)
            if sub == "eviction" and method == "POST":
                return await self.subs.eviction(request, ns, name)
            if sub == "token" and method == "POST":
                return await self.subs.token(request, r, ns, name)
            if method == "GET":
                return await self.subs.get(request, r, ns, name, sub)
            if method in ("PUT", "PATCH"):
                return await self.subs.write(request, r, ns, name, sub, method)
            raise errors.method_not_allowed()
        if name is None:
            if method == "GET":
                return await rest.list(request, r, ns)
            if method == "POST":
                if r.namespaced and ns is None:
                    raise errors.method_not_allowed()
                return await rest.create(request, r, ns)
            if method == "DELETE":
                return await rest.delete_collection(request, r, ns)
            raise errors.method_not_allowed()
        if method == "GET":
            if request.query.get("watch") in ("true", "1"):
                return await rest.watch(request, r, ns, name)
            return await rest.get(request, r, ns, name)
        if method == "PUT":
            return await rest.update(request, r, ns, name)
        if method == "PATCH":
            return await rest.patch(request, r, ns, name)
        if method == "DELETE":
            return await rest.delete(request, r, ns, name)
        raise errors.method_not_allowed()


async def _expect(request: web.BaseRequest) -> None:
    """`Expect: 100-continue` (curl sends it with larger bodies): say go ahead, as aiohttp's
    router does for its routes."""
    if request.version != aiohttp.HttpVersion11:
        return
    expect = request.headers["Expect"]
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's body has not started yet


def _http_error(e: web.HTTPException) -> errors.ApiError:
    if e.status == 413:
        return errors.too_large()
    reasons = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed",
               415: "UnsupportedMediaType", 431: "RequestHeaderFieldsTooLarge"}
    return errors.ApiError(e.status, reasons.get(e.status, e.reason.replace(" ", "")),
                           e.text or e.reason)


async def serve(config: Config) -> None:
    """Run until SIGTERM/SIGINT."""
    server = ApiServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"kyb apiserver: serving on https://{config.bind_address}:{server.port}; "
          f"kubeconfig: {config.data_dir / 'kubeconfig.yaml'}", flush=True)
    await stop.wait()
    await server.stop()
