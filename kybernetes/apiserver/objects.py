"""Objects over the key-value store: encode, create, read, guaranteed update, delete.

resourceVersion is the store's mod_revision; it is not kept inside the stored bytes.
"""

from __future__ import annotations

import os
from typing import Awaitable, Callable

import orjson

from kybernetes.api import errors
from kybernetes.api.clock import now_rfc3339  # noqa: F401 (imported from here too)
from kybernetes.api.registry import Resource
from kybernetes.store import (ConflictError, KeyExistsError, KeyNotFoundError, Store,
                              ValueTooLargeError)

from .watchcache import WatchCache, decode


def encode(obj: dict) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        obj = dict(obj, metadata=meta)
    return orjson.dumps(obj)


def _too_large(r: Resource, name: str) -> errors.ApiError:
    return errors.ApiError(413, "RequestEntityTooLarge",
                           f"{r.plural} \"{name}\": request is too large", name=name)


class Objects:
    def __init__(self, store: Store, cache: WatchCache):
        self.store = store
        self.cache = cache

    async def create(self, r: Resource, obj: dict, *, dry_run: bool = False) -> dict:
        meta = obj["metadata"]
        key = r.key(meta.get("namespace"), meta["name"])
        if dry_run:
            if await self.store.get(key) is not None:
                raise errors.already_exists(r.plural, meta["name"], r.group)
            return obj
        data = encode(obj)
        self.cache.expect(key, data, obj)
        try:
            kv = await self.store.create(key, data)
        except KeyExistsError:
            self.cache.unexpect(key, data)
            raise errors.already_exists(r.plural, meta["name"], r.group) from None
        except ValueTooLargeError:
            self.cache.unexpect(key, data)
            raise _too_large(r, meta["name"]) from None
        except BaseException:
            self.cache.unexpect(key, data)
            raise
        meta["resourceVersion"] = str(kv.mod_revision)  # what decoding kv.value would give
        return obj

    async def get(self, r: Resource, namespace: str | None, name: str) -> dict:
        """A consistent read (sees every acknowledged write)."""
        await self.cache.sync()
        obj = self.cache.get(r.key(namespace, name))
        if obj is None:
            raise errors.not_found(r.plural, name, r.group)
        return obj

    async def get_from_store(self, r: Resource, namespace: str | None, name: str,
                             revision: int = 0) -> dict | None:
        kv = await self.store.get(r.key(namespace, name), revision=revision)
        return decode(kv.value, kv.mod_revision) if kv else None

    async def update(
        self,
        r: Resource,
        namespace: str | None,
        name: str,
        mutate: Callable[[dict], Awaitable[dict | None]],
        *,
        dry_run: bool = False,
        retries: int = 20,
        shared: bool = False,
    ) -> tuple[dict, dict]:
        """Read-modify-write until the CAS holds: returns (old, new).

        `mutate(current)` returns the new object, or None to leave it unchanged; it may raise
        ApiError (a precondition such as a stale resourceVersion is its job). A new object whose
        deletionTimestamp is set and finalizers are empty is deleted instead. `mutate` gets a
        private copy it may change, or with `shared` the current object itself, which it must
        not change: it returns a new object that may share the parts it leaves alone (the
        cached object's parts are never changed in place, so sharing them is safe).
        """
        key = r.key(namespace, name)
        # The first try starts from the watch cache's copy (no store read), like upstream's
        # GuaranteedUpdate with a cached object. That copy may be stale, so only a write whose
        # compare-and-swap holds trusts it: a conflict, an error or a no-op from a cached
        # start is tried again from the store.
        from_cache = True
        for _ in range(retries):
            stored = self.cache.stored(key) if from_cache else None
            from_cache = False
            if stored is not None:
                value, revision, current = stored
            else:
                kv = await self.store.get(key)
                if kv is None:
                    raise errors.not_found(r.plural, name, r.group)
                value, revision = kv.value, kv.mod_revision
                current = decode(value, revision)
            # A decode is the cheapest deep copy; comparing encodings to the stored bytes finds
            # no-op writes, and the encoding is then the one written.
            try:
                new = await mutate(current if shared else decode(value, revision))
            except errors.ApiError:
                if stored is not None:
                    continue
                raise
            data = encode(new) if new is not None else value
            if data == value:
                if stored is not None:
                    continue
                return current, current
            finalized = _finalized(r, new)
            if dry_run:
                return current, new
            try:
                if finalized:
                    await self.store.delete(key, expected_mod_revision=revision)
                    new["metadata"]["resourceVersion"] = str(await self.store.current_revision())
                    return current, new
                self.cache.expect(key, data, new)
                try:
                    out = await self.store.update(key, data, expected_mod_revision=revision)
                except BaseException:
                    self.cache.unexpect(key, data)
                    raise
                new["metadata"]["resourceVersion"] = str(out.mod_revision)
                return current, new
            except (ConflictError, KeyNotFoundError):
                continue
            except ValueTooLargeError:
                raise _too_large(r, name) from None
        raise errors.conflict(r.plural, name, r.group, "too many concurrent updates; try again")

    async def delete(self, r: Resource, namespace: str | None, name: str, *,
                     expected_mod_revision: int | None = None) -> dict:
        try:
            kv = await self.store.delete(r.key(namespace, name),
                                         expected_mod_revision=expected_mod_revision)
        except KeyNotFoundError:
            raise errors.not_found(r.plural, name, r.group) from None
        except ConflictError:
            raise errors.conflict(r.plural, name, r.group) from None
        return decode(kv.value, kv.mod_revision)


def _finalized(r: Resource, obj: dict) -> bool:
    """Deleted when written (upstream ShouldDeleteDuringUpdate): being deleted, no finalizer,
    no grace period left (pods wait for their kubelet) and, for a namespace, no spec.finalizers
    (the namespace controller clears them through /finalize)."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if meta.get("deletionGracePeriodSeconds"):
        return False
    namespace = r.plural == "namespaces" and not r.group
    return not (namespace and (obj.get("spec") or {}).get("finalizers"))


_random = bytearray()


def new_uid() -> str:
    """A random (version 4) UUID; the random bytes are read from the OS 256 UIDs at a time,
    since a getrandom call per create showed in profiles (and so did uuid.UUID: the string is
    formatted here)."""
    global _random
    if len(_random) < 16:
        _random = bytearray(os.urandom(4096))
    raw = _random[-16:]
    del _random[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


os.register_at_fork(after_in_child=lambda: _random.clear())  # a child must not repeat them
