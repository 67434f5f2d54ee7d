"""NodeResourcesFit (filter + LeastAllocated / MostAllocated / RequestedToCapacityRatio scoring)
and NodeResourcesBalancedAllocation, with upstream's integer arithmetic."""

from __future__ import annotations

import math

from ..framework import MAX_NODE_SCORE, Plugin, unschedulable

_DEFAULT_RESOURCES = [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}]


def insufficient(pi, ni, ignored: frozenset = frozenset(), ignored_groups: tuple = ()) -> list[str]:
    """Upstream fitsRequest: every resource the pod asks for beyond what the node has left."""
    reasons = []
    if len(ni.pods) + 1 > ni.alloc_pods:
        reasons.append("Too many pods")
    reqs = pi.requests
    if not reqs:
        return reasons
    if pi.cpu and pi.cpu > ni.alloc_cpu - ni.req_cpu:
        reasons.append("Insufficient cpu")
    if pi.memory and pi.memory > ni.alloc_memory - ni.req_memory:
        reasons.append("Insufficient memory")
    for name, want in reqs.items():
        if name in ("cpu", "memory", "pods") or not want:
            continue
        if name in ignored or (ignored_groups and name.split("/", 1)[0] in ignored_groups):
            continue
        if name != "ephemeral-storage" and "/" not in name and not name.startswith("hugepages-"):
            continue  # not a scalar resource upstream schedules on
        if want > ni.allocatable.get(name, 0) - ni.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def _least(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def _most(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    if requested > capacity:
        requested = capacity  # pods without requests count their defaults
    return requested * MAX_NODE_SCORE // capacity


def broken_linear(shape: list[tuple[int, int]]):
    def f(p: int) -> int:
        for i, (u, s) in enumerate(shape):
            if p <= u:
                if i == 0:
                    return shape[0][1]
                u0, s0 = shape[i - 1]
                # Go's integer division truncates toward zero (Python's // floors).
                d = (s - s0) * (p - u0)
                q = abs(d) // (u - u0)
                return s0 + (q if d >= 0 else -q)
        return shape[-1][1]
    return f


def node_amounts(ni, name: str, nonzero: bool) -> tuple[int, int]:
    """(allocatable, requested on the node) for one resource."""
    if name == "cpu":
        return ni.alloc_cpu, ni.nonzero_cpu if nonzero else ni.req_cpu
    if name == "memory":
        return ni.alloc_memory, ni.nonzero_memory if nonzero else ni.req_memory
    if name == "pods":
        return ni.alloc_pods, len(ni.pods)
    return ni.allocatable.get(name, 0), ni.requested.get(name, 0)


def is_scalar(name: str) -> bool:
    """Upstream IsScalarResourceName: extended, prefixed-native, hugepages, attachable volumes."""
    return "/" in name or name.startswith(("hugepages-", "attachable-volumes-"))


def pod_amount(pi, name: str, nonzero: bool) -> int:
    if name == "cpu":
        return pi.nonzero_cpu if nonzero else pi.cpu
    if name == "memory":
        return pi.nonzero_memory if nonzero else pi.memory
    if name == "pods":
        return 1
    return pi.requests.get(name, 0)


class NodeResourcesFit(Plugin):
    name = "NodeResourcesFit"
    node_state_only = True
    events = ("Pod/Delete", "Node/Add", "Node/Update")

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        strategy = self.args.get("scoringStrategy") or {}
        self.strategy = strategy.get("type") or "LeastAllocated"
        self.resources = [(r["name"], int(r.get("weight") or 1))
                          for r in strategy.get("resources") or _DEFAULT_RESOURCES]
        self.ignored = frozenset(self.args.get("ignoredResources") or ())
        self.ignored_groups = tuple(self.args.get("ignoredResourceGroups") or ())
        self.ratio = None
        if self.strategy == "RequestedToCapacityRatio":
            shape = ((strategy.get("requestedToCapacityRatio") or {}).get("shape")
                     or [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}])
            # Config scores run 0..10; node scores 0..100.
            self.ratio = broken_linear([(int(p["utilization"]), int(p["score"]) * 10)
                                        for p in shape])
        self._fast = self.resources == [("cpu", 1), ("memory", 1)]

    def filter(self, state, pi, ni):
        # Inline the common case: no pod-count, cpu or memory problem and nothing else asked.
        if (len(ni.pods) < ni.alloc_pods and pi.cpu <= ni.alloc_cpu - ni.req_cpu
                and pi.memory <= ni.alloc_memory - ni.req_memory and len(pi.requests) <= 2
                and all(k in ("cpu", "memory") for k in pi.requests)):
            return None
        reasons = insufficient(pi, ni, self.ignored, self.ignored_groups)
        return unschedulable(*reasons) if reasons else None

    def score(self, state, pi, ni):
        if self._fast and self.strategy == "LeastAllocated":
            c, m = ni.alloc_cpu, ni.alloc_memory
            if c and m:
                rc, rm = ni.nonzero_cpu + pi.nonzero_cpu, ni.nonzero_memory + pi.nonzero_memory
                sc = 0 if rc > c else (c - rc) * 100 // c
                sm = 0 if rm > m else (m - rm) * 100 // m
                return (sc + sm) // 2
        total = weights = 0
        fn = _most if self.strategy == "MostAllocated" else self.ratio or _least
        for name, w in self.resources:
            alloc, req = node_amounts(ni, name, True)
            if alloc == 0:
                continue  # resources the node lacks don't count (upstream skips them)
            want = pod_amount(pi, name, True)
            if not want and is_scalar(name):
                continue  # upstream: a scalar resource the pod doesn't request isn't scored
            req += want
            if self.ratio is not None:
                s = self.ratio(100 if req > alloc else req * 100 // alloc)
                if s <= 0:
                    continue  # upstream: zero-score resources stay out of the weight sum
            else:
                s = fn(req, alloc)
            total += s * w
            weights += w
        if weights == 0:
            return 0
        if self.ratio is not None:
            return int(math.floor(total / weights + 0.5))
        return total // weights


class NodeResourcesBalancedAllocation(Plugin):
    name = "NodeResourcesBalancedAllocation"
    node_state_only = True

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        self.resources = [r["name"] for r in self.args.get("resources") or _DEFAULT_RESOURCES]

    def score(self, state, pi, ni):
        fractions = []
        for name in self.resources:
            alloc, req = node_amounts(ni, name, False)
            if alloc == 0:
                continue
            want = pod_amount(pi, name, False)
            if not want and is_scalar(name):
                continue  # upstream: a scalar resource the pod doesn't request isn't scored
            req += want
            fractions.append(min(req / alloc, 1.0))
        if len(fractions) == 2:
            std = abs(fractions[0] - fractions[1]) / 2
        elif len(fractions) > 2:
            mean = sum(fractions) / len(fractions)
            std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
        else:
            std = 0.0
        return int((1 - std) * MAX_NODE_SCORE)
