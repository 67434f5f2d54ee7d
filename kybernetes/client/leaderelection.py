"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does.

Only the holder runs its work; it renews every `retry_period`. If it cannot renew within
`renew_deadline` it stops leading (the work is cancelled); others take the lease once
`lease_duration` has passed since the last renewal they saw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Awaitable, Callable

from kybernetes.api.errors import ApiError

from .rest import Client, resource

log = logging.getLogger(__name__)
_LEASES = resource("coordination.k8s.io/v1", "Lease")


def _micro_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: Client, name: str, identity: str, *, namespace: str = "kube-system",
                 lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2):
        self.client, self.name, self.identity, self.namespace = client, name, identity, namespace
        self.lease_duration, self.renew_deadline, self.retry_period = (
            lease_duration, renew_deadline, retry_period)
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.leading = False

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        """Acquire, run `work` while leading; on losing the lease, cancel it and try again."""
        while True:
            while not await self._try():
                await asyncio.sleep(self.retry_period)
            log.info("%s: %s became leader", self.name, self.identity)
            self.leading = True
            task = asyncio.create_task(work(), name=f"leader-{self.name}")
            try:
                await self._renew_until_lost(task)
            finally:
                self.leading = False
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            log.warning("%s: %s lost the lease", self.name, self.identity)

    async def _renew_until_lost(self, task: asyncio.Task) -> None:
        last_ok = time.monotonic()
        while not task.done():
            await asyncio.sleep(self.retry_period)
            if await self._try():
                last_ok = time.monotonic()
            elif time.monotonic() - last_ok > self.renew_deadline:
                return

    async def release(self) -> None:
        """Give the lease up (on clean shutdown) so another candidate takes over at once."""
        try:
            lease = await self.client.get(_LEASES, self.name, self.namespace)
            if lease["spec"].get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.client.update(_LEASES, lease)
        except ApiError:
            pass

    async def _try(self) -> bool:
        now = _micro_now()
        spec_new = {"holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        try:
            lease = await self.client.get(_LEASES, self.name, self.namespace)
        except ApiError as e:
            if e.code != 404:
                return False
            try:
                await self.client.create(_LEASES, {"metadata": {"name": self.name,
                                                                "namespace": self.namespace},
                                                   "spec": spec_new})
                return True
            except ApiError:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        observed = (holder or "", spec.get("renewTime") or "")
        if observed != self._observed:
            self._observed, self._observed_at = observed, time.monotonic()
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and time.monotonic() - self._observed_at < duration:
            return False  # someone else holds a lease that is still fresh
        if holder == self.identity:
            spec_new["acquireTime"] = spec.get("acquireTime") or now
            spec_new["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            spec_new["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec_new
        try:
            await self.client.update(_LEASES, lease)
            return True
        except ApiError:
            return False
