"""NodeAffinity: spec.nodeSelector and required node affinity must match the node; preferred
terms add their weights to the score."""

from __future__ import annotations

from ..framework import SKIPPED, Plugin, default_normalize, unresolvable

ERR_REASON = "node(s) didn't match Pod's node affinity/selector"
ERR_ENFORCED = "node(s) didn't match scheduler-enforced node affinity"


def _requirement(expr: dict, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            mine, theirs = int(value), int(values[0])  # type: ignore[arg-type]
        except (TypeError, ValueError, IndexError):
            return False
        return mine > theirs if op == "Gt" else mine < theirs
    return False


def term_matches(term: dict, labels: dict, name: str) -> bool:
    """One NodeSelectorTerm: all expressions and fields must hold; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for e in exprs:
        if not _requirement(e, labels.get(e.get("key", ""))):
            return False
    for f in fields:
        if f.get("key") != "metadata.name" or not _requirement(f, name):
            return False
    return True


def required_matches(spec: dict, labels: dict, name: str) -> bool:
    """nodeSelector AND (any of the required terms) — upstream GetRequiredNodeAffinity.Match."""
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    aff = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if aff is not None:
        terms = aff.get("nodeSelectorTerms") or []
        return any(term_matches(t, labels, name) for t in terms)
    return True


def has_required(spec: dict) -> bool:
    return bool(spec.get("nodeSelector")) or bool(
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"))


class NodeAffinity(Plugin):
    name = "NodeAffinity"
    events = ("Node/Add", "Node/Update")

    def __init__(self, handle=None, args=None):
        super().__init__(handle, args)
        # NodeAffinityArgs.addedAffinity: applied to every pod on top of its own terms.
        added = self.args.get("addedAffinity") or {}
        req = added.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.added_terms = None if req is None else list(req.get("nodeSelectorTerms") or ())
        pref = added.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        self.added_pref = [(t.get("weight", 0), t.get("preference") or {}) for t in pref]

    def pre_filter(self, state, pi, nodes):
        return None if self.added_terms is not None or has_required(pi.spec) else SKIPPED

    def filter(self, state, pi, ni):
        if self.added_terms is not None and not any(
                term_matches(t, ni.labels, ni.name) for t in self.added_terms):
            return unresolvable(ERR_ENFORCED)
        if not required_matches(pi.spec, ni.labels, ni.name):
            return unresolvable(ERR_REASON)
        return None

    def pre_score(self, state, pi, nodes):
        pref = ((pi.spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "preferredDuringSchedulingIgnoredDuringExecution")
        if not pref and not self.added_pref:
            return SKIPPED
        state[self.name] = [(t.get("weight", 0), t.get("preference") or {})
                            for t in pref or ()] + self.added_pref
        return None

    def score(self, state, pi, ni):
        return sum(w for w, term in state[self.name] if w and term_matches(term, ni.labels, ni.name))

    def normalize_score(self, state, pi, scores):
        default_normalize(scores)
