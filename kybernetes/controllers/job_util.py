"""Pure parts of the Job controller (no I/O).

Mirrors upstream pkg/controller/job: indexed_job_utils.go (completion indexes and their
compressed "1,3-5" form), pod_failure_policy.go (rule matching), success_policy.go,
backoff_utils.go (per-Job exponential backoff after pod failures) and the condition helpers of
job_controller.go.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta

from kybernetes.api.duration import parse_time

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"

BACKOFF_BASE = 10.0     # upstream DefaultJobPodFailureBackOff
BACKOFF_MAX = 600.0     # upstream MaxJobPodFailureBackOff (10 min since 1.27; docs still say 6)
MAX_POD_CHANGES_PER_SYNC = 500  # upstream MaxPodCreateDeletePerSync


def fmt_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- completion indexes ---------------------------------------------------------------------

def parse_indexes(text: str | None, completions: int) -> list[int]:
    """The sorted indexes below `completions` named by "1,3-5"; unreadable parts are skipped,
    as upstream parseIndexesFromString does."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            continue
        if a < 0 or b < a:
            continue
        out.update(range(a, min(b, completions - 1) + 1))
    return sorted(out)


def format_indexes(indexes) -> str:
    """Sorted unique indexes compressed into intervals: [1, 3, 4, 5] → "1,3-5"."""
    parts: list[str] = []
    items = sorted(set(indexes))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


def completion_index(pod: dict) -> int | None:
    """The pod's index from its annotation (the label is a copy), None when absent/invalid."""
    meta = pod["metadata"]
    raw = (meta.get("annotations") or {}).get(INDEX_ANNOTATION)
    if raw is None:
        raw = (meta.get("labels") or {}).get(INDEX_LABEL)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def first_pending_indexes(count: int, completions: int, taken: set[int]) -> list[int]:
    """The `count` lowest indexes that are neither succeeded nor running (upstream
    firstPendingIndexes)."""
    out = []
    for ix in range(completions):
        if len(out) >= count:
            break
        if ix not in taken:
            out.append(ix)
    return out


# ---- pods -----------------------------------------------------------------------------------

def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: dict) -> bool:
    return not is_terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp")) and not is_terminal(pod)


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def has_finalizer(pod: dict) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def only_replace_failed(job: dict) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: dict, job: dict) -> bool:
    """upstream isPodFailed: Failed phase; with the default replacement policy a pod being
    deleted before it succeeded counts too (orphans never reach Failed)."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded"


def finished_time(pod: dict) -> datetime | None:
    """When the pod finished: the latest container finishedAt, else its deletion or the
    last transition of its conditions (upstream getFinishedTime)."""
    status = pod.get("status") or {}
    latest = None
    for cs in status.get("containerStatuses") or []:
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t and (latest is None or t > latest):
            latest = t
    if latest:
        return latest
    t = parse_time(pod["metadata"].get("deletionTimestamp"))
    if t:
        return t
    for c in status.get("conditions") or []:
        t2 = parse_time(c.get("lastTransitionTime"))
        if t2 and (latest is None or t2 > latest):
            latest = t2
    return latest or parse_time(pod["metadata"].get("creationTimestamp"))


def pod_from_job(job: dict, index: int | None) -> dict:
    """A new pod from the Job's template, owned by it, carrying the tracking finalizer; Indexed
    pods get their index (annotation, label, env) and hostname `<job>-<index>`."""
    name = job["metadata"]["name"]
    template = job["spec"].get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    labels = dict(tmeta.get("labels") or {})
    annotations = dict(tmeta.get("annotations") or {})
    meta: dict = {
        "generateName": f"{name}-" if index is None else f"{name}-{index}-",
        "labels": labels,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                             "uid": job["metadata"]["uid"], "controller": True,
                             "blockOwnerDeletion": True}],
        "finalizers": list(tmeta.get("finalizers") or []) + [TRACKING_FINALIZER],
    }
    if index is not None:
        annotations[INDEX_ANNOTATION] = str(index)
        labels[INDEX_LABEL] = str(index)
        spec.setdefault("hostname", f"{name}-{index}")
        env = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                if not any(e.get("name") == INDEX_ENV for e in c.get("env") or []):
                    c["env"] = list(c.get("env") or []) + [copy.deepcopy(env)]
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# ---- pod failure policy -----------------------------------------------------------------------

def _exit_code_matches(code: int, req: dict) -> bool:
    values = req.get("values") or []
    if req.get("operator") == "In":
        return code in values
    if req.get("operator") == "NotIn":
        return code not in values
    return False


def _matching_container(statuses: list[dict], req: dict) -> dict | None:
    for cs in statuses or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is None:
            continue  # still running or terminating: no exit code yet
        if req.get("containerName") not in (None, cs.get("name")):
            continue
        code = term.get("exitCode") or 0
        if code != 0 and _exit_code_matches(code, req):
            return cs
    return None


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[str | None, bool, str | None]:
    """(FailJob message, whether the failure counts against backoffLimit, matched action) for
    a failed pod: the first matching rule wins; no match counts the failure."""
    if not policy:
        return None, True, None
    status = pod.get("status") or {}
    ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            req = rule["onExitCodes"]
            cs = (_matching_container(status.get("containerStatuses"), req)
                  or _matching_container(status.get("initContainerStatuses"), req))
            if cs is None:
                continue
            what = (f"Container {cs['name']} for pod {ns}/{name} failed with exit code "
                    f"{cs['state']['terminated'].get('exitCode')}")
        elif rule.get("onPodConditions") is not None:
            cond = next((c for c in status.get("conditions") or []
                         for p in rule["onPodConditions"]
                         if c.get("type") == p.get("type") and c.get("status") == p.get("status", "True")),
                        None)
            if cond is None:
                continue
            what = f"Pod {ns}/{name} has condition {cond['type']}"
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action in ("Count", "FailIndex"):
            return None, True, action
        if action == "FailJob":
            return f"{what} matching FailJob rule at index {i}", True, action
    return None, True, None


# ---- success policy ---------------------------------------------------------------------------

def match_success_policy(policy: dict | None, completions: int, succeeded: list[int]) -> str | None:
    """The SuccessCriteriaMet message when a rule of the successPolicy is satisfied."""
    if not policy or not succeeded:
        return None
    done = set(succeeded)
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if not required:
                continue
            hit = len(done.intersection(required))
            if hit == len(required) or (count is not None and hit >= count):
                return f"Matched rules at index {i}"
        elif count is not None and len(done) >= count:
            return f"Matched rules at index {i}"
    return None


# ---- backoff ----------------------------------------------------------------------------------

@dataclass
class BackoffRecord:
    """Failures since the last success and when the latest of them happened."""
    failures: int = 0
    last_failure: datetime | None = None

    def updated(self, succeeded: list[dict], failed: list[dict]) -> "BackoffRecord":
        """upstream newBackoffRecord: a success resets the count; only failures that finished
        after the latest new success count."""
        fail_times = sorted(t for t in (finished_time(p) for p in failed) if t)
        if not succeeded:
            if not failed:
                return self
            return BackoffRecord(self.failures + len(failed), fail_times[-1] if fail_times else self.last_failure)
        last_success = max((t for t in (finished_time(p) for p in succeeded) if t), default=None)
        after = [t for t in fail_times if last_success is None or t > last_success]
        return BackoffRecord(len(after), after[-1] if after else None)

    def remaining(self, now: datetime, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
        return backoff_remaining(self.failures, self.last_failure, now, base, cap)


def backoff_delay(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """10 s after the first failure, doubling per further failure, capped."""
    if failures <= 0:
        return 0.0
    return min(base * 2 ** min(failures - 1, 62), cap)


def backoff_remaining(failures: int, last_failure: datetime | None, now: datetime,
                      base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    if failures <= 0 or last_failure is None:
        return 0.0
    left = backoff_delay(failures, base, cap) - (now - last_failure).total_seconds()
    return max(left, 0.0)


# ---- conditions -------------------------------------------------------------------------------

def find_condition(job: dict, ctype: str) -> dict | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def condition_true(job: dict, ctype: str) -> bool:
    c = find_condition(job, ctype)
    return c is not None and c.get("status") == "True"


def is_finished(job: dict) -> bool:
    return condition_true(job, "Complete") or condition_true(job, "Failed")


def ensure_condition(conditions: list[dict], ctype: str, status: str, reason: str, message: str,
                     now: datetime) -> bool:
    """Set a condition in place (upstream ensureJobConditionStatus): a False condition that
    does not exist yet is not added. Returns whether anything changed."""
    at = fmt_time(now)
    for c in conditions:
        if c.get("type") != ctype:
            continue
        if c.get("status") == status and c.get("reason") == reason and c.get("message") == message:
            return False
        if c.get("status") != status:
            c["lastTransitionTime"] = at
        c.update(status=status, reason=reason, message=message, lastProbeTime=at)
        return True
    if status == "False":
        return False
    conditions.append({"type": ctype, "status": status, "lastProbeTime": at,
                       "lastTransitionTime": at, "reason": reason, "message": message})
    return True


def past_active_deadline(job: dict, now: datetime) -> bool:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if deadline is None or start is None or spec.get("suspend"):
        return False
    return (now - start) >= timedelta(seconds=deadline)


def deadline_remaining(job: dict, now: datetime) -> float | None:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if deadline is None or start is None or spec.get("suspend"):
        return None
    return max(deadline - (now - start).total_seconds(), 0.0)


def ttl_remaining(job: dict, now: datetime) -> float | None:
    """Seconds until a finished Job's ttlSecondsAfterFinished runs out (≤ 0: due); None when
    it has no TTL or is not finished (upstream ttlafterfinished timeLeft)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None:
        return None
    for ctype in ("Complete", "Failed"):
        c = find_condition(job, ctype)
        if c is not None and c.get("status") == "True":
            finished = parse_time(c.get("lastTransitionTime"))
            if finished is None:
                return None
            return ttl - (now - finished).total_seconds()
    return None
