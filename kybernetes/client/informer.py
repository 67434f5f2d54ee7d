"""Informers: list, then watch from that resourceVersion, keeping a local indexed cache.

Handlers only get told what changed; they should enqueue keys, never act (level-triggered
controllers read the cache when the key comes up). A 410 Expired re-lists; other stream ends
resume the watch from the last resourceVersion seen.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

from kybernetes.api.errors import ApiError
from kybernetes.api.registry import Resource

from .rest import Client, object_key

log = logging.getLogger(__name__)

Handler = Callable[..., None]
IndexFunc = Callable[[dict], list[str]]


def namespace_index(obj: dict) -> list[str]:
    ns = obj["metadata"].get("namespace")
    return [ns] if ns else []


class Informer:
    def __init__(self, client: Client, r: Resource, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client = client
        self.resource = r
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, dict] = {}
        self.indexers: dict[str, IndexFunc] = {"namespace": namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {"namespace": {}}
        self._handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._task: asyncio.Task | None = None
        self.transform: Callable[[dict], dict] | None = None

    def set_transform(self, fn: Callable[[dict], dict]) -> None:
        """client-go's SetTransform: every object goes through fn before the cache and the
        handlers see it (to keep less of it). Only before start()."""
        if self._task is not None:
            raise RuntimeError("informer already started")
        self.transform = fn

    # ---- setup ----

    def add_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                    on_delete: Handler | None = None) -> None:
        """on_add(obj), on_update(old, new), on_delete(obj). Called for the current cache too."""
        self._handlers.append((on_add, on_update, on_delete))
        if on_add:
            for obj in list(self.cache.values()):
                on_add(obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        self.indexers[name] = fn
        idx: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)
        self._indices[name] = idx

    # ---- reads ----

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.cache.values())
        return self.by_index("namespace", namespace)

    def by_index(self, name: str, value: str) -> list[dict]:
        keys = self._indices.get(name, {}).get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    # ---- lifecycle ----

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for ev in self.client.watch(
                        self.resource, self.namespace, resource_version=self.resource_version,
                        label_selector=self.label_selector, field_selector=self.field_selector,
                        timeout_seconds=random.randint(300, 600)):
                    self._apply(ev)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.debug("%s watch: %s", self.resource.plural, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            except Exception:
                log.exception("%s informer failed", self.resource.plural)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def _relist(self) -> None:
        items, rv = await self.client.list_all(self.resource, self.namespace,
                                               label_selector=self.label_selector,
                                               field_selector=self.field_selector)
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._delete(key)
        for key, obj in fresh.items():
            self._put(key, obj)
        self.resource_version = rv
        self.synced.set()

    def _apply(self, ev: dict) -> None:
        obj = ev["object"]
        rv = obj.get("metadata", {}).get("resourceVersion")
        if ev["type"] == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        if self.transform is not None:
            obj = self.transform(obj)
        key = object_key(obj)
        if ev["type"] == "DELETED":
            self._delete(key, obj)
        else:
            self._put(key, obj)
        if rv:
            self.resource_version = rv

    def _put(self, key: str, obj: dict) -> None:
        old = self.cache.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
            return
        self.cache[key] = obj
        for name, fn in self.indexers.items():
            values = fn(obj)
            if old is not None:
                before = fn(old)
                if before == values:
                    continue        # the usual update: same namespace, same index entries
                self._unindex_values(name, key, before)
            idx = self._indices[name]
            for v in values:
                keys = idx.get(v)
                if keys is None:
                    idx[v] = {key}
                else:
                    keys.add(key)
        for on_add, on_update, _ in self._handlers:
            try:
                if old is None:
                    on_add and on_add(obj)
                else:
                    on_update and on_update(old, obj)
            except Exception:
                log.exception("%s handler failed", self.resource.plural)

    def _delete(self, key: str, last: dict | None = None) -> None:
        old = self.cache.pop(key, None)
        if old is None:
            return
        self._unindex(key, old)
        for _, _, on_delete in self._handlers:
            try:
                on_delete and on_delete(last or old)
            except Exception:
                log.exception("%s handler failed", self.resource.plural)

    def _unindex(self, key: str, obj: dict) -> None:
        for name, fn in self.indexers.items():
            self._unindex_values(name, key, fn(obj))

    def _unindex_values(self, name: str, key: str, values: list[str]) -> None:
        idx = self._indices[name]
        for v in values:
            keys = idx.get(v)
            if keys:
                keys.discard(key)
                if not keys:
                    del idx[v]


class InformerFactory:
    """One informer per (resource, namespace, selectors), shared by every controller."""

    def __init__(self, client: Client):
        self.client = client
        self._informers: dict[tuple, Informer] = {}

    def informer(self, r: Resource, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None) -> Informer:
        key = (r.group, r.plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, r, namespace, label_selector=label_selector,
                           field_selector=field_selector)
            self._informers[key] = inf
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            for inf in list(self._informers.values()):
                await inf.synced.wait()

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
