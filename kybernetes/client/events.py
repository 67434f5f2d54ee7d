"""Recording core/v1 Events, so `kubectl describe` tells what controllers did.

Events go through a correlator shaped like client-go's (tools/record/events_cache.go), so a
controller creating thousands of pods does not write thousands of Events:
- the same (object, type, reason, message) again bumps `count` and `lastTimestamp`;
- from the 10th distinct message with the same (object, type, reason) within 10 minutes, they
  are combined into one Event "(combined from similar events): <latest message>";
- a source may write 25 Events about one object, then one every 5 minutes (the rest are
  dropped, still counted in the next write that gets through).
With MAX_PENDING writes in flight, a new event is dropped before it is correlated (client-go's
broadcaster drops it from its full queue): it is not counted anywhere.
Writes happen in background tasks this recorder owns; writes of one Event are kept in order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict

from kybernetes.api.clock import now_rfc3339 as _now
from kybernetes.api.errors import ApiError

from .rest import Client, resource
from .workqueue import TokenBucket

log = logging.getLogger(__name__)
_EVENTS = resource("v1", "Event")

AGGREGATE_MAX_EVENTS = 10        # upstream defaultAggregateMaxEvents
AGGREGATE_INTERVAL = 600.0       # upstream defaultAggregateIntervalInSeconds
SPAM_BURST = 25                  # upstream defaultSpamBurst
SPAM_QPS = 1.0 / 300.0           # upstream defaultSpamQPS
CACHE_SIZE = 4096                # upstream maxLruCacheEntries
MAX_PENDING = 1000               # upstream maxQueuedEvents: beyond this, events are dropped
_COMBINED = "(combined from similar events): "




class _LRU(OrderedDict):
    def __init__(self, size: int = CACHE_SIZE):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        try:
            self.move_to_end(key)
        except KeyError:
            return default
        return self[key]

    def put(self, key, value) -> None:
        """Store and mark most recent (an existing key was moved to the end by get())."""
        if key in self:
            self.move_to_end(key)
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 clock=time.monotonic):
        self.client = client
        self.component = component
        self.host = host or socket.gethostname()
        self.clock = clock
        self._aggregates = _LRU()   # similar-events key → (set of messages, last seen)
        self._observed = _LRU()     # event key → [event name, count, firstTimestamp]
        self._spam = _LRU()         # object key → TokenBucket
        self._pending: set[asyncio.Task] = set()
        self._last_write: dict[str, asyncio.Task] = {}  # event name → its latest write

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Correlate now (so concurrent callers agree), write in a task this recorder owns."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        meta = obj["metadata"]
        if len(self._pending) >= MAX_PENDING:
            # As client-go's broadcaster: dropped before the correlator ever sees it, so a
            # scheduler binding a thousand pods a second spends nothing on the events it drops.
            log.debug("event %s/%s dropped: too many pending writes", reason, meta["name"])
            return
        involved = {"kind": obj.get("kind"), "namespace": meta.get("namespace"),
                    "name": meta["name"], "uid": meta.get("uid"),
                    "apiVersion": obj.get("apiVersion"),
                    "resourceVersion": meta.get("resourceVersion")}
        source = (self.component, self.host, involved["kind"], involved["namespace"],
                  involved["name"], involved["uid"], involved["apiVersion"])
        message, key = self._aggregate(source + (type_, reason), message)
        now = _now()
        seen = self._observed.get(key)
        if seen is None:
            seen = [f"{meta['name']}.{time.time_ns():x}", 0, now]
            self._observed.put(key, seen)     # (get() already refreshed a known one)
        seen[1] += 1
        if not self._allow(source):
            return  # spam: dropped, though counted in the next write about it
        name, count, first = seen
        body = {
            "metadata": {"name": name, "namespace": meta.get("namespace") or "default"},
            "involvedObject": involved, "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": first, "lastTimestamp": now, "count": count,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        previous = self._last_write.get(name)
        task = loop.create_task(self._write(body, count > 1, previous))
        self._last_write[name] = task
        self._pending.add(task)
        task.add_done_callback(lambda t: self._done(name, t))

    def _aggregate(self, similar: tuple, message: str) -> tuple[str, tuple]:
        """(message to record, observation key): the event itself, or the combined one once
        too many similar messages were seen (upstream EventAggregate)."""
        now = self.clock()
        record = self._aggregates.get(similar)
        if record is None or now - record[1] > AGGREGATE_INTERVAL:
            record = (set(), now)
        messages = record[0]
        messages.add(message)
        self._aggregates.put(similar, (messages, now))
        if len(messages) < AGGREGATE_MAX_EVENTS:
            return message, similar + (message,)
        messages.pop()  # keep the set at its maximum size
        return _COMBINED + message, similar + (None,)

    def _allow(self, source: tuple) -> bool:
        bucket = self._spam.get(source)
        if bucket is None:
            bucket = TokenBucket(SPAM_QPS, SPAM_BURST, clock=self.clock)
            self._spam.put(source, bucket)
        return bucket.try_accept()

    def _done(self, name: str, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if self._last_write.get(name) is task:
            del self._last_write[name]

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _write(self, body: dict, existing: bool, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        meta = body["metadata"]
        try:
            if existing:
                try:
                    await self.client.patch(_EVENTS, meta["name"], {
                        "count": body["count"], "lastTimestamp": body["lastTimestamp"],
                        "message": body["message"]}, meta["namespace"], type="strategic")
                    return
                except ApiError as e:
                    if e.code != 404:
                        raise
                    # Never written (dropped, or expired): create it, as upstream does.
            await self.client.create(_EVENTS, body, meta["namespace"])
        except ApiError as e:
            log.debug("event %s/%s not recorded: %s", body["reason"],
                      body["involvedObject"]["name"], e)
