"""The `Store` contract on a real etcd v3 cluster, over gRPC (grpc.aio).

Keys are sent as `prefix + key` so several stores (or test runs) can share one cluster;
revisions are etcd's own. Conditional writes are Txns with compares, as kube-apiserver does.

Failover: one channel per endpoint; calls go to the current one and move on to the next when a
member is unreachable or has no leader. Reads are retried freely; writes only when etcd cannot
have applied them (no connection, no leader), otherwise the caller gets `Unavailable`.
Watches resume on another member from the revision after the last event delivered.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Sequence

import grpc
import grpc.aio

from kybernetes.store._etcdpb import etcd_pb2 as pb
from kybernetes.store.interface import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    DeleteKey,
    Event,
    FutureRevisionError,
    GetKey,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    LeaseNotFoundError,
    Op,
    Put,
    RangeResult,
    StoreError,
    TxnResult,
    Unavailable,
    ValueTooLargeError,
    ConflictError,
)

# method name -> (path, request type, response type) for the unary calls we make
_UNARY = {
    "Range": ("/etcdserverpb.KV/Range", pb.RangeResponse),
    "Put": ("/etcdserverpb.KV/Put", pb.PutResponse),
    "DeleteRange": ("/etcdserverpb.KV/DeleteRange", pb.DeleteRangeResponse),
    "Txn": ("/etcdserverpb.KV/Txn", pb.TxnResponse),
    "Compact": ("/etcdserverpb.KV/Compact", pb.CompactionResponse),
    "LeaseGrant": ("/etcdserverpb.Lease/LeaseGrant", pb.LeaseGrantResponse),
    "LeaseRevoke": ("/etcdserverpb.Lease/LeaseRevoke", pb.LeaseRevokeResponse),
    "Status": ("/etcdserverpb.Maintenance/Status", pb.StatusResponse),
    "HashKV": ("/etcdserverpb.Maintenance/HashKV", pb.HashKVResponse),
}
_WATCH = "/etcdserverpb.Watch/Watch"
_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"

# etcd's server-side error texts (rpctypes), matched by substring
_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
_LEASE_NOT_FOUND = "requested lease not found"
_TOO_LARGE = "request is too large"
# errors that prove the request was not applied, so even a write may be sent again
_NOT_SENT = ("no leader", "not capable", "failed to connect", "connection refused")

# "hasleader": etcd refuses the call at once on a member without a leader (clientv3's
# WithRequireLeader), instead of letting it hang until the request timeout.
_METADATA = (("hasleader", "true"),)

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 10_000),  # etcd's default minimum is 5 s
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]

_COMPARE_OP = {
    "=": pb.Compare.EQUAL,
    "!=": pb.Compare.NOT_EQUAL,
    "<": pb.Compare.LESS,
    ">": pb.Compare.GREATER,
}


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # all keys from `prefix` on


def _transient(err: grpc.aio.AioRpcError) -> bool:
    code = err.code()
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or (
        "leader changed" in (err.details() or "")
    )


def _not_sent(err: grpc.aio.AioRpcError) -> bool:
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNAVAILABLE and any(s in details for s in _NOT_SENT)


class EtcdStore:
    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "",
        *,
        rpc_timeout: float = 5.0,
        retry_seconds: float = 10.0,
    ):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [e.split("://", 1)[-1].rstrip("/") for e in endpoints]
        self.prefix = prefix
        self._prefix = prefix.encode()
        self.rpc_timeout = rpc_timeout
        self.retry_seconds = retry_seconds
        self._channels = [
            grpc.aio.insecure_channel(e, options=_CHANNEL_OPTIONS) for e in self.endpoints
        ]
        self._stubs = [
            {
                name: ch.unary_unary(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=resp.FromString,
                )
                for name, (path, resp) in _UNARY.items()
            }
            for ch in self._channels
        ]
        self._current = 0
        self._last_revision = 0  # highest revision seen in any response
        self._closed = False

    @classmethod
    async def open(cls, endpoints: list[str], prefix: str = "", **kw) -> "EtcdStore":
        store = cls(endpoints, prefix, **kw)
        try:
            await store.current_revision()
        except BaseException:
            await store.close()
            raise
        return store

    # --- plumbing ---

    def _key(self, key: str) -> bytes:
        return self._prefix + key.encode()

    def _kv(self, kv: pb.KeyValue) -> KeyValue:
        return KeyValue(
            key=kv.key[len(self._prefix) :].decode(),
            value=kv.value,
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
            version=kv.version,
            lease=kv.lease,
        )

    def _failover(self, index: int) -> None:
        # Several calls may fail on the same member at once; move on only once.
        if self._current == index:
            self._current = (index + 1) % len(self.endpoints)

    def _seen(self, revision: int) -> None:
        if revision > self._last_revision:
            self._last_revision = revision

    async def _call(self, method: str, request, *, mutation: bool):
        if self._closed:
            raise Unavailable("store is closed")
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.02
        while True:
            index = self._current
            try:
                resp = await self._stubs[index][method](
                    request, timeout=self.rpc_timeout, metadata=_METADATA
                )
            except grpc.aio.AioRpcError as err:
                if self._closed:
                    raise Unavailable("store is closed") from err
                if not _transient(err):
                    raise
                self._failover(index)
                if (mutation and not _not_sent(err)) or time.monotonic() > deadline:
                    raise Unavailable(
                        f"etcd {self.endpoints[index]}: {err.code().name}: {err.details()}"
                    ) from err
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self._seen(resp.header.revision)
            return resp

    async def _read(self, method: str, request, revision: int):
        """A read at `revision`; maps etcd's compacted/future errors."""
        try:
            return await self._call(method, request, mutation=False)
        except grpc.aio.AioRpcError as err:
            raise await self._revision_error(err, revision) from err

    async def _write(self, method: str, request, key: str = "", lease: int = 0):
        try:
            return await self._call(method, request, mutation=True)
        except grpc.aio.AioRpcError as err:
            details = err.details() or ""
            if _LEASE_NOT_FOUND in details:
                raise LeaseNotFoundError(lease) from err
            if _TOO_LARGE in details:
                raise ValueTooLargeError(key, request.ByteSize()) from err
            raise StoreError(f"etcd: {err.code().name}: {details}") from err

    async def _revision_error(self, err: grpc.aio.AioRpcError, revision: int) -> Exception:
        details = err.details() or ""
        if _COMPACTED in details:
            return CompactedError(revision, await self._compact_revision(revision))
        if _FUTURE in details:
            return FutureRevisionError(revision, await self.current_revision())
        return StoreError(f"etcd: {err.code().name}: {details}")

    async def _compact_revision(self, compacted: int = 1) -> int:
        """etcd's compact revision. Only watches report it: one from a revision known to be
        compacted is cancelled with it at once. HashKV (which reads the whole store) is the
        fallback when no such revision is known."""
        if compacted > 0:
            probe = self._watch_events(self._key("\0compact-probe"), b"", compacted, False)
            try:
                await asyncio.wait_for(probe.__anext__(), self.rpc_timeout)
            except CompactedError as err:
                return err.compact_revision
            except (asyncio.TimeoutError, StopAsyncIteration, StoreError):
                pass
            finally:
                await probe.aclose()
        resp = await self._call("HashKV", pb.HashKVRequest(revision=0), mutation=False)
        return resp.compact_revision

    def _check_size(self, key: str, value: bytes) -> None:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, len(value))

    # --- reads ---

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        request = pb.RangeRequest(key=self._key(key), revision=revision)
        resp = await self._read("Range", request, revision)
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def range(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int = 0,
    ) -> RangeResult:
        full = self._key(prefix)
        end = _prefix_end(full)
        first = full or b"\0"
        start = self._key(start_after) + b"\0" if start_after is not None else first
        if start < first:
            start = first
        request = pb.RangeRequest(key=start, range_end=end, limit=limit, revision=revision)
        resp = await self._read("Range", request, revision)
        read_at = revision or resp.header.revision
        count = resp.count
        if start != first:
            # etcd counts the asked range; the contract counts the whole prefix at that revision
            whole = await self._read(
                "Range",
                pb.RangeRequest(key=first, range_end=end, revision=read_at, count_only=True),
                read_at,
            )
            count = whole.count
        return RangeResult(
            kvs=[self._kv(kv) for kv in resp.kvs], revision=read_at, more=resp.more, count=count
        )

    async def current_revision(self) -> int:
        resp = await self._call(
            "Range", pb.RangeRequest(key=self._key("\0"), count_only=True), mutation=False
        )
        return resp.header.revision

    # --- writes ---

    def _put_op(self, key: str, value: bytes, lease: int) -> pb.RequestOp:
        self._check_size(key, value)
        return pb.RequestOp(
            request_put=pb.PutRequest(key=self._key(key), value=value, lease=lease, prev_kv=True)
        )

    def _get_op(self, key: str) -> pb.RequestOp:
        return pb.RequestOp(request_range=pb.RangeRequest(key=self._key(key)))

    def _delete_op(self, key: str) -> pb.RequestOp:
        return pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=self._key(key), prev_kv=True)
        )

    def _put_result(self, key, value, lease, revision, prev: pb.KeyValue | None) -> KeyValue:
        return KeyValue(
            key=key,
            value=value,
            create_revision=prev.create_revision if prev else revision,
            mod_revision=revision,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> KeyValue:
        request = pb.TxnRequest(
            compare=[pb.Compare(key=self._key(key), target=pb.Compare.MOD, mod_revision=0)],
            success=[self._put_op(key, value, lease)],
            failure=[self._get_op(key)],
        )
        resp = await self._write("Txn", request, key, lease)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            raise KeyExistsError(key, self._kv(kvs[0]) if kvs else None)
        return self._put_result(key, value, lease, resp.header.revision, None)

    async def update(
        self,
        key: str,
        value: bytes,
        *,
        expected_mod_revision: int | None = None,
        lease: int = 0,
    ) -> KeyValue:
        put = self._put_op(key, value, lease)
        if expected_mod_revision is None:
            resp = await self._write("Put", put.request_put, key, lease)
            prev = resp.prev_kv if resp.HasField("prev_kv") else None
            return self._put_result(key, value, lease, resp.header.revision, prev)
        resp = await self._cas(key, expected_mod_revision, put)
        put_resp = resp.responses[0].response_put
        prev = put_resp.prev_kv if put_resp.HasField("prev_kv") else None
        return self._put_result(key, value, lease, resp.header.revision, prev)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        if expected_mod_revision is None:
            resp = await self._write(
                "DeleteRange", pb.DeleteRangeRequest(key=self._key(key), prev_kv=True), key
            )
            if not resp.prev_kvs:
                raise KeyNotFoundError(key)
            return self._kv(resp.prev_kvs[0])
        resp = await self._cas(key, expected_mod_revision, self._delete_op(key))
        prev_kvs = resp.responses[0].response_delete_range.prev_kvs
        if not prev_kvs:
            raise KeyNotFoundError(key)
        return self._kv(prev_kvs[0])

    async def _cas(self, key: str, expected: int, op: pb.RequestOp) -> pb.TxnResponse:
        """Run `op` if the key's mod_revision is `expected`; else Conflict/KeyNotFound."""
        request = pb.TxnRequest(
            compare=[pb.Compare(key=self._key(key), target=pb.Compare.MOD, mod_revision=expected)],
            success=[op],
            failure=[self._get_op(key)],
        )
        resp = await self._write("Txn", request, key, op.request_put.lease)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise KeyNotFoundError(key)
            raise ConflictError(key, self._kv(kvs[0]))
        return resp

    def _compare(self, c: Compare) -> pb.Compare:
        key = self._key(c.key)
        op = _COMPARE_OP[c.op]
        if c.target == "value":
            if c.operand is None:
                # "value is None" means "missing": etcd says that with create_revision == 0
                if c.op not in ("=", "!="):
                    raise ValueError("a value compare with None needs = or !=")
                return pb.Compare(key=key, target=pb.Compare.CREATE, result=op, create_revision=0)
            return pb.Compare(key=key, target=pb.Compare.VALUE, result=op, value=c.operand)
        if not isinstance(c.operand, int):
            raise ValueError(f"compare on {c.target} needs an int operand")
        if c.target == "mod":
            return pb.Compare(key=key, target=pb.Compare.MOD, result=op, mod_revision=c.operand)
        if c.target == "create":
            return pb.Compare(
                key=key, target=pb.Compare.CREATE, result=op, create_revision=c.operand
            )
        if c.target == "version":
            return pb.Compare(key=key, target=pb.Compare.VERSION, result=op, version=c.operand)
        raise ValueError(f"unknown compare target {c.target!r}")

    def _op(self, op: Op) -> pb.RequestOp:
        if isinstance(op, Put):
            return self._put_op(op.key, op.value, op.lease)
        if isinstance(op, DeleteKey):
            return self._delete_op(op.key)
        if isinstance(op, GetKey):
            return self._get_op(op.key)
        raise TypeError(f"not a store op: {op!r}")

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        request = pb.TxnRequest(
            compare=[self._compare(c) for c in compares],
            success=[self._op(o) for o in success],
            failure=[self._op(o) for o in failure],
        )
        leases = [o.lease for o in (*success, *failure) if isinstance(o, Put) and o.lease]
        key = next((o.key for o in (*success, *failure) if isinstance(o, Put)), "")
        resp = await self._write("Txn", request, key, leases[0] if leases else 0)
        ops = success if resp.succeeded else failure
        revision = resp.header.revision
        results: list[KeyValue | None] = []
        for op, r in zip(ops, resp.responses):
            if isinstance(op, Put):
                prev = r.response_put.prev_kv if r.response_put.HasField("prev_kv") else None
                results.append(self._put_result(op.key, op.value, op.lease, revision, prev))
            elif isinstance(op, DeleteKey):
                kvs = r.response_delete_range.prev_kvs
                results.append(self._kv(kvs[0]) if kvs else None)
            else:
                kvs = r.response_range.kvs
                results.append(self._kv(kvs[0]) if kvs else None)
        return TxnResult(succeeded=resp.succeeded, revision=revision, results=results)

    # --- watch ---

    def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[Event]:
        full = self._key(prefix)
        implicit = start_revision <= 0
        if implicit and self._last_revision:
            # "From now on" is fixed when watch() is called, not when the stream opens, so a
            # write acknowledged after this call is never missed.
            start_revision = self._last_revision + 1
        return self._watch_events(full or b"\0", _prefix_end(full), start_revision, implicit)

    async def _watch_events(
        self, key: bytes, end: bytes, start: int, implicit: bool
    ) -> AsyncIterator[Event]:
        next_revision = max(start, 0)
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.02
        while True:
            if self._closed:
                raise Unavailable("store is closed")
            index = self._current
            call = self._channels[index].stream_stream(
                _WATCH,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=pb.WatchResponse.FromString,
            )(metadata=_METADATA)
            try:
                create = pb.WatchCreateRequest(
                    key=key, range_end=end, start_revision=next_revision, prev_kv=True
                )
                await call.write(pb.WatchRequest(create_request=create))
                while True:
                    resp = await call.read()
                    if resp is grpc.aio.EOF:
                        raise Unavailable(f"etcd {self.endpoints[index]} closed the watch")
                    deadline = time.monotonic() + self.retry_seconds
                    delay = 0.02
                    if resp.compact_revision:
                        if implicit and not resp.events:
                            # our idea of "now" was older than etcd's history: use etcd's now
                            next_revision, implicit = 0, False
                            break
                        raise CompactedError(next_revision, resp.compact_revision)
                    if resp.canceled:
                        raise Unavailable(f"etcd cancelled the watch: {resp.cancel_reason}")
                    if resp.created and next_revision == 0:
                        next_revision = resp.header.revision + 1
                    for ev in resp.events:
                        event = self._event(ev)
                        next_revision = event.revision + 1
                        yield event
            except (grpc.aio.AioRpcError, Unavailable) as err:
                if self._closed:
                    raise Unavailable("store is closed") from err
                if isinstance(err, grpc.aio.AioRpcError) and not _transient(err):
                    raise Unavailable(f"etcd watch: {err.code().name}: {err.details()}") from err
                self._failover(index)
                if time.monotonic() > deadline:
                    raise Unavailable(f"etcd watch: no member answers: {err}") from err
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            finally:
                call.cancel()

    def _event(self, ev: pb.Event) -> Event:
        prev = self._kv(ev.prev_kv) if ev.HasField("prev_kv") else None
        if ev.type == pb.Event.DELETE:
            kv = KeyValue(
                key=ev.kv.key[len(self._prefix) :].decode(),
                value=b"",
                create_revision=0,
                mod_revision=ev.kv.mod_revision,
                version=0,
            )
            return Event("DELETE", kv, prev)
        return Event("PUT", self._kv(ev.kv), prev)

    # --- leases ---

    async def lease_grant(self, ttl_seconds: int) -> int:
        resp = await self._write("LeaseGrant", pb.LeaseGrantRequest(TTL=ttl_seconds))
        if resp.error:
            raise StoreError(f"etcd lease grant: {resp.error}")
        return resp.ID

    async def lease_revoke(self, lease: int) -> None:
        await self._write("LeaseRevoke", pb.LeaseRevokeRequest(ID=lease), lease=lease)

    async def lease_keepalive(self, lease: int) -> int:
        if self._closed:
            raise Unavailable("store is closed")
        deadline = time.monotonic() + self.retry_seconds
        while True:
            index = self._current
            call = self._channels[index].stream_stream(
                _KEEPALIVE,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=pb.LeaseKeepAliveResponse.FromString,
            )(timeout=self.rpc_timeout, metadata=_METADATA)
            try:
                await call.write(pb.LeaseKeepAliveRequest(ID=lease))
                resp = await call.read()
            except grpc.aio.AioRpcError as err:
                if not _transient(err):
                    raise StoreError(f"etcd keepalive: {err.code().name}: {err.details()}") from err
                self._failover(index)
                if time.monotonic() > deadline:
                    raise Unavailable(f"etcd keepalive: {err.details()}") from err
                await asyncio.sleep(0.05)
                continue
            finally:
                call.cancel()
            if resp is grpc.aio.EOF:  # the member went away between write and read
                self._failover(index)
                if time.monotonic() > deadline:
                    raise Unavailable(f"etcd keepalive: {self.endpoints[index]} closed the stream")
                continue
            self._seen(resp.header.revision)
            if resp.TTL <= 0:
                raise LeaseNotFoundError(lease)
            return resp.TTL

    # --- maintenance ---

    async def compact(self, revision: int) -> None:
        try:
            await self._call("Compact", pb.CompactionRequest(revision=revision), mutation=True)
        except grpc.aio.AioRpcError as err:
            details = err.details() or ""
            if _COMPACTED in details:  # already compacted at or past it
                raise CompactedError(revision, await self._compact_revision(revision)) from err
            if _FUTURE in details:
                raise FutureRevisionError(revision, await self.current_revision()) from err
            raise StoreError(f"etcd compact: {err.code().name}: {details}") from err

    async def status(self) -> dict:
        st = await self._call("Status", pb.StatusRequest(), mutation=False)
        full = self._prefix
        keys = await self._call(
            "Range",
            pb.RangeRequest(key=full or b"\0", range_end=_prefix_end(full), count_only=True),
            mutation=False,
        )
        return {
            "backend": "etcd",
            "revision": keys.header.revision,
            "compact_revision": await self._compact_revision(0),
            "db_size_bytes": st.dbSize,
            "db_size_in_use_bytes": st.dbSizeInUse,
            "keys": keys.count,
            "version": st.version,
            "endpoint": self.endpoints[self._current],
            "member_id": st.header.member_id,
            "leader": st.leader,
            "raft_term": st.raftTerm,
            "raft_index": st.raftIndex,
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(ch.close() for ch in self._channels), return_exceptions=True)
