"""A rate-limited work queue of keys, shaped like client-go's.

A key is in the queue at most once; a key being processed is not handed to a second worker,
and re-adds during processing run again after `done`. Retries back off per key (5 ms doubling
to 1000 s) under an overall token bucket (10 per second, burst 100), as client-go's default
controller rate limiter does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class TokenBucket:
    def __init__(self, rate: float, burst: int, *, clock=time.monotonic):
        self.rate, self.burst = rate, burst
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def reserve(self) -> float:
        """Take a token; the delay before it is really available."""
        self._refill()
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_accept(self) -> bool:
        """Take a token if one is available now."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class WorkQueue:
    def __init__(self, name: str = "", *, base_delay: float = 0.005, max_delay: float = 1000.0,
                 qps: float = 10.0, burst: int = 100):
        self.name = name
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()
        self._shutdown = False
        self.base_delay, self.max_delay = base_delay, max_delay
        self.bucket = TokenBucket(qps, burst)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if self._shutdown:
            return
        loop = asyncio.get_running_loop()
        old = self._timers.get(key)
        when = loop.time() + delay
        if old is not None:
            if old.when() <= when:
                return  # an earlier wake-up is already set
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        per_item = min(self.base_delay * (2 ** n), self.max_delay)
        self.add_after(key, max(per_item, self.bucket.reserve()))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        """The next key, or None once shut down."""
        while not self._queue:
            if self._shutdown:
                return None
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def shutdown(self) -> None:
        self._shutdown = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self._ready.set()
