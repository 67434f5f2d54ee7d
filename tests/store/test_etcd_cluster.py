"""EtcdStore against a real 3-member etcd cluster while members die."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    from tests.store.etcd_cluster import EtcdCluster, etcd_available
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    from etcd_cluster import EtcdCluster, etcd_available

from kybernetes.store.etcd import EtcdStore
from kybernetes.store.interface import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    DeleteKey,
    FutureRevisionError,
    GetKey,
    KeyValue,
    LeaseNotFoundError,
    Put,
    StoreError,
    Unavailable,
    ValueTooLargeError,
)

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(not etcd_available(), reason="the etcd binary is not installed"),
]

WAIT = 20  # seconds; a bound against hangs, not a timing assertion


@pytest.fixture
def cluster(tmp_path):
    c = EtcdCluster(tmp_path / "etcd", members=3)
    c.start()
    yield c
    c.stop()


async def _leader_index(endpoints: list[str]) -> int:
    ids = []
    leader = 0
    for ep in endpoints:
        # one store per endpoint: status() answers for the member it is connected to
        s = await EtcdStore.open([ep])
        try:
            st = await s.status()
        finally:
            await s.close()
        ids.append(st["member_id"])
        leader = st["leader"]
    return ids.index(leader)


async def _writers(store: EtcdStore, stop: asyncio.Event, acked: dict[str, KeyValue], errors: list):
    async def one(w: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"/w/{w}/{i:05d}"
            i += 1
            try:
                acked[key] = await store.create(key, f"{w}-{i}".encode())
            except Unavailable as e:
                errors.append(e)  # outcome unknown: neither counted nor checked
                await asyncio.sleep(0.01)

    await asyncio.gather(*(one(w) for w in range(8)))


@pytest.mark.parametrize("victim", ["connected", "leader"])
async def test_acknowledged_writes_survive_a_killed_member(cluster, victim):
    endpoints = cluster.endpoints
    # The store talks to member 0 first; kill either that member or the raft leader.
    kill = 0 if victim == "connected" else await _leader_index(endpoints)
    store = await EtcdStore.open(endpoints, prefix="/kill", rpc_timeout=2, retry_seconds=15)
    acked: dict[str, KeyValue] = {}
    errors: list = []
    stop = asyncio.Event()
    writing = asyncio.create_task(_writers(store, stop, acked, errors))
    try:
        while len(acked) < 200:
            await asyncio.sleep(0.01)
        before_kill = len(acked)
        cluster.kill(kill)
        async with asyncio.timeout(WAIT):
            while len(acked) < before_kill + 200:  # the store keeps serving
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await writing
    await store.close()

    alive = [ep for i, ep in enumerate(endpoints) if i != kill]
    for ep in alive:
        reader = await EtcdStore.open([ep], prefix="/kill")
        try:
            got = {kv.key: kv for kv in (await reader.range("/w/")).kvs}
        finally:
            await reader.close()
        missing = [k for k in acked if k not in got]
        assert not missing, f"{len(missing)} acknowledged writes lost on {ep}"
        for key, kv in acked.items():
            assert got[key].value == kv.value
            assert got[key].mod_revision == kv.mod_revision


async def test_reads_and_watch_continue_with_one_member_down(cluster):
    store = await EtcdStore.open(cluster.endpoints, prefix="/down", rpc_timeout=2)
    try:
        first = [await store.create(f"/k/{i:03d}", b"before") for i in range(5)]
        events = store.watch("/k/", start_revision=first[0].mod_revision)
        seen = []
        async with asyncio.timeout(WAIT):
            while len(seen) < 5:
                seen.append(await events.__anext__())

        cluster.kill(0)  # the member both the reads and the watch stream use

        assert len((await store.range("/k/")).kvs) == 5
        assert (await store.get("/k/000")).value == b"before"
        later = [await store.update(f"/k/{i:03d}", b"after") for i in range(5)]
        later.append(await store.delete("/k/004"))
        async with asyncio.timeout(WAIT):
            while len(seen) < 11:
                seen.append(await events.__anext__())
        await events.aclose()

        revisions = [e.revision for e in seen]
        assert revisions == sorted(set(revisions)), "events repeated or out of order"
        assert [e.kv.key for e in seen] == [f"/k/{i:03d}" for i in range(5)] * 2 + ["/k/004"]
        assert [e.type for e in seen[5:]] == ["PUT"] * 5 + ["DELETE"]
        assert seen[5].prev_kv.value == b"before"
        assert [e.kv.mod_revision for e in seen[5:10]] == [kv.mod_revision for kv in later[:5]]

        # the member comes back with the same data dir and catches up
        cluster.restart(0)
        back = await EtcdStore.open([cluster.endpoints[0]], prefix="/down")
        try:
            result = await back.range("/k/")
            assert [kv.value for kv in result.kvs] == [b"after"] * 4
        finally:
            await back.close()
    finally:
        await store.close()


async def test_lost_quorum_is_unavailable(cluster):
    store = await EtcdStore.open(
        cluster.endpoints, prefix="/quorum", rpc_timeout=1, retry_seconds=2
    )
    try:
        await store.create("/x", b"1")
        cluster.kill(1)
        cluster.kill(2)
        with pytest.raises(Unavailable):
            await store.create("/y", b"2")
        with pytest.raises(Unavailable):
            await store.get("/x")
    finally:
        await store.close()


# --- error mapping and agreement with the SQLite backend, on one single-member cluster ---


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    c = EtcdCluster(tmp_path_factory.mktemp("etcd1"), members=1)
    c.start()
    yield c
    c.stop()


async def test_etcd_errors_map_to_the_contract(single):
    store = await EtcdStore.open(single.endpoints, prefix="/errors")
    try:
        a = await store.create("/a", b"1")
        b = await store.update("/a", b"2")
        await store.compact(b.mod_revision)
        with pytest.raises(CompactedError) as err:
            await store.get("/a", revision=a.mod_revision)
        assert err.value.compact_revision == b.mod_revision  # learnt from etcd, not remembered
        with pytest.raises(CompactedError):
            await store.compact(a.mod_revision)
        events = store.watch("/", start_revision=a.mod_revision)
        with pytest.raises(CompactedError) as err:
            await events.__anext__()
        assert err.value.compact_revision == b.mod_revision
        with pytest.raises(FutureRevisionError) as err:
            await store.range("/", revision=b.mod_revision + 1000)
        assert err.value.current >= b.mod_revision
        await store.create("/max", b"x" * MAX_VALUE_BYTES)  # the limit itself is allowed
        with pytest.raises(ValueTooLargeError):
            await store.create("/big", b"x" * (MAX_VALUE_BYTES + 1))
        lease = await store.lease_grant(30)
        await store.lease_revoke(lease)
        with pytest.raises(LeaseNotFoundError):
            await store.create("/leased", b"", lease=lease)
        with pytest.raises(LeaseNotFoundError):
            await store.lease_keepalive(lease)
    finally:
        await store.close()


keys = st.sampled_from(["/a", "/b", "/c/1", "/c/2"])
values = st.binary(max_size=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), keys, values),
        st.tuples(st.just("update"), keys, values, st.sampled_from(["none", "current", "stale"])),
        st.tuples(st.just("delete"), keys, st.sampled_from(["none", "current", "stale"])),
        st.tuples(st.just("get"), keys),
        st.tuples(
            st.just("range"),
            st.sampled_from(["/", "/c/"]),
            st.integers(0, 3),
            st.sampled_from([None, "/a", "/c/1"]),
        ),
        st.tuples(
            st.just("txn"), keys, st.sampled_from(["=", "<", ">"]), st.integers(0, 3), keys, values
        ),
        st.tuples(st.just("txn-value"), keys, values, keys, values),
    ),
    max_size=20,
)


async def _replay(store, ops) -> list:
    """Run `ops`, returning what each did with revisions made relative to the start."""
    base = await store.current_revision()

    def rel(kv):
        if kv is None:
            return None
        return (kv.key, kv.value, kv.create_revision - base, kv.mod_revision - base, kv.version)

    log = []
    for op in ops:
        kind = op[0]
        try:
            if kind == "create":
                out = rel(await store.create(op[1], op[2]))
            elif kind in ("update", "delete"):
                current = await store.get(op[1])
                mode = op[-1]
                expected = None
                if mode != "none":
                    expected = current.mod_revision if current else base + 1
                    expected -= mode == "stale"
                if kind == "update":
                    out = rel(await store.update(op[1], op[2], expected_mod_revision=expected))
                else:
                    out = rel(await store.delete(op[1], expected_mod_revision=expected))
            elif kind == "get":
                out = rel(await store.get(op[1]))
            elif kind == "range":
                r = await store.range(op[1], limit=op[2], start_after=op[3])
                out = ([rel(kv) for kv in r.kvs], r.more, r.count, r.revision - base)
            else:
                if kind == "txn":
                    compare = Compare(op[1], "version", op[2], op[3])
                else:
                    compare = Compare(op[1], "value", "=", op[2])
                success = [Put(op[-2], op[-1]), GetKey(op[1])]
                r = await store.txn([compare], success, [DeleteKey(op[-2])])
                out = (r.succeeded, r.revision - base, [rel(kv) for kv in r.results])
        except StoreError as e:
            out = (type(e).__name__, rel(getattr(e, "current", None)))
        log.append((op, out))
    return log


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
async def test_etcd_and_sqlite_agree(single, tmp_path, ops):
    from kybernetes.store.sqlite import SqliteStore

    # revisions are compared relative to the start, so nothing else may write meanwhile
    etcd = await EtcdStore.open(single.endpoints, prefix=f"/agree/{uuid.uuid4().hex}")
    sqlite = await SqliteStore(str(tmp_path / f"{uuid.uuid4().hex}.db")).open()
    try:
        assert await _replay(etcd, ops) == await _replay(sqlite, ops)
    finally:
        await etcd.close()
        await sqlite.close()
