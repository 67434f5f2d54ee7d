"""PodTopologySpread: keep matching pods spread across topology domains.

DoNotSchedule constraints filter (skew = count in the node's domain + self - global minimum must
not exceed maxSkew; fewer eligible domains than minDomains makes the minimum 0); ScheduleAnyway
constraints, and the cluster's default constraints for pods that have none, score.
"""

from __future__ import annotations

import math

from kybernetes.api.selectors import IN, LabelSelector, Requirement

from ..affinityterms import _selector
from ..framework import (MAX_NODE_SCORE, SKIPPED, UNRESOLVABLE, UNSCHEDULABLE, Plugin, Status)
from ..podgroups import PodGroups
from .nodeaffinity import has_required, required_matches
from .tainttoleration import first_untolerated

ERR_MISMATCH = "node(s) didn't match pod topology spread constraints"
ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
# Filter rejects most nodes for spread pods: one shared (never mutated) Status per reason.
_MISMATCH = Status(UNSCHEDULABLE, ERR_MISMATCH, plugin="PodTopologySpread")
_MISSING = Status(UNRESOLVABLE, ERR_MISSING_LABEL, plugin="PodTopologySpread")
SYSTEM_DEFAULTS = [
    {"maxSkew": 3, "topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway"},
    {"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
]


class Constraint:
    __slots__ = ("max_skew", "key", "hard", "min_domains", "selector", "sig",
                 "honor_affinity", "honor_taints")

    def __init__(self, c: dict, pi, selector: LabelSelector | None = None):
        self.max_skew = int(c.get("maxSkew") or 1)
        self.key = c.get("topologyKey", "")
        self.hard = c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"
        self.min_domains = int(c.get("minDomains") or 1)
        sel = selector if selector is not None else _selector(c.get("labelSelector"))
        keys = c.get("matchLabelKeys") or ()
        if keys and not sel.nothing:
            # matchLabelKeys: AND the pod's own values for those keys into the selector.
            extra = [Requirement(k, IN, (pi.labels[k],)) for k in keys if k in pi.labels]
            sel = LabelSelector(list(sel.requirements) + extra)
        self.selector = sel
        self.sig = (pi.namespace, str(sel), sel.nothing)
        self.honor_affinity = c.get("nodeAffinityPolicy", "Honor") == "Honor"
        self.honor_taints = c.get("nodeTaintsPolicy", "Ignore") == "Honor"


def _eligible(c: Constraint, pi, ni) -> bool:
    if c.honor_affinity and not required_matches(pi.spec, ni.labels, ni.name):
        return False
    if c.honor_taints and ni.taints and first_untolerated(
            ni.taints, pi.spec.get("tolerations") or ()) is not None:
        return False
    return True


class PodTopologySpread(Plugin):
    name = "PodTopologySpread"
    events = ("Pod/Add", "Pod/Update", "Pod/Delete", "Node/Add", "Node/Update")

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        defaulting = self.args.get("defaultingType", "System")
        # Upstream: only the system defaults let nodes lacking a topology key still score.
        self.system_defaulted = defaulting != "List"
        defaults = (self.args.get("defaultConstraints") or []) if defaulting == "List" \
            else SYSTEM_DEFAULTS
        self.defaults = defaults
        self.hard_defaults = [c for c in defaults
                              if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"]
        self.soft_defaults = [c for c in defaults
                              if c.get("whenUnsatisfiable", "DoNotSchedule") == "ScheduleAnyway"]

    @staticmethod
    def _count(c: Constraint, ni) -> int:
        """Matching, non-terminating pods on one node, memoised on the node until its pods change."""
        memo = ni.counts
        if memo is None:
            memo = ni.counts = {}
        n = memo.get(c.sig)
        if n is None:
            if ni.pods:
                ns, sel = c.sig[0], c.selector
                n = sum(1 for p in ni.pods.values()
                        if p.namespace == ns and not p.terminating and sel.matches(p.labels))
            else:
                n = 0
            memo[c.sig] = n
        return n

    def constraints(self, pi, hard: bool) -> list[Constraint]:
        own = pi.spec.get("topologySpreadConstraints")
        if own:
            return [Constraint(c, pi) for c in own
                    if (c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule") == hard]
        # Upstream buildDefaultConstraints: DoNotSchedule defaults filter too.
        defaults = self.hard_defaults if hard else self.soft_defaults
        if not defaults or self.handle is None:
            return []
        sel = self.handle.default_selector(pi)
        if sel is None or sel.empty():
            return []
        return [Constraint(c, pi, sel) for c in defaults]

    # ---- filter ----

    def pre_filter(self, state, pi, nodes):
        cs = self.constraints(pi, hard=True)
        if not cs:
            return SKIPPED
        keys = [c.key for c in cs]
        counts: list[dict[str, int]] = [{} for _ in cs]
        # Eligibility (nodeAffinityPolicy / nodeTaintsPolicy) only costs when it can exclude.
        check = [(c.honor_affinity and has_required(pi.spec)) or c.honor_taints for c in cs]
        count = self._count
        if not any(check):
            # Every node with the keys is eligible: counts per domain from the cache's pod
            # groups (matching, non-terminating pods of the namespace), zero for empty domains.
            groups = self._groups(nodes)
            required = tuple(sorted(set(keys))) if len(set(keys)) > 1 else ()
            alike = [g for (_, terminating), g in
                     groups.by_namespace.get(pi.namespace, {}).items() if not terminating]
            for c, cnt in zip(cs, counts):
                cnt.update(dict.fromkeys(groups.domains(c.key, required), 0))
                for g in alike:
                    if c.selector.matches(g.rep.labels):
                        for v, n in g.by_domain(groups.nodes, c.key, required).items():
                            cnt[v] += n
        else:
            for ni in nodes:
                labels = ni.labels
                if not all(k in labels for k in keys):
                    continue
                for c, cnt, chk in zip(cs, counts, check):
                    if chk and not _eligible(c, pi, ni):
                        continue
                    v = labels[c.key]
                    cnt[v] = cnt.get(v, 0) + count(c, ni)
        mins = []
        for c, cnt in zip(cs, counts):
            m = min(cnt.values()) if cnt else 0
            mins.append(0 if len(cnt) < c.min_domains else m)
        selfs = [1 if c.selector.matches(pi.labels) else 0 for c in cs]
        state[self.name] = (cs, counts, mins, selfs)
        return None

    def _groups(self, nodes):
        cache = getattr(self.handle, "cache", None)
        return cache.groups if cache is not None else PodGroups.of(nodes)

    # ---- PreFilter extensions: preemption's "what if this pod were gone / back" ----

    def remove_pod(self, state, pi, other, ni) -> None:
        self._update(state, pi, other, ni, -1)

    def add_pod(self, state, pi, other, ni) -> None:
        self._update(state, pi, other, ni, 1)

    def _update(self, state, pi, other, ni, delta: int) -> None:
        """Upstream updateWithPod: a matching pod of the namespace counts in its node's domain
        when the node has every key and passes the inclusion policies; the minimum follows.
        Terminating pods were never counted. Counts are copied first (the state may be a
        clone sharing them)."""
        cs, counts, mins, selfs = state[self.name]
        labels = ni.labels
        if other.namespace != pi.namespace or other.terminating or \
                not all(c.key in labels for c in cs):
            return
        counts, mins = [dict(cnt) for cnt in counts], list(mins)
        for i, c in enumerate(cs):
            if not c.selector.matches(other.labels) or not _eligible(c, pi, ni):
                continue
            cnt = counts[i]
            v = labels[c.key]
            cnt[v] = cnt.get(v, 0) + delta
            mins[i] = 0 if len(cnt) < c.min_domains else min(cnt.values())
        state[self.name] = (cs, counts, mins, selfs)

    def filter_labels(self, state, pi):
        """Filter as label checks (see cycle.label_verdict): per constraint, the key must exist
        and the domain's skew stay within maxSkew."""
        cs, counts, mins, selfs = state[self.name]
        checks = []
        for c, cnt, m, self_match in zip(cs, counts, mins, selfs):
            if self_match - m > c.max_skew:     # even a domain without pods is too skewed
                ok = {v for v, n in cnt.items() if n + self_match - m <= c.max_skew}
                checks.append((c.key, ok, _MISMATCH, _MISSING, False))
            else:
                bad = {v for v, n in cnt.items() if n + self_match - m > c.max_skew}
                checks.append((c.key, bad, _MISMATCH, _MISSING, True))
        return checks

    def filter(self, state, pi, ni):
        cs, counts, mins, selfs = state[self.name]
        labels = ni.labels
        for c, cnt, m, self_match in zip(cs, counts, mins, selfs):
            v = labels.get(c.key)
            if v is None:
                return _MISSING
            if cnt.get(v, 0) + self_match - m > c.max_skew:
                return _MISMATCH
        return None

    # ---- score ----

    def pre_score(self, state, pi, nodes):
        cs = self.constraints(pi, hard=False)
        if not cs:
            return SKIPPED
        keys = [c.key for c in cs]
        # Upstream requireAllTopologies: with the system defaults a node lacking a key is not
        # ignored; it scores on the keys it has and counts as a "" domain for the weights.
        require_all = bool(pi.spec.get("topologySpreadConstraints")) or not self.system_defaulted
        counts: list[dict[str, int]] = [{} for _ in cs]
        domains: list[set] = [set() for _ in cs]
        scored = 0
        for ni in nodes:          # domains among the feasible nodes set the weights
            labels = ni.labels
            if require_all and not all(k in labels for k in keys):
                continue
            scored += 1
            for c, d in zip(cs, domains):
                d.add(labels.get(c.key, ""))
        all_nodes = self.handle.cache.node_list if self.handle else nodes
        if not any((c.honor_affinity and has_required(pi.spec)) or c.honor_taints for c in cs):
            # Every node with the keys is eligible: per-domain counts from the pod groups.
            groups = self._groups(all_nodes)
            required = tuple(sorted(set(keys))) if require_all else ()
            alike = [g for (_, terminating), g in
                     groups.by_namespace.get(pi.namespace, {}).items() if not terminating]
            for c, cnt in zip(cs, counts):
                if c.key == HOSTNAME:
                    continue
                for g in alike:
                    if c.selector.matches(g.rep.labels):
                        for v, n in g.by_domain(groups.nodes, c.key, required).items():
                            cnt[v] = cnt.get(v, 0) + n
        else:
            for ni in all_nodes:
                labels = ni.labels
                if require_all and not all(k in labels for k in keys):
                    continue
                for c, cnt in zip(cs, counts):
                    if c.key == HOSTNAME or c.key not in labels or not _eligible(c, pi, ni):
                        continue
                    v = labels[c.key]
                    cnt[v] = cnt.get(v, 0) + self._count(c, ni)
        # Upstream's hostname weight: the number of scored nodes, not of distinct values.
        weights = [math.log((scored if c.key == HOSTNAME else len(d)) + 2)
                   for c, d in zip(cs, domains)]
        state[self.name + "/score"] = (cs, counts, weights, keys, require_all)
        return None

    def score(self, state, pi, ni):
        cs, counts, weights, keys, require_all = state[self.name + "/score"]
        labels = ni.labels
        if require_all and not all(k in labels for k in keys):
            return -1          # ignored node; normalize gives it 0
        s = 0.0
        for c, cnt, w in zip(cs, counts, weights):
            v = labels.get(c.key)
            if v is None:
                continue
            n = self._count(c, ni) if c.key == HOSTNAME else cnt.get(v, 0)
            s += n * w + (c.max_skew - 1)
        return int(math.floor(s + 0.5))

    def normalize_score(self, state, pi, scores):
        valid = [s for s in scores if s >= 0]
        if not valid:
            return
        lo, hi = min(valid), max(valid)
        for i, s in enumerate(scores):
            if s < 0:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - s) // hi
