"""InterPodAffinity: required pod affinity / anti-affinity of the incoming pod, the required
anti-affinity of pods already running (symmetry), and preferred terms for scoring."""

from __future__ import annotations

from ..framework import SKIPPED, UNRESOLVABLE, UNSCHEDULABLE, Plugin, Status

ERR_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI = "node(s) didn't match pod anti-affinity rules"
# Filter rejects most nodes for anti-affinity pods: one shared (never mutated) Status per reason.
_EXISTING_ANTI = Status(UNSCHEDULABLE, ERR_EXISTING_ANTI, plugin="InterPodAffinity")
_AFFINITY = Status(UNRESOLVABLE, ERR_AFFINITY, plugin="InterPodAffinity")
_ANTI = Status(UNSCHEDULABLE, ERR_ANTI, plugin="InterPodAffinity")


def _matcher(ns_labels: dict):
    """term.matches(pod), memoised for one cycle: pods and terms repeat (replicas), so each
    distinct (term, namespace+labels) pair is matched once."""
    memo: dict[tuple, bool] = {}

    def matches(t, p) -> bool:
        k = (t.sig, p.label_key)
        m = memo.get(k)
        if m is None:
            m = memo[k] = t.matches(p, ns_labels)
        return m
    return matches


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"
    events = ("Pod/Add", "Pod/Update", "Pod/Delete", "Node/Add", "Node/Update")

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        self.hard_weight = int(self.args.get("hardPodAffinityWeight", 1))

    def _ns_labels(self):
        return self.handle.namespace_labels() if self.handle else {}

    def pre_filter(self, state, pi, nodes):
        matches = _matcher(self._ns_labels())

        existing: dict[tuple[str, str], int] = {}
        cache = getattr(self.handle, "cache", None)
        if cache is not None:   # only the nodes that hold pods with required anti-affinity
            holders = [cache.nodes[n] for n in cache.anti_affinity_nodes if n in cache.nodes]
        else:
            holders = [ni for ni in nodes if ni.anti_affinity_pods]
        for ni in holders:
            if ni.node is None:
                continue
            for p in ni.anti_affinity_pods.values():
                for t in p.anti_affinity:
                    v = ni.labels.get(t.topology_key)
                    if v is not None and matches(t, pi):
                        existing[(t.topology_key, v)] = existing.get((t.topology_key, v), 0) + 1
        aff: dict[tuple[str, str], int] = {}
        anti: dict[tuple[str, str], int] = {}
        if pi.affinity or pi.anti_affinity:
            for ni in nodes:
                if not ni.pods:
                    continue
                labels = ni.labels
                for p in ni.pods.values():
                    if pi.affinity and all(matches(t, p) for t in pi.affinity):
                        for t in pi.affinity:
                            v = labels.get(t.topology_key)
                            if v is not None:
                                aff[(t.topology_key, v)] = aff.get((t.topology_key, v), 0) + 1
                    for t in pi.anti_affinity:
                        v = labels.get(t.topology_key)
                        if v is not None and matches(t, p):
                            anti[(t.topology_key, v)] = anti.get((t.topology_key, v), 0) + 1
        if not existing and not pi.affinity and not pi.anti_affinity:
            return SKIPPED
        self_match = bool(pi.affinity) and all(matches(t, pi) for t in pi.affinity)
        # Grouped by topology key, so Filter costs one lookup per key, not one per domain.
        blocked: dict[str, set[str]] = {}
        for k, v in existing:
            blocked.setdefault(k, set()).add(v)
        state[self.name] = (blocked, aff, anti, self_match)
        return None

    def filter(self, state, pi, ni):
        blocked, aff, anti, self_match = state[self.name]
        labels = ni.labels
        for k, values in blocked.items():
            if labels.get(k) in values:
                return _EXISTING_ANTI
        if pi.affinity:
            ok = True
            for t in pi.affinity:
                v = labels.get(t.topology_key)
                if v is None or aff.get((t.topology_key, v), 0) <= 0:
                    ok = False
                    break
            # The first pod of a group that selects itself may go anywhere with the keys.
            if not ok and not (not aff and self_match
                               and all(t.topology_key in labels for t in pi.affinity)):
                return _AFFINITY
        for t in pi.anti_affinity:
            v = labels.get(t.topology_key)
            if v is not None and anti.get((t.topology_key, v), 0) > 0:
                return _ANTI
        return None

    # ---- score ----

    def pre_score(self, state, pi, nodes):
        has_pref = bool(pi.pref_affinity or pi.pref_anti_affinity)
        all_nodes = self.handle.cache.node_list if self.handle else nodes
        if not has_pref and (self.handle.cache.affinity_pods == 0 if self.handle
                             else not any(ni.affinity_pods for ni in all_nodes)):
            return SKIPPED
        matches = _matcher(self._ns_labels())
        scores: dict[tuple[str, str], int] = {}

        def add(t, labels, w):
            v = labels.get(t.topology_key)
            if v is not None:
                scores[(t.topology_key, v)] = scores.get((t.topology_key, v), 0) + w

        hard = self.hard_weight
        for ni in all_nodes:
            pods = ni.pods if has_pref else ni.affinity_pods
            if not pods:
                continue
            for p in pods.values():
                for t in pi.pref_affinity:
                    if matches(t, p):
                        add(t, ni.labels, t.weight)
                for t in pi.pref_anti_affinity:
                    if matches(t, p):
                        add(t, ni.labels, -t.weight)
                if hard:
                    for t in p.affinity:
                        if matches(t, pi):
                            add(t, ni.labels, hard)
                for t in p.pref_affinity:
                    if matches(t, pi):
                        add(t, ni.labels, t.weight)
                for t in p.pref_anti_affinity:
                    if matches(t, pi):
                        add(t, ni.labels, -t.weight)
        if not scores:
            return SKIPPED
        state[self.name + "/score"] = scores
        return None

    def score(self, state, pi, ni):
        scores = state[self.name + "/score"]
        labels = ni.labels
        return sum(s for (k, v), s in scores.items() if labels.get(k) == v)

    def normalize_score(self, state, pi, scores):
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = 100 * (s - lo) // diff if diff > 0 else 0
