"""The scheduler's view of the cluster: one NodeInfo per node with running aggregates.

Updated incrementally from informer events; assumed pods (scheduled but not yet confirmed by
the informer) count against their node until the bound pod arrives or the binding fails.
The scheduling cycle runs without awaiting, so the cache itself is a consistent snapshot.
"""

from __future__ import annotations

import itertools
import logging
import weakref

from .podgroups import PodGroups
from .podinfo import PodInfo, resource_list

log = logging.getLogger(__name__)


class NodeInfo:
    __slots__ = ("node", "name", "labels", "allocatable", "alloc_cpu", "alloc_memory",
                 "alloc_pods", "taints", "unschedulable", "images", "requested", "req_cpu",
                 "req_memory", "nonzero_cpu", "nonzero_memory", "pods", "ports",
                 "affinity_pods", "anti_affinity_pods", "generation", "sig_id", "_static", "counts",
                 "_sids", "_at")

    def __init__(self, node: dict | None = None, name: str = ""):
        self.name = name
        self.pods: dict[str, PodInfo] = {}
        self.requested: dict[str, int] = {}
        self.req_cpu = self.req_memory = self.nonzero_cpu = self.nonzero_memory = 0
        self.ports: dict[tuple, int] = {}
        self.affinity_pods: dict[str, PodInfo] = {}       # pods with any (anti-)affinity
        self.anti_affinity_pods: dict[str, PodInfo] = {}  # pods with required anti-affinity
        self.generation = 0
        self.node: dict | None = None
        self.labels: dict = {}
        self.allocatable: dict[str, int] = {}
        self.alloc_cpu = self.alloc_memory = self.alloc_pods = 0
        self.taints: list[dict] = []
        self.unschedulable = False
        self.images: dict[str, int] = {}
        self.counts: dict | None = None  # plugins' per-node memo, dropped when pods change
        self.sig_id: int | None = None   # equal ids = equal state for node_state_only plugins
        self._static: tuple = ()
        self._sids: list[int] | None = None   # the cache's sig ids, where this node is at _at
        self._at = -1
        if node is not None:
            self.set_node(node)

    def set_node(self, node: dict) -> None:
        self.node = node
        meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
        self.name = meta["name"]
        self.labels = meta.get("labels") or {}
        self.allocatable = resource_list(status.get("allocatable") or status.get("capacity"))
        self.alloc_cpu = self.allocatable.get("cpu", 0)
        self.alloc_memory = self.allocatable.get("memory", 0)
        self.alloc_pods = self.allocatable.get("pods", 0)
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        images = {}
        for img in status.get("images") or ():
            for n in img.get("names") or ():
                images[n] = img.get("sizeBytes", 0)
        self.images = images
        # What node_state_only plugins read besides the running totals, hashed only on change.
        self._static = (self.unschedulable,
                        tuple((t.get("key"), t.get("value"), t.get("effect")) for t in self.taints),
                        tuple(sorted(self.allocatable.items())), tuple(sorted(images.items())))
        self.generation += 1
        self.sig_id = None
        self.counts = None
        self.sig()

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        req = self.requested
        for k, v in pi.requests.items():
            req[k] = req.get(k, 0) + v
        self.req_cpu += pi.cpu
        self.req_memory += pi.memory
        self.nonzero_cpu += pi.nonzero_cpu
        self.nonzero_memory += pi.nonzero_memory
        for p in pi.ports:
            self.ports[p] = self.ports.get(p, 0) + 1
        if pi.affinity or pi.anti_affinity or pi.pref_affinity or pi.pref_anti_affinity:
            self.affinity_pods[pi.key] = pi
        if pi.anti_affinity:
            self.anti_affinity_pods[pi.key] = pi
        self.generation += 1
        self.sig_id = None
        self.counts = None
        self.sig()

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is None:
            return None
        req = self.requested
        for k, v in pi.requests.items():
            req[k] = req.get(k, 0) - v
        self.req_cpu -= pi.cpu
        self.req_memory -= pi.memory
        self.nonzero_cpu -= pi.nonzero_cpu
        self.nonzero_memory -= pi.nonzero_memory
        for p in pi.ports:
            n = self.ports.get(p, 0) - 1
            if n > 0:
                self.ports[p] = n
            else:
                self.ports.pop(p, None)
        self.affinity_pods.pop(key, None)
        self.anti_affinity_pods.pop(key, None)
        self.generation += 1
        self.sig_id = None
        self.counts = None
        self.sig()
        return pi

    def sig(self) -> int:
        """Intern this node's state as seen by node_state_only plugins (resources, taints,
        cordon, images) so a scheduling cycle evaluates those plugins once per distinct state."""
        if self.sig_id is None:
            other = tuple(sorted((k, v) for k, v in self.requested.items()
                                 if k != "cpu" and k != "memory" and v))
            key = (self._static, len(self.pods), self.req_cpu, self.req_memory,
                   self.nonzero_cpu, self.nonzero_memory, other)
            sid = _SIGNATURES.get(key)
            if sid is None:
                if len(_SIGNATURES) >= _MAX_SIGNATURES:
                    _reset_signatures()     # re-interns every node, maybe this state too
                    sid = _SIGNATURES.get(key)
                if sid is None:
                    sid = _SIGNATURES[key] = next(_SIG_IDS)
            self.sig_id = sid
            if self._sids is not None:
                self._sids[self._at] = sid
        return self.sig_id

    def clone(self) -> "NodeInfo":
        """A copy whose pod set can change without touching the cache (preemption dry runs)."""
        c = NodeInfo.__new__(NodeInfo)
        for s in NodeInfo.__slots__:
            setattr(c, s, getattr(self, s))
        c.pods = dict(self.pods)
        c.requested = dict(self.requested)
        c.ports = dict(self.ports)
        c.affinity_pods = dict(self.affinity_pods)
        c.anti_affinity_pods = dict(self.anti_affinity_pods)
        c._sids = None
        return c


_SIGNATURES: dict[tuple, int] = {}
_SIG_IDS = itertools.count()
_MAX_SIGNATURES = 200_000
_LIVE: "weakref.WeakSet[Cache]" = weakref.WeakSet()


def _reset_signatures() -> None:
    """Bound the intern table: forget it and make every cached node re-intern (ids stay unique
    because the counter never restarts)."""
    _SIGNATURES.clear()
    for cache in list(_LIVE):
        for ni in cache.nodes.values():
            ni.sig_id = None
        for ni in cache.nodes.values():
            ni.sig()


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.node_list: list[NodeInfo] = []      # nodes that exist (order is stable)
        self.sids: list[int] = []                # node_list's sig ids, kept current by NodeInfo
        self._columns: dict[str, list] = {}      # label key → node_list's values (None: absent)
        self.pod_nodes: dict[str, str] = {}      # pod key → node it counts against
        self.assumed: set[str] = set()
        self.image_nodes: dict[str, int] = {}    # image name → number of nodes having it
        self.affinity_pods = 0                   # pods with any (anti-)affinity term
        self.scoring_affinity_pods = 0           # ... with a term InterPodAffinity scores by
        self.anti_affinity_nodes: dict[str, int] = {}   # node → pods with required anti-affinity
        self.groups = PodGroups(self.nodes)      # pods by labels and anti-affinity term
        _LIVE.add(self)

    def column(self, key: str) -> list:
        """Every listed node's value of label `key` (None where absent), in node_list order.
        Read only; rebuilt after nodes come, go or change labels."""
        col = self._columns.get(key)
        if col is None:
            col = self._columns[key] = [ni.labels.get(key) for ni in self.node_list]
        return col

    def _rebuild_list(self) -> None:
        self._columns.clear()
        for ni in self.node_list:
            ni._sids = None
        self.node_list = [ni for ni in self.nodes.values() if ni.node is not None]
        self.sids = [ni.sig() for ni in self.node_list]
        for i, ni in enumerate(self.node_list):
            ni._sids, ni._at = self.sids, i

    def _count_images(self, ni: NodeInfo, sign: int) -> None:
        for n in ni.images:
            c = self.image_nodes.get(n, 0) + sign
            if c > 0:
                self.image_nodes[n] = c
            else:
                self.image_nodes.pop(n, None)

    # ---- nodes ----

    def add_node(self, node: dict) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(node)
        else:
            existed = ni.node is not None
            labels = ni.labels
            if existed:
                self._count_images(ni, -1)
            ni.set_node(node)
            if existed:
                self._count_images(ni, 1)
                if ni.labels != labels:
                    self.groups.node_changed(ni)
                    self._columns.clear()
                return ni
        self.groups.node_changed(ni)
        self._columns.clear()
        self._count_images(ni, 1)
        self.node_list.append(ni)     # appending keeps adds O(1); removals rebuild
        ni._sids, ni._at = self.sids, len(self.sids)
        self.sids.append(ni.sig())
        return ni

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self.nodes.get(name)
        if ni is None:
            return
        self._count_images(ni, -1)
        if ni.pods:
            ni.node = None          # pods still reference it until they are deleted
        else:
            del self.nodes[name]
        self.groups.node_changed(ni)
        self._rebuild_list()

    # ---- pods ----

    def _node_for(self, name: str) -> NodeInfo:
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name=name)
        return ni

    def _account(self, pi: PodInfo, ni: NodeInfo, sign: int) -> None:
        self.groups.add_pod(pi, ni, sign)
        node_name = ni.name
        if pi.affinity or pi.anti_affinity or pi.pref_affinity or pi.pref_anti_affinity:
            self.affinity_pods += sign
            if pi.affinity or pi.pref_affinity or pi.pref_anti_affinity:
                self.scoring_affinity_pods += sign
        if pi.anti_affinity:
            n = self.anti_affinity_nodes.get(node_name, 0) + sign
            if n > 0:
                self.anti_affinity_nodes[node_name] = n
            else:
                self.anti_affinity_nodes.pop(node_name, None)

    def assume(self, pi: PodInfo, node_name: str) -> None:
        ni = self._node_for(node_name)
        ni.add_pod(pi)
        self._account(pi, ni, 1)
        self.pod_nodes[pi.key] = node_name
        self.assumed.add(pi.key)

    def forget(self, key: str) -> None:
        if key in self.assumed:
            self.assumed.discard(key)
            self._remove(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def add_pod(self, pi: PodInfo) -> None:
        """An assigned pod seen by the informer (new, changed, or confirming an assumed one)."""
        if pi.key in self.assumed and self._confirm(pi):
            return
        self.assumed.discard(pi.key)
        self._remove(pi.key)
        ni = self._node_for(pi.node_name)
        ni.add_pod(pi)
        self._account(pi, ni, 1)
        self.pod_nodes[pi.key] = pi.node_name

    def _confirm(self, pi: PodInfo) -> bool:
        """The bound pod confirms its assumed copy (PodInfo.with_pod of it, on the same node):
        swap the object in place; nothing any aggregate counts has changed."""
        name = self.pod_nodes.get(pi.key)
        if name != pi.node_name:
            return False
        ni = self.nodes[name]
        old = ni.pods.get(pi.key)
        if (old is None or old.requests is not pi.requests or old.ports is not pi.ports
                or old.label_key is not pi.label_key or old.terminating != pi.terminating
                or old.affinity is not pi.affinity or old.anti_affinity is not pi.anti_affinity
                or old.pref_affinity is not pi.pref_affinity
                or old.pref_anti_affinity is not pi.pref_anti_affinity
                or old.priority != pi.priority):
            return False
        key = pi.key
        ni.pods[key] = pi
        if key in ni.affinity_pods:
            ni.affinity_pods[key] = pi
        if key in ni.anti_affinity_pods:
            ni.anti_affinity_pods[key] = pi
        self.assumed.discard(key)
        return True

    def remove_pod(self, key: str) -> PodInfo | None:
        self.assumed.discard(key)
        return self._remove(key)

    def _remove(self, key: str) -> PodInfo | None:
        name = self.pod_nodes.pop(key, None)
        if name is None:
            return None
        ni = self.nodes.get(name)
        if ni is None:
            return None
        pi = ni.remove_pod(key)
        if pi is not None:
            self._account(pi, ni, -1)
        if ni.node is None and not ni.pods:
            del self.nodes[name]
        return pi

    def pod(self, key: str) -> PodInfo | None:
        name = self.pod_nodes.get(key)
        return self.nodes[name].pods.get(key) if name else None
