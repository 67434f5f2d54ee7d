"""Pure parts shared by the ReplicaSet and ReplicationController controllers.

Mirrors upstream pkg/controller/controller_utils.go and replica_set.go: pod activity and
readiness, expectations of in-flight creates/deletes, slow-start batching, the ranking of
pods to delete on scale-down, pods from a template, and the status a set of pods implies.
No I/O here except `slow_start_batch`, which only awaits the callable it is given.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kybernetes.api.duration import parse_time
from kybernetes.api.clock import now_rfc3339  # noqa: F401 (others import it from here)

BURST_REPLICAS = 500            # upstream BurstReplicas: at most this many creates/deletes per sync
SLOW_START_INITIAL_BATCH = 1    # upstream SlowStartInitialBatchSize
EXPECTATIONS_TTL = 5 * 60.0     # upstream ExpectationsTimeout
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


# ---- pod state -------------------------------------------------------------------------------

def is_pod_active(pod: dict) -> bool:
    """Not Succeeded/Failed and not being deleted (upstream IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def ready_condition(pod: dict) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least minReadySeconds (upstream IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = parse_time(ready_condition(pod).get("lastTransitionTime"))
    return since is not None and (now - since).total_seconds() > min_ready_seconds


# ---- expectations ----------------------------------------------------------------------------

@dataclass
class _Expected:
    adds: int
    dels: int
    when: float
    deleting: set[str] = field(default_factory=set)


class Expectations:
    """What this controller's own in-flight writes should make the informer show, per key.

    A key whose creates/deletes have not all been observed is not synced again (so a slow
    informer cannot make the controller create twice), unless 5 minutes went by. Deletions
    are tracked by pod key so that an unrelated pod going away does not count.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = EXPECTATIONS_TTL):
        self.clock, self.ttl = clock, ttl
        self._store: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        e = self._store.get(key)
        if e is None:
            return True  # nothing recorded: a new controller or a deleted key
        return (e.adds <= 0 and e.dels <= 0) or self.clock() - e.when > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._store[key] = _Expected(n, 0, self.clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        keys = set(pod_keys)
        self._store[key] = _Expected(0, len(keys), self.clock(), keys)

    def creation_observed(self, key: str) -> None:
        e = self._store.get(key)
        if e is not None:
            e.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._store.get(key)
        if e is not None and pod_key in e.deleting:
            e.deleting.discard(pod_key)
            e.dels -= 1

    def pending(self, key: str) -> tuple[int, int]:
        e = self._store.get(key)
        return (e.adds, e.dels) if e else (0, 0)

    def delete(self, key: str) -> None:
        self._store.pop(key, None)


# ---- slow start --------------------------------------------------------------------------------

def slow_start_sizes(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for `count` calls: initial, doubling, the last one takes what remains."""
    sizes, remaining, size = [], count, min(count, initial)
    while size > 0:
        sizes.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return sizes


async def slow_start_batch(count: int, fn: Callable[[], Awaitable[None]],
                           initial: int = SLOW_START_INITIAL_BATCH) -> tuple[int, Exception | None]:
    """Call fn `count` times in growing concurrent batches; stop after the first batch with an
    error, so a failing create (quota, admission) is tried a few times rather than thousands.
    Returns (successes, first error)."""
    successes = 0
    for size in slow_start_sizes(count, initial):
        results = await asyncio.gather(*(fn() for _ in range(size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        successes += size - len(errors)
        if errors:
            return successes, errors[0]
    return successes, None


# ---- which pods to delete ----------------------------------------------------------------------

def _deletion_cost(pod: dict) -> int:
    raw = (pod["metadata"].get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        v = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return v if -2**31 <= v < 2**31 else 0


def _max_restarts(pod: dict) -> tuple[int, int]:
    """(most restarts of a regular container, most restarts of a sidecar init container)."""
    status = pod.get("status") or {}
    regular = max((c.get("restartCount") or 0 for c in status.get("containerStatuses") or []), default=0)
    sidecars = {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []
                if c.get("restartPolicy") == "Always"}
    sidecar = max((c.get("restartCount") or 0 for c in status.get("initContainerStatuses") or []
                   if c.get("name") in sidecars), default=0)
    return regular, sidecar


def _log_rank(t: datetime, now: datetime) -> int:
    """Upstream LogarithmicScaleDown buckets: floor(log2(age in ns)), -1 for no age."""
    ns = int((now - t).total_seconds() * 1e9)
    return int(math.floor(math.log2(ns))) if ns > 0 else -1


def _ready_time(pod: dict) -> datetime | None:
    c = ready_condition(pod)
    return parse_time(c.get("lastTransitionTime")) if c and c.get("status") == "True" else None


@dataclass(slots=True)
class _Facts:
    """What the ranking compares about one pod, read once (parsing times is the costly part)."""
    assigned: bool
    phase: int
    ready: bool
    cost: int
    rank: int
    uid: str
    ready_at: datetime | None
    ready_bucket: int
    restarts: tuple[int, int]
    created: datetime | None
    created_bucket: int


def _bucket(t: datetime | None, now: datetime) -> int:
    return _log_rank(t, now) if t is not None else 0


def _facts(pod: dict, rank: int, now: datetime) -> _Facts:
    ready = is_pod_ready(pod)
    ready_at = _ready_time(pod) if ready else None
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return _Facts(assigned=bool((pod.get("spec") or {}).get("nodeName")),
                  phase=_PHASE_ORDINAL.get((pod.get("status") or {}).get("phase"), 0),
                  ready=ready, cost=_deletion_cost(pod), rank=rank,
                  uid=pod["metadata"].get("uid", ""),
                  ready_at=ready_at, ready_bucket=_bucket(ready_at, now),
                  restarts=_max_restarts(pod), created=created,
                  created_bucket=_bucket(created, now))


def _newer(ti: datetime | None, tj: datetime | None, bi: int, bj: int, uid_i: str, uid_j: str) -> bool:
    """Zero time first, then the younger by logarithmic bucket, then by uid."""
    if ti is None or tj is None:
        return ti is None
    if bi == bj:
        return uid_i < uid_j
    return bi < bj


def _less(a: _Facts, b: _Facts) -> bool:
    """Should `a` be deleted before `b`? Upstream ActivePodsWithRanks.Less, step by step."""
    if a.assigned != b.assigned:                         # 1. unassigned < assigned
        return not a.assigned
    if a.phase != b.phase:                               # 2. Pending < Unknown < Running
        return a.phase < b.phase
    if a.ready != b.ready:                               # 3. not ready < ready
        return not a.ready
    if a.cost != b.cost:                                 # 4. lower pod-deletion-cost first
        return a.cost < b.cost
    if a.rank != b.rank:                                 # 5. more replicas on its node first
        return a.rank > b.rank
    if a.ready and b.ready and a.ready_at != b.ready_at:  # 6. ready more recently first
        return _newer(a.ready_at, b.ready_at, a.ready_bucket, b.ready_bucket, a.uid, b.uid)
    if a.restarts != b.restarts:                         # 7. more restarts first
        return a.restarts > b.restarts
    if a.created != b.created:                           # 8. created more recently first
        return _newer(a.created, b.created, a.created_bucket, b.created_bucket, a.uid, b.uid)
    return False


def deletion_less(a: dict, b: dict, rank_a: int, rank_b: int, now: datetime) -> bool:
    """Should `a` be deleted before `b`? (rank: active related pods on the pod's node)"""
    return _less(_facts(a, rank_a, now), _facts(b, rank_b, now))


def rank_for_deletion(pods: list[dict], related: list[dict], now: datetime | None = None) -> list[dict]:
    """`pods` in the order they should be deleted. A pod's rank is how many active related
    pods (of this set and its siblings under the same owner) share its node."""
    now = now or datetime.now(timezone.utc)
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    facts = [(_facts(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0), now), p)
             for p in pods]

    def cmp(x: tuple[_Facts, dict], y: tuple[_Facts, dict]) -> int:
        if _less(x[0], y[0]):
            return -1
        if _less(y[0], x[0]):
            return 1
        return 0

    return [p for _, p in sorted(facts, key=functools.cmp_to_key(cmp))]


def pods_to_delete(pods: list[dict], related: list[dict], diff: int,
                   now: datetime | None = None) -> list[dict]:
    if diff < len(pods):
        pods = rank_for_deletion(pods, related, now)
    return pods[:diff]


# ---- pods from a template ----------------------------------------------------------------------

def pod_from_template(template: dict, owner_ref: dict, owner_name: str) -> dict:
    """A new pod: template labels/annotations/finalizers/spec, generateName `<owner>-`."""
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    if not labels:
        raise ValueError("unable to create pods, no labels")
    pod_meta: dict = {"generateName": f"{owner_name}-", "labels": labels,
                      "ownerReferences": [owner_ref]}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    if meta.get("finalizers"):
        pod_meta["finalizers"] = list(meta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


# ---- status --------------------------------------------------------------------------------------

def calculate_status(obj: dict, pods: list[dict], manage_error: Exception | None, diff: int,
                     now: datetime | None = None) -> dict:
    """The status `pods` (the active pods this object owns) imply. On a failed create/delete a
    ReplicaFailure condition is added; a later successful sync removes it."""
    now = now or datetime.now(timezone.utc)
    spec = obj.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = spec.get("minReadySeconds") or 0
    old = obj.get("status") or {}
    fully = ready = available = 0
    for p in pods:
        labels = p["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(p):
            ready += 1
            if is_pod_available(p, min_ready, now):
                available += 1
    status: dict = {"replicas": len(pods)}
    for name, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready),
                        ("availableReplicas", available),
                        ("observedGeneration", obj["metadata"].get("generation") or 0)):
        if value:
            status[name] = value
    conditions = [dict(c) for c in old.get("conditions") or []]
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        conditions.append({"type": "ReplicaFailure", "status": "True",
                           "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "reason": "FailedCreate" if diff < 0 else "FailedDelete",
                           "message": str(manage_error)})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status


_STATUS_FIELDS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
                  "observedGeneration")


def status_equal(a: dict, b: dict) -> bool:
    return (all((a.get(f) or 0) == (b.get(f) or 0) for f in _STATUS_FIELDS)
            and (a.get("conditions") or []) == (b.get("conditions") or []))
