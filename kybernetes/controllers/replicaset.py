"""The ReplicaSet controller: keep `spec.replicas` active pods matching the selector.

Like upstream pkg/controller/replicaset: pods are found by selector in the informer cache and
claimed (orphans adopted, pods that stopped matching released); missing pods are created in
slow-start batches, extra ones deleted in upstream's ranking order; expectations stop a sync
from acting again before the informer has shown this controller's own writes; status is
written through /status. ReplicationControllerController reuses all of it with a map selector.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from kybernetes.api.errors import ApiError
from kybernetes.api.selectors import LabelSelector, SelectorError, label_selector_from_object
from kybernetes.client import Controller, EventRecorder, controller_of, object_key, resource, split_key

from .replicas import (BURST_REPLICAS, Expectations, calculate_status, is_pod_active, is_pod_ready,
                       pod_from_template, pods_to_delete, slow_start_batch, status_equal)

log = logging.getLogger(__name__)

PODS = resource("v1", "Pod")
OWNER_UID_INDEX = "controller-uid"
ORPHAN_INDEX = "orphan-namespace"


def controller_uid_index(obj: dict) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def orphan_index(obj: dict) -> list[str]:
    """Pods without a controller, by namespace: the only ones a sync may adopt."""
    return [] if controller_of(obj) else [obj["metadata"].get("namespace") or ""]


def _namespace_terminating(e: ApiError) -> bool:
    return any(c.get("reason") == "NamespaceTerminating" for c in e.details.get("causes") or [])


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 5
    api_version = "apps/v1"
    kind = "ReplicaSet"
    component = "replicaset-controller"

    def setup(self) -> None:
        self.resource = resource(self.api_version, self.kind)
        # Events carry the upstream source component, shown by `kubectl describe` under "From".
        self.recorder = EventRecorder(self.client, self.component)
        self.expectations = Expectations()
        self.owners = self.factory.informer(self.resource)
        self.pods = self.factory.informer(PODS)
        self.pods.add_index(OWNER_UID_INDEX, controller_uid_index)
        self.pods.add_index(ORPHAN_INDEX, orphan_index)
        self.owners.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._owner_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- what differs between ReplicaSet and ReplicationController ----

    def selector(self, obj: dict) -> LabelSelector:
        return label_selector_from_object((obj.get("spec") or {}).get("selector"))

    def typed(self, obj: dict) -> dict:
        """Informer list items may lack kind/apiVersion; events and ownerReferences need them."""
        if obj.get("kind") and obj.get("apiVersion"):
            return obj
        return dict(obj, apiVersion=self.api_version, kind=self.kind)

    def controller_ref(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return {"apiVersion": self.api_version, "kind": self.kind, "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}

    # ---- handlers: find the owner, note expectations, enqueue ----

    def _resolve(self, namespace: str, ref: dict | None) -> dict | None:
        if not ref or ref.get("kind") != self.kind:
            return None
        obj = self.owners.get(f"{namespace}/{ref.get('name')}")
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return None
        return obj

    def _matching_owners(self, pod: dict) -> list[dict]:
        labels = pod["metadata"].get("labels") or {}
        out = []
        for obj in self.owners.list(pod["metadata"].get("namespace")):
            try:
                if self.selector(obj).matches(labels) and labels:
                    out.append(obj)
            except SelectorError:
                continue
        return out

    def _owner_deleted(self, obj: dict) -> None:
        key = object_key(obj)
        self.expectations.delete(key)
        self.queue.add(key)

    def _pod_added(self, pod: dict) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            # Seen for the first time already terminating (e.g. after a restart).
            self._pod_deleted(pod)
            return
        ns = pod["metadata"].get("namespace")
        ref = controller_of(pod)
        if ref:
            owner = self._resolve(ns, ref)
            if owner is not None:
                key = object_key(owner)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for owner in self._matching_owners(pod):
            self.enqueue(owner)

    def _pod_updated(self, old: dict, cur: dict) -> None:
        ns = cur["metadata"].get("namespace")
        labels_changed = (old["metadata"].get("labels") or {}) != (cur["metadata"].get("labels") or {})
        if cur["metadata"].get("deletionTimestamp"):
            # A graceful delete shows as an update first; it counts as the deletion.
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        ref_changed = old_ref != cur_ref
        if ref_changed and old_ref:
            owner = self._resolve(ns, old_ref)
            if owner is not None:
                self.enqueue(owner)
        if cur_ref:
            owner = self._resolve(ns, cur_ref)
            if owner is not None:
                self.enqueue(owner)
                min_ready = (owner.get("spec") or {}).get("minReadySeconds") or 0
                if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                    # Check again once it could count as available.
                    self.queue.add_after(object_key(owner), float(min_ready))
            return
        if labels_changed or ref_changed:
            for owner in self._matching_owners(cur):
                self.enqueue(owner)

    def _pod_deleted(self, pod: dict) -> None:
        owner = self._resolve(pod["metadata"].get("namespace"), controller_of(pod))
        if owner is None:
            return
        key = object_key(owner)
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # ---- reconcile ----

    async def reconcile(self, key: str) -> float | None:
        obj = self.owners.get(key)
        if obj is None:
            self.expectations.delete(key)
            return None
        obj = self.typed(obj)
        ns, _ = split_key(key)
        try:
            selector = self.selector(obj)
        except SelectorError as e:
            log.error("%s %s: invalid selector: %s", self.kind, key, e)
            return None
        needs_sync = (self.expectations.satisfied(key)
                      and not obj["metadata"].get("deletionTimestamp"))
        # Pods of other controllers are never claimed: look only at ours and at orphans
        # rather than at every pod of the namespace.
        candidates = (self.pods.by_index(OWNER_UID_INDEX, obj["metadata"]["uid"])
                      + self.pods.by_index(ORPHAN_INDEX, ns or ""))
        active = [p for p in candidates if is_pod_active(p)]
        pods = await self._claim(obj, selector, active)

        replicas = (obj.get("spec") or {}).get("replicas")
        replicas = 1 if replicas is None else replicas
        diff = len(pods) - replicas
        manage_error: Exception | None = None
        if needs_sync:
            try:
                await self._manage(obj, key, pods, replicas)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # reported in status, then retried with backoff
                manage_error = e

        status = calculate_status(obj, pods, manage_error, diff)
        updated = await self._update_status(obj, status)
        if manage_error is not None:
            raise manage_error
        spec, st = updated.get("spec") or {}, updated.get("status") or {}
        min_ready = spec.get("minReadySeconds") or 0
        if (min_ready > 0 and (st.get("readyReplicas") or 0) == replicas
                and (st.get("availableReplicas") or 0) != replicas):
            return float(min_ready)
        return None

    # ---- adopt and release ----

    async def _claim(self, obj: dict, selector: LabelSelector, pods: list[dict]) -> list[dict]:
        """Pods this object controls after adopting matching orphans and releasing owned pods
        that no longer match. No adoption while it is being deleted."""
        uid = obj["metadata"]["uid"]
        deleting = bool(obj["metadata"].get("deletionTimestamp"))
        claimed: list[dict] = []
        errors: list[Exception] = []
        may_adopt: bool | None = None
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            matches = selector.matches(labels)
            ref = controller_of(pod)
            if ref:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    claimed.append(pod)
                elif not deleting:
                    await self._release(obj, pod, errors)
                continue
            if deleting or not matches or pod["metadata"].get("deletionTimestamp"):
                continue
            if may_adopt is None:
                may_adopt = await self._can_adopt(obj)
            if not may_adopt:
                continue
            try:
                claimed.append(await self.client.patch(PODS, pod["metadata"]["name"], {
                    "metadata": {"ownerReferences": [self.controller_ref(obj)],
                                 "uid": pod["metadata"]["uid"]}},
                    pod["metadata"]["namespace"], type="strategic"))
            except ApiError as e:
                if e.code != 404:
                    errors.append(e)
        if errors:
            raise errors[0]
        return claimed

    async def _can_adopt(self, obj: dict) -> bool:
        """Re-read the owner from the API: the cache may not show it was deleted or replaced."""
        meta = obj["metadata"]
        try:
            fresh = await self.client.get(self.resource, meta["name"], meta.get("namespace"))
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        fm = fresh["metadata"]
        return fm.get("uid") == meta["uid"] and not fm.get("deletionTimestamp")

    async def _release(self, obj: dict, pod: dict, errors: list[Exception]) -> None:
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], {
                "metadata": {"ownerReferences": [{"$patch": "delete", "uid": obj["metadata"]["uid"]}],
                             "uid": pod["metadata"]["uid"]}},
                pod["metadata"]["namespace"], type="strategic")
        except ApiError as e:
            if e.code not in (404, 422):  # gone, or being deleted with another uid
                errors.append(e)

    # ---- create and delete ----

    async def _manage(self, obj: dict, key: str, pods: list[dict], replicas: int) -> None:
        diff = len(pods) - replicas
        if diff < 0:
            await self._create(obj, key, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete(obj, key, pods, min(diff, BURST_REPLICAS))

    async def _create(self, obj: dict, key: str, count: int) -> None:
        meta = obj["metadata"]
        template = (obj.get("spec") or {}).get("template") or {}
        self.expectations.expect_creations(key, count)

        async def create_one() -> None:
            try:
                body = pod_from_template(template, self.controller_ref(obj), meta["name"])
                pod = await self.client.create(PODS, body, meta["namespace"])
            except ApiError as e:
                if _namespace_terminating(e):
                    return  # every create would fail; the namespace is going away
                self.recorder.event(obj, "Warning", "FailedCreate", f"Error creating: {e.message}")
                raise
            except ValueError as e:
                self.recorder.event(obj, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.event(obj, "Normal", "SuccessfulCreate",
                                f"Created pod: {pod['metadata']['name']}")

        created, error = await slow_start_batch(count, create_one)
        # Creates never attempted (or failed) will not be observed: stop expecting them.
        for _ in range(count - created):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error

    def _related_pods(self, obj: dict) -> list[dict]:
        """Pods of this object and of its siblings under the same controller (a Deployment's
        ReplicaSets), used to spread deletions away from crowded nodes."""
        ref = controller_of(obj)
        uids = {obj["metadata"]["uid"]}
        if ref:
            for other in self.owners.list(obj["metadata"].get("namespace")):
                if (controller_of(other) or {}).get("uid") == ref.get("uid"):
                    uids.add(other["metadata"]["uid"])
        return [p for uid in uids for p in self.pods.by_index(OWNER_UID_INDEX, uid)]

    async def _delete(self, obj: dict, key: str, pods: list[dict], count: int) -> None:
        victims = pods_to_delete(pods, self._related_pods(obj), count, datetime.now(timezone.utc))
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])

        async def delete_one(pod: dict) -> None:
            name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
            try:
                await self.client.delete(PODS, name, ns)
            except ApiError as e:
                # The informer will not show this deletion.
                self.expectations.deletion_observed(key, object_key(pod))
                if e.code == 404:
                    return
                self.recorder.event(obj, "Warning", "FailedDelete", f"Error deleting: {e.message}")
                raise
            self.recorder.event(obj, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

        results = await asyncio.gather(*(delete_one(p) for p in victims), return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                raise r

    # ---- status ----

    async def _update_status(self, obj: dict, status: dict) -> dict:
        if status_equal(obj.get("status") or {}, status):
            return obj
        body = dict(obj, status=status)
        try:
            return await self.client.update_status(self.resource, body)
        except ApiError as e:
            if e.code != 409:
                raise
        # Stale copy: one more try on a fresh read, as upstream does.
        meta = obj["metadata"]
        fresh = self.typed(await self.client.get(self.resource, meta["name"], meta.get("namespace")))
        status = dict(status)
        generation = fresh["metadata"].get("generation")
        if generation:
            status["observedGeneration"] = generation
        return await self.client.update_status(self.resource, dict(fresh, status=status))
