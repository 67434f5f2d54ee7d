"""SqliteStore-only behaviour: slow watchers, restart, automatic compaction, open_store."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kybernetes.store import (
    CompactedError,
    Compare,
    ConflictError,
    DeleteKey,
    KeyExistsError,
    KeyNotFoundError,
    LeaseNotFoundError,
    Put,
    Unavailable,
    open_store,
)
from kybernetes.store.sqlite import ALONE, SqliteStore


async def test_slow_watcher_catches_up_from_the_log(tmp_path):
    store = await SqliteStore(str(tmp_path / "s.db"), watch_queue=5).open()
    try:
        watch = store.watch("/s/")
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0.1)
        written = [await store.update(f"/s/{i % 3}", str(i).encode()) for i in range(60)]
        got = [await asyncio.wait_for(first, 5)]
        while len(got) < len(written):
            got.append(await asyncio.wait_for(watch.__anext__(), 5))
        await watch.aclose()
        assert [e.kv for e in got] == written  # the overflow lost and repeated nothing
    finally:
        await store.close()


async def test_state_and_leases_survive_reopen(tmp_path):
    path = str(tmp_path / "r.db")
    store = await open_store(f"sqlite://{path}")
    lease = await store.lease_grant(30)
    kv = await store.create("/r/a", b"1", lease=lease)
    await store.close()
    store = await open_store(path)
    try:
        assert await store.get("/r/a") == kv
        assert await store.lease_keepalive(lease) == 30
        await store.lease_revoke(lease)
        assert await store.get("/r/a") is None
    finally:
        await store.close()


async def test_history_is_compacted_automatically(tmp_path):
    store = await SqliteStore(str(tmp_path / "c.db"), history_seconds=0.3).open()
    try:
        old = await store.create("/c/a", b"1")
        new = await store.update("/c/a", b"2")
        deadline = asyncio.get_running_loop().time() + 10
        while (await store.status())["compact_revision"] < new.mod_revision:
            assert asyncio.get_running_loop().time() < deadline, "never compacted"
            await asyncio.sleep(0.1)
        with pytest.raises(CompactedError) as err:
            await store.get("/c/a", revision=old.mod_revision)
        assert err.value.compact_revision >= new.mod_revision
        assert (await store.get("/c/a")).value == b"2"
    finally:
        await store.close()


async def _one_group(store: SqliteStore, calls) -> list:
    """Run `calls` (coroutine factories) so that the writer thread commits them as one group:
    it is held by an operation of its own until all of them are queued."""
    release = threading.Event()
    held = asyncio.ensure_future(store._write(release.wait, 10, kind=ALONE))
    await asyncio.sleep(0.05)
    before = await store.current_revision()
    pending = [asyncio.ensure_future(call()) for call in calls]
    await asyncio.sleep(0.05)  # every call has queued its write
    assert await store.current_revision() == before  # nothing committed yet
    release.set()
    await held
    return await asyncio.gather(*pending, return_exceptions=True)


async def test_a_failing_write_in_a_group_commit_fails_alone(tmp_path):
    path = str(tmp_path / "g.db")
    store = await SqliteStore(path).open()
    try:
        lease = await store.lease_grant(60)  # takes no revision, as in etcd
        base = (await store.create("/g/old", b"0")).mod_revision
        watch = store.watch("/g/")
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0.05)
        got = await _one_group(store, [
            lambda: store.create("/g/a", b"1"),
            lambda: store.create("/g/a", b"dup"),  # sees the unflushed create
            lambda: store.update("/g/a", b"2", expected_mod_revision=base + 1),
            lambda: store.update("/g/a", b"stale", expected_mod_revision=base + 1),
            lambda: store.delete("/g/missing"),
            lambda: store.update("/g/old", b"1", lease=lease),
            lambda: store.create("/g/b", b"x", lease=12345),  # no such lease
            lambda: store.txn([Compare("/g/a", "version", "=", 2)],
                              [Put("/g/c", b"t"), DeleteKey("/g/a")]),
            # fails halfway: rolled back to its savepoint, the writes before it stay
            lambda: store.txn([], [Put("/g/d", b"1"), Put("/g/e", b"2", lease=12345)]),
            lambda: store.update("/g/a", b"gone", expected_mod_revision=base + 2),
            lambda: store.create("/g/a", b"again"),
            lambda: store.delete("/g/old", expected_mod_revision=base + 3),
        ])
        a1, dup, a2, stale, missing, old1, nolease, txn, half, gone, again, old_deleted = got
        assert (a1.mod_revision, a1.create_revision, a1.version) == (base + 1, base + 1, 1)
        assert isinstance(dup, KeyExistsError) and dup.current == a1
        assert (a2.mod_revision, a2.create_revision, a2.version) == (base + 2, base + 1, 2)
        assert isinstance(stale, ConflictError) and stale.current == a2
        assert isinstance(missing, KeyNotFoundError)
        assert (old1.mod_revision, old1.version, old1.lease) == (base + 3, 2, lease)
        assert isinstance(nolease, LeaseNotFoundError)
        assert txn.succeeded and txn.revision == base + 4
        assert txn.results[1] == a2
        assert isinstance(half, LeaseNotFoundError)
        assert isinstance(gone, KeyNotFoundError)  # the txn deleted it
        assert (again.mod_revision, again.create_revision, again.version) == (base + 5, base + 5, 1)
        assert old_deleted == old1
        assert await store.current_revision() == base + 6

        events = [await asyncio.wait_for(first, 5)]
        while len(events) < 7:
            events.append(await asyncio.wait_for(watch.__anext__(), 5))
        await watch.aclose()
        assert [(e.type, e.kv.key, e.revision) for e in events] == [
            ("PUT", "/g/a", base + 1), ("PUT", "/g/a", base + 2), ("PUT", "/g/old", base + 3),
            ("PUT", "/g/c", base + 4), ("DELETE", "/g/a", base + 4),
            ("PUT", "/g/a", base + 5), ("DELETE", "/g/old", base + 6),
        ]
        assert events[1].prev_kv == a1 and events[4].prev_kv == a2
        assert events[6].prev_kv == old1
        assert (await store.get("/g/a", revision=base + 2)).value == b"2"
        # the txn rolled back left nothing behind, in SQLite or in the writer's memory
        assert await store.get("/g/d") is None
        assert (await store.create("/g/d", b"d")).version == 1
    finally:
        await store.close()
    store = await SqliteStore(path).open()
    try:
        assert await store.current_revision() == base + 7
        assert [kv.key for kv in (await store.range("/g/")).kvs] == ["/g/a", "/g/c", "/g/d"]
        assert await store.get("/g/a") == again
    finally:
        await store.close()


async def test_a_failed_group_commit_leaves_no_trace(tmp_path):
    store = await SqliteStore(str(tmp_path / "f.db")).open()
    conn = store._writer.conn

    def limit_pages(n: int | None) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {n or pages}").fetchall()

    try:
        a = await store.create("/f/a", b"1")
        await store._write(limit_pages, None, kind=ALONE)  # the file may not grow: disk full
        got = await _one_group(store, [
            lambda: store.update("/f/a", b"x" * 200_000, expected_mod_revision=a.mod_revision),
            lambda: store.create("/f/b", b"y" * 200_000),
        ])
        assert all(isinstance(g, Unavailable) for g in got), got
        await store._write(limit_pages, 1 << 30, kind=ALONE)
        assert await store.current_revision() == a.mod_revision
        assert await store.get("/f/a") == a
        assert await store.get("/f/b") is None
        # the writer forgot the failed group too: the same writes succeed as if it never ran
        a2 = await store.update("/f/a", b"2", expected_mod_revision=a.mod_revision)
        assert (a2.mod_revision, a2.create_revision, a2.version) == (
            a.mod_revision + 1, a.mod_revision, 2)
        b = await store.create("/f/b", b"3")
        assert (b.mod_revision, b.version) == (a.mod_revision + 2, 1)
        events = []
        async for e in store.watch("/f/", a.mod_revision):
            events.append(e)
            if len(events) == 3:
                break
        assert [(e.kv.key, e.kv.value) for e in events] == [
            ("/f/a", b"1"), ("/f/a", b"2"), ("/f/b", b"3")]
        assert events[1].prev_kv == a
    finally:
        await store.close()
