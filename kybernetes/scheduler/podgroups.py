"""Pods counted per node and per topology domain, kept current as pods come and go, so that
InterPodAffinity's and PodTopologySpread's PreFilter cost follows the distinct groups of pods
(and the domains they occupy), not the number of pods in the cluster.

Two kinds of group:
- pods with the same namespace, labels and terminating flag: all a label selector (and spread's
  "not terminating") can tell apart, so a term or constraint is matched once per group;
- existing pods' required anti-affinity terms that select the same pods over the same topology
  key (upstream keeps PodsWithRequiredAntiAffinity per node for the same purpose).

A group's counts per domain of a topology key are built on first use and then follow every pod
added or removed; a change to a node's labels or existence drops them (they are rebuilt from
the per-node counts, which never go stale). Only nodes that exist count in a domain.
"""

from __future__ import annotations

from typing import Any, Iterable


def _bump(d: dict, k, sign: int) -> None:
    n = d.get(k, 0) + sign
    if n:
        d[k] = n
    else:
        del d[k]


class Group:
    """Some pods: how many on each node, and (on demand) in each topology domain."""

    __slots__ = ("rep", "nodes", "domains")

    def __init__(self, rep: Any):
        self.rep = rep                              # a member (PodInfo) or the shared term
        self.nodes: dict[str, int] = {}             # node name → members on it
        # (topology key, keys a node must also have) → domain value → members there
        self.domains: dict[tuple[str, tuple], dict[str, int]] = {}

    def add(self, ni, sign: int) -> None:
        _bump(self.nodes, ni.name, sign)
        if self.domains and ni.node is not None:
            labels = ni.labels
            for (key, required), d in self.domains.items():
                v = labels.get(key)
                if v is not None and all(k in labels for k in required):
                    _bump(d, v, sign)

    def by_domain(self, nodes: dict, key: str, required: tuple = ()) -> dict[str, int]:
        """Members per value of `key` over existing nodes that have `key` and every `required`
        key. Shared with the group: read it, never change it."""
        d = self.domains.get((key, required))
        if d is None:
            d = {}
            for name, n in self.nodes.items():
                ni = nodes.get(name)
                if ni is None or ni.node is None:
                    continue
                labels = ni.labels
                v = labels.get(key)
                if v is not None and all(k in labels for k in required):
                    d[v] = d.get(v, 0) + n
            self.domains[(key, required)] = d
        return d


class PodGroups:
    def __init__(self, nodes: dict):
        self.nodes = nodes                                    # name → NodeInfo (the cache's)
        self.by_labels: dict[tuple, Group] = {}               # (ns, labels, terminating) → pods
        self.by_namespace: dict[str, dict[tuple, Group]] = {}
        self.anti_terms: dict[tuple, Group] = {}              # (term sig, topology key) → terms
        self._domains: dict[tuple[str, tuple], dict[str, int]] = {}   # → nodes per value

    @classmethod
    def of(cls, nodes: Iterable) -> "PodGroups":
        """Groups of the pods on a list of NodeInfos (plugins used without a cache)."""
        g = cls({ni.name: ni for ni in nodes})
        for ni in g.nodes.values():
            for pi in ni.pods.values():
                g.add_pod(pi, ni, 1)
        return g

    def add_pod(self, pi, ni, sign: int) -> None:
        """Count (sign 1) or uncount (-1) pod `pi` on node `ni`; uncount the same PodInfo."""
        key = (pi.label_key, pi.terminating)
        g = self.by_labels.get(key)
        if g is None:
            g = self.by_labels[key] = Group(pi)
            self.by_namespace.setdefault(pi.namespace, {})[key] = g
        g.add(ni, sign)
        if not g.nodes:
            del self.by_labels[key]
            ns = self.by_namespace[pi.namespace]
            del ns[key]
            if not ns:
                del self.by_namespace[pi.namespace]
        for t in pi.anti_affinity:
            tkey = (t.sig, t.topology_key)
            g = self.anti_terms.get(tkey)
            if g is None:
                g = self.anti_terms[tkey] = Group(t)
            g.add(ni, sign)
            if not g.nodes:
                del self.anti_terms[tkey]

    def node_changed(self, ni) -> None:
        """Node `ni` appeared, went away or changed labels: the domain counts it is part of
        must be rebuilt (only groups with pods on it count it anywhere)."""
        self._domains.clear()
        for pi in ni.pods.values():
            g = self.by_labels.get((pi.label_key, pi.terminating))
            if g is not None:
                g.domains.clear()
            for t in pi.anti_affinity:
                g = self.anti_terms.get((t.sig, t.topology_key))
                if g is not None:
                    g.domains.clear()

    def domains(self, key: str, required: tuple = ()) -> dict[str, int]:
        """Existing nodes per value of `key` (having every `required` key too). Read only."""
        d = self._domains.get((key, required))
        if d is None:
            d = {}
            for ni in self.nodes.values():
                if ni.node is None:
                    continue
                labels = ni.labels
                v = labels.get(key)
                if v is not None and all(k in labels for k in required):
                    d[v] = d.get(v, 0) + 1
            self._domains[(key, required)] = d
        return d
