"""SqliteStore-only behaviour: slow watchers, restart, automatic compaction, open_store."""

from __future__ import annotations

import asyncio

import pytest

from kybernetes.store import CompactedError, open_store
from kybernetes.store.sqlite import SqliteStore


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
