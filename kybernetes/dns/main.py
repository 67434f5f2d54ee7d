"""`kyb dns`: informers → zone → DNS server, plus /metrics, /health and /ready over HTTP."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web

from kybernetes.client import Client, InformerFactory

from .cluster import ClusterState
from .forward import parse_hostport
from .kubedns import keep_service
from .metrics import Metrics
from .records import Zone
from .server import DnsServer

log = logging.getLogger(__name__)


@dataclass
class DnsConfig:
    kubeconfig: str | None = None
    listen: str = "10.43.0.10:53"
    cluster_domain: str = "cluster.local"
    upstreams: list[str] = field(default_factory=list)
    metrics_listen: str | None = "127.0.0.1:9153"
    ttl: int = 5
    pods: str = "insecure"                 # insecure | verified | disabled, as CoreDNS' `pods`
    cluster_ip: str | None = "10.43.0.10"  # of the kube-dns Service to ensure; None: leave it
    cache: bool = True


class Dns:
    """The running component; `start` returns once it listens, `stop` undoes everything."""

    def __init__(self, cfg: DnsConfig, client: Client | None = None):
        self.cfg = cfg
        self.client = client or Client.from_kubeconfig(cfg.kubeconfig, user_agent="kyb-dns")
        self.factory = InformerFactory(self.client)
        self.cluster = ClusterState.from_factory(self.factory, pods=cfg.pods == "verified")
        self.zone = Zone(self.cluster, cfg.cluster_domain, ttl=cfg.ttl, pod_mode=cfg.pods)
        self.metrics = Metrics(f"dns://{cfg.listen}", self.zone.domain + ".")
        self.server = DnsServer(self.zone, upstreams=[parse_hostport(u) for u in cfg.upstreams],
                                metrics=self.metrics, cache=cfg.cache)
        self._http: web.AppRunner | None = None
        self.http_address: tuple[str, int] | None = None
        self._ensure: asyncio.Task | None = None

    async def start(self) -> None:
        self.factory.start()
        host, port = parse_hostport(self.cfg.listen)
        await self.server.start(host, port)
        if self.cfg.metrics_listen:
            await self._start_http(*parse_hostport(self.cfg.metrics_listen, 9153))
        if self.cfg.cluster_ip:
            self._ensure = asyncio.create_task(keep_service(self.client, self.cfg.cluster_ip))

    async def stop(self) -> None:
        if self._ensure:
            self._ensure.cancel()
            await asyncio.gather(self._ensure, return_exceptions=True)
        await self.server.stop()
        if self._http:
            await self._http.cleanup()
        await self.factory.stop()
        await self.client.close()

    async def _start_http(self, host: str, port: int) -> None:
        async def metrics(_req: web.Request) -> web.Response:
            return web.Response(body=self.metrics.exposition(),
                                content_type="text/plain", charset="utf-8")

        async def health(_req: web.Request) -> web.Response:
            return web.Response(text="OK")

        async def ready(_req: web.Request) -> web.Response:
            if self.cluster.synced:
                return web.Response(text="OK")
            return web.Response(status=503, text="informers not synced")

        app = web.Application()
        app.add_routes([web.get("/metrics", metrics), web.get("/health", health),
                        web.get("/healthz", health), web.get("/ready", ready),
                        web.get("/readyz", ready)])
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.http_address = site._server.sockets[0].getsockname()[:2]  # the port when 0


async def serve(cfg: DnsConfig) -> None:
    dns = Dns(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dns.start()
    if dns.http_address:
        log.info("dns: metrics and health on http://%s:%d", *dns.http_address)
    try:
        await stop.wait()
    finally:
        await dns.stop()
