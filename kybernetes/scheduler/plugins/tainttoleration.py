"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; untolerated PreferNoSchedule
taints lower the score (fewer is better)."""

from ..framework import Plugin, default_normalize, unresolvable


def tolerates(tol: dict, taint: dict) -> bool:
    """Upstream Toleration.ToleratesTaint."""
    effect = tol.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = tol.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def first_untolerated(taints, tolerations, effects=("NoSchedule", "NoExecute")) -> dict | None:
    for t in taints:
        if t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations):
            return t
    return None


class TaintToleration(Plugin):
    name = "TaintToleration"
    node_state_only = True
    events = ("Node/Add", "Node/Update")

    def filter(self, state, pi, ni):
        if not ni.taints:
            return None
        t = first_untolerated(ni.taints, pi.spec.get("tolerations") or ())
        if t is None:
            return None
        return unresolvable(f"node(s) had untolerated taint {{{t.get('key', '')}: {t.get('value', '')}}}")

    def pre_score(self, state, pi, nodes):
        # Only tolerations with effect PreferNoSchedule or empty count for scoring.
        state[self.name] = [t for t in pi.spec.get("tolerations") or ()
                            if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
        return None

    def score(self, state, pi, ni):
        if not ni.taints:
            return 0
        tols = state[self.name]
        return sum(1 for t in ni.taints if t.get("effect") == "PreferNoSchedule"
                   and not any(tolerates(tol, t) for tol in tols))

    def normalize_score(self, state, pi, scores):
        default_normalize(scores, reverse=True)
