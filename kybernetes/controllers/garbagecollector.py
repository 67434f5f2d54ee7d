"""Garbage collector: deletes objects whose owners are gone, and carries out foreground and
orphan deletion (upstream pkg/controller/garbagecollector).

Every resource that supports list, watch and delete is watched, metadata only, to build the
owner → dependents graph (gc_graph.py). Keys in the queue are object uids; `reconcile(uid)`
looks at the object's node and:
- being deleted with the `orphan` finalizer: drops its reference from every dependent, then
  the finalizer;
- being deleted with `foregroundDeletion`: gets its dependents deleted and, once none with
  blockOwnerDeletion remains, drops the finalizer (the API server then deletes it);
- otherwise, if some owner is unknown or waiting: reads the object and each owner live and
  deletes it (no owner left) or drops the references to missing owners (some owner left).
Nothing is deleted on the strength of the cache alone: absence is checked with a GET.
"""

from __future__ import annotations

import asyncio
import logging

from kybernetes.api.errors import ApiError
from kybernetes.api.registry import Resource
from kybernetes.client import Controller, Informer, resource
from kybernetes.client.discovery import preferred_resources, supports
from kybernetes.client.metadata import MetadataClient

from .gc_graph import (DANGLING, FOREGROUND, ORPHAN, Graph, Node, finalizer_patch,
                       needs_attention, node_from_meta, owner_refs_patch, owner_state,
                       plan_dependent, ref_string, unblocked, without_owners)

log = logging.getLogger(__name__)

# Upstream's default ignored resources: events are never owners worth tracking.
IGNORED = {("", "events"), ("events.k8s.io", "events")}
RESYNC_SECONDS = 30.0  # discovery is re-read this often, and whenever a CRD changes
_ABSENT_CACHE_MAX = 10000


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 8

    def setup(self) -> None:
        self.meta = MetadataClient.like(self.client)
        self.graph = Graph()
        self.monitors: dict[tuple[str, str], Informer] = {}
        self.mapper: dict[tuple[str, str], Resource] = {}
        self._absent: set[str] = set()  # owner uids verified gone (uids never come back)
        self._resync = asyncio.Event()
        crds = self.factory.informer(resource("apiextensions.k8s.io/v1", "CustomResourceDefinition"))
        crds.add_handler(lambda o: self._resync.set(), lambda o, n: self._resync.set(),
                         lambda o: self._resync.set())

    # ---- monitors: one metadata informer per deletable resource ----

    async def sync_monitors(self) -> None:
        resources, failed = await preferred_resources(self.client)
        failed_groups = {_group(gv) for gv in failed}
        self.mapper = {(r.group, r.kind): r for r in resources}
        wanted = {(r.group, r.plural): r for r in resources
                  if supports(r, "list", "watch", "delete") and (r.group, r.plural) not in IGNORED}
        for key, r in wanted.items():
            if key not in self.monitors:
                self.monitors[key] = self._monitor(r)
        for key in [k for k in self.monitors if k not in wanted and k[0] not in failed_groups]:
            inf = self.monitors.pop(key)
            await inf.stop()
            for obj in list(inf.cache.values()):
                self._forget(obj)
            log.info("garbage collector stopped watching %s", inf.resource.group_resource)

    def _monitor(self, r: Resource) -> Informer:
        inf = Informer(self.meta, r)
        inf.add_handler(lambda o: self._observe(r, o), lambda old, new: self._observe(r, new),
                        self._forget)
        inf.start()
        return inf

    async def _discovery_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._resync.wait(), RESYNC_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._resync.clear()
            try:
                await self.sync_monitors()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # discovery hiccups: keep the monitors we have
                log.warning("garbage collector discovery: %s", e)

    async def run(self) -> None:
        while True:
            try:
                await self.sync_monitors()
                break
            except ApiError as e:
                log.warning("garbage collector discovery: %s; retrying", e)
                await asyncio.sleep(1)
        refresher = asyncio.create_task(self._discovery_loop(), name="gc-discovery")
        try:
            try:
                async with asyncio.timeout(60):
                    for inf in list(self.monitors.values()):
                        await inf.synced.wait()
            except TimeoutError:
                log.warning("garbage collector: not every monitor synced; starting anyway")
            await super().run()
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
            for inf in self.monitors.values():
                await inf.stop()
            await self.meta.close()

    # ---- graph changes (handlers: update the graph, enqueue uids) ----

    def _observe(self, r: Resource, obj: dict) -> None:
        meta = obj["metadata"]
        if not meta.get("uid"):
            return
        node = node_from_meta(r, meta)
        old = self.graph.upsert(node)
        if node.orphaning or node.deleting_dependents:
            self.queue.add(node.uid)
        changed = old is None or old.owners != node.owners or old.deleting != node.deleting
        if not changed:
            return
        if node.owners and not node.deleting and needs_attention(node, self.graph):
            self.queue.add(node.uid)
        # Owners waiting on their dependents re-check when a dependent's references change.
        for u in node.owner_uids() | (old.owner_uids() if old else set()):
            owner = self.graph.get(u)
            if owner is not None and owner.deleting_dependents:
                self.queue.add(u)

    def _forget(self, obj: dict) -> None:
        uid = obj["metadata"].get("uid")
        node = self.graph.remove(uid) if uid else None
        if node is None:
            return
        for dep in self.graph.dependents(uid):
            self.queue.add(dep.uid)
        for u in node.owner_uids():
            owner = self.graph.get(u)
            if owner is not None and owner.deleting_dependents:
                self.queue.add(u)

    # ---- reconcile ----

    async def reconcile(self, key: str) -> float | None:
        node = self.graph.get(key)
        if node is None:
            return None
        if node.deleting:
            if node.orphaning:
                await self._orphan_dependents(node)
            elif node.deleting_dependents:
                await self._delete_dependents(node)
            return None
        if node.owners and needs_attention(node, self.graph):
            await self._attempt_to_delete(node)
        return None

    async def _orphan_dependents(self, owner: Node) -> None:
        for dep in self.graph.dependents(owner.uid):
            await self._drop_owner_refs(dep, {owner.uid})
        await self._remove_finalizer(owner, ORPHAN)

    async def _delete_dependents(self, owner: Node) -> None:
        if not self.graph.blocking_dependents(owner.uid):
            await self._remove_finalizer(owner, FOREGROUND)
            return
        for dep in self.graph.dependents(owner.uid):
            if not dep.deleting:
                self.queue.add(dep.uid)
        # dependents' deletions (informer events) bring the owner back

    async def _attempt_to_delete(self, node: Node) -> None:
        live = await self._get_meta(node.resource, node.namespace, node.name)
        if live is None or live.get("uid") != node.uid or live.get("deletionTimestamp"):
            return  # gone or going; the informer will tell
        refs = live.get("ownerReferences") or []
        if not refs:
            return
        states = {}
        for ref in refs:
            if ref.get("uid"):
                states[ref["uid"]] = await self._owner_state(node, ref)
        deps = self.graph.dependents(node.uid)
        plan = plan_dependent(refs, states, bool(deps), live.get("finalizers") or (),
                              dependent_deleting_dependents=any(d.deleting_dependents for d in deps))
        r, ns = node.resource, node.namespace
        if plan.action == "remove-owners":
            log.info("gc: %s %s/%s: removing dangling owner references %s",
                     r.kind, ns or "", node.name, ",".join(plan.owners))
            await self._patch(r, ns, node.name, owner_refs_patch(live, without_owners(refs, plan.owners)))
        elif plan.action == "delete":
            if plan.owners:
                new_refs = unblocked(refs, plan.owners)
                if new_refs != refs:
                    live = await self._patch(r, ns, node.name, owner_refs_patch(live, new_refs))
            log.info("gc: deleting %s %s/%s (propagationPolicy=%s)", r.kind, ns or "", node.name,
                     plan.policy)
            try:
                await self.meta.delete(r, node.name, ns, propagation=plan.policy,
                                       preconditions={"uid": node.uid})
            except ApiError as e:
                if e.code not in (404, 409):  # gone, or the name is another object's now
                    raise

    async def _owner_state(self, node: Node, ref: dict) -> str:
        uid = ref["uid"]
        r = self.mapper.get((_group(ref.get("apiVersion", "")), ref.get("kind", "")))
        if r is None:
            # An unknown kind may be a CRD not discovered yet: retry later, never guess.
            raise ApiError(404, "NotFound",
                           f"unable to get REST mapping for {ref.get('apiVersion')}/{ref.get('kind')}")
        if r.namespaced and not node.namespace:
            self._invalid_namespace(node, ref)
            return DANGLING
        if uid in self._absent:
            return DANGLING
        seen = self.graph.get(uid)
        if seen is not None and r.namespaced and seen.namespace != node.namespace:
            self._invalid_namespace(node, ref)
        live = await self._get_meta(r, node.namespace if r.namespaced else None, ref["name"])
        state = owner_state(ref, live)
        if state == DANGLING:
            if len(self._absent) > _ABSENT_CACHE_MAX:
                self._absent.clear()
            self._absent.add(uid)
        return state

    def _invalid_namespace(self, node: Node, ref: dict) -> None:
        obj = {"apiVersion": node.resource.api_version, "kind": node.resource.kind,
               "metadata": {"name": node.name, "namespace": node.namespace, "uid": node.uid}}
        self.recorder.event(obj, "Warning", "OwnerRefInvalidNamespace",
                            f"ownerRef {ref_string(ref, node.namespace)} does not exist in "
                            f"namespace \"{node.namespace or ''}\"")

    # ---- writes ----

    async def _drop_owner_refs(self, dep: Node, uids: set[str]) -> None:
        live = await self._get_meta(dep.resource, dep.namespace, dep.name)
        if live is None or live.get("uid") != dep.uid:
            return
        refs = live.get("ownerReferences") or []
        kept = without_owners(refs, uids)
        if kept != refs:
            await self._patch(dep.resource, dep.namespace, dep.name, owner_refs_patch(live, kept))

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        live = await self._get_meta(node.resource, node.namespace, node.name)
        if live is None or live.get("uid") != node.uid:
            return
        patch = finalizer_patch(live, finalizer)
        if patch is not None:
            log.info("gc: removing finalizer %s from %s %s/%s", finalizer, node.resource.kind,
                     node.namespace or "", node.name)
            await self._patch(node.resource, node.namespace, node.name, patch)

    async def _patch(self, r: Resource, ns: str | None, name: str, ops: list[dict]) -> dict:
        try:
            out = await self.meta.patch(r, name, ops, ns, type="json")
            return out.get("metadata") or {}
        except ApiError as e:
            if e.code == 404:
                return {}
            raise

    async def _get_meta(self, r: Resource, ns: str | None, name: str) -> dict | None:
        try:
            out = await self.meta.get(r, name, ns)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return out.get("metadata") or {}
