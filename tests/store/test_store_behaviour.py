"""One behaviour suite for every Store backend (the `store` fixture runs it on sqlite and etcd)."""

from __future__ import annotations

import asyncio

import pytest

from kybernetes.store import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    ConflictError,
    DeleteKey,
    FutureRevisionError,
    GetKey,
    KeyExistsError,
    KeyNotFoundError,
    LeaseNotFoundError,
    Put,
    ValueTooLargeError,
)


async def take(store, prefix: str, start: int, n: int, timeout: float = 10.0):
    """The first n events of a watch (fails on timeout rather than hanging)."""
    out = []

    async def run():
        watch = store.watch(prefix, start)
        try:
            async for e in watch:
                out.append(e)
                if len(out) == n:
                    return
        finally:
            await watch.aclose()

    await asyncio.wait_for(run(), timeout)
    return out


async def eventually(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.1)


async def test_create_refuses_an_existing_key(store):
    first = await store.create("/c/a", b"1")
    assert first.version == 1 and first.create_revision == first.mod_revision
    with pytest.raises(KeyExistsError) as err:
        await store.create("/c/a", b"2")
    assert err.value.current is None or err.value.current.value == b"1"
    assert (await store.get("/c/a")).value == b"1"


async def test_update_compare_and_swap(store):
    kv = await store.create("/u/a", b"1")
    kv2 = await store.update("/u/a", b"2", expected_mod_revision=kv.mod_revision)
    assert kv2.mod_revision > kv.mod_revision
    assert (kv2.create_revision, kv2.version) == (kv.create_revision, 2)
    with pytest.raises(ConflictError) as err:
        await store.update("/u/a", b"stale", expected_mod_revision=kv.mod_revision)
    assert err.value.current is None or err.value.current.value == b"2"
    with pytest.raises(KeyNotFoundError):
        await store.update("/u/missing", b"x", expected_mod_revision=kv.mod_revision)
    assert (await store.get("/u/a")).value == b"2"
    # without a precondition update is a plain put, creating the key if needed
    made = await store.update("/u/new", b"n")
    assert made.version == 1


async def test_delete_compare_and_swap(store):
    kv = await store.create("/d/a", b"1")
    kv2 = await store.update("/d/a", b"2")
    with pytest.raises(ConflictError):
        await store.delete("/d/a", expected_mod_revision=kv.mod_revision)
    gone = await store.delete("/d/a", expected_mod_revision=kv2.mod_revision)
    assert gone.value == b"2" and gone.mod_revision == kv2.mod_revision
    assert await store.get("/d/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/d/a")
    again = await store.create("/d/a", b"3")
    assert again.version == 1 and again.create_revision > kv.create_revision


async def test_range_pages_stay_at_their_revision(store):
    for i in range(10):
        await store.create(f"/r/k{i:02d}", str(i).encode())
    await store.create("/r-other", b"outside the prefix")
    first = await store.range("/r/", limit=3)
    assert first.more and first.count == 10 and len(first.kvs) == 3
    rev = first.revision
    seen = list(first.kvs)
    while True:
        # writes between pages must not leak into a read pinned at `rev`
        await store.update(f"/r/k{len(seen):02d}", b"changed")
        await store.delete(f"/r/k{len(seen) - 1:02d}")
        await store.create(f"/r/z{len(seen)}", b"new")
        page = await store.range("/r/", limit=3, start_after=seen[-1].key, revision=rev)
        assert page.revision == rev and page.count == 10
        seen += page.kvs
        if not page.more:
            break
    assert [kv.key for kv in seen] == [f"/r/k{i:02d}" for i in range(10)]
    assert [kv.value for kv in seen] == [str(i).encode() for i in range(10)]
    now = await store.range("/r/")
    assert now.revision > rev and now.count == len(now.kvs)
    assert [kv.key for kv in now.kvs] == sorted(kv.key for kv in now.kvs)
    assert {kv.key for kv in now.kvs} >= {f"/r/z{n}" for n in (3, 6, 9)}
    assert "/r/k02" not in {kv.key for kv in now.kvs}  # deleted after the first page


async def test_reads_at_past_revisions(store):
    a1 = await store.create("/p/a", b"1")
    a2 = await store.update("/p/a", b"2")
    b1 = await store.create("/p/b", b"x")
    gone = await store.delete("/p/a")
    assert gone.mod_revision == a2.mod_revision
    assert (await store.get("/p/a", revision=a1.mod_revision)).value == b"1"
    assert (await store.get("/p/a", revision=a2.mod_revision)) == a2
    assert (await store.get("/p/a", revision=b1.mod_revision)).value == b"2"
    assert await store.get("/p/a") is None
    assert await store.get("/p/b", revision=a2.mod_revision) is None
    past = await store.range("/p/", revision=b1.mod_revision)
    assert [(kv.key, kv.value) for kv in past.kvs] == [("/p/a", b"2"), ("/p/b", b"x")]
    current = await store.current_revision()
    with pytest.raises(FutureRevisionError):
        await store.get("/p/a", revision=current + 1000)


async def test_watch_replays_history_then_goes_live(store):
    a = await store.create("/w/a", b"1")
    await store.update("/w/a", b"2")
    await store.create("/w-not/x", b"outside")
    await store.delete("/w/a")

    got: list = []

    async def watcher():
        got.extend(await take(store, "/w/", a.mod_revision, 8))

    task = asyncio.create_task(watcher())
    for i in range(5):  # live writes racing with the replay
        await store.update(f"/w/b{i}", str(i).encode())
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 15)
    assert [(e.type, e.kv.key, e.kv.value) for e in got] == [
        ("PUT", "/w/a", b"1"),
        ("PUT", "/w/a", b"2"),
        ("DELETE", "/w/a", b""),
    ] + [("PUT", f"/w/b{i}", str(i).encode()) for i in range(5)]
    revisions = [e.revision for e in got]
    assert revisions == sorted(set(revisions))
    assert got[1].prev_kv is None or got[1].prev_kv.value == b"1"


async def test_watch_from_now_sees_only_later_events(store):
    await store.create("/n/old", b"old")
    watch = store.watch("/n/")
    first = asyncio.ensure_future(watch.__anext__())
    await asyncio.sleep(0.3)  # let the watch start before writing
    kv = await store.create("/n/new", b"new")
    event = await asyncio.wait_for(first, 10)
    await watch.aclose()
    assert (event.type, event.kv.key, event.revision) == ("PUT", "/n/new", kv.mod_revision)


async def test_transaction_compare_then_else(store):
    kv = await store.create("/t/a", b"1")
    ok = await store.txn(
        [Compare("/t/a", "mod", "=", kv.mod_revision), Compare("/t/b", "create", "=", 0)],
        [Put("/t/b", b"new"), DeleteKey("/t/a"), GetKey("/t/b")],
        [GetKey("/t/a")],
    )
    assert ok.succeeded
    assert ok.results[0].value == b"new" and ok.results[0].mod_revision == ok.revision
    assert ok.results[1].value == b"1"
    assert ok.results[2].value == b"new"
    assert await store.get("/t/a") is None
    failed = await store.txn(
        [Compare("/t/b", "version", ">", 5)], [DeleteKey("/t/b")], [GetKey("/t/b")]
    )
    assert not failed.succeeded and failed.results[0].value == b"new"
    assert failed.revision == ok.revision  # a read-only branch writes nothing
    assert (await store.get("/t/b")).value == b"new"
    by_value = await store.txn([Compare("/t/b", "value", "=", b"new")], [Put("/t/b", b"v2")])
    assert by_value.succeeded and (await store.get("/t/b")).version == 2


async def test_compaction_limits_reads_and_watches(store):
    old = await store.create("/k/a", b"1")
    mid = await store.update("/k/a", b"2")
    await store.update("/k/a", b"3")
    await store.compact(mid.mod_revision)
    with pytest.raises(CompactedError) as err:
        await store.get("/k/a", revision=old.mod_revision)
    assert err.value.compact_revision >= mid.mod_revision
    with pytest.raises(CompactedError):
        await store.range("/k/", revision=old.mod_revision)
    assert (await store.get("/k/a", revision=mid.mod_revision)).value == b"2"
    with pytest.raises(CompactedError):
        await take(store, "/k/", old.mod_revision, 1)
    replay = await take(store, "/k/", mid.mod_revision, 2)
    assert [e.kv.value for e in replay] == [b"2", b"3"]


async def test_lease_expiry_deletes_keys(store, backend):
    ttl = 2  # etcd's minimum TTL with default timings
    lease = await store.lease_grant(ttl)
    kv = await store.create("/l/a", b"x", lease=lease)
    assert kv.lease == lease
    await store.create("/l/b", b"no lease")
    deleted = asyncio.ensure_future(take(store, "/l/a", kv.mod_revision + 1, 1, timeout=30))
    await eventually(lambda: _absent(store, "/l/a"), timeout=30)
    assert (await deleted)[0].type == "DELETE"
    assert (await store.get("/l/b")).value == b"no lease"
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keepalive(lease)


async def test_lease_keepalive_and_revoke(store):
    lease = await store.lease_grant(5)
    assert await store.lease_keepalive(lease) >= 1
    await store.create("/lr/a", b"1", lease=lease)
    await store.create("/lr/b", b"2", lease=lease)
    await store.lease_revoke(lease)
    assert (await store.range("/lr/")).kvs == []
    with pytest.raises(LeaseNotFoundError):
        await store.lease_revoke(lease)


async def test_value_too_large(store):
    with pytest.raises(ValueTooLargeError):
        await store.create("/v/big", b"x" * (MAX_VALUE_BYTES + 1))
    assert await store.get("/v/big") is None
    kv = await store.create("/v/mib", b"y" * (1 << 20))
    assert (await store.get("/v/mib")).value == kv.value


async def _absent(store, key):
    return await store.get(key) is None
