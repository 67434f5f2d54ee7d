"""Pure parts of the Deployment controller (upstream pkg/controller/deployment/util).

Template hashing and comparison, revision and replica annotations, the maxSurge/maxUnavailable
fenceposts, proportional scaling, conditions and status. Objects are plain API dicts; nothing
here does I/O, so every rule can be unit tested against upstream's own tables.
"""

from __future__ import annotations

import copy
import functools
import time

import orjson

from kybernetes.api import defaults
from kybernetes.api.duration import parse_time
from kybernetes.api.quantity import scaled_value
from kybernetes.api.clock import now_rfc3339

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1

# Deployment annotations never copied to its ReplicaSets (upstream annotationsToSkip).
SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                                 MAX_REPLICAS, ROLLBACK_TO})

# Condition reasons (upstream deployment_util.go).
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"
ROLLBACK_DONE = "DeploymentRollback"
ROLLBACK_NOT_FOUND = "DeploymentRollbackRevisionNotFound"
ROLLBACK_UNCHANGED = "DeploymentRollbackTemplateUnchanged"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream rand.SafeEncodeString


# ---- templates --------------------------------------------------------------------------------

# Pod template fields that are pointers in Go: there false/0/"" differ from unset.
_POINTER_FIELDS = frozenset({
    "automountServiceAccountToken", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
    "shareProcessNamespace", "setHostnameAsFQDN", "enableServiceLinks", "hostUsers", "priority",
    "runAsUser", "runAsGroup", "runAsNonRoot", "privileged", "readOnlyRootFilesystem",
    "allowPrivilegeEscalation", "fsGroup", "optional", "defaultMode", "mode", "expirationSeconds",
    "procMount", "fsGroupChangePolicy", "seLinuxChangePolicy", "supplementalGroupsPolicy",
    "sizeLimit", "medium", "preemptionPolicy", "runtimeClassName", "restartPolicy",
})


def _prune(value):
    """Drop what Go's semantic equality cannot tell from unset: nulls, empty maps/lists, and
    zero values of non-pointer fields. kubectl sends templates back with `creationTimestamp:
    null` and `resources: {}`, and protobuf bodies decode to explicit `stdin: false`."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == {} or v == []:
                continue
            if (v is False or v == "" or (type(v) is int and v == 0)) and k not in _POINTER_FIELDS:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def normalize_template(template: dict | None, *, drop_hash: bool = True) -> dict:
    """A canonical form of a pod template: defaulted like the API server does, without the
    pod-template-hash label, nulls and empty values removed. Shared between calls (every
    sync compares the Deployment's template with each ReplicaSet's): do not modify it."""
    return _normalized(orjson.dumps(template or {}), drop_hash)


@functools.lru_cache(maxsize=256)
def _normalized(raw: bytes, drop_hash: bool) -> dict:
    t = orjson.loads(raw)
    spec = t.get("spec")
    if isinstance(spec, dict):
        defaults.pod_spec(spec)
    labels = (t.get("metadata") or {}).get("labels")
    if drop_hash and isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _prune(t)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def compute_hash(template: dict | None, collision_count: int | None = None) -> str:
    """upstream controller.ComputeHash: FNV-32a over the template (here its canonical JSON),
    then the collision count as 8 little-endian bytes, printed in decimal and safe-encoded."""
    data = orjson.dumps(normalize_template(template), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def equal_ignore_hash(t1: dict | None, t2: dict | None) -> bool:
    return normalize_template(t1) == normalize_template(t2)


# ---- small accessors --------------------------------------------------------------------------

def replicas(obj: dict | None) -> int:
    if obj is None:
        return 0
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None and obj.get("kind") == "Deployment" else int(r or 0)


def status_of(obj: dict | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def annotations(obj: dict) -> dict:
    return obj["metadata"].get("annotations") or {}


def revision(obj: dict) -> int:
    v = annotations(obj).get(REVISION)
    if v is None:
        return 0
    try:
        return int(v)
    except ValueError:
        return 0


def max_revision(rss: list[dict]) -> int:
    return max((revision(rs) for rs in rss if rs is not None), default=0)


def last_revision(rss: list[dict]) -> int:
    """The second highest revision (upstream LastRevision), the target of `undo` to 0."""
    top = second = 0
    for rs in rss:
        v = revision(rs)
        if v >= top:
            top, second = v, top
        elif v > second:
            second = v
    return second


def created(obj: dict) -> float:
    ts = obj["metadata"].get("creationTimestamp")
    return parse_time(ts).timestamp() if ts else 0.0


def by_creation(rs: dict) -> tuple:
    """upstream ReplicaSetsByCreationTimestamp: oldest first, then by name."""
    return (created(rs), rs["metadata"]["name"])


def by_size_newer(rs: dict) -> tuple:
    """ReplicaSetsBySizeNewer: largest first, newer first on ties (for scaling up)."""
    return (-replicas(rs), -created(rs), rs["metadata"]["name"])


def by_size_older(rs: dict) -> tuple:
    """ReplicaSetsBySizeOlder: largest first, older first on ties (for scaling down)."""
    return (-replicas(rs), created(rs), rs["metadata"]["name"])


def active(rss: list[dict | None]) -> list[dict]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def replica_count(rss: list[dict | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def actual_count(rss: list[dict | None]) -> int:
    return sum(status_of(rs, "replicas") for rs in rss if rs is not None)


def ready_count(rss: list[dict | None]) -> int:
    return sum(status_of(rs, "readyReplicas") for rs in rss if rs is not None)


def available_count(rss: list[dict | None]) -> int:
    return sum(status_of(rs, "availableReplicas") for rs in rss if rs is not None)


# ---- strategy math ----------------------------------------------------------------------------

def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def _rolling(d: dict) -> dict:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def resolve_fenceposts(max_surge, max_unavailable, desired: int) -> tuple[int, int]:
    """Surge rounds up, unavailability rounds down; both 0 → one may be unavailable."""
    surge = scaled_value(0 if max_surge is None else max_surge, desired, True)
    unavailable = scaled_value(0 if max_unavailable is None else max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    if not is_rolling(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas(d))[0]


def max_unavailable(d: dict) -> int:
    n = replicas(d)
    if not is_rolling(d) or n == 0:
        return 0
    r = _rolling(d)
    return min(resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), n)[1], n)


def new_rs_new_replicas(d: dict, all_rss: list[dict | None], new_rs: dict) -> int:
    """How big the new ReplicaSet may be now (upstream NewRSNewReplicas)."""
    if not is_rolling(d):
        return replicas(d)
    surge = scaled_value(_rolling(d).get("maxSurge") or 0, replicas(d), True)
    current = replica_count(all_rss)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + up


def _round_half_away(x: float) -> int:
    return int(x - 0.5) if x < 0 else int(x + 0.5)


def _annotation_int(rs: dict, key: str) -> int | None:
    v = annotations(rs).get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def replica_set_fraction(rs: dict, d: dict) -> int:
    """upstream getReplicaSetFraction: rs's share of the deployment's new size."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = _annotation_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_of(d, "replicas")
    if annotated == 0:
        return 0
    return _round_half_away(replicas(rs) * deployment_replicas / annotated) - replicas(rs)


def get_proportion(rs: dict | None, d: dict, to_add: int, added: int) -> int:
    """How many replicas `rs` gains (or loses) when the deployment is resized mid-rollout."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def find_active_or_latest(new_rs: dict | None, old_rss: list[dict]) -> dict | None:
    if new_rs is None and not old_rss:
        return None
    old_sorted = sorted(old_rss, key=by_creation, reverse=True)
    live = active(old_sorted + [new_rs])
    if not live:
        return new_rs if new_rs is not None else old_sorted[0]
    return live[0] if len(live) == 1 else None


def is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    desired = _annotation_int(rs, DESIRED_REPLICAS)
    if desired is None:
        return False
    n = replicas(d)
    return replicas(rs) == n and desired == n and status_of(rs, "availableReplicas") == n


# ---- finding ReplicaSets ----------------------------------------------------------------------

def find_new_rs(d: dict, rss: list[dict]) -> dict | None:
    """The oldest ReplicaSet whose template equals the deployment's (ignoring the hash)."""
    target = normalize_template(d["spec"].get("template"))
    for rs in sorted(rss, key=by_creation):
        if normalize_template(rs["spec"].get("template")) == target:
            return rs
    return None


def find_old_rss(d: dict, rss: list[dict], new_rs: dict | None) -> list[dict]:
    uid = new_rs["metadata"]["uid"] if new_rs is not None else None
    return [rs for rs in rss if rs["metadata"].get("uid") != uid or uid is None]


# ---- annotations ------------------------------------------------------------------------------

def set_replicas_annotations(rs: dict, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: dict, desired: int, max_replicas: int) -> bool:
    ann = annotations(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def copy_deployment_annotations(d: dict, rs: dict) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in annotations(d).items():
        if k in SKIPPED_ANNOTATIONS or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    return changed


def set_new_rs_annotations(d: dict, rs: dict, new_revision: int, exists: bool) -> bool:
    """upstream SetNewReplicaSetAnnotations: copy the deployment's annotations, raise the
    revision (keeping the old one in revision-history when it is a rollback), and on creation
    record desired/max replicas."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs["metadata"]["annotations"]
    old = ann.get(REVISION)
    try:
        old_int = int(old) if old is not None and old != "" else 0
    except ValueError:
        return changed
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old is not None:
            history = ann.get(REVISION_HISTORY, "")
            parts = history.split(",") if history else []
            total = len(history) + len(old) + 1
            start = 0
            while total > MAX_REV_HISTORY_CHARS and start < len(parts):
                total -= len(parts[start]) + 1
                start += 1
            if not parts:
                ann[REVISION_HISTORY] = old
            elif total <= MAX_REV_HISTORY_CHARS:
                ann[REVISION_HISTORY] = ",".join(parts[start:] + [old])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def set_annotations_from_rs(d: dict, rs: dict) -> None:
    """Rollback: the deployment keeps its skipped annotations and takes the rest from rs."""
    kept = {k: v for k, v in annotations(d).items() if k in SKIPPED_ANNOTATIONS}
    kept.update({k: v for k, v in annotations(rs).items() if k not in SKIPPED_ANNOTATIONS})
    d["metadata"]["annotations"] = kept


def template_from_rs(rs: dict) -> dict:
    t = copy.deepcopy(rs["spec"].get("template") or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


# ---- conditions and status --------------------------------------------------------------------

def new_condition(type_: str, status: str, reason: str, message: str) -> dict:
    now = now_rfc3339()
    return {"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def get_condition(status: dict, type_: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def set_condition(status: dict, cond: dict) -> None:
    """Same status and reason: keep the old one; same status: keep its transition time."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or []
                            if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: dict, type_: str) -> None:
    if "conditions" in status:
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != type_]
        if not status["conditions"]:
            del status["conditions"]


def has_progress_deadline(d: dict) -> bool:
    p = d["spec"].get("progressDeadlineSeconds")
    return p is not None and p != MAX_INT32


def calculate_status(all_rss: list[dict | None], new_rs: dict | None, d: dict) -> dict:
    available = available_count(all_rss)
    total = replica_count(all_rss)
    old = d.get("status") or {}
    status = {
        "observedGeneration": d["metadata"].get("generation", 0),
        "replicas": actual_count(all_rss),
        "updatedReplicas": actual_count([new_rs]),
        "readyReplicas": ready_count(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE_REASON,
                                            "Deployment has minimum availability."))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE_REASON,
                                            "Deployment does not have minimum availability."))
    return status


def deployment_complete(d: dict, status: dict) -> bool:
    n = replicas(d)
    return (status.get("updatedReplicas", 0) == n and status.get("replicas", 0) == n
            and status.get("availableReplicas", 0) == n
            and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0))


def deployment_progressing(d: dict, status: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return (status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new_old < old_old
            or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or status.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def deployment_timed_out(d: dict, status: dict, now: float | None = None) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    updated = parse_time(cond["lastUpdateTime"]).timestamp() if cond.get("lastUpdateTime") else 0
    return updated + d["spec"]["progressDeadlineSeconds"] < (now if now is not None else time.time())


def progress_recheck_after(d: dict, status: dict, now: float | None = None) -> float | None:
    """Seconds until the progress deadline would pass (upstream requeueStuckDeployment)."""
    cond = get_condition(d.get("status") or {}, "Progressing")
    if not has_progress_deadline(d) or cond is None:
        return None
    if deployment_complete(d, status) or cond.get("reason") == TIMED_OUT_REASON:
        return None
    updated = parse_time(cond["lastUpdateTime"]).timestamp() if cond.get("lastUpdateTime") else 0
    after = updated + d["spec"]["progressDeadlineSeconds"] - (now if now is not None else time.time())
    return 0.5 if after < 1 else after + 1
