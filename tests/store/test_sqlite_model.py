"""SqliteStore against a dict model: random operation sequences must agree on every result,
including reads at past revisions and the revision bookkeeping (create/mod revision, version)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.store import (
    Compare,
    ConflictError,
    DeleteKey,
    GetKey,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Put,
)
from kybernetes.store.sqlite import ALONE, SqliteStore

keys = st.sampled_from(["/a", "/a/x", "/a/y", "/b", "/ab", "/é"])
values = st.binary(max_size=8)
prefixes = st.sampled_from(["", "/", "/a", "/a/", "/b", "/z"])
rev_delta = st.integers(-1, 1)  # expected revision: the real one, or off by one

txn_op = st.one_of(
    st.builds(Put, keys, values), st.builds(DeleteKey, keys), st.builds(GetKey, keys)
)
compare = st.builds(
    Compare,
    keys,
    st.sampled_from(["mod", "create", "version"]),
    st.sampled_from(["=", "!=", "<", ">"]),
    st.integers(0, 12),
)
operation = st.one_of(
    st.tuples(st.just("create"), keys, values),
    st.tuples(st.just("update"), keys, values),
    st.tuples(st.just("cas_update"), keys, values, rev_delta),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("cas_delete"), keys, rev_delta),
    st.tuples(st.just("txn"), st.lists(compare, max_size=2), st.lists(txn_op, max_size=3),
              st.lists(txn_op, max_size=2)),
    st.tuples(st.just("get"), keys, st.integers(0, 6)),  # read this many revisions back
    st.tuples(st.just("range"), prefixes, st.integers(0, 3), st.integers(0, 6)),
)


class Model:
    def __init__(self):
        self.rev = 0
        self.data: dict[str, KeyValue] = {}
        self.history: dict[int, dict[str, KeyValue]] = {0: {}}

    def put(self, key: str, value: bytes) -> KeyValue:
        old = self.data.get(key)
        kv = KeyValue(key, value, old.create_revision if old else self.rev, self.rev,
                      old.version + 1 if old else 1)
        self.data[key] = kv
        return kv

    def commit(self) -> None:
        self.history[self.rev] = dict(self.data)

    def holds(self, c: Compare) -> bool:
        kv = self.data.get(c.key)
        have = {"mod": kv.mod_revision, "create": kv.create_revision, "version": kv.version}[
            c.target] if kv else 0
        return {"=": have == c.operand, "!=": have != c.operand, "<": have < c.operand,
                ">": have > c.operand}[c.op]

    def txn(self, compares, success, failure):
        ok = all(self.holds(c) for c in compares)
        ops = success if ok else failure
        written = [op.key for op in ops if not isinstance(op, GetKey)]
        if len(set(written)) != len(written):
            return "error"
        writes = any(isinstance(op, Put) or (isinstance(op, DeleteKey) and op.key in self.data)
                     for op in ops)
        if writes:
            self.rev += 1
        results = []
        for op in ops:
            if isinstance(op, Put):
                results.append(self.put(op.key, op.value))
            elif isinstance(op, DeleteKey):
                results.append(self.data.pop(op.key, None))
            else:
                results.append(self.data.get(op.key))
        if writes:
            self.commit()
        return ok, self.rev, results


async def outcome(coro):
    try:
        return await coro
    except (KeyExistsError, KeyNotFoundError, ConflictError) as e:
        return type(e).__name__
    except Exception as e:  # noqa: BLE001 — the model says which failures are right
        return "error" if "duplicate key" in str(e) else repr(e)


async def _reopened_matches(path, m) -> None:
    """The file, opened again, holds the model's revision and data."""
    store = await SqliteStore(path).open()
    try:
        assert await store.current_revision() == m.rev
        everything = await store.range("")
        assert everything.kvs == [m.data[k] for k in sorted(m.data, key=str.encode)]
    finally:
        await store.close()


async def check(ops, path: str) -> None:
    m = Model()
    store = await SqliteStore(path, history_seconds=3600).open()
    try:
        for op in ops:
            kind = op[0]
            if kind == "create":
                _, key, value = op
                got = await outcome(store.create(key, value))
                if key in m.data:
                    want = "KeyExistsError"
                else:
                    m.rev += 1
                    want = m.put(key, value)
                    m.commit()
            elif kind in ("update", "cas_update"):
                key, value = op[1], op[2]
                cur = m.data.get(key)
                expected = None
                if kind == "cas_update":
                    expected = (cur.mod_revision if cur else m.rev) + op[3]
                got = await outcome(store.update(key, value, expected_mod_revision=expected))
                if expected is not None and cur is None:
                    want = "KeyNotFoundError"
                elif expected is not None and cur.mod_revision != expected:
                    want = "ConflictError"
                else:
                    m.rev += 1
                    want = m.put(key, value)
                    m.commit()
            elif kind in ("delete", "cas_delete"):
                key = op[1]
                cur = m.data.get(key)
                expected = (cur.mod_revision if cur else m.rev) + op[2] if len(op) > 2 else None
                got = await outcome(store.delete(key, expected_mod_revision=expected))
                if cur is None:
                    want = "KeyNotFoundError"
                elif expected is not None and cur.mod_revision != expected:
                    want = "ConflictError"
                else:
                    m.rev += 1
                    want = m.data.pop(key)
                    m.commit()
            elif kind == "txn":
                got = await outcome(store.txn(*op[1:]))
                want = m.txn(*op[1:])
                if want != "error":
                    got = (got.succeeded, got.revision, got.results)
            elif kind == "get":
                rev = max(m.rev - op[2], 0)
                got = await store.get(op[1], revision=rev)
                want = m.history[rev or m.rev].get(op[1])
            else:
                _, prefix, limit, rev = op
                rev = max(m.rev - rev, 0)
                result = await store.range(prefix, limit=limit, revision=rev)
                state = m.history[rev or m.rev]
                under = [state[k] for k in sorted(state, key=str.encode) if k.startswith(prefix)]
                got = (result.kvs, result.more, result.count, result.revision)
                cut = under[:limit] if limit else under
                want = (cut, len(cut) < len(under), len(under), rev or m.rev)
            assert got == want, (op, got, want)
            assert await store.current_revision() == m.rev
    finally:
        await store.close()
    # the same history after reopening the file
    await _reopened_matches(path, m)


@settings(max_examples=80, deadline=None)
@given(st.lists(operation, max_size=30))
def test_sqlite_store_matches_the_model(ops):
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(check(ops, os.path.join(d, "model.db")))


# --- the same model with writes queued together, so the writer applies them as one group ---

group_op = st.one_of(
    st.tuples(st.just("create"), keys, values),
    st.tuples(st.just("update"), keys, values, st.none() | st.integers(0, 12)),
    st.tuples(st.just("delete"), keys, st.none() | st.integers(0, 12)),
    st.tuples(st.just("txn"), st.lists(compare, max_size=2), st.lists(txn_op, max_size=3),
              st.lists(txn_op, max_size=2)),
)


def model_write(m: Model, op) -> object:
    """What the store must answer to `op`, applied to the model in queue order."""
    kind, key = op[0], op[1]
    cur = m.data.get(key) if kind != "txn" else None
    if kind == "txn":
        return m.txn(*op[1:])
    if kind == "create" and cur is not None:
        return "KeyExistsError"
    expected = op[-1] if kind != "create" else None
    if kind == "delete" and cur is None:
        return "KeyNotFoundError"
    if expected is not None and cur is None:
        return "KeyNotFoundError"
    if expected is not None and cur.mod_revision != expected:
        return "ConflictError"
    m.rev += 1
    want = m.put(key, op[2]) if kind != "delete" else m.data.pop(key)
    m.commit()
    return want


def store_write(store: SqliteStore, op):
    kind = op[0]
    if kind == "create":
        return store.create(op[1], op[2])
    if kind == "update":
        return store.update(op[1], op[2], expected_mod_revision=op[3])
    if kind == "delete":
        return store.delete(op[1], expected_mod_revision=op[2])
    return store.txn(*op[1:])


async def check_groups(groups, path: str) -> None:
    m = Model()
    store = await SqliteStore(path, history_seconds=3600).open()
    try:
        for group in groups:
            release = threading.Event()  # the writer waits until the whole group is queued
            held = asyncio.ensure_future(store._write(release.wait, 10, kind=ALONE))
            await asyncio.sleep(0)
            writes = [asyncio.ensure_future(outcome(store_write(store, op))) for op in group]
            await asyncio.sleep(0)
            release.set()
            await held
            for op, got in zip(group, await asyncio.gather(*writes)):
                want = model_write(m, op)
                if op[0] == "txn" and want != "error":
                    got = (got.succeeded, got.revision, got.results)
                assert got == want, (op, got, want)
            assert await store.current_revision() == m.rev
            everything = await store.range("")
            assert everything.kvs == [m.data[k] for k in sorted(m.data, key=str.encode)]
        for rev, state in m.history.items():  # every past revision reads back as it was
            if rev:
                got = await store.range("", revision=rev)
                assert got.kvs == [state[k] for k in sorted(state, key=str.encode)], rev
    finally:
        await store.close()
    await _reopened_matches(path, m)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(group_op, min_size=1, max_size=12), max_size=5))
def test_grouped_writes_match_the_model(groups):
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(check_groups(groups, os.path.join(d, "groups.db")))
