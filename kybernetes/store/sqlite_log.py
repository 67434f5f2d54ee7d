"""The SQL half of SqliteStore: schema, reads at a revision, and the writes the writer thread
applies. Plain synchronous code on one sqlite3 connection; sqlite.py adds the threads, group
commit, watches and background work.

Layout:
  log   append-only revision log. `id` = revision << 20 | n (n-th change of that revision), so
        "all rows up to revision R" is a primary-key range and a txn's changes share a revision.
  kv    current state: key → id of its latest log row (deleted keys are absent), plus its lease.
  meta  one row: current revision and compact revision.
  leases  lease id → TTL (expiry times live in memory; on open every lease gets a fresh TTL, as
        etcd's leader does when it takes over).
Keys are stored as UTF-8 BLOBs so SQLite orders them bytewise, as etcd does.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Sequence

from .interface import (
    CompactedError,
    Compare,
    DeleteKey,
    Event,
    FutureRevisionError,
    GetKey,
    KeyExistsError,
    KeyNotFoundError,
    ConflictError,
    KeyValue,
    LeaseNotFoundError,
    Op,
    Put,
    RangeResult,
    StoreError,
    TxnResult,
)

SHIFT = 20  # bits of `log.id` that number the changes inside one revision
MAX_TXN_OPS = 1 << SHIFT

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
  id INTEGER PRIMARY KEY,
  key BLOB NOT NULL,
  value BLOB NOT NULL,
  create_rev INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  prev_id INTEGER  -- the key's previous live row, for prev_kv and for compaction
);
CREATE INDEX IF NOT EXISTS log_key ON log(key, id);
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY, id INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS meta (
  one INTEGER PRIMARY KEY CHECK (one = 0), revision INTEGER NOT NULL, compact INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
"""

ROW = "l.id, l.key, l.value, l.create_rev, l.version, l.lease"


def connect(path: str, synchronous: str, *, create: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if create:
        # takes effect only before the first table exists, i.e. when the file is new; lets
        # compaction hand pages back to the filesystem
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA journal_size_limit=33554432")  # truncate the -wal back to 32 MiB
    conn.execute("PRAGMA cache_size=-32768")
    if create:
        conn.executescript(SCHEMA)
    return conn


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with prefix (None: no bound)."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


def key_range(prefix: str) -> tuple[str, list]:
    start = prefix.encode()
    end = prefix_end(start)
    if end is None:
        return "key >= ?", [start]
    return "key >= ? AND key < ?", [start, end]


def to_kv(row: Sequence) -> KeyValue:
    id_, key, value, create_rev, version, lease = row[:6]
    return KeyValue(key.decode(), bytes(value), create_rev, id_ >> SHIFT, version, lease)


class LogReader:
    """Consistent reads: each call is one read transaction (a WAL snapshot)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def _begin(self, revision: int) -> tuple[int, int]:
        self.conn.execute("BEGIN")
        current, compact = self.conn.execute("SELECT revision, compact FROM meta").fetchone()
        if revision > current:
            raise FutureRevisionError(revision, current)
        if 0 < revision < compact:
            raise CompactedError(revision, compact)
        return current, compact

    def _run(self, fn, *args):
        try:
            return fn(*args)
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def get(self, key: str, revision: int) -> KeyValue | None:
        return self._run(self._get, key, revision)

    def _get(self, key: str, revision: int) -> KeyValue | None:
        current, _ = self._begin(revision)
        if revision in (0, current):
            sql = f"SELECT {ROW} FROM kv JOIN log l ON l.id = kv.id WHERE kv.key = ?"
            row = self.conn.execute(sql, (key.encode(),)).fetchone()
            return to_kv(row) if row else None
        sql = (f"SELECT {ROW}, l.deleted FROM log l WHERE key = ? AND id < ?"
               " ORDER BY id DESC LIMIT 1")
        row = self.conn.execute(sql, (key.encode(), (revision + 1) << SHIFT)).fetchone()
        return to_kv(row) if row and not row[6] else None

    def range(self, prefix: str, limit: int, start_after: str | None, revision: int) -> RangeResult:
        return self._run(self._range, prefix, limit, start_after, revision)

    def _range(self, prefix: str, limit: int, start_after: str | None, revision: int):
        current, _ = self._begin(revision)
        cond, args = key_range(prefix)
        if revision in (0, current):
            newest, nargs = f"SELECT key AS mkey, id AS mid FROM kv WHERE {cond}", args
        else:  # the newest row of each key at or below the revision
            newest = (f"SELECT key AS mkey, max(id) AS mid FROM log WHERE {cond} AND id < ?"
                      " GROUP BY key")
            nargs = args + [(revision + 1) << SHIFT]
        source = f"({newest}) m JOIN log l ON l.id = m.mid WHERE l.deleted = 0"
        count_sql = f"SELECT count(*) FROM kv WHERE {cond}" if revision in (0, current) else (
            f"SELECT count(*) FROM {source}")
        count = self.conn.execute(count_sql, nargs).fetchone()[0]
        sql, qargs = f"SELECT {ROW} FROM {source}", list(nargs)
        if start_after is not None:
            sql += " AND m.mkey > ?"
            qargs.append(start_after.encode())
        sql += " ORDER BY m.mkey"
        if limit > 0:
            sql += " LIMIT ?"
            qargs.append(limit + 1)
        rows = self.conn.execute(sql, qargs).fetchall()
        more = 0 < limit < len(rows)
        kvs = [to_kv(r) for r in (rows[:limit] if more else rows)]
        return RangeResult(kvs, revision or current, more, count)

    def events(self, prefix: str, from_rev: int, max_revs: int) -> tuple[list[Event], int, int]:
        """Events under prefix with revisions in [from_rev, from_rev + max_revs), the last
        revision the answer covers, and the current revision."""
        return self._run(self._events, prefix, from_rev, max_revs)

    def _events(self, prefix: str, from_rev: int, max_revs: int):
        current, compact = self._begin(0)
        if from_rev < compact:
            raise CompactedError(from_rev, compact)
        upto = min(current, from_rev + max_revs - 1)
        if upto < from_rev:
            return [], current, current
        cond, args = key_range(prefix)
        cond = cond.replace("key", "l.key")
        sql = (
            f"SELECT {ROW}, l.deleted, p.id, p.key, p.value, p.create_rev, p.version, p.lease"
            f" FROM log l LEFT JOIN log p ON p.id = l.prev_id"
            f" WHERE l.id >= ? AND l.id < ? AND {cond} ORDER BY l.id"
        )
        rows = self.conn.execute(sql, [from_rev << SHIFT, (upto + 1) << SHIFT] + args)
        return [row_event(r) for r in rows], upto, current

    def status(self) -> dict:
        def figures():
            current, compact = self._begin(0)
            keys = self.conn.execute("SELECT count(*) FROM kv").fetchone()[0]
            leases = self.conn.execute("SELECT count(*) FROM leases").fetchone()[0]
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
            return {"revision": current, "compact_revision": compact, "keys": keys,
                    "leases": leases, "pages": pages, "free_pages": free}
        return self._run(figures)


def row_event(r: Sequence) -> Event:
    prev = to_kv(r[7:]) if r[7] is not None else None
    if r[6]:  # tombstone
        kv = KeyValue(r[1].decode(), b"", 0, r[0] >> SHIFT, 0, 0)
        return Event("DELETE", kv, prev)
    return Event("PUT", to_kv(r), prev)


def _holds(c: Compare, kv: KeyValue | None) -> bool:
    if c.target == "value":
        have = kv.value if kv else None
        if have is None or c.operand is None:  # a missing key's value is only (un)equal
            return c.op in ("=", "!=") and (have == c.operand) == (c.op == "=")
    else:
        have = {"mod": kv.mod_revision, "create": kv.create_revision,
                "version": kv.version}[c.target] if kv else 0
    want = c.operand
    if c.op == "=":
        return have == want
    if c.op == "!=":
        return have != want
    if c.op == "<":
        return have < want
    return have > want


LOG_INSERT = "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
KV_UPSERT = ("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
             " SET id = excluded.id, lease = excluded.lease")
VALUE_SQL = "SELECT value FROM log WHERE id = ?"
_MISS = object()


class LogWriter:
    """Applies write operations inside the writer thread's open transaction.

    The writer keeps every live key's (id, create_rev, version, lease) in memory (`_index`, as
    the kv table has it), so a write reads SQLite only for the previous value it reports.
    create, update and delete (the API server's writes) check everything before they change
    anything and then only queue their rows: the rows of a whole group commit go to SQLite in a
    few executemany calls (`flush`). The other operations (txns, leases, compaction) run on
    flushed state and write directly; the caller wraps them in a SAVEPOINT and calls
    `begin_op`, then `finish_op` or `abort_op`. Changes reach `_index` only at `committed`.
    Events of the open transaction collect in `events`, in revision order.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.cur = conn.cursor()  # one cursor for the hot statements: no Cursor per execute
        self.reload()

    def reload(self) -> None:
        """(Re)read the state: at open and after a failed commit."""
        self.rev, self.compact_rev = self.conn.execute(
            "SELECT revision, compact FROM meta"
        ).fetchone()
        rows = self.conn.execute(
            "SELECT kv.key, kv.id, l.create_rev, l.version, kv.lease"
            " FROM kv JOIN log l ON l.id = kv.id"
        )
        self._index: dict[bytes, tuple[int, int, int, int]] = {r[0]: r[1:] for r in rows}
        self._delta: dict[bytes, tuple | None] = {}  # this transaction's changes (None: gone)
        self._undo: dict[bytes, object] = {}  # _delta entries before the guarded op began
        self._unflushed: dict[bytes, bytes | None] = {}  # key → value of its queued row
        self._log_rows: list[tuple] = []
        self._op_rev = 0
        self._n = 0
        self._op_events = 0
        self.events: list[Event] = []

    # --- bookkeeping ---
    def flush(self) -> None:
        """Write the queued rows of plain writes (before other operations and before commit)."""
        if not self._log_rows:
            return
        cur, delta = self.cur, self._delta
        cur.executemany(LOG_INSERT, self._log_rows)
        puts, gone = [], []
        for kb in self._unflushed:
            m = delta[kb]
            if m is None:
                gone.append((kb,))
            else:
                puts.append((kb, m[0], m[3]))
        if puts:
            cur.executemany(KV_UPSERT, puts)
        if gone:
            cur.executemany("DELETE FROM kv WHERE key = ?", gone)
        self._log_rows = []
        self._unflushed = {}

    def begin_op(self) -> None:
        """Before a guarded operation (it may fail halfway and be rolled back)."""
        self.flush()
        self._op_events = len(self.events)
        self._undo = {}

    def finish_op(self) -> None:
        if self._op_rev:
            self.rev = self._op_rev
        self._op_rev = 0

    def abort_op(self) -> None:
        del self.events[self._op_events:]
        for kb, m in self._undo.items():
            if m is _MISS:
                del self._delta[kb]
            else:
                self._delta[kb] = m
        self._op_rev = 0

    def save_meta(self) -> None:
        self.flush()
        self.cur.execute(
            "UPDATE meta SET revision = ?, compact = ?", (self.rev, self.compact_rev)
        )

    def committed(self) -> None:
        """The transaction is durable: its changes join the index."""
        index = self._index
        for kb, m in self._delta.items():
            if m is None:
                index.pop(kb, None)
            else:
                index[kb] = m
        self._delta = {}

    def _next_id(self) -> tuple[int, int]:
        if not self._op_rev:
            self._op_rev, self._n = self.rev + 1, 0
        self._n += 1
        return self._op_rev, (self._op_rev << SHIFT) | (self._n - 1)

    # --- primitives ---
    def _meta(self, kb: bytes) -> tuple[int, int, int, int] | None:
        """(id, create_rev, version, lease) of the key's live row, or None."""
        m = self._delta.get(kb, _MISS)
        return self._index.get(kb) if m is _MISS else m

    def _kv(self, key: str, kb: bytes, m: tuple[int, int, int, int]) -> KeyValue:
        value = self._unflushed.get(kb)  # the value of the row `m` names, when still queued
        if value is None:
            value = self.cur.execute(VALUE_SQL, (m[0],)).fetchone()[0]
        return KeyValue(key, value, m[1], m[0] >> SHIFT, m[2], m[3])

    def current(self, key: str) -> KeyValue | None:
        kb = key.encode()
        m = self._meta(kb)
        return self._kv(key, kb, m) if m else None

    def _check_lease(self, lease: int) -> None:
        if not self.cur.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
            raise LeaseNotFoundError(lease)

    def _guarded_set(self, kb: bytes, m: tuple | None) -> None:
        if kb not in self._undo:
            self._undo[kb] = self._delta.get(kb, _MISS)
        self._delta[kb] = m

    def _put(self, key: str, value: bytes, lease: int) -> KeyValue:
        """A put inside a guarded operation: written at once."""
        if lease:
            self._check_lease(lease)
        kb = key.encode()
        m = self._meta(kb)
        prev = self._kv(key, kb, m) if m else None
        rev, id_ = self._next_id()
        create_rev, version = (m[1], m[2] + 1) if m else (rev, 1)
        self.cur.execute(LOG_INSERT, (id_, kb, value, create_rev, version, lease, 0,
                                      m[0] if m else None))
        self.cur.execute(KV_UPSERT, (kb, id_, lease))
        self._guarded_set(kb, (id_, create_rev, version, lease))
        kv = KeyValue(key, value, create_rev, rev, version, lease)
        self.events.append(Event("PUT", kv, prev))
        return kv

    def _delete(self, key: str) -> KeyValue | None:
        """A delete inside a guarded operation: written at once."""
        kb = key.encode()
        m = self._meta(kb)
        if m is None:
            return None
        prev = self._kv(key, kb, m)
        rev, id_ = self._next_id()
        self.cur.execute(LOG_INSERT, (id_, kb, b"", 0, 0, 0, 1, m[0]))
        self.cur.execute("DELETE FROM kv WHERE key = ?", (kb,))
        self._guarded_set(kb, None)
        self.events.append(Event("DELETE", KeyValue(key, b"", 0, rev, 0, 0), prev))
        return prev

    # --- plain writes: one revision each, checked first, rows queued ---
    def create(self, key: str, value: bytes, lease: int) -> KeyValue:
        kb = key.encode()
        m = self._meta(kb)
        if m is not None:
            raise KeyExistsError(key, self._kv(key, kb, m))
        if lease:
            self._check_lease(lease)
        self.rev = rev = self.rev + 1
        id_ = rev << SHIFT
        self._log_rows.append((id_, kb, value, rev, 1, lease, 0, None))
        self._delta[kb] = (id_, rev, 1, lease)
        self._unflushed[kb] = value
        kv = KeyValue(key, value, rev, rev, 1, lease)
        self.events.append(Event("PUT", kv, None))
        return kv

    def update(self, key: str, value: bytes, expected: int | None, lease: int) -> KeyValue:
        kb = key.encode()
        m = self._meta(kb)
        if m is None:
            if expected is not None:
                raise KeyNotFoundError(key)
            prev = prev_id = None
        else:
            prev = self._kv(key, kb, m)
            if expected is not None and prev.mod_revision != expected:
                raise ConflictError(key, prev)
            prev_id = m[0]
        if lease:
            self._check_lease(lease)
        self.rev = rev = self.rev + 1
        id_ = rev << SHIFT
        create_rev, version = (m[1], m[2] + 1) if m else (rev, 1)
        self._log_rows.append((id_, kb, value, create_rev, version, lease, 0, prev_id))
        self._delta[kb] = (id_, create_rev, version, lease)
        self._unflushed[kb] = value
        kv = KeyValue(key, value, create_rev, rev, version, lease)
        self.events.append(Event("PUT", kv, prev))
        return kv

    def delete(self, key: str, expected: int | None) -> KeyValue:
        kb = key.encode()
        m = self._meta(kb)
        if m is None:
            raise KeyNotFoundError(key)
        prev = self._kv(key, kb, m)
        if expected is not None and prev.mod_revision != expected:
            raise ConflictError(key, prev)
        self.rev = rev = self.rev + 1
        id_ = rev << SHIFT
        self._log_rows.append((id_, kb, b"", 0, 0, 0, 1, m[0]))
        self._delta[kb] = None
        self._unflushed[kb] = None
        self.events.append(Event("DELETE", KeyValue(key, b"", 0, rev, 0, 0), prev))
        return prev

    # --- guarded operations ---
    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]):
        ok = all(_holds(c, self.current(c.key)) for c in compares)
        ops = success if ok else failure
        written = [op.key for op in ops if not isinstance(op, GetKey)]
        if len(set(written)) != len(written):
            raise StoreError("duplicate key given in txn request")  # as etcd refuses it
        results: list[KeyValue | None] = []
        for op in ops:
            if isinstance(op, Put):
                results.append(self._put(op.key, op.value, op.lease))
            elif isinstance(op, DeleteKey):
                results.append(self._delete(op.key))
            else:
                results.append(self.current(op.key))
        return TxnResult(ok, self._op_rev or self.rev, results)

    def lease_grant(self, lease: int, ttl: int) -> int:
        self.conn.execute("INSERT INTO leases VALUES (?, ?)", (lease, ttl))
        return lease

    def lease_revoke(self, lease: int) -> None:
        gone = self.conn.execute("DELETE FROM leases WHERE id = ? RETURNING id", (lease,))
        if not gone.fetchall():
            raise LeaseNotFoundError(lease)
        rows = self.conn.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))
        for (kb,) in rows.fetchall():
            self._delete(kb.decode())  # all in one revision, as etcd revokes in one txn

    def compact(self, revision: int) -> None:
        if revision <= self.compact_rev:
            raise CompactedError(revision, self.compact_rev)
        if revision > self.rev:
            raise FutureRevisionError(revision, self.rev)
        old = self.compact_rev
        # a row below `revision` is garbage once a newer row of its key is at or below it: the
        # rows in (old, revision] name their predecessors; earlier ones were handled last time
        self.conn.execute(
            "DELETE FROM log WHERE id IN (SELECT prev_id FROM log WHERE id >= ? AND id < ?"
            " AND prev_id IS NOT NULL) AND id < ?",
            ((old + 1) << SHIFT, (revision + 1) << SHIFT, revision << SHIFT),
        )
        # tombstones below `revision` only say "absent", which a missing row says too
        self.conn.execute(
            "DELETE FROM log WHERE id >= ? AND id < ? AND deleted = 1",
            (old << SHIFT, revision << SHIFT),
        )
        self.compact_rev = revision


def lease_ttls(conn: sqlite3.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT id, ttl FROM leases").fetchall())


def now() -> float:
    return time.monotonic()
