"""The proxy loop: informers mark the state dirty; syncs run at most once per min-sync-period,
render the rules from the informer caches and apply only what changed."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from kybernetes.client import Client, InformerFactory, resource

from . import apply, model
from .conntrack import cleanup_commands

log = logging.getLogger("kyb.proxy")

SERVICES = resource("v1", "Service")
SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")


async def route_service_cidr(cidr: str) -> None:
    """Service IPs are local to this node: without a matching rule, traffic to one ends here
    (refused) instead of following the default route out of the machine."""
    await apply.run(["ip", "route", "replace", "local", cidr, "dev", "lo"])


class Proxier:
    def __init__(self, client: Client, node: model.NodeInfo, mode: str = "iptables", *,
                 service_cidr: str = "10.43.0.0/16", min_sync_period: float = 1.0,
                 full_sync_period: float = 3600.0):
        self.client = client
        self.node = node
        self.backend = apply.backend(mode)
        self.service_cidr = service_cidr
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.factory = InformerFactory(client)
        self.services = self.factory.informer(SERVICES)
        self.slices = self.factory.informer(SLICES)
        for inf in (self.services, self.slices):
            inf.add_handler(self._changed, lambda old, new: self._changed(new), self._changed)
        self._dirty = asyncio.Event()
        self._first_change: float | None = None
        self._ports: list[model.ServicePort] = []
        self.last_sync_latency: float | None = None
        self.syncs = 0

    def _changed(self, _obj: dict) -> None:
        if self._first_change is None:
            self._first_change = time.monotonic()
        self._dirty.set()

    async def run(self) -> None:
        await route_service_cidr(self.service_cidr)
        await self.backend.setup()
        self.factory.start()
        try:
            await self.factory.wait_for_sync()
            self._dirty.set()
            last = 0.0
            while True:
                try:
                    await asyncio.wait_for(self._dirty.wait(), self.full_sync_period)
                except TimeoutError:
                    self.backend.current = None   # periodic full rewrite repairs drift
                wait = last + self.min_sync_period - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)   # batch changes that arrive meanwhile
                self._dirty.clear()
                started, self._first_change = self._first_change, None
                last = time.monotonic()
                try:
                    await self.sync()
                except Exception:
                    log.exception("sync failed; retrying")
                    self.backend.current = None
                    self._dirty.set()
                    continue
                if started is not None:
                    self.last_sync_latency = time.monotonic() - started
                    log.info("synced %d service ports in %s mode, %.3fs after the first change",
                             len(self._ports), self.backend.mode, self.last_sync_latency)
        finally:
            await self.factory.stop()

    async def sync(self) -> None:
        ports = model.build(self.services.list(), self.slices.list())
        changed = await self.backend.sync(ports, self.node)
        old, self._ports = self._ports, ports
        self.syncs += changed
        for argv in cleanup_commands(old, ports, self.node):
            await apply.run(argv, check=False)   # exit 1 just means no entry matched


async def serve(kubeconfig: str, node_name: str, mode: str, cluster_cidr: str,
                service_cidr: str, min_sync_period: float = 1.0) -> None:
    client = Client.from_kubeconfig(kubeconfig, user_agent="kube-proxy")
    proxier = Proxier(client, model.NodeInfo(node_name, cluster_cidr), mode,
                      service_cidr=service_cidr, min_sync_period=min_sync_period)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(proxier.run())
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    if task.done() and not task.cancelled() and task.exception():
        raise task.exception()


async def cleanup(mode: str) -> None:
    await apply.backend(mode).cleanup()
