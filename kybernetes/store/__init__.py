"""The cluster's key-value store (the seed's etcd): one interface, two backends."""

from .interface import *  # noqa: F401,F403
from .interface import Store


async def open_store(url: str, **kw) -> Store:
    """sqlite:///abs/path.db (or a plain path) → SqliteStore; etcd://h:p,h:p[/prefix] → EtcdStore."""
    if url.startswith("etcd://"):
        from .etcd import EtcdStore

        rest = url[len("etcd://"):]
        hosts, _, prefix = rest.partition("/")
        return await EtcdStore.open(hosts.split(","), prefix=("/" + prefix) if prefix else "", **kw)
    from .sqlite import SqliteStore

    path = url[len("sqlite://"):] if url.startswith("sqlite://") else url
    return await SqliteStore(path, **kw).open()
