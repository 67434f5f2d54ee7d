"""The Deployment controller: manages ReplicaSets so the pods follow the Deployment's template.

Follows upstream pkg/controller/deployment (deployment_controller.go, sync.go, rolling.go,
recreate.go, rollback.go, progress.go): one level-triggered `reconcile(key)` reads the
Deployment, claims its ReplicaSets, then either only scales (paused, or a replicas change
mid-rollout: proportional scaling), rolls back (the deprecated rollback annotation), or rolls
out with the RollingUpdate or Recreate strategy, and writes status and conditions.
"""

from __future__ import annotations

import copy
import logging

from kybernetes.api import errors
from kybernetes.api.errors import ApiError
from kybernetes.api.selectors import SelectorError, label_selector_from_object
from kybernetes.client import Controller, controller_of, owner_reference, resource

from . import deployment_util as du

log = logging.getLogger(__name__)

DEPLOYMENTS = resource("apps/v1", "Deployment")
REPLICASETS = resource("apps/v1", "ReplicaSet")
PODS = resource("v1", "Pod")
POD_OWNER_INDEX = "deployment:controller-uid"


def _controller_uid(obj: dict) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def _selector(d: dict):
    try:
        return label_selector_from_object(d["spec"].get("selector"))
    except SelectorError:
        return None


class DeploymentController(Controller):
    name = "deployment"
    workers = 5

    def setup(self) -> None:
        self.deployments = self.factory.informer(DEPLOYMENTS)
        self.replicasets = self.factory.informer(REPLICASETS)
        self.pods = self.factory.informer(PODS)
        self.pods.add_index(POD_OWNER_INDEX, _controller_uid)
        self.deployments.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.replicasets.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pods.add_handler(on_delete=self._pod_deleted)

    # ---- event handlers: only enqueue ----

    def _deployments_matching(self, rs: dict) -> list[dict]:
        labels = rs["metadata"].get("labels") or {}
        out = []
        for d in self.deployments.list(rs["metadata"].get("namespace")):
            sel = _selector(d)
            if sel is not None and not sel.empty() and sel.matches(labels):
                out.append(d)
        return out

    def _rs_added(self, rs: dict) -> None:
        if rs["metadata"].get("deletionTimestamp"):
            self._rs_deleted(rs)
            return
        if controller_of(rs):
            self.enqueue_owner(rs, "Deployment")
            return
        for d in self._deployments_matching(rs):
            self.enqueue(d)

    def _rs_updated(self, old: dict, cur: dict) -> None:
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        if old_ref and old_ref != cur_ref:
            self.enqueue_owner(old, "Deployment")
        if cur_ref:
            self.enqueue_owner(cur, "Deployment")
        elif old["metadata"].get("labels") != cur["metadata"].get("labels") or old_ref != cur_ref:
            for d in self._deployments_matching(cur):
                self.enqueue(d)

    def _rs_deleted(self, rs: dict) -> None:
        self.enqueue_owner(rs, "Deployment")

    def _pod_deleted(self, pod: dict) -> None:
        # Recreate waits for old pods to be gone before creating the new ReplicaSet.
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.get(f"{pod['metadata'].get('namespace')}/{ref['name']}")
        if rs is not None:
            self.enqueue_owner(rs, "Deployment")

    # ---- reconcile (upstream syncDeployment) ----

    async def reconcile(self, key: str) -> float | None:
        cached = self.deployments.get(key)
        if cached is None:
            return None
        d = copy.deepcopy(cached)
        if not d["spec"].get("selector"):
            # An empty selector would select every pod in the namespace.
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if d.get("status", {}).get("observedGeneration", 0) < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"]["generation"]
                await self.client.update_status(DEPLOYMENTS, d)
            return None
        rs_list = await self._claim_replicasets(d)
        if d["metadata"].get("deletionTimestamp"):
            return await self._sync_status_only(d, rs_list)
        await self._check_paused_conditions(d)
        if d["spec"].get("paused"):
            return await self._sync(d, rs_list)
        if du.annotations(d).get(du.ROLLBACK_TO) is not None:
            return await self._rollback(d, rs_list)
        if await self._is_scaling_event(d, rs_list):
            return await self._sync(d, rs_list)
        if du.is_rolling(d):
            return await self._rollout_rolling(d, rs_list)
        return await self._rollout_recreate(d, rs_list)

    # ---- ownership (upstream ReplicaSetControllerRefManager) ----

    async def _claim_replicasets(self, d: dict) -> list[dict]:
        ns, uid = d["metadata"].get("namespace"), d["metadata"]["uid"]
        sel = _selector(d)
        deleting = bool(d["metadata"].get("deletionTimestamp"))
        can_adopt: bool | None = None
        claimed = []
        for rs in self.replicasets.list(ns):
            match = sel is not None and sel.matches(rs["metadata"].get("labels") or {})
            ref = controller_of(rs)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if match:
                    claimed.append(rs)
                elif not deleting:
                    await self._patch_owner(rs, [{"$patch": "delete", "uid": uid}])
                continue
            if deleting or not match or rs["metadata"].get("deletionTimestamp"):
                continue
            if can_adopt is None:
                can_adopt = await self._can_adopt(d)
            if not can_adopt:
                continue
            adopted = await self._patch_owner(rs, [owner_reference(d)])
            if adopted is not None:
                claimed.append(adopted)
        return claimed

    async def _can_adopt(self, d: dict) -> bool:
        """Re-read the Deployment: never adopt for a deleted or replaced one."""
        try:
            fresh = await self.client.get(DEPLOYMENTS, d["metadata"]["name"], d["metadata"].get("namespace"))
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        return (fresh["metadata"].get("uid") == d["metadata"]["uid"]
                and not fresh["metadata"].get("deletionTimestamp"))

    async def _patch_owner(self, rs: dict, refs: list[dict]) -> dict | None:
        patch = {"metadata": {"ownerReferences": refs, "uid": rs["metadata"]["uid"]}}
        try:
            return await self.client.patch(REPLICASETS, rs["metadata"]["name"], patch,
                                           rs["metadata"].get("namespace"), type="strategic")
        except ApiError as e:
            if e.code in (404, 409, 422):
                return None
            raise

    def _pod_map(self, d: dict, rs_list: list[dict]) -> dict[str, list[dict]]:
        sel = _selector(d)
        out: dict[str, list[dict]] = {}
        for rs in rs_list:
            uid = rs["metadata"]["uid"]
            out[uid] = [p for p in self.pods.by_index(POD_OWNER_INDEX, uid)
                        if sel is not None and sel.matches(p["metadata"].get("labels") or {})]
        return out

    # ---- ReplicaSets (upstream getAllReplicaSetsAndSyncRevision / getNewReplicaSet) ----

    async def _get_all_rss(self, d: dict, rs_list: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        existing = du.find_new_rs(d, rs_list)
        old_rss = du.find_old_rss(d, rs_list, existing)
        new_rs = await self._get_new_rs(d, existing, old_rss, create)
        return new_rs, old_rss

    async def _get_new_rs(self, d: dict, existing: dict | None, old_rss: list[dict],
                          create: bool) -> dict | None:
        new_revision = du.max_revision(old_rss) + 1
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_rs_annotations(d, rs, new_revision, True)
            min_ready = d["spec"].get("minReadySeconds", 0) or 0
            if changed or (rs["spec"].get("minReadySeconds", 0) or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return await self.client.update(REPLICASETS, rs)
            await self._set_revision(d, du.annotations(rs).get(du.REVISION, ""))
            if du.has_progress_deadline(d) and du.get_condition(d.get("status") or {}, "Progressing") is None:
                du.set_condition(d.setdefault("status", {}), du.new_condition(
                    "Progressing", "True", du.FOUND_NEW_RS_REASON,
                    f'Found new replica set "{rs["metadata"]["name"]}"'))
                await self._write_status(d)
            return rs
        if not create:
            return None
        return await self._create_new_rs(d, old_rss, new_revision)

    async def _create_new_rs(self, d: dict, old_rss: list[dict], new_revision: int) -> dict | None:
        meta, spec = d["metadata"], d["spec"]
        status = d.setdefault("status", {})
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = du.compute_hash(template, status.get("collisionCount"))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = dict(tmeta.get("labels") or {}, **{du.HASH_LABEL: pod_hash})
        selector = copy.deepcopy(spec["selector"])
        selector["matchLabels"] = dict(selector.get("matchLabels") or {}, **{du.HASH_LABEL: pod_hash})
        new_rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta.get("namespace"),
                         "labels": dict(tmeta["labels"]), "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0) or 0,
                     "selector": selector, "template": template},
        }
        count = du.new_rs_new_replicas(d, old_rss + [new_rs], new_rs)
        new_rs["spec"]["replicas"] = count
        du.set_new_rs_annotations(d, new_rs, new_revision, False)
        already = False
        try:
            created = await self.client.create(REPLICASETS, new_rs)
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                created = await self.client.get(REPLICASETS, new_rs["metadata"]["name"], meta.get("namespace"))
                ref = controller_of(created)
                if not (ref and ref.get("uid") == meta["uid"]
                        and du.equal_ignore_hash(spec.get("template"), created["spec"].get("template"))):
                    # A hash collision: bump collisionCount so the next name differs.
                    status["collisionCount"] = (status.get("collisionCount") or 0) + 1
                    await self._write_status(d)
                    raise
                already = True
            elif e.code == 403 or e.code == 409:
                raise
            else:
                msg = f'Failed to create new replica set "{new_rs["metadata"]["name"]}": {e}'
                if du.has_progress_deadline(d):
                    du.set_condition(status, du.new_condition("Progressing", "False",
                                                              du.FAILED_RS_CREATE_REASON, msg))
                    try:
                        await self._write_status(d)
                    except ApiError:
                        pass
                self.recorder.event(d, "Warning", du.FAILED_RS_CREATE_REASON, msg)
                raise
        if not already and count > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {created['metadata']['name']} from 0 to {count}")
        await self._set_revision(d, str(new_revision))
        if not already and du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition(
                "Progressing", "True", du.NEW_RS_REASON,
                f'Created new replica set "{created["metadata"]["name"]}"'))
            await self._write_status(d)
        return created

    async def _set_revision(self, d: dict, rev: str) -> None:
        """Upstream sets the revision annotation through UpdateStatus; here metadata is written
        with a merge patch because status writes keep metadata as stored."""
        if du.annotations(d).get(du.REVISION) == rev:
            return
        out = await self.client.patch(DEPLOYMENTS, d["metadata"]["name"],
                                      {"metadata": {"annotations": {du.REVISION: rev}}},
                                      d["metadata"].get("namespace"))
        d["metadata"].setdefault("annotations", {})[du.REVISION] = rev
        d["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]

    async def _write_status(self, d: dict) -> None:
        out = await self.client.update_status(DEPLOYMENTS, d)
        d["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]

    # ---- scaling ----

    async def _scale_rs(self, d: dict, rs: dict, new_scale: int, op: str) -> tuple[bool, dict]:
        size_changes = du.replicas(rs) != new_scale
        desired, most = du.replicas(d), du.replicas(d) + du.max_surge(d)
        if not size_changes and not du.replicas_annotations_need_update(rs, desired, most):
            return False, rs
        old_scale = du.replicas(rs)
        rs = copy.deepcopy(rs)
        rs["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(rs, desired, most)
        rs = await self.client.update(REPLICASETS, rs)
        if size_changes:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {op} replica set {rs['metadata']['name']} from {old_scale} to {new_scale}")
        return size_changes, rs

    async def _scale_and_record(self, d: dict, rs: dict, new_scale: int) -> tuple[bool, dict]:
        if du.replicas(rs) == new_scale:
            return False, rs
        return await self._scale_rs(d, rs, new_scale, "up" if du.replicas(rs) < new_scale else "down")

    async def _scale(self, d: dict, new_rs: dict | None, old_rss: list[dict]) -> None:
        """Proportional scaling (upstream scale): spread a replicas change over active sets."""
        target = du.find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if du.replicas(target) != du.replicas(d):
                await self._scale_and_record(d, target, du.replicas(d))
            return
        if du.is_saturated(d, new_rs):
            for old in du.active(old_rss):
                await self._scale_and_record(d, old, 0)
            return
        if not du.is_rolling(d):
            return
        all_rss = du.active(old_rss + [new_rs])
        allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
        to_add = allowed - du.replica_count(all_rss)
        op = ""
        if to_add > 0:
            all_rss.sort(key=du.by_size_newer)
            op = "up"
        elif to_add < 0:
            all_rss.sort(key=du.by_size_older)
            op = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rss:
            if to_add != 0:
                p = du.get_proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = du.replicas(rs) + p
                added += p
            else:
                sizes[rs["metadata"]["name"]] = du.replicas(rs)
        for i, rs in enumerate(all_rss):
            name = rs["metadata"]["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(sizes[name] + to_add - added, 0)
            await self._scale_rs(d, rs, sizes[name], op)

    async def _is_scaling_event(self, d: dict, rs_list: list[dict]) -> bool:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, False)
        for rs in du.active(old_rss + [new_rs]):
            desired = du._annotation_int(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    async def _sync(self, d: dict, rs_list: list[dict]) -> float | None:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, False)
        await self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused") and du.annotations(d).get(du.ROLLBACK_TO) is None:
            await self._cleanup(d, old_rss)
        return await self._sync_deployment_status(d, old_rss + [new_rs], new_rs)

    async def _sync_status_only(self, d: dict, rs_list: list[dict]) -> float | None:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, False)
        return await self._sync_deployment_status(d, old_rss + [new_rs], new_rs)

    async def _cleanup(self, d: dict, old_rss: list[dict]) -> None:
        """Keep at most revisionHistoryLimit old ReplicaSets (only empty ones are deleted)."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None or limit == du.MAX_INT32:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - limit
        if diff <= 0:
            return
        alive.sort(key=lambda rs: (du.revision(rs), du.by_creation(rs)))
        for rs in alive[:diff]:
            if (du.status_of(rs, "replicas") != 0 or du.replicas(rs) != 0
                    or rs["metadata"].get("generation", 0) > du.status_of(rs, "observedGeneration")):
                continue
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise

    # ---- status ----

    async def _sync_deployment_status(self, d: dict, all_rss: list[dict | None],
                                      new_rs: dict | None) -> None:
        status = _wire_status(du.calculate_status(all_rss, new_rs, d))
        if status == _wire_status(d.get("status") or {}):
            return None
        d["status"] = status
        await self._write_status(d)
        return None

    async def _sync_rollout_status(self, d: dict, all_rss: list[dict | None],
                                   new_rs: dict | None) -> float | None:
        """Status plus the Progressing condition (upstream progress.go)."""
        status = du.calculate_status(all_rss, new_rs, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, "Progressing")
        cur = du.get_condition(d.get("status") or {}, "Progressing")
        complete = (status["replicas"] == status["updatedReplicas"] and cur is not None
                    and cur.get("reason") == du.NEW_RS_AVAILABLE_REASON)
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else None
        subject = f'ReplicaSet "{rs_name}"' if rs_name else f'Deployment "{d["metadata"]["name"]}"'
        if du.has_progress_deadline(d) and not complete:
            if du.deployment_complete(d, status):
                du.set_condition(status, du.new_condition(
                    "Progressing", "True", du.NEW_RS_AVAILABLE_REASON, f"{subject} has successfully progressed."))
            elif du.deployment_progressing(d, status):
                cond = du.new_condition("Progressing", "True", du.RS_UPDATED_REASON, f"{subject} is progressing.")
                if cur is not None:
                    if cur.get("status") == "True":
                        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                    du.remove_condition(status, "Progressing")
                du.set_condition(status, cond)
            elif du.deployment_timed_out(d, status):
                du.set_condition(status, du.new_condition(
                    "Progressing", "False", du.TIMED_OUT_REASON, f"{subject} has timed out progressing."))
        failures = _replica_failures(all_rss, new_rs)
        if failures:
            du.set_condition(status, failures[0])
        else:
            du.remove_condition(status, "ReplicaFailure")
        status = _wire_status(status)
        if status == _wire_status(d.get("status") or {}):
            return du.progress_recheck_after(d, status)
        d["status"] = status
        await self._write_status(d)
        return None

    async def _check_paused_conditions(self, d: dict) -> None:
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return
        paused_exists = cond is not None and cond.get("reason") == du.PAUSED_REASON
        if d["spec"].get("paused") and not paused_exists:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED_REASON,
                                                      "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_exists:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED_REASON,
                                                      "Deployment is resumed"))
        else:
            return
        await self._write_status(d)

    # ---- strategies ----

    async def _rollout_rolling(self, d: dict, rs_list: list[dict]) -> float | None:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, True)
        all_rss = old_rss + [new_rs]
        if await self._reconcile_new_rs(d, all_rss, new_rs):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if await self._reconcile_old_rss(d, all_rss, du.active(old_rss), new_rs):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if du.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    async def _reconcile_new_rs(self, d: dict, all_rss: list[dict], new_rs: dict) -> bool:
        want = du.replicas(d)
        if du.replicas(new_rs) == want:
            return False
        if du.replicas(new_rs) > want:
            return (await self._scale_and_record(d, new_rs, want))[0]
        count = du.new_rs_new_replicas(d, all_rss, new_rs)
        return (await self._scale_and_record(d, new_rs, count))[0]

    async def _reconcile_old_rss(self, d: dict, all_rss: list[dict], old_rss: list[dict],
                                 new_rs: dict) -> bool:
        if du.replica_count(old_rss) == 0:
            return False
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new_rs) - du.status_of(new_rs, "availableReplicas")
        max_scaled_down = du.replica_count(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # Unhealthy replicas first: they would block the rollout otherwise (upstream #16737).
        old_rss, cleaned = await self._cleanup_unhealthy(d, old_rss, max_scaled_down)
        scaled = await self._scale_down_old_for_rolling(d, old_rss + [new_rs], old_rss)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, d: dict, old_rss: list[dict], max_cleanup: int) -> tuple[list[dict], int]:
        old_rss = sorted(old_rss, key=du.by_creation)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            n, avail = du.replicas(rs), du.status_of(rs, "availableReplicas")
            if n == 0 or n == avail:
                continue
            count = min(max_cleanup - total, n - avail)
            if count < 0:
                # Its status still counts pods of a bigger size (e.g. ones being deleted):
                # scaling "down" to n - count would scale it up. Upstream refuses and retries.
                raise errors.conflict("replicasets", rs["metadata"]["name"], "apps", why=(
                    "when cleaning up unhealthy replicas, got invalid request to scale down "
                    f"{rs['metadata'].get('namespace')}/{rs['metadata']['name']} {n} -> {n - count}"))
            _, old_rss[i] = await self._scale_and_record(d, rs, n - count)
            total += count
        return old_rss, total

    async def _scale_down_old_for_rolling(self, d: dict, all_rss: list[dict], old_rss: list[dict]) -> int:
        min_available = du.replicas(d) - du.max_unavailable(d)
        available = du.available_count(all_rss)
        if available <= min_available:
            return 0
        total, budget = 0, available - min_available
        for rs in sorted(old_rss, key=du.by_creation):
            if total >= budget:
                break
            if du.replicas(rs) == 0:
                continue
            count = min(du.replicas(rs), budget - total)
            await self._scale_and_record(d, rs, du.replicas(rs) - count)
            total += count
        return total

    async def _rollout_recreate(self, d: dict, rs_list: list[dict]) -> float | None:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, False)
        all_rss = old_rss + [new_rs]
        scaled_down = False
        for rs in du.active(old_rss):
            scaled, _ = await self._scale_and_record(d, rs, 0)
            scaled_down = scaled_down or scaled
        if scaled_down:
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if self._old_pods_running(new_rs, old_rss, self._pod_map(d, rs_list)):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, old_rss = await self._get_all_rss(d, rs_list, True)
            all_rss = old_rss + [new_rs]
        await self._scale_and_record(d, new_rs, du.replicas(d))
        if du.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    @staticmethod
    def _old_pods_running(new_rs: dict | None, old_rss: list[dict], pod_map: dict[str, list[dict]]) -> bool:
        if du.actual_count(old_rss) > 0:
            return True
        new_uid = new_rs["metadata"]["uid"] if new_rs is not None else None
        for uid, pods in pod_map.items():
            if uid == new_uid:
                continue
            if any((p.get("status") or {}).get("phase") not in ("Failed", "Succeeded") for p in pods):
                return True
        return False

    # ---- rollback (the deprecated rollbackTo, kept as an annotation in apps/v1) ----

    async def _rollback(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old_rss = await self._get_all_rss(d, rs_list, True)
        all_rss = [rs for rs in old_rss + [new_rs] if rs is not None]
        try:
            to = int(du.annotations(d)[du.ROLLBACK_TO])
        except ValueError:
            to = 0
        if to == 0:
            to = du.last_revision(all_rss)
            if to == 0:
                self.recorder.event(d, "Warning", du.ROLLBACK_NOT_FOUND, "Unable to find last revision.")
                return await self._clear_rollback(d)
        for rs in all_rss:
            if du.revision(rs) == to:
                if not du.equal_ignore_hash(d["spec"].get("template"), rs["spec"].get("template")):
                    d["spec"]["template"] = du.template_from_rs(rs)
                    du.set_annotations_from_rs(d, rs)
                    await self._clear_rollback(d)
                    self.recorder.event(d, "Normal", du.ROLLBACK_DONE,
                                        f'Rolled back deployment "{d["metadata"]["name"]}" to revision {to}')
                    return None
                self.recorder.event(d, "Warning", du.ROLLBACK_UNCHANGED,
                                    "The rollback revision contains the same template as current "
                                    f'deployment "{d["metadata"]["name"]}"')
                return await self._clear_rollback(d)
        self.recorder.event(d, "Warning", du.ROLLBACK_NOT_FOUND, "Unable to find the revision to rollback to.")
        return await self._clear_rollback(d)

    async def _clear_rollback(self, d: dict) -> None:
        d["metadata"].get("annotations", {}).pop(du.ROLLBACK_TO, None)
        await self.client.update(DEPLOYMENTS, d)


_COUNTS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
           "availableReplicas", "unavailableReplicas")


def _wire_status(status: dict) -> dict:
    """Zero counts are omitted on the wire, as Go's omitempty does."""
    return {k: v for k, v in status.items() if not (k in _COUNTS and not v)}


def _replica_failures(all_rss: list[dict | None], new_rs: dict | None) -> list[dict]:
    def failures(rs: dict) -> list[dict]:
        return [{"type": "ReplicaFailure", "status": c.get("status"), "reason": c.get("reason"),
                 "message": c.get("message"), "lastUpdateTime": c.get("lastTransitionTime"),
                 "lastTransitionTime": c.get("lastTransitionTime")}
                for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"]
    if new_rs is not None and (out := failures(new_rs)):
        return out
    return [c for rs in all_rss if rs is not None for c in failures(rs)]
