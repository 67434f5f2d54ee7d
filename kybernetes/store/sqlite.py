"""SqliteStore: the embedded Store — etcd's data model in one SQLite file.

    store = SqliteStore("/var/lib/kyb/state.db", history_seconds=300)
    await store.open()          # returns the store
    ...
    await store.close()

Durability: WAL. synchronous="FULL" (default) fsyncs every commit, so an acknowledged write
survives losing the machine; "NORMAL" fsyncs only at checkpoints and still survives kill -9 of
the process (the OS keeps the written WAL pages).

Writes: one writer thread drains a queue and applies everything pending in one transaction
(group commit, one fsync for the lot), then — in commit order, on the event loop — publishes the
watch events and resolves the callers' futures. The writer keeps each live key's revision
bookkeeping in memory (about 250 bytes a key) and sends the group's rows to SQLite in a few
executemany calls, so a write costs little Python (the API server's core is the bottleneck).
Reads run in a small thread pool, one connection per thread; WAL lets them read a consistent
snapshot beside the writer. The event loop never waits on SQLite.

Watches are fed in memory from the commit path. A watch from a past revision first reads the log,
then switches to live events (subscribed before reading, deduplicated by revision). A watcher more
than `watch_queue` events behind drops its live buffer and goes back to reading the log, as etcd's
"unsynced" watchers do, so it never holds up writers; it fails with CompactedError only when
compaction has overtaken it, and the client re-lists, exactly as with etcd.

History: every `compact_interval` seconds the revision current `history_seconds` ago is
compacted; freed pages are handed back with incremental vacuum and the WAL is checkpointed
(and truncated to 32 MiB by journal_size_limit), so the file stays bounded.

Leases: lease TTLs are stored; deadlines are kept in memory and renewed on open (as etcd's new
leader does), so keys of a lease outlive a restart by at least one TTL.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Sequence

from .interface import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    Event,
    KeyValue,
    LeaseNotFoundError,
    Op,
    Put,
    RangeResult,
    TxnResult,
    Unavailable,
    ValueTooLargeError,
)
from .sqlite_log import LogReader, LogWriter, connect, lease_ttls, now

WATCH_PAGE_REVISIONS = 1000  # revisions read per step when a watcher catches up from the log


# How the writer thread runs a queued operation (a queue item is (kind, fn, args, future)).
PLAIN = 0  # create/update/delete: checks before it writes, so it needs no savepoint
GUARDED = 1  # txn, lease, compaction: may fail halfway, runs in a savepoint
ALONE = 2  # outside the batch transaction (vacuum, checkpoint)


class _Watcher:
    """Live events for one watch: one list per commit group (revision order), bounded."""

    __slots__ = ("prefix", "limit", "batches", "count", "behind", "closed", "wake")

    def __init__(self, prefix: str, limit: int):
        self.prefix = prefix
        self.limit = limit
        self.batches: deque[list[Event]] = deque()
        self.count = 0
        self.behind = False  # live events were dropped: read the log again
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, events: list[Event]) -> None:
        """`events` is shared between watchers and never changed afterwards."""
        if self.behind:
            return
        prefix = self.prefix
        if prefix:
            events = [e for e in events if e.kv.key.startswith(prefix)]
            if not events:
                return
        self.batches.append(events)
        self.count += len(events)
        if self.count > self.limit:
            self.drop()
            self.behind = True
        self.wake.set()

    def drop(self) -> None:
        self.batches.clear()
        self.count = 0


class SqliteStore:
    def __init__(
        self,
        path: str,
        *,
        history_seconds: float = 300,
        synchronous: str = "FULL",
        readers: int = 2,
        max_batch: int = 1000,
        watch_queue: int = 10_000,
        compact_interval: float | None = None,
        lease_check_interval: float = 0.25,
    ):
        self.path = path
        self.history_seconds = history_seconds
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.watch_queue = watch_queue
        self.compact_interval = compact_interval or min(max(history_seconds / 10, 0.1), 30)
        self.lease_check_interval = lease_check_interval
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-read")
        self._reader_conns: list = []
        self._local = threading.local()
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()  # (kind, fn, args, fut)
        self._watchers: set[_Watcher] = set()
        self._leases: dict[int, list[float]] = {}  # id → [ttl, deadline]
        self._tasks: list[asyncio.Task] = []
        self._published = 0
        self._open = False

    # --- lifecycle ---
    async def open(self) -> SqliteStore:
        self._loop = asyncio.get_running_loop()
        conn = await asyncio.to_thread(connect, self.path, self.synchronous, create=True)
        self._writer = await asyncio.to_thread(LogWriter, conn)  # reads every key's bookkeeping
        self._published = self._writer.rev
        deadline = now()
        for lease, ttl in (await asyncio.to_thread(lease_ttls, conn)).items():
            self._leases[lease] = [ttl, deadline + ttl]
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-write", daemon=True)
        self._thread.start()
        self._open = True
        self._tasks = [
            asyncio.create_task(self._compactor(), name="sqlite-compactor"),
            asyncio.create_task(self._lease_expirer(), name="sqlite-leases"),
        ]
        return self

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        for w in self._watchers:
            w.closed = True
            w.wake.set()
        await asyncio.to_thread(self._readers.shutdown, True)
        for c in self._reader_conns:
            c.close()

    # --- the writer thread ---
    def _write_loop(self) -> None:
        conn = self._writer.conn
        get, get_nowait, max_batch = self._queue.get, self._queue.get_nowait, self.max_batch
        stop = False
        while not stop:
            item = get()
            if item is None:
                break
            batch = [item]
            while len(batch) < max_batch and item[0] != ALONE:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if batch[-1][0] == ALONE:
                *batch, alone = batch
                if batch:
                    self._commit(batch)
                self._run_alone(alone)
            else:
                self._commit(batch)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _commit(self, batch: list[tuple]) -> None:
        w = self._writer
        cur = w.cur
        outcomes: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        add = outcomes.append
        try:
            cur.execute("BEGIN IMMEDIATE")
            for kind, fn, args, fut in batch:
                if kind == PLAIN:
                    # checks everything before it writes: a failure leaves nothing to undo
                    try:
                        add((fut, fn(*args), None))
                    except Exception as e:  # this op fails alone; the rest of the batch goes on
                        add((fut, None, e))
                    continue
                w.begin_op()  # outside the try: a failing flush fails the whole batch
                cur.execute("SAVEPOINT op")
                try:
                    result = fn(*args)
                except Exception as e:
                    cur.execute("ROLLBACK TO op")
                    cur.execute("RELEASE op")
                    w.abort_op()
                    add((fut, None, e))
                    continue
                cur.execute("RELEASE op")
                w.finish_op()
                add((fut, result, None))
            w.save_meta()
            cur.execute("COMMIT")
            w.committed()
            events, w.events = w.events, []
        except Exception as e:  # SQLite itself failed (disk full, I/O): nothing was written
            if w.conn.in_transaction:
                cur.execute("ROLLBACK")
            w.reload()
            err = Unavailable(f"sqlite: {e}")
            outcomes, events = [(op[3], None, err) for op in batch], []
        self._loop.call_soon_threadsafe(self._deliver, outcomes, events, w.rev)

    def _run_alone(self, op: tuple) -> None:
        _, fn, args, fut = op
        try:
            outcome = (fut, fn(*args), None)
        except Exception as e:
            outcome = (fut, None, e)
        self._loop.call_soon_threadsafe(self._deliver, [outcome], [], self._writer.rev)

    def _deliver(self, outcomes, events: list[Event], revision: int) -> None:
        """On the loop, in commit order: events first, so a caller that watches after its write
        returned already sees the write as history, never twice."""
        self._published = max(self._published, revision)
        if events:
            for w in self._watchers:
                w.offer(events)
        for fut, result, err in outcomes:
            if fut.cancelled():
                continue
            if err is None:
                fut.set_result(result)
            else:
                fut.set_exception(err)

    async def _write(self, fn: Callable[..., Any], *args: Any, kind: int = GUARDED) -> Any:
        if not self._open:
            raise Unavailable("store is closed")
        fut = self._loop.create_future()
        self._queue.put((kind, fn, args, fut))
        return await fut

    # --- readers ---
    def _reader(self) -> LogReader:
        r = getattr(self._local, "reader", None)
        if r is None:
            conn = connect(self.path, self.synchronous)
            self._reader_conns.append(conn)
            r = self._local.reader = LogReader(conn)
        return r

    async def _read(self, name: str, *args: Any) -> Any:
        if not self._open:
            raise Unavailable("store is closed")
        call = lambda: getattr(self._reader(), name)(*args)  # noqa: E731
        return await self._loop.run_in_executor(self._readers, call)

    # --- Store ---
    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        return await self._read("get", key, max(revision, 0))

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None, revision: int = 0
    ) -> RangeResult:
        return await self._read("range", prefix, limit, start_after, max(revision, 0))

    # create/update/delete are the API server's writes: queued inline, without _write's layer
    async def create(self, key: str, value: bytes, *, lease: int = 0) -> KeyValue:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, len(value))
        if not self._open:
            raise Unavailable("store is closed")
        fut = self._loop.create_future()
        self._queue.put((PLAIN, self._writer.create, (key, value, lease), fut))
        return await fut

    async def update(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> KeyValue:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, len(value))
        if not self._open:
            raise Unavailable("store is closed")
        fut = self._loop.create_future()
        args = (key, value, expected_mod_revision, lease)
        self._queue.put((PLAIN, self._writer.update, args, fut))
        return await fut

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        return await self._write(self._writer.delete, key, expected_mod_revision, kind=PLAIN)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        for op in (*success, *failure):
            if isinstance(op, Put):
                _check_size(op.key, op.value)
        return await self._write(self._writer.txn, tuple(compares), tuple(success), tuple(failure))

    async def current_revision(self) -> int:
        return self._published

    async def compact(self, revision: int) -> None:
        await self._write(self._writer.compact, revision)

    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[Event]:
        w = _Watcher(prefix, self.watch_queue)
        self._watchers.add(w)  # subscribe first, then read history: nothing falls in between
        try:
            if start_revision > 0:
                next_rev, w.behind = start_revision, True
            else:
                next_rev = self._published + 1
            while True:
                if w.closed:
                    raise Unavailable("store is closed")
                if w.behind:
                    # everything published up to now is in the log snapshot read below
                    w.behind = False
                    w.drop()
                    while True:
                        events, upto, current = await self._read(
                            "events", prefix, next_rev, WATCH_PAGE_REVISIONS
                        )
                        for e in events:
                            yield e
                        next_rev = max(next_rev, upto + 1)
                        if upto >= current:
                            break
                    continue
                if not w.batches:
                    w.wake.clear()
                    await w.wake.wait()
                    continue
                batch = w.batches.popleft()
                w.count -= len(batch)
                last = batch[-1].kv.mod_revision
                if last < next_rev:
                    continue  # already read from the log
                if batch[0].kv.mod_revision >= next_rev:
                    for e in batch:
                        yield e
                else:
                    for e in batch:
                        if e.kv.mod_revision >= next_rev:  # else already read from the log
                            yield e
                next_rev = last + 1
        finally:
            self._watchers.discard(w)

    async def lease_grant(self, ttl_seconds: int) -> int:
        ttl = max(int(ttl_seconds), 1)
        while True:
            lease = random.randrange(1, 1 << 62)
            if lease not in self._leases:
                break
        await self._write(self._writer.lease_grant, lease, ttl)
        self._leases[lease] = [ttl, now() + ttl]
        return lease

    async def lease_revoke(self, lease: int) -> None:
        self._leases.pop(lease, None)
        await self._write(self._writer.lease_revoke, lease)

    async def lease_keepalive(self, lease: int) -> int:
        entry = self._leases.get(lease)
        if entry is None or entry[1] <= now():
            raise LeaseNotFoundError(lease)
        entry[1] = now() + entry[0]
        return int(entry[0])

    async def status(self) -> dict:
        figures = await self._read("status")
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.stat(self.path + suffix).st_size
            except FileNotFoundError:
                pass
        figures.update(
            backend="sqlite", path=self.path, db_size_bytes=size, watchers=len(self._watchers)
        )
        return figures

    # --- background work ---
    async def _compactor(self) -> None:
        samples: deque[tuple[float, int]] = deque()  # (time, revision then)
        while True:
            await asyncio.sleep(self.compact_interval)
            t = now()
            samples.append((t, self._published))
            target = 0
            while samples and samples[0][0] <= t - self.history_seconds:
                target = samples.popleft()[1]
            if target > self._writer.compact_rev:
                try:
                    await self.compact(target)
                except CompactedError:
                    pass  # someone compacted further meanwhile
            await self._write(self._maintain, kind=ALONE)

    def _maintain(self) -> None:
        """Writer thread, outside a transaction: give free pages back, checkpoint the WAL."""
        conn = self._writer.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free > 256 and free > pages // 4:
            conn.execute(f"PRAGMA incremental_vacuum({free - pages // 10})").fetchall()
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def _lease_expirer(self) -> None:
        while True:
            await asyncio.sleep(self.lease_check_interval)
            t = now()
            for lease in [k for k, (_, deadline) in self._leases.items() if deadline <= t]:
                del self._leases[lease]
                try:
                    await self._write(self._writer.lease_revoke, lease)
                except LeaseNotFoundError:
                    pass  # revoked meanwhile


def _check_size(key: str, value: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLargeError(key, len(value))
