"""The StatefulSet controller: pods with stable names, storage and order.

As upstream pkg/controller/statefulset (stateful_set_control.go, stateful_set_utils.go,
stateful_pod_control.go): pods are `<set>-<ordinal>`; each ordinal's claims
`<template>-<set>-<ordinal>` are created before its pod and outlive it (unless the
persistentVolumeClaimRetentionPolicy hands them to the garbage collector through
ownerReferences); OrderedReady creates 0…N-1 one at a time, each Running and Ready (and
available) before the next, and removes N-1…0 one at a time; Parallel does not wait; rolling
updates replace pods from the highest ordinal down to the partition, one at a time (or up to
maxUnavailable). Pod templates are versioned with ControllerRevisions (see history.py).

`plan()` is the pure decision of one sync; `reconcile()` reads caches, plans, and acts.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from kybernetes.api.errors import ApiError
from kybernetes.api.quantity import scaled_value
from kybernetes.api.selectors import LabelSelector, SelectorError, label_selector_from_object
from kybernetes.client import Controller, EventRecorder, controller_of, object_key, resource, split_key

from . import history
from .replicas import is_pod_available, is_pod_ready

log = logging.getLogger(__name__)

STS = resource("apps/v1", "StatefulSet")
PODS = resource("v1", "Pod")
PVCS = resource("v1", "PersistentVolumeClaim")
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


# ---- identity -----------------------------------------------------------------------------------

def parent_and_ordinal(pod_name: str) -> tuple[str, int]:
    """("web", 2) for "web-2"; ("", -1) when the name has no ordinal (upstream getParentNameAndOrdinal)."""
    m = _ORDINAL.match(pod_name)
    if not m:
        return "", -1
    return m.group(1), int(m.group(2))


def pod_name(set_name: str, ordinal: int) -> str:
    return f"{set_name}-{ordinal}"


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def start_ordinal(sts: dict) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def spec_replicas(sts: dict) -> int:
    r = (sts.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def revision_of(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def claims_for(sts: dict, ordinal: int) -> dict[str, dict]:
    """template name → the claim this ordinal needs (upstream getPersistentVolumeClaims): the
    template's spec and labels plus the set's selector labels."""
    meta = sts["metadata"]
    match = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    out = {}
    for t in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
        tmeta = t.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update(match)
        claim_meta: dict = {"name": claim_name(tmeta.get("name", ""), meta["name"], ordinal),
                            "namespace": meta["namespace"], "labels": labels}
        if tmeta.get("annotations"):
            claim_meta["annotations"] = dict(tmeta["annotations"])
        out[tmeta.get("name", "")] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "metadata": claim_meta,
                                      "spec": copy.deepcopy(t.get("spec") or {})}
    return out


def new_pod(sts: dict, ordinal: int, revision: str) -> dict:
    """The pod for `ordinal` from the set's template, with its identity and storage."""
    meta, spec = sts["metadata"], sts.get("spec") or {}
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    name = pod_name(meta["name"], ordinal)
    labels = dict(tmeta.get("labels") or {})
    labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision})
    pod_meta: dict = {"name": name, "namespace": meta["namespace"], "labels": labels,
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                           "name": meta["name"], "uid": meta["uid"],
                                           "controller": True, "blockOwnerDeletion": True}]}
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    pod_spec = copy.deepcopy(template.get("spec") or {})
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = claims_for(sts, ordinal)
    if claims:
        volumes = [{"name": t, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
                   for t, c in sorted(claims.items())]
        volumes += [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
        pod_spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


def identity_matches(sts: dict, pod: dict, ordinal: int) -> bool:
    labels = pod["metadata"].get("labels") or {}
    name = pod["metadata"]["name"]
    return (labels.get(POD_NAME_LABEL) == name and labels.get(POD_INDEX_LABEL) == str(ordinal))


# ---- claim retention ------------------------------------------------------------------------------

def claim_owners_wanted(sts: dict, ordinal: int) -> tuple[bool, bool]:
    """(owned by the set, owned by the pod) for a claim of `ordinal` under the retention
    policy (upstream claimOwnerMatchesSetAndPod): whenDeleted=Delete makes the set an owner;
    whenScaled=Delete makes the pod of a condemned ordinal the owner, so the garbage
    collector removes the claim once that pod is gone."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    when_deleted = policy.get("whenDeleted") or "Retain"
    when_scaled = policy.get("whenScaled") or "Retain"
    start = start_ordinal(sts)
    scaled_down = not (start <= ordinal < start + spec_replicas(sts))
    if when_scaled == "Delete" and scaled_down:
        return False, True
    return when_deleted == "Delete", False


def claim_owner_refs(claim: dict, sts: dict, pod: dict | None, ordinal: int) -> list[dict] | None:
    """The claim's new ownerReferences, or None when they already match the policy."""
    want_set, want_pod = claim_owners_wanted(sts, ordinal)
    refs = list(claim["metadata"].get("ownerReferences") or [])
    set_uid = sts["metadata"]["uid"]
    pod_uid = pod["metadata"].get("uid") if pod else None
    has_set = any(r.get("uid") == set_uid for r in refs)
    has_pod = pod_uid is not None and any(r.get("uid") == pod_uid for r in refs)
    if has_set == want_set and (has_pod == want_pod or pod_uid is None):
        return None
    out = [r for r in refs if r.get("uid") not in (set_uid, pod_uid)]
    if want_set:
        out.append({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": sts["metadata"]["name"], "uid": set_uid})
    if want_pod and pod_uid:
        out.append({"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                    "uid": pod_uid})
    return out


def claim_is_stale(claim: dict | None, pod_uid: str | None) -> bool:
    """A claim that is going away (deleted, or owned by a pod that no longer exists) must not
    be reused by a new pod of the same ordinal (upstream PodClaimIsStale)."""
    if claim is None:
        return False
    if claim["metadata"].get("deletionTimestamp"):
        return True
    return any(r.get("kind") == "Pod" and r.get("uid") != pod_uid
               for r in claim["metadata"].get("ownerReferences") or [])


# ---- pod state ------------------------------------------------------------------------------------

def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: dict, min_ready: int, now: datetime) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_available(pod, min_ready, now)


def is_healthy(pod: dict | None, min_ready: int, now: datetime) -> bool:
    return (pod is not None and not is_terminating(pod)
            and is_running_and_available(pod, min_ready, now))


def is_finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


# ---- the decision of one sync ---------------------------------------------------------------------

@dataclass
class Step:
    action: str            # "create" | "delete" | "relabel"
    ordinal: int
    pod: dict | None = None
    revision: str = ""     # for "create": the revision name the pod is made from


def plan(sts: dict, pods: dict[int, dict], current: str, update: str,
         now: datetime | None = None) -> list[Step]:
    """What one sync does, in order, given the set's pods by ordinal and the names of the
    current and update revisions. Follows upstream updateStatefulSet: replicas first (in
    order; OrderedReady stops at the first create or at a pod that is not yet Running, Ready
    and available), then condemned pods from the highest ordinal, then the rolling update."""
    now = now or datetime.now(timezone.utc)
    spec = sts.get("spec") or {}
    monotonic = spec.get("podManagementPolicy") != "Parallel"
    min_ready = int(spec.get("minReadySeconds") or 0)
    start, count = start_ordinal(sts), spec_replicas(sts)
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    partition = int(rolling.get("partition") or 0)
    steps: list[Step] = []
    if sts["metadata"].get("deletionTimestamp"):
        return steps

    # Ordinals in range: the pod there, or the one to create (and from which revision).
    replicas: list[tuple[int, dict | None, str]] = []
    for i, ordinal in enumerate(range(start, start + count)):
        pod = pods.get(ordinal)
        rev = revision_of(pod) if pod else (current if (strategy.get("type", "RollingUpdate") ==
                                                        "RollingUpdate" and i < partition) else update)
        replicas.append((ordinal, pod, rev))
    condemned = sorted((o for o in pods if not (start <= o < start + count)), reverse=True)
    first_unhealthy = None
    for ordinal, pod, _ in replicas:
        if not is_healthy(pod, min_ready, now):
            first_unhealthy = ordinal
            break
    if first_unhealthy is None:
        for ordinal in sorted(condemned):
            if not is_healthy(pods[ordinal], min_ready, now):
                first_unhealthy = ordinal
                break

    for ordinal, pod, rev in replicas:
        if pod is not None and is_finished(pod):
            if not is_terminating(pod):
                steps.append(Step("delete", ordinal, pod))
            if monotonic:
                return steps
            continue
        if pod is None:
            steps.append(Step("create", ordinal, None, rev))
            if monotonic:
                return steps
            continue
        if monotonic and (is_terminating(pod) or not is_running_and_ready(pod)
                          or not is_running_and_available(pod, min_ready, now)):
            return steps
        if not identity_matches(sts, pod, ordinal):
            steps.append(Step("relabel", ordinal, pod))

    for ordinal in condemned:
        pod = pods[ordinal]
        if is_terminating(pod):
            if monotonic:
                return steps
            continue
        if monotonic and ordinal != first_unhealthy and not is_healthy(pod, min_ready, now):
            return steps
        steps.append(Step("delete", ordinal, pod))
        if monotonic:
            return steps

    if strategy.get("type") == "OnDelete":
        return steps
    if any(s.action in ("create", "delete") for s in steps):
        return steps  # a Parallel sync that changed membership updates on the next one
    max_unavailable = rolling.get("maxUnavailable")
    if max_unavailable is not None:
        allowed = max(scaled_value(max_unavailable, count, True), 1)
        unavailable = sum(1 for _, pod, _ in replicas if not is_healthy(pod, min_ready, now))
        budget = allowed - unavailable
        for i in range(len(replicas) - 1, partition - 1, -1):
            if budget <= 0:
                break
            ordinal, pod, rev = replicas[i]
            if pod is not None and rev != update and not is_terminating(pod):
                steps.append(Step("delete", ordinal, pod))
                budget -= 1
        return steps
    for i in range(len(replicas) - 1, partition - 1, -1):
        ordinal, pod, rev = replicas[i]
        if pod is not None and rev != update and not is_terminating(pod):
            steps.append(Step("delete", ordinal, pod))
            return steps
        if not is_healthy(pod, min_ready, now):
            return steps
    return steps


def compute_status(sts: dict, pods: list[dict], current: str, update: str,
                   collision_count: int, now: datetime | None = None) -> dict:
    """Upstream computeReplicaStatus + completeRollingUpdate."""
    now = now or datetime.now(timezone.utc)
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    st = {"observedGeneration": sts["metadata"].get("generation") or 0, "replicas": 0,
          "readyReplicas": 0, "currentReplicas": 0, "updatedReplicas": 0,
          "availableReplicas": 0, "currentRevision": current, "updateRevision": update,
          "collisionCount": collision_count}
    for pod in pods:
        st["replicas"] += 1
        if is_running_and_ready(pod):
            st["readyReplicas"] += 1
            if is_running_and_available(pod, min_ready, now):
                st["availableReplicas"] += 1
        if not is_terminating(pod):
            rev = revision_of(pod)
            st["currentReplicas"] += rev == current
            st["updatedReplicas"] += rev == update
    if ((spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
            and st["updatedReplicas"] == st["replicas"] and st["readyReplicas"] == st["replicas"]):
        st["currentReplicas"] = st["updatedReplicas"]
        st["currentRevision"] = update
    conditions = (sts.get("status") or {}).get("conditions")
    if conditions:
        st["conditions"] = conditions
    return st


# ---- the controller -------------------------------------------------------------------------------

def _controller_uid(obj: dict) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 5

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, "statefulset-controller")
        self.sets = self.factory.informer(STS)
        self.pods = self.factory.informer(PODS)
        self.claims = self.factory.informer(PVCS)
        self.revisions = self.factory.informer(history.REVISIONS)
        self.pods.add_index("controller-uid", _controller_uid)
        self.revisions.add_index("controller-uid", _controller_uid)
        self.sets.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new),
                              self._pod_changed)
        self.revisions.add_handler(self._owned_changed, lambda o, n: self._owned_changed(n),
                                   self._owned_changed)

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_of(pod)
        ns = pod["metadata"].get("namespace")
        if ref:
            if ref.get("kind") == "StatefulSet":
                self.queue.add(f"{ns}/{ref['name']}")
            return
        labels = pod["metadata"].get("labels") or {}
        for sts in self.sets.list(ns):
            try:
                if labels and label_selector_from_object(sts["spec"].get("selector")).matches(labels):
                    self.enqueue(sts)
            except SelectorError:
                continue

    def _owned_changed(self, obj: dict) -> None:
        self.enqueue_owner(obj, "StatefulSet")

    @staticmethod
    def typed(obj: dict) -> dict:
        return obj if obj.get("kind") else dict(obj, apiVersion="apps/v1", kind="StatefulSet")

    # ---- reconcile ----

    async def reconcile(self, key: str) -> float | None:
        sts = self.sets.get(key)
        if sts is None:
            return None
        sts = self.typed(sts)
        ns, name = split_key(key)
        try:
            selector = label_selector_from_object(sts["spec"].get("selector"))
        except SelectorError as e:
            log.error("statefulset %s: invalid selector: %s", key, e)
            return None
        pods = await self._claim_pods(sts, selector)
        current, update, collision = await self._revisions(sts, pods)
        by_ordinal = {parent_and_ordinal(p["metadata"]["name"])[1]: p for p in pods}
        now = datetime.now(timezone.utc)
        steps = plan(sts, by_ordinal, current["metadata"]["name"], update["metadata"]["name"], now)
        error: Exception | None = None
        try:
            if not sts["metadata"].get("deletionTimestamp"):
                await self._fix_claims(sts, by_ordinal)
            for step in steps:
                pod = await self._act(sts, step, current, update)
                if step.action == "create" and pod is not None:
                    pods.append(pod)
                elif step.action == "delete" and step.pod in pods:
                    pods.remove(step.pod)
        except ApiError as e:
            error = e
        status = compute_status(sts, pods, current["metadata"]["name"],
                                update["metadata"]["name"], collision, now)
        await self._write_status(sts, status)
        await self._truncate_history(sts, pods, current, update)
        if error is not None:
            raise error
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready and status["readyReplicas"] != status["availableReplicas"]:
            return float(min_ready)
        return None

    async def _claim_pods(self, sts: dict, selector: LabelSelector) -> list[dict]:
        """The set's member pods: owned ones that still match, plus adopted orphans whose
        name makes them members (upstream isMemberOf + ControllerRefManager)."""
        meta = sts["metadata"]
        out = []
        for pod in self.pods.list(meta["namespace"]):
            parent, ordinal = parent_and_ordinal(pod["metadata"]["name"])
            if parent != meta["name"] or ordinal < 0:
                continue
            labels = pod["metadata"].get("labels") or {}
            ref = controller_of(pod)
            if ref:
                if ref.get("uid") == meta["uid"] and selector.matches(labels):
                    out.append(pod)
                continue
            if not selector.matches(labels) or meta.get("deletionTimestamp") or \
                    pod["metadata"].get("deletionTimestamp"):
                continue
            try:
                out.append(await self.client.patch(PODS, pod["metadata"]["name"], {
                    "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                      "name": meta["name"], "uid": meta["uid"],
                                                      "controller": True, "blockOwnerDeletion": True}],
                                 "uid": pod["metadata"]["uid"]}}, meta["namespace"], type="strategic"))
            except ApiError as e:
                if e.code != 404:
                    raise
        return out

    async def _revisions(self, sts: dict, pods: list[dict]) -> tuple[dict, dict, int]:
        """(current revision, update revision, collision count), creating the update revision
        or renumbering an older equal one (a rollback), as upstream getStatefulSetRevisions."""
        revisions = history.sort_revisions(
            self.revisions.by_index("controller-uid", sts["metadata"]["uid"]))
        collision = int((sts.get("status") or {}).get("collisionCount") or 0)
        data = history.template_patch(sts)
        labels = ((sts["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        number = history.next_revision(revisions)

        def make(c: int) -> dict:
            return history.new_revision(sts, labels, data, number, c)

        candidate = make(collision)
        equal = history.find_equal(revisions, candidate)
        if equal and revisions and equal[-1]["metadata"]["name"] == revisions[-1]["metadata"]["name"]:
            update = revisions[-1]
        elif equal:
            update = await history.bump_revision(self.client, equal[-1], number)
        else:
            update, collision = await history.create_revision(self.client, sts, candidate,
                                                              collision, make)
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == current_name), update)
        return current, update, collision

    async def _act(self, sts: dict, step: Step, current: dict, update: dict) -> dict | None:
        meta = sts["metadata"]
        if step.action == "delete":
            return await self._delete_pod(sts, step.pod)
        if step.action == "relabel":
            name = step.pod["metadata"]["name"]
            labels = {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(step.ordinal)}
            updated = await self.client.patch(PODS, name, {"metadata": {"labels": labels}},
                                              meta["namespace"])
            self._event(sts, "Update", name)
            return updated
        revision = current if step.revision == current["metadata"]["name"] else update
        versioned = history.apply_revision(sts, revision)
        pod = new_pod(versioned, step.ordinal, revision["metadata"]["name"])
        await self._create_claims(sts, step.ordinal, pod)
        try:
            created = await self.client.create(PODS, pod, meta["namespace"])
        except ApiError as e:
            if e.code != 409:
                self._event(sts, "Create", pod["metadata"]["name"], e)
            raise
        self._event(sts, "Create", pod["metadata"]["name"])
        return created

    async def _create_claims(self, sts: dict, ordinal: int, pod: dict) -> None:
        meta = sts["metadata"]
        for claim in claims_for(sts, ordinal).values():
            cname = claim["metadata"]["name"]
            existing = self.claims.get(f"{meta['namespace']}/{cname}")
            if claim_is_stale(existing, None):
                raise ApiError(409, "Conflict", f"claim {cname} is being deleted; waiting")
            if existing is not None:
                continue
            want_set, _ = claim_owners_wanted(sts, ordinal)
            if want_set:
                claim["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                         "name": meta["name"], "uid": meta["uid"]}]
            try:
                await self.client.create(PVCS, claim, meta["namespace"])
            except ApiError as e:
                if e.code == 409:
                    continue
                self.recorder.event(sts, "Warning", "FailedCreate",
                                    f"create Claim {cname} for Pod {pod['metadata']['name']} in "
                                    f"StatefulSet {meta['name']} failed error: {e.message}")
                raise
            self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                f"create Claim {cname} Pod {pod['metadata']['name']} in "
                                f"StatefulSet {meta['name']} success")

    async def _fix_claims(self, sts: dict, pods: dict[int, dict]) -> None:
        """Make every existing member's claims carry the owners the retention policy wants."""
        meta = sts["metadata"]
        for ordinal, pod in pods.items():
            if is_terminating(pod):
                continue
            for claim in claims_for(sts, ordinal).values():
                existing = self.claims.get(f"{meta['namespace']}/{claim['metadata']['name']}")
                if existing is None or existing["metadata"].get("deletionTimestamp"):
                    continue
                refs = claim_owner_refs(existing, sts, pod, ordinal)
                if refs is None:
                    continue
                try:
                    await self.client.patch(PVCS, existing["metadata"]["name"], {
                        "metadata": {"ownerReferences": refs or None,
                                     "resourceVersion": existing["metadata"]["resourceVersion"]}},
                        meta["namespace"])
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise

    async def _delete_pod(self, sts: dict, pod: dict) -> None:
        name = pod["metadata"]["name"]
        try:
            await self.client.delete(PODS, name, pod["metadata"]["namespace"],
                                     preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            if e.code in (404, 409):
                return None
            self._event(sts, "Delete", name, e)
            raise
        self._event(sts, "Delete", name)
        return None

    def _event(self, sts: dict, verb: str, pod: str, err: ApiError | None = None) -> None:
        """Upstream recordPodEvent's reasons and messages."""
        name = sts["metadata"]["name"]
        if err is None:
            self.recorder.event(sts, "Normal", f"Successful{verb}",
                                f"{verb.lower()} Pod {pod} in StatefulSet {name} successful")
        else:
            self.recorder.event(sts, "Warning", f"Failed{verb}",
                                f"{verb.lower()} Pod {pod} in StatefulSet {name} failed error: {err.message}")

    async def _write_status(self, sts: dict, status: dict) -> None:
        old = sts.get("status") or {}
        if all(old.get(k, 0 if isinstance(v, int) else None) == v for k, v in status.items()):
            return
        try:
            await self.client.update_status(STS, dict(sts, status=status))
        except ApiError as e:
            if e.code == 404:
                return
            if e.code != 409:
                raise
            fresh = self.typed(await self.client.get(STS, sts["metadata"]["name"],
                                                     sts["metadata"]["namespace"]))
            if fresh["metadata"]["uid"] == sts["metadata"]["uid"]:
                self.queue.add(object_key(sts))

    async def _truncate_history(self, sts: dict, pods: list[dict], current: dict, update: dict) -> None:
        revisions = self.revisions.by_index("controller-uid", sts["metadata"]["uid"])
        live = {revision_of(p) for p in pods} | {current["metadata"]["name"], update["metadata"]["name"]}
        limit = sts["spec"].get("revisionHistoryLimit")
        old = history.revisions_to_delete(revisions, live, 10 if limit is None else int(limit))
        await history.delete_revisions(self.client, old)
