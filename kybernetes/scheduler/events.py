"""Event writes that never crowd out bindings: client-go's broadcaster feeds one sink that writes
events one after another (and drops beyond maxQueuedEvents, which EventRecorder does). Here the
recorder's client is wrapped so that at most a few event writes are in flight at once."""

from __future__ import annotations

import asyncio

EVENT_WRITERS = 2


class LimitedWrites:
    """The create/patch part of a Client, with at most `limit` requests in flight."""

    def __init__(self, client, limit: int = EVENT_WRITERS):
        self.client = client
        self._sem = asyncio.Semaphore(limit)
        self.in_flight = self.peak = 0

    async def _call(self, fn, *a, **kw):
        async with self._sem:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                return await fn(*a, **kw)
            finally:
                self.in_flight -= 1

    async def create(self, *a, **kw):
        return await self._call(self.client.create, *a, **kw)

    async def patch(self, *a, **kw):
        return await self._call(self.client.patch, *a, **kw)
