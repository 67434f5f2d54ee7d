"""What the scheduler needs to know about a pod, parsed once from its dict.

Requests follow upstream's resource helper: max(sum of containers + sidecars, each init
container on top of the sidecars started before it) + pod overhead. Quantities become ints
(cpu in millicores, everything else in base units).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from kybernetes.api.quantity import parse_quantity

from .affinityterms import parse_terms, parse_weighted

DEFAULT_MILLI_CPU = 100                  # upstream DefaultMilliCPURequest (for scoring only)
DEFAULT_MEMORY = 200 * 1024 * 1024       # upstream DefaultMemoryRequest
_NONZERO_DEFAULTS = {"cpu": DEFAULT_MILLI_CPU, "memory": DEFAULT_MEMORY}


@functools.lru_cache(maxsize=4096)
def quantity(name: str, value: str) -> int:
    q = parse_quantity(value)
    return q.milli_value() if name == "cpu" else q.value()


def resource_list(rl: dict | None) -> dict[str, int]:
    if not rl:
        return {}
    return {k: quantity(k, str(v)) for k, v in rl.items()}


def _add(into: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def _parse_container(res: dict) -> dict[str, int]:
    # A limit without a request defaults the request (API defaulting does this too).
    reqs = resource_list(res.get("limits"))
    reqs.update(resource_list(res.get("requests")))
    return reqs


# Replicas share their containers' resources: parse each distinct resources block once.
_CONTAINER_MEMO: dict[tuple, dict[str, int]] = {}
_MEMO_MAX = 4096


def _requests_of(c: dict) -> dict[str, int]:
    """A container's requests; the result is shared, never mutate it."""
    res = c.get("resources")
    if not res:
        return {}
    lim, req = res.get("limits"), res.get("requests")
    try:
        key = (tuple(lim.items()) if lim else (), tuple(req.items()) if req else ())
        hit = _CONTAINER_MEMO.get(key)
    except TypeError:       # unhashable values: parse every time
        return _parse_container(res)
    if hit is None:
        if len(_CONTAINER_MEMO) >= _MEMO_MAX:
            _CONTAINER_MEMO.clear()
        hit = _CONTAINER_MEMO[key] = _parse_container(res)
    return hit


def container_requests(c: dict) -> dict[str, int]:
    return dict(_requests_of(c))


def pod_requests(spec: dict, defaults: dict[str, int] | None = None) -> dict[str, int]:
    """`defaults` fill a container's missing requests (upstream NonMissingContainerRequests)."""
    def one(c: dict) -> dict[str, int]:
        r = container_requests(c)
        if defaults:
            for k, v in defaults.items():
                r.setdefault(k, v)
        return r

    reqs: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(reqs, one(c))
    sidecars: dict[str, int] = {}
    init: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        r = one(c)
        if c.get("restartPolicy") == "Always":
            _add(reqs, r)          # a sidecar keeps running beside the app containers
            _add(sidecars, r)
            r = dict(sidecars)
        else:
            r = dict(r)
            _add(r, sidecars)
        _max(init, r)
    _max(reqs, init)
    _add(reqs, resource_list(spec.get("overhead")))
    return reqs


def pod_priority(pod: dict, classes: dict[str, int] | None = None,
                 default: int = 0) -> int:
    p = pod["spec"].get("priority")
    if p is not None:
        return p
    name = pod["spec"].get("priorityClassName")
    if name and classes and name in classes:
        return classes[name]
    return default


class PodInfo:
    """A pod plus the parsed fields plugins read on the hot path."""

    __slots__ = ("pod", "key", "namespace", "name", "uid", "labels", "requests", "cpu", "memory",
                 "nonzero_cpu", "nonzero_memory", "priority", "ports", "affinity",
                 "anti_affinity", "pref_affinity", "pref_anti_affinity", "node_name",
                 "terminating", "start_time", "label_key")

    def __init__(self, pod: dict, priority: int = 0):
        meta, spec = pod["metadata"], pod["spec"]
        self.pod = pod
        self.namespace = meta.get("namespace") or "default"
        self.name = meta["name"]
        self.key = f"{self.namespace}/{self.name}"
        self.uid = meta.get("uid", "")
        self.labels = meta.get("labels") or {}
        self.label_key = (self.namespace, tuple(sorted(self.labels.items())))
        if spec.get("initContainers") or spec.get("overhead"):
            self.requests = pod_requests(spec)
            nonzero = pod_requests(spec, _NONZERO_DEFAULTS)
            self.nonzero_cpu = nonzero.get("cpu", 0)
            self.nonzero_memory = nonzero.get("memory", 0)
        else:   # the common shape: the sum over the app containers, in one pass
            reqs: dict[str, int] = {}
            nz_cpu = nz_memory = 0
            for c in spec.get("containers") or ():
                r = _requests_of(c)
                for k, v in r.items():
                    reqs[k] = reqs.get(k, 0) + v
                nz_cpu += r.get("cpu", DEFAULT_MILLI_CPU)
                nz_memory += r.get("memory", DEFAULT_MEMORY)
            self.requests = reqs
            self.nonzero_cpu, self.nonzero_memory = nz_cpu, nz_memory
        self.cpu = self.requests.get("cpu", 0)
        self.memory = self.requests.get("memory", 0)
        self.priority = priority
        self.node_name = spec.get("nodeName") or ""
        self.terminating = bool(meta.get("deletionTimestamp"))
        self.start_time = (pod.get("status") or {}).get("startTime") or meta.get("creationTimestamp") or ""
        ports = []
        # Upstream GetHostPorts: sidecars (restartable init containers) hold host ports too.
        sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
        for c in (*(spec.get("containers") or ()), *sidecars):
            for p in c.get("ports") or ():
                if p.get("hostPort"):
                    ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                                  p["hostPort"]))
        self.ports = ports
        aff = spec.get("affinity")
        pa = aff.get("podAffinity") if aff else None
        paa = aff.get("podAntiAffinity") if aff else None
        if not pa and not paa:      # most pods: share one (never mutated) empty list
            self.affinity = self.anti_affinity = _NO_TERMS
            self.pref_affinity = self.pref_anti_affinity = _NO_TERMS
            return
        pa, paa = pa or {}, paa or {}
        self.affinity = parse_terms(pa.get("requiredDuringSchedulingIgnoredDuringExecution"), self)
        self.anti_affinity = parse_terms(paa.get("requiredDuringSchedulingIgnoredDuringExecution"), self)
        self.pref_affinity = parse_weighted(pa.get("preferredDuringSchedulingIgnoredDuringExecution"), self)
        self.pref_anti_affinity = parse_weighted(paa.get("preferredDuringSchedulingIgnoredDuringExecution"), self)

    def with_pod(self, pod: dict) -> "PodInfo":
        """A copy for a newer version of the same pod whose spec differs only in nodeName."""
        c = PodInfo.__new__(PodInfo)
        for s, v in zip(_SLOTS, _ALL(self)):
            setattr(c, s, v)
        c.pod = pod
        c.node_name = pod["spec"].get("nodeName") or ""
        c.start_time = ((pod.get("status") or {}).get("startTime")
                        or pod["metadata"].get("creationTimestamp") or "")
        return c

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod["spec"]


_SLOTS = PodInfo.__slots__
_ALL = operator.attrgetter(*_SLOTS)
_NO_TERMS: list = []
