"""The shared controller loop: informers → work queue → workers → `reconcile(key)`.

A controller subclasses `Controller`, declares its informers in `setup()` (handlers enqueue keys),
and implements one level-triggered, idempotent `reconcile(key)`. Errors requeue the key with
backoff; a returned number requeues it after that many seconds.
"""

from __future__ import annotations

import asyncio
import logging

from kybernetes.api.errors import ApiError

from .events import EventRecorder
from .informer import InformerFactory
from .rest import Client, object_key
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


class Controller:
    name = "controller"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory, recorder: EventRecorder | None = None):
        self.client = client
        self.factory = factory
        self.recorder = recorder or EventRecorder(client, self.name)
        self.queue = WorkQueue(self.name)
        self.setup()

    def setup(self) -> None:
        """Create informers and register handlers (they only enqueue keys)."""

    async def reconcile(self, key: str) -> float | None:
        raise NotImplementedError

    # ---- helpers for handlers ----

    def enqueue(self, obj: dict) -> None:
        self.queue.add(object_key(obj))

    def enqueue_owner(self, obj: dict, kind: str) -> None:
        """Enqueue the controller owner of `obj` if it is of `kind`."""
        ref = controller_of(obj)
        if ref and ref.get("kind") == kind:
            ns = obj["metadata"].get("namespace")
            self.queue.add(f"{ns}/{ref['name']}" if ns else ref["name"])

    # ---- the loop ----

    async def run(self) -> None:
        await self.factory.wait_for_sync()
        tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}")
                 for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                after = await self.reconcile(key)
                self.queue.forget(key)
                if after:
                    self.queue.add_after(key, after)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 409:
                    log.debug("%s %s: conflict, retrying", self.name, key)
                else:
                    log.warning("%s %s: %s", self.name, key, e)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s %s failed", self.name, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


def controller_of(obj: dict) -> dict | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict, *, controller: bool = True, block: bool = True) -> dict:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": controller, "blockOwnerDeletion": block}
