"""The MVCC key-value store: one contract (interface.py), two backends.

`open_store(url)` picks the backend from a URL:
    sqlite:///var/lib/kyb/state.db   (or a plain path)  → SqliteStore, embedded
    etcd://10.0.0.1:2379,10.0.0.2:2379[/prefix]         → EtcdStore, an etcd v3 cluster
Backends are imported lazily so neither pulls in the other's dependencies.
"""

from __future__ import annotations

from urllib.parse import unquote

from .interface import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    ConflictError,
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
    Store,
    StoreError,
    TxnResult,
    Unavailable,
    ValueTooLargeError,
)

__all__ = [
    "MAX_VALUE_BYTES", "CompactedError", "Compare", "ConflictError", "DeleteKey", "Event",
    "FutureRevisionError", "GetKey", "KeyExistsError", "KeyNotFoundError", "KeyValue",
    "LeaseNotFoundError", "Op", "Put", "RangeResult", "Store", "StoreError", "TxnResult",
    "Unavailable", "ValueTooLargeError", "open_store",
]


async def open_store(url: str, **kw) -> Store:
    """Open the store named by `url`; keyword arguments go to the backend's constructor."""
    if url.startswith("etcd://"):
        from .etcd import EtcdStore

        rest = url[len("etcd://"):]
        hosts, _, prefix = rest.partition("/")
        endpoints = [h for h in hosts.split(",") if h]
        return await EtcdStore.open(endpoints, "/" + prefix if prefix else "", **kw)
    if url.startswith("sqlite://"):
        path = unquote(url[len("sqlite://"):])  # sqlite:///abs/path → /abs/path
        if not path:
            raise ValueError(f"no file path in {url!r}")
    elif "://" in url:
        raise ValueError(f"unknown store URL {url!r} (want sqlite:///path or etcd://host:port)")
    else:
        path = url
    from .sqlite import SqliteStore

    return await SqliteStore(path, **kw).open()
