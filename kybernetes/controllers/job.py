"""The Job controller: run pods to completion.

Like upstream pkg/controller/job (1.31+): pods carry the `batch.kubernetes.io/job-tracking`
finalizer; a finished pod is first recorded in status.uncountedTerminatedPods, then its
finalizer is removed, then it moves into status.succeeded/failed, so no pod is counted twice
or lost. A Job that meets its goal gets SuccessCriteriaMet, one that fails gets FailureTarget
(reasons BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy); Complete/Failed follow once
no pod is left uncounted or terminating. Pods are recreated after failures with exponential
backoff; suspend deletes the active pods. Finished Jobs with ttlSecondsAfterFinished are
deleted when it runs out (upstream's ttl-after-finished controller).
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime, timezone

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, EventRecorder, controller_of, object_key, resource

from .job_util import (MAX_POD_CHANGES_PER_SYNC, TRACKING_FINALIZER, BackoffRecord,
                       completion_index, condition_true, deadline_remaining, ensure_condition,
                       find_condition, first_pending_indexes, fmt_time, format_indexes,
                       has_finalizer, is_active, is_finished, is_pod_failed, is_ready,
                       is_terminating, match_pod_failure_policy, match_success_policy,
                       only_replace_failed, parse_indexes, past_active_deadline, pod_from_job,
                       ttl_remaining)
from .replicas import Expectations, rank_for_deletion, slow_start_batch

log = logging.getLogger(__name__)

JOBS = resource("batch/v1", "Job")
PODS = resource("v1", "Pod")
OWNER_UID_INDEX = "controller-uid"
MANAGED_BY = "kubernetes.io/job-controller"


def controller_uid_index(obj: dict) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


class JobController(Controller):
    name = "job"
    workers = 5

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, "job-controller")
        self.expectations = Expectations()
        self.rm_finalizers: dict[str, set[str]] = {}  # job key → pod uids whose finalizer removal is in flight
        self.backoff: dict[str, BackoffRecord] = {}
        self.jobs = self.factory.informer(JOBS)
        self.pods = self.factory.informer(PODS)
        self.pods.add_index(OWNER_UID_INDEX, controller_uid_index)
        self.jobs.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def now(self) -> datetime:
        """The controller's clock; tests replace it."""
        return datetime.now(timezone.utc)

    # ---- handlers ----

    def _owner_key(self, pod: dict) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "Job":
            return None
        key = f"{pod['metadata'].get('namespace')}/{ref['name']}"
        job = self.jobs.get(key)
        return key if job is not None and job["metadata"].get("uid") == ref.get("uid") else None

    def _job_deleted(self, job: dict) -> None:
        key = object_key(job)
        self.expectations.delete(key)
        self.rm_finalizers.pop(key, None)
        self.backoff.pop(key, None)
        self.queue.add(key)  # its pods' finalizers still need removing

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_updated(self, old: dict, cur: dict) -> None:
        key = self._owner_key(cur)
        if not key:
            return
        if has_finalizer(old) and not has_finalizer(cur):
            self.rm_finalizers.get(key, set()).discard(cur["metadata"].get("uid"))
        if cur["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, object_key(cur))
        self.queue.add(key)

    def _pod_deleted(self, pod: dict) -> None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "Job":
            return
        key = f"{pod['metadata'].get('namespace')}/{ref['name']}"
        self.rm_finalizers.get(key, set()).discard(pod["metadata"].get("uid"))
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # ---- reconcile ----

    async def reconcile(self, key: str) -> float | None:
        cached = self.jobs.get(key)
        if cached is None:
            await self._release_orphans(key)
            return None
        job = copy.deepcopy(cached)
        job.setdefault("apiVersion", "batch/v1")
        job.setdefault("kind", "Job")
        pods = self.pods.by_index(OWNER_UID_INDEX, job["metadata"]["uid"])
        if is_finished(job):
            await self._remove_finalizers(key, [p for p in pods if has_finalizer(p)])
            return await self._expire(job)
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by not in (None, MANAGED_BY):
            return None
        return await self._sync(key, job, pods)

    async def _sync(self, key: str, job: dict, pods: list[dict]) -> float | None:
        now = self.now()
        spec, status = job["spec"], job.setdefault("status", {})
        old_status = copy.deepcopy(status)
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        suspended = bool(spec.get("suspend"))
        satisfied = self.expectations.satisfied(key)
        requeue: list[float] = []

        if not status.get("startTime") and not suspended:
            status["startTime"] = fmt_time(now)
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_succ = list(uncounted.get("succeeded") or [])
        unc_fail = list(uncounted.get("failed") or [])
        in_flight = self.rm_finalizers.setdefault(key, set())

        def new_finished(p: dict) -> bool:
            uid = p["metadata"].get("uid")
            if not has_finalizer(p) or uid in unc_succ or uid in unc_fail or uid in in_flight:
                return False
            if indexed:
                ix = completion_index(p)
                if ix is None or ix >= (completions or 0):
                    return False
            return True

        new_succeeded = [p for p in pods if new_finished(p)
                         and (p.get("status") or {}).get("phase") == "Succeeded"]
        # Failed pods end here; Ignore'd ones and those deleted because of suspend uncounted.
        new_failed = [p for p in pods if new_finished(p) and is_pod_failed(p, job)]
        if suspended:
            new_failed += [p for p in pods if new_finished(p) and is_terminating(p) and p not in new_failed]
        policy = spec.get("podFailurePolicy")
        counted_failed = [p for p in new_failed if self._counts_as_failed(p, job)
                          and match_pod_failure_policy(policy, p)[1]]

        active_pods = [p for p in pods if is_active(p)]
        active = len(active_pods)
        terminating = sum(1 for p in pods if is_terminating(p))
        failed = (status.get("failed") or 0) + len(counted_failed) + len(unc_fail)
        backoff = self.backoff.get(key, BackoffRecord()).updated(new_succeeded, counted_failed)

        succeeded_idx: set[int] = set()
        if indexed:
            succeeded_idx = set(parse_indexes(status.get("completedIndexes"), completions or 0))
            succeeded_idx.update(ix for p in pods
                                 if (p.get("status") or {}).get("phase") == "Succeeded" and has_finalizer(p)
                                 and (ix := completion_index(p)) is not None and ix < (completions or 0))
            succeeded = len(succeeded_idx)
        else:
            succeeded = (status.get("succeeded") or 0) + len(new_succeeded) + len(unc_succ)

        # What ends the Job: an interim condition (type, reason, message) written first.
        finished = self._finished_condition(job, pods, failed, active_pods, now, requeue)
        if indexed and finished is None and not condition_true(job, "SuccessCriteriaMet"):
            msg = match_success_policy(spec.get("successPolicy"), completions or 0, sorted(succeeded_idx))
            if msg:
                finished = ("SuccessCriteriaMet", "SuccessPolicy", msg)

        manage_error: Exception | None = None
        if finished is not None:
            deleted, manage_error = await self._delete_pods(key, job, active_pods)
            if deleted != active or not satisfied:
                finished = None  # not all gone yet (or in flight): decide again next sync
            active -= deleted
            terminating += deleted
        else:
            manage_called = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                try:
                    active = await self._manage(key, job, active_pods, succeeded, succeeded_idx,
                                                terminating, backoff, now, requeue)
                except ApiError as e:
                    manage_error = e
                manage_called = True
            if completions is None:
                complete = succeeded > 0 and active == 0
            else:
                complete = succeeded >= completions and active == 0
            if complete:
                finished = ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")
            elif manage_called:
                self._suspend_conditions(job, now)

        status["active"] = active
        status["ready"] = sum(1 for p in active_pods if is_ready(p) and not p["metadata"].get("deletionTimestamp"))
        status["terminating"] = terminating
        job = await self._track(key, job, pods, old_status, finished, new_succeeded, new_failed,
                                {p["metadata"]["uid"] for p in counted_failed}, succeeded_idx, now)
        self.backoff[key] = backoff
        if manage_error is not None:
            raise manage_error
        if is_finished(job):
            return await self._expire(job)
        return min(requeue) if requeue else None

    @staticmethod
    def _counts_as_failed(pod: dict, job: dict) -> bool:
        # Pods the controller deletes because the Job is suspended are not failures.
        return not job["spec"].get("suspend") or (pod.get("status") or {}).get("phase") == "Failed"

    def _finished_condition(self, job: dict, pods: list[dict], failed: int, active_pods: list[dict],
                            now: datetime, requeue: list[float]) -> tuple[str, str, str] | None:
        spec = job["spec"]
        for interim in ("FailureTarget", "SuccessCriteriaMet"):
            c = find_condition(job, interim)
            if c is not None and c.get("status") == "True":
                return interim, c.get("reason") or "", c.get("message") or ""
        policy = spec.get("podFailurePolicy")
        if policy:
            for p in pods:
                if is_pod_failed(p, job):
                    msg = match_pod_failure_policy(policy, p)[0]
                    if msg:
                        return "FailureTarget", "PodFailurePolicy", msg
        limit = spec.get("backoffLimit", 6)
        if failed > limit or self._past_backoff_limit_on_failure(job, active_pods):
            return "FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        if past_active_deadline(job, now):
            return "FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"
        left = deadline_remaining(job, now)
        if left is not None:
            requeue.append(max(left, 0.05))
        return None

    @staticmethod
    def _past_backoff_limit_on_failure(job: dict, active_pods: list[dict]) -> bool:
        """restartPolicy OnFailure: container restarts of active pods count against the limit."""
        template_spec = (job["spec"].get("template") or {}).get("spec") or {}
        if template_spec.get("restartPolicy") != "OnFailure":
            return False
        restarts = 0
        for p in active_pods:
            st = p.get("status") or {}
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                restarts += cs.get("restartCount") or 0
        limit = job["spec"].get("backoffLimit", 6)
        return limit == 0 and restarts > 0 or limit > 0 and restarts >= limit

    def _suspend_conditions(self, job: dict, now: datetime) -> None:
        conds = job["status"].setdefault("conditions", [])
        if job["spec"].get("suspend"):
            if ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        elif ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now):
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            # activeDeadlineSeconds counts continuous activity: restart the clock.
            job["status"]["startTime"] = fmt_time(now)

    # ---- pods: create and delete ----

    async def _manage(self, key: str, job: dict, active_pods: list[dict], succeeded: int,
                      succeeded_idx: set[int], terminating: int, backoff: BackoffRecord,
                      now: datetime, requeue: list[float]) -> int:
        spec = job["spec"]
        active = len(active_pods)
        if spec.get("suspend"):
            deleted, err = await self._delete_pods(key, job, active_pods)
            if err:
                raise err
            return active - deleted
        parallelism = spec.get("parallelism", 1)
        completions = spec.get("completions")
        if completions is None:
            want = active if succeeded > 0 else parallelism
        else:
            want = max(min(completions - succeeded, parallelism), 0)
        indexed = spec.get("completionMode") == "Indexed"

        to_delete: list[dict] = []
        keep = active_pods
        if indexed:
            to_delete, keep = _surplus_indexed(active_pods, completions or 0, succeeded_idx)
        extra = len(keep) - want
        if extra > 0:
            to_delete += rank_for_deletion(keep, [], now)[:extra]
        if to_delete:
            deleted, err = await self._delete_pods(key, job, to_delete[:MAX_POD_CHANGES_PER_SYNC])
            if err:
                raise err
            return active - deleted
        if active >= want:
            return active

        left = backoff.remaining(now)
        if left > 0:
            requeue.append(left)
            return active
        diff = want - active
        if only_replace_failed(job):
            diff -= terminating
        diff = min(diff, MAX_POD_CHANGES_PER_SYNC)
        if diff <= 0:
            return active
        indexes: list[int | None] = [None] * diff
        if indexed:
            taken = succeeded_idx | {ix for p in active_pods if (ix := completion_index(p)) is not None}
            indexes = list(first_pending_indexes(diff, completions or 0, taken))
            diff = len(indexes)
        self.expectations.expect_creations(key, diff)
        pending = list(indexes)

        async def create_one() -> None:
            pod = pod_from_job(job, pending.pop(0))
            try:
                made = await self.client.create(PODS, pod, job["metadata"]["namespace"])
            except ApiError as e:
                self.expectations.creation_observed(key)
                if not _namespace_terminating(e):
                    self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {made['metadata']['name']}")

        created, err = await slow_start_batch(diff, create_one)
        for _ in range(diff - created - (1 if err else 0)):
            self.expectations.creation_observed(key)  # batches never started
        if err is not None and not (isinstance(err, ApiError) and _namespace_terminating(err)):
            raise err
        return active + created

    async def _delete_pods(self, key: str, job: dict, pods: list[dict]) -> tuple[int, Exception | None]:
        if not pods:
            return 0, None
        self.expectations.expect_deletions(key, [object_key(p) for p in pods])
        deleted, error = 0, None
        for p in pods:
            try:
                await self.client.delete(PODS, p["metadata"]["name"], p["metadata"]["namespace"])
                deleted += 1
                self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
            except ApiError as e:
                self.expectations.deletion_observed(key, object_key(p))
                if e.code == 404:
                    deleted += 1
                    continue
                self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {e}")
                error = error or e
        return deleted, error

    async def _remove_finalizers(self, key: str, pods: list[dict]) -> set[str]:
        """Remove the tracking finalizer; the uids it is now gone from (or the pod is)."""
        done: set[str] = set()
        in_flight = self.rm_finalizers.setdefault(key, set())
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
        for p in pods:
            uid = p["metadata"]["uid"]
            in_flight.add(uid)
            try:
                await self.client.patch(PODS, p["metadata"]["name"], patch, p["metadata"]["namespace"],
                                        type="strategic")
            except ApiError as e:
                if e.code != 404:
                    in_flight.discard(uid)
                    raise
            done.add(uid)
        return done

    async def _release_orphans(self, key: str) -> None:
        """A deleted Job's pods must not keep its finalizer forever."""
        ns, _, name = key.rpartition("/")
        orphans = [p for p in self.pods.list(ns) if has_finalizer(p)
                   and (ref := controller_of(p)) and ref.get("kind") == "Job" and ref.get("name") == name]
        if orphans:
            await self._remove_finalizers(key, orphans)
        self.rm_finalizers.pop(key, None)

    # ---- status: count finished pods, then finish the Job ----

    async def _track(self, key: str, job: dict, pods: list[dict], old_status: dict,
                     finished: tuple[str, str, str] | None, new_succeeded: list[dict],
                     new_failed: list[dict], counted: set[str], succeeded_idx: set[int],
                     now: datetime) -> dict:
        spec, status = job["spec"], job["status"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_succ = list(uncounted.get("succeeded") or [])
        unc_fail = list(uncounted.get("failed") or [])
        indexed = spec.get("completionMode") == "Indexed"
        in_flight = self.rm_finalizers.get(key, set())
        # Recorded earlier but the finalizer removal did not happen (an error): try again.
        to_release = [p for p in pods if has_finalizer(p) and p["metadata"]["uid"] not in in_flight
                      and (p["metadata"]["uid"] in unc_succ or p["metadata"]["uid"] in unc_fail)]
        to_release += list(new_succeeded) + list(new_failed)
        new_uids = {p["metadata"]["uid"] for p in to_release}
        for p in new_succeeded:
            unc_succ.append(p["metadata"]["uid"])
        unc_fail += [p["metadata"]["uid"] for p in new_failed if p["metadata"]["uid"] in counted]
        if finished is not None:
            # The Job is done: every other pod still holding the finalizer ends now, as a failure.
            for p in pods:
                uid = p["metadata"]["uid"]
                if has_finalizer(p) and uid not in new_uids and uid not in in_flight:
                    to_release.append(p)
                    if (p.get("status") or {}).get("phase") != "Succeeded":
                        unc_fail.append(uid)
            ctype, reason, message = finished
            if ctype in ("FailureTarget", "SuccessCriteriaMet"):
                ensure_condition(status.setdefault("conditions", []), ctype, "True", reason, message, now)
                finished = ("Failed" if ctype == "FailureTarget" else "Complete", reason, message)
        status["uncountedTerminatedPods"] = _uncounted(unc_succ, unc_fail)
        if indexed:
            status["completedIndexes"] = format_indexes(succeeded_idx)

        if to_release:
            if status != old_status:
                job = await self._write_status(job)
                status = job["status"]
            released = await self._remove_finalizers(key, to_release)
            holding = {p["metadata"]["uid"] for p in pods if has_finalizer(p)} - released
        else:
            holding = {p["metadata"]["uid"] for p in pods if has_finalizer(p)}
        if unc_succ or unc_fail:
            # Counted once the finalizer is gone (now, or in an earlier sync).
            keep_s = [u for u in unc_succ if u in holding]
            keep_f = [u for u in unc_fail if u in holding]
            if not indexed:
                status["succeeded"] = (status.get("succeeded") or 0) + len(unc_succ) - len(keep_s)
            status["failed"] = (status.get("failed") or 0) + len(unc_fail) - len(keep_f)
            status["uncountedTerminatedPods"] = _uncounted(keep_s, keep_f)
        if indexed:
            status["succeeded"] = len(succeeded_idx)
        status.setdefault("succeeded", 0)
        status.setdefault("failed", 0)

        just_finished = None
        unc = status["uncountedTerminatedPods"]
        if finished is not None and not unc and status.get("terminating", 0) == 0:
            ctype, reason, message = finished
            if ensure_condition(status.setdefault("conditions", []), ctype, "True", reason, message, now):
                just_finished = finished
                if ctype == "Complete":
                    status["completionTime"] = fmt_time(now)
        if status != old_status:
            job = await self._write_status(job)
        if just_finished:
            self._record_finished(job, just_finished)
        return job

    def _record_finished(self, job: dict, finished: tuple[str, str, str]) -> None:
        ctype, reason, message = finished
        if ctype == "Complete":
            completions = job["spec"].get("completions")
            if completions is not None and (job["status"].get("succeeded") or 0) > completions:
                self.recorder.event(job, "Warning", "TooManySucceededPods",
                                    "Too many succeeded pods running after completion count reached")
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.event(job, "Warning", reason, message)

    async def _write_status(self, job: dict) -> dict:
        # A PUT carrying the cached resourceVersion: a stale view of the counts gets a 409.
        out = await self.client.update_status(JOBS, job)
        out.setdefault("apiVersion", "batch/v1")
        out.setdefault("kind", "Job")
        out.setdefault("status", {})
        return out

    # ---- ttlSecondsAfterFinished ----

    async def _expire(self, job: dict) -> float | None:
        left = ttl_remaining(job, self.now())
        if left is None or job["metadata"].get("deletionTimestamp"):
            return None
        if left > 0:
            return left
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta["namespace"], propagation="Foreground",
                                     preconditions={"uid": meta["uid"],
                                                    "resourceVersion": meta.get("resourceVersion")})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return None


def _uncounted(succeeded: list[str], failed: list[str]) -> dict:
    out: dict = {}
    if succeeded:
        out["succeeded"] = succeeded
    if failed:
        out["failed"] = failed
    return out


def _surplus_indexed(pods: list[dict], completions: int, succeeded: set[int]) -> tuple[list[dict], list[dict]]:
    """Active pods of an Indexed Job that must go: no valid index, an index that already
    succeeded, or a second pod for the same index (the newer one)."""
    remove, keep, seen = [], [], {}
    for p in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        ix = completion_index(p)
        if ix is None or ix >= completions or ix in succeeded or ix in seen:
            remove.append(p)
        else:
            seen[ix] = p
            keep.append(p)
    return remove, keep


def _namespace_terminating(e: ApiError) -> bool:
    return any(c.get("reason") == "NamespaceTerminating" for c in e.details.get("causes") or [])
