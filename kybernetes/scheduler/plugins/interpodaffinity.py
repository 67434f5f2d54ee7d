"""InterPodAffinity: required pod affinity / anti-affinity of the incoming pod, the required
anti-affinity of pods already running (symmetry), and preferred terms for scoring."""

from __future__ import annotations

from ..framework import SKIPPED, UNRESOLVABLE, UNSCHEDULABLE, Plugin, Status
from ..podgroups import PodGroups

ERR_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI = "node(s) didn't match pod anti-affinity rules"
# Filter rejects most nodes for anti-affinity pods: one shared (never mutated) Status per reason.
_EXISTING_ANTI = Status(UNSCHEDULABLE, ERR_EXISTING_ANTI, plugin="InterPodAffinity")
_AFFINITY = Status(UNRESOLVABLE, ERR_AFFINITY, plugin="InterPodAffinity")
_ANTI = Status(UNSCHEDULABLE, ERR_ANTI, plugin="InterPodAffinity")
_NONE: dict = {}


def _candidates(groups, terms):
    """The label groups a term could select: its namespaces' groups, or all of them once a
    term has a namespace selector."""
    if any(t.ns_selector is not None for t in terms):
        return list(groups.by_labels.values())
    out = []
    for ns in set().union(*(t.namespaces for t in terms)):
        out.extend(groups.by_namespace.get(ns, _NONE).values())
    return out


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


def _add_counts(into: dict, key: str, counts: dict | None, owned: set) -> None:
    """Adds a group's members per domain of `key`. The first group's dict is taken as it is,
    not copied (one entry per node for a hostname key, every cycle): it is the cache's, which
    stands still during the synchronous cycle, and _update copies before it changes a count.
    A second group for the same key is merged into a copy, which `owned` then remembers."""
    if not counts:
        return
    m = into.get(key)
    if m is None:
        into[key] = counts
        return
    if key not in owned:
        m = into[key] = dict(m)
        owned.add(key)
    for v, n in counts.items():
        m[v] = m.get(v, 0) + n


def _bump(counts: dict, key: str, value: str | None, delta: int) -> None:
    """One pod more or fewer in a domain. A domain at zero is dropped, and a key without
    domains too, as upstream deletes pairs at zero: Filter tests presence, and an empty
    affinity count lets a self-matching pod go first."""
    if value is None:
        return
    m = counts.setdefault(key, {})
    n = m.get(value, 0) + delta
    if n > 0:
        m[value] = n
    else:
        m.pop(value, None)
        if not m:
            del counts[key]


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"
    events = ("Pod/Add", "Pod/Update", "Pod/Delete", "Node/Add", "Node/Update")

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        self.hard_weight = int(self.args.get("hardPodAffinityWeight", 1))

    def _ns_labels(self):
        return self.handle.namespace_labels() if self.handle else {}

    def _groups(self, nodes):
        cache = getattr(self.handle, "cache", None)
        return cache.groups if cache is not None else PodGroups.of(nodes)

    def pre_filter(self, state, pi, nodes):
        """Upstream's three topology-pair counts, from the cache's pod groups: each distinct
        term and label set is matched once, and counts come per domain, not per pod."""
        groups = self._groups(nodes)
        known = groups.nodes
        matches = _matcher(self._ns_labels())
        # topology key → value → count (a value is present only with a count above zero):
        # existing pods whose required anti-affinity selects this pod (blocked), pods matching
        # all of its affinity terms (aff), pods its anti-affinity selects (anti).
        blocked: dict[str, dict[str, int]] = {}
        own_blocked: set[str] = set()
        for (_, key), g in groups.anti_terms.items():
            if matches(g.rep, pi):
                _add_counts(blocked, key, g.by_domain(known, key), own_blocked)
        aff: dict[str, dict[str, int]] = {}
        anti: dict[str, dict[str, int]] = {}
        own_aff: set[str] = set()
        own_anti: set[str] = set()
        if pi.affinity or pi.anti_affinity:
            for g in _candidates(groups, pi.affinity + pi.anti_affinity):
                p = g.rep
                if pi.affinity and all(matches(t, p) for t in pi.affinity):
                    for t in pi.affinity:
                        _add_counts(aff, t.topology_key, g.by_domain(known, t.topology_key),
                                    own_aff)
                for t in pi.anti_affinity:
                    if matches(t, p):
                        _add_counts(anti, t.topology_key, g.by_domain(known, t.topology_key),
                                    own_anti)
        if not blocked and not pi.affinity and not pi.anti_affinity:
            return SKIPPED
        self_match = bool(pi.affinity) and all(matches(t, pi) for t in pi.affinity)
        state[self.name] = (blocked, aff, anti, self_match)
        return None

    # ---- PreFilter extensions: preemption's "what if this pod were gone / back" ----

    def remove_pod(self, state, pi, other, ni) -> None:
        self._update(state, pi, other, ni, -1)

    def add_pod(self, state, pi, other, ni) -> None:
        self._update(state, pi, other, ni, 1)

    def _update(self, state, pi, other, ni, delta: int) -> None:
        """Upstream updateWithPod: `other`'s share of the three counts, on its node's domains.
        The counts are copied first: the state may be a clone sharing them."""
        blocked, aff, anti, self_match = state[self.name]
        blocked, aff, anti = ({k: dict(v) for k, v in m.items()} for m in (blocked, aff, anti))
        labels, matches = ni.labels, _matcher(self._ns_labels())
        for t in other.anti_affinity:
            if matches(t, pi):
                _bump(blocked, t.topology_key, labels.get(t.topology_key), delta)
        if pi.affinity and all(matches(t, other) for t in pi.affinity):
            for t in pi.affinity:
                _bump(aff, t.topology_key, labels.get(t.topology_key), delta)
        for t in pi.anti_affinity:
            if matches(t, other):
                _bump(anti, t.topology_key, labels.get(t.topology_key), delta)
        state[self.name] = (blocked, aff, anti, self_match)

    def filter(self, state, pi, ni):
        """Upstream order: the pod's affinity, its anti-affinity, then existing pods' terms."""
        blocked, aff, anti, self_match = state[self.name]
        labels = ni.labels
        if pi.affinity:
            ok = True
            for t in pi.affinity:
                v = labels.get(t.topology_key)
                if v is None or aff.get(t.topology_key, _NONE).get(v, 0) <= 0:
                    ok = False
                    break
            # The first pod of a group that selects itself may go anywhere with the keys.
            if not ok and not (not aff and self_match
                               and all(t.topology_key in labels for t in pi.affinity)):
                return _AFFINITY
        for t in pi.anti_affinity:
            v = labels.get(t.topology_key)
            if v is not None and v in anti.get(t.topology_key, _NONE):
                return _ANTI
        for k, values in blocked.items():
            if labels.get(k) in values:
                return _EXISTING_ANTI
        return None

    def filter_labels(self, state, pi):
        """Filter as label checks (see cycle.label_verdict), in Filter's order."""
        blocked, aff, anti, self_match = state[self.name]
        checks = []
        if pi.affinity:
            if aff:
                checks += [(t.topology_key, aff.get(t.topology_key, _NONE), _AFFINITY, _AFFINITY,
                            False) for t in pi.affinity]
            else:   # no matching pod anywhere: only a self-matching pod, where the keys exist
                checks += [(t.topology_key, _NONE, _AFFINITY, _AFFINITY, self_match)
                           for t in pi.affinity]
        checks += [(t.topology_key, anti.get(t.topology_key, _NONE), _ANTI, None, True)
                   for t in pi.anti_affinity]
        checks += [(k, values, _EXISTING_ANTI, None, True) for k, values in blocked.items()]
        return checks

    # ---- score ----

    def pre_score(self, state, pi, nodes):
        has_pref = bool(pi.pref_affinity or pi.pref_anti_affinity)
        cache = getattr(self.handle, "cache", None)
        all_nodes = cache.node_list if cache is not None else nodes
        # Existing pods score through their required affinity (hard weight) and preferred terms.
        if cache is not None:
            existing = cache.scoring_affinity_pods > 0
        else:
            existing = any(p.affinity or p.pref_affinity or p.pref_anti_affinity
                           for ni in nodes for p in ni.affinity_pods.values())
        if not has_pref and not existing:
            return SKIPPED
        matches = _matcher(self._ns_labels())
        scores: dict[tuple[str, str], int] = {}

        def add(t, labels, w):
            v = labels.get(t.topology_key)
            if v is not None:
                scores[(t.topology_key, v)] = scores.get((t.topology_key, v), 0) + w

        if has_pref:    # the pod's preferred terms: per group of alike pods, per domain
            groups = self._groups(nodes)
            for g in _candidates(groups, pi.pref_affinity + pi.pref_anti_affinity):
                p = g.rep
                for t, sign in [(t, 1) for t in pi.pref_affinity] + \
                               [(t, -1) for t in pi.pref_anti_affinity]:
                    if matches(t, p):
                        key, w = t.topology_key, sign * t.weight
                        for v, n in g.by_domain(groups.nodes, key).items():
                            scores[(key, v)] = scores.get((key, v), 0) + w * n
        hard = self.hard_weight
        if existing:
            for ni in all_nodes:
                if not ni.affinity_pods:
                    continue
                for p in ni.affinity_pods.values():
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
        # Upstream scales in float64 and truncates: 100 * (29/100) gives 28, not 29.
        for i, s in enumerate(scores):
            scores[i] = int(100 * ((s - lo) / diff)) if diff > 0 else 0
