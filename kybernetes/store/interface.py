"""The store contract: etcd's data model behind one interface.

Keys are str (like "/registry/pods/default/web-1"), values are bytes. Every write gets the next
value of one global revision; the API server uses it as resourceVersion. Both backends
(sqlite.py, etcd.py) implement `Store` with the same semantics; tests run one suite on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Literal, Protocol, Sequence

MAX_VALUE_BYTES = int(1.5 * 1024 * 1024)  # etcd's default request size limit


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int = 1  # writes to this key since it was created
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, `kv.value` is empty and `kv.mod_revision` is the delete's revision."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the revision the range was read at
    more: bool  # true when `limit` cut the result
    count: int = 0  # keys under the prefix at that revision (ignoring limit/start_after)


# --- transactions (etcd's Txn: if all compares hold, run `success`, else `failure`) ---


@dataclass(frozen=True, slots=True)
class Compare:
    """Compare one key's field. target: "mod" (mod_revision), "create", "version", "value".

    A missing key has mod/create/version 0 and value None, as in etcd.
    """

    key: str
    target: Literal["mod", "create", "version", "value"]
    op: Literal["=", "!=", "<", ">"]
    operand: int | bytes | None


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class DeleteKey:
    key: str


@dataclass(frozen=True, slots=True)
class GetKey:
    key: str


Op = Put | DeleteKey | GetKey


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # store revision after the transaction
    # one entry per op: Put → the new KeyValue, DeleteKey → the deleted KeyValue or None,
    # GetKey → the KeyValue or None
    results: list[KeyValue | None] = field(default_factory=list)


# --- errors ---


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    def __init__(self, key: str, current: KeyValue | None = None):
        super().__init__(f"key exists: {key}")
        self.key = key
        self.current = current


class KeyNotFoundError(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap failed: the key changed since `expected` was read."""

    def __init__(self, key: str, current: KeyValue | None):
        super().__init__(f"conflict on {key}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """The asked revision is older than the history kept."""

    def __init__(self, revision: int, compact_revision: int):
        super().__init__(
            f"revision {revision} has been compacted; oldest available is {compact_revision}"
        )
        self.revision = revision
        self.compact_revision = compact_revision

    @property
    def oldest_available(self) -> int:
        return self.compact_revision  # as in etcd, the compact revision itself stays readable


class FutureRevisionError(StoreError):
    def __init__(self, revision: int, current: int):
        super().__init__(f"revision {revision} is newer than the current revision {current}")
        self.revision = revision
        self.current = current


class ValueTooLargeError(StoreError):
    def __init__(self, key: str, size: int):
        super().__init__(
            f"value for {key} is {size} bytes; the limit is {MAX_VALUE_BYTES} bytes"
        )
        self.key = key
        self.size = size


class LeaseNotFoundError(StoreError):
    def __init__(self, lease: int):
        super().__init__(f"lease {lease} not found")
        self.lease = lease


class Unavailable(StoreError):
    """The backend cannot serve now (lost quorum, closed)."""


class Store(Protocol):
    """What every backend offers. All methods are coroutines except `watch`.

    revision=0 in reads means "now". A revision older than the compacted one raises
    CompactedError; a future one raises FutureRevisionError.
    """

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None: ...

    async def range(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int = 0,
    ) -> RangeResult:
        """Keys starting with `prefix`, in key order, after `start_after` if given."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> KeyValue:
        """Raises KeyExistsError when the key exists."""
        ...

    async def update(
        self,
        key: str,
        value: bytes,
        *,
        expected_mod_revision: int | None = None,
        lease: int = 0,
    ) -> KeyValue:
        """Put; with `expected_mod_revision` only if the key's mod_revision still equals it
        (ConflictError otherwise, KeyNotFoundError when the key is gone)."""
        ...

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        """Returns the deleted KeyValue (its last state). KeyNotFoundError / ConflictError."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult: ...

    def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[Event]:
        """Events for keys under `prefix` with revision >= start_revision (0 = from now on), in
        revision order, none lost or repeated. Raises CompactedError (from the iterator) when
        start_revision is older than the history kept. Closing the iterator (aclose) stops it."""
        ...

    async def lease_grant(self, ttl_seconds: int) -> int: ...

    async def lease_revoke(self, lease: int) -> None:
        """Deletes the lease and every key attached to it (each deletion is a watch event)."""
        ...

    async def lease_keepalive(self, lease: int) -> int:
        """Renews the lease; returns its TTL. LeaseNotFoundError when it expired."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history older than `revision` (reads at revisions < it raise CompactedError)."""
        ...

    async def current_revision(self) -> int: ...

    async def status(self) -> dict:
        """Figures: {"revision", "compact_revision", "db_size_bytes", "keys", "backend", ...}."""
        ...

    async def close(self) -> None: ...
