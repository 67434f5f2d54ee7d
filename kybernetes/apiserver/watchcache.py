"""The watch cache: every object in memory, fed by one store watch.

Lists and watches are served from here, so N watchers cost one store watch. Each event is decoded
once and its encodings (JSON, Table rows) are cached on the event, not made once per watcher.
Writes made by this server hand their object over (`expect`), so their events are not decoded
at all; the stored bytes are kept beside each object for the write path's read-modify-write.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from kybernetes.store import CompactedError, Store

log = logging.getLogger(__name__)

ROOT = "/registry/"


def decode(value: bytes, mod_revision: int) -> dict:
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def _after(prefix: str) -> str:
    """The least string greater than every string that starts with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(slots=True)
class CachedEvent:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    revision: int
    obj: dict  # for DELETED: the last state, with resourceVersion = the delete's revision
    prev: dict | None
    encoded: dict[Any, bytes] = field(default_factory=dict)  # per output format


def _from_store(ev) -> CachedEvent:
    rev = ev.kv.mod_revision
    prev = decode(ev.prev_kv.value, ev.prev_kv.mod_revision) if ev.prev_kv else None
    if ev.type == "PUT":
        return CachedEvent("MODIFIED" if prev else "ADDED", ev.kv.key, rev,
                           decode(ev.kv.value, rev), prev)
    last = dict(prev or {"metadata": {}})
    last["metadata"] = dict(last.get("metadata") or {}, resourceVersion=str(rev))
    return CachedEvent("DELETED", ev.kv.key, rev, last, prev)


class Watcher:
    """One client's stream. `queue` yields CachedEvents; None means the stream ended."""

    def __init__(self, prefix: str, capacity: int = 10_000):
        self.prefix = prefix
        self.queue: asyncio.Queue[CachedEvent | None] = asyncio.Queue()
        self.capacity = capacity
        self.overflowed = False

    def offer(self, ev: CachedEvent) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.capacity:
            # A watcher this far behind would hold memory forever: end it; the client re-lists.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(ev)


class WatchCache:
    def __init__(self, store: Store, *, history: int = 50_000):
        self.store = store
        self.objects: dict[str, dict] = {}
        self.values: dict[str, bytes] = {}  # the stored bytes of each object
        self._expected: dict[str, tuple[bytes, dict]] = {}  # key → (bytes being written, object)
        # self.objects' keys, sorted (a list is a bisect, not a scan). Writes only note what
        # came and went, by resource; a list whose range has such notes merges them first
        # (inserting into a long list cost every create; a list of one resource stays cheap).
        self._keys: list[str] = []
        self._changed: dict[str, tuple[set[str], set[str]]] = {}  # resource → (added, removed)
        self._encoded: dict[str, tuple[dict, bytes]] = {}  # JSON of listed objects, reused
        self.revision = 0
        self.history: deque[CachedEvent] = deque(maxlen=history)
        self.watchers: set[Watcher] = set()
        self._task: asyncio.Task | None = None
        self._advanced = asyncio.Event()  # replaced after each set: waiters re-check revision
        self.ready = asyncio.Event()
        self.on_event: list[Callable[[CachedEvent], None]] = []

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="watchcache")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for w in list(self.watchers):
            w.queue.put_nowait(None)

    async def _load(self) -> None:
        objects: dict[str, dict] = {}
        values: dict[str, bytes] = {}
        start_after = None
        revision = 0
        while True:
            res = await self.store.range(ROOT, limit=2000, start_after=start_after,
                                         revision=revision)
            revision = res.revision
            for kv in res.kvs:
                objects[kv.key] = decode(kv.value, kv.mod_revision)
                values[kv.key] = kv.value
            if not res.more or not res.kvs:
                break
            start_after = res.kvs[-1].key
        self.objects = objects
        self.values = values
        self._keys = sorted(objects)
        self._changed.clear()
        self._encoded.clear()
        self._expected.clear()
        self.revision = revision
        self.history.clear()
        self.ready.set()

    async def _run(self) -> None:
        while True:
            try:
                async for ev in self.store.watch(ROOT, self.revision + 1):
                    self._apply(ev)
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.warning("watch cache fell behind compaction; reloading")
                await self._relist()
            except Exception:
                log.exception("store watch failed; retrying")
                await asyncio.sleep(0.5)

    async def _relist(self) -> None:
        # Watchers cannot be told what they missed: end them so their clients re-list.
        for w in list(self.watchers):
            w.queue.put_nowait(None)
        self.watchers.clear()
        await self._load()

    def _apply(self, ev) -> None:
        key = ev.kv.key
        rev = ev.kv.mod_revision
        prev = self.objects.get(key)
        self._encoded.pop(key, None)
        if ev.type == "PUT":
            value = ev.kv.value
            hint = self._expected.pop(key, None)
            if hint is not None and hint[0] == value:
                obj = hint[1]  # the writer's own object: equal to decoding value
                obj["metadata"]["resourceVersion"] = str(rev)
            else:
                obj = decode(value, rev)
            self.objects[key] = obj
            self.values[key] = value
            if prev is None:
                self._changes(key)[0].add(key)
            ce = CachedEvent("MODIFIED" if prev is not None else "ADDED", key, rev, obj, prev)
        else:
            if prev is None:
                self.revision = rev
                return
            del self.objects[key]
            self.values.pop(key, None)
            added, removed = self._changes(key)
            added.discard(key)
            removed.add(key)
            last = dict(prev)
            last["metadata"] = dict(prev["metadata"], resourceVersion=str(rev))
            ce = CachedEvent("DELETED", key, rev, last, prev)
        self.revision = rev
        self.history.append(ce)
        for w in self.watchers:
            if key.startswith(w.prefix):
                w.offer(ce)
        for cb in self.on_event:
            cb(ce)
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def wait_for(self, revision: int, timeout: float = 5.0) -> bool:
        """Wait until the cache has seen `revision`. False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self.revision < revision:
                    await self._advanced.wait()
            return True
        except TimeoutError:
            return False

    async def sync(self) -> None:
        """Read-your-writes: wait until everything committed so far is in the cache."""
        current = await self.store.current_revision()
        await self.wait_for(current)

    def list(self, prefix: str) -> tuple[list[tuple[str, dict]], int]:
        """(key, object) under prefix, in key order, and the revision they are at."""
        objects = self.objects
        return [(k, objects[k]) for k in self.keys(prefix)], self.revision

    def _changes(self, key: str) -> tuple[set[str], set[str]]:
        # Notes go by resource, /registry/<group>/<plural>/ (a key without one: by itself).
        parts = key.split("/", 4)
        resource = "/".join(parts[:4]) + "/" if len(parts) == 5 else key
        changes = self._changed.get(resource)
        if changes is None:
            changes = self._changed[resource] = (set(), set())
        return changes

    def keys(self, prefix: str) -> list[str]:
        if any(r.startswith(prefix) or prefix.startswith(r) for r in self._changed):
            added = [k for a, _ in self._changed.values() for k in a]
            gone = {k for _, r in self._changed.values() for k in r}
            # Removed first: a key gone and back is in both.
            keys = [k for k in self._keys if k not in gone] if gone else self._keys
            if added:
                keys = keys + sorted(added)
                keys.sort()  # two sorted runs: a linear merge
            self._keys = keys
            self._changed = {}
        keys = self._keys
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, _after(prefix), lo) if prefix else len(keys)
        return keys[lo:hi]

    def get(self, key: str) -> dict | None:
        return self.objects.get(key)

    def stored(self, key: str) -> tuple[bytes, int, dict] | None:
        """(stored bytes, mod revision, object) as the cache last saw them; may be stale."""
        obj = self.objects.get(key)
        if obj is None:
            return None
        return self.values[key], int(obj["metadata"]["resourceVersion"]), obj

    def expect(self, key: str, value: bytes, obj: dict) -> None:
        """The write path is about to store `value` (the encoding of obj) at key: when its event
        arrives with those bytes, obj becomes the cached object instead of a decode. The writer
        must not change obj afterwards."""
        self._expected[key] = (value, obj)

    def unexpect(self, key: str, value: bytes) -> None:
        """That write failed: forget its hint."""
        hint = self._expected.get(key)
        if hint is not None and hint[0] is value:
            del self._expected[key]

    def encoded(self, key: str, obj: dict) -> bytes:
        """orjson.dumps(obj), kept while obj is the cached object at key: a list of N objects
        costs N joins, not N encodes, until they change."""
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        data = orjson.dumps(obj)
        if self.objects.get(key) is obj:
            self._encoded[key] = (obj, data)
        return data

    def oldest_revision(self) -> int:
        """The oldest revision a watch can start after without missing events."""
        if self.history:
            return self.history[0].revision - 1
        return self.revision

    def watch(self, prefix: str, after_revision: int | None) -> tuple[Watcher, list[CachedEvent]]:
        """Register a watcher. after_revision None: initial ADDED events for the current state.
        Otherwise events with revision > after_revision (410 when they are gone)."""
        w = Watcher(prefix)
        if after_revision is None:
            initial = [CachedEvent("ADDED", k, int(o["metadata"]["resourceVersion"]), o, None)
                       for k, o in self.list(prefix)[0]]
        else:
            if after_revision < self.oldest_revision():
                raise CompactedError(after_revision, self.oldest_revision())
            # Newest first, stopping at after_revision: a resumed watch is usually recent,
            # and the history holds up to 50,000 events.
            initial = []
            for e in reversed(self.history):
                if e.revision <= after_revision:
                    break
                if e.key.startswith(prefix):
                    initial.append(e)
            initial.reverse()
        self.watchers.add(w)
        return w, initial

    async def watch_from_store(self, prefix: str, after_revision: int) -> tuple[Watcher, asyncio.Task]:
        """A watcher fed by its own store watch, for revisions older than the cache remembers.
        Raises CompactedError when the store has forgotten them too."""
        await self.store.range(prefix, limit=1, revision=max(after_revision, 1))  # still kept?
        w = Watcher(prefix)

        async def pump():
            try:
                async for ev in self.store.watch(prefix, after_revision + 1):
                    w.offer(_from_store(ev))
            except CompactedError:
                pass
            finally:
                w.queue.put_nowait(None)

        return w, asyncio.create_task(pump(), name="store-watch")

    def unwatch(self, w: Watcher) -> None:
        self.watchers.discard(w)
