"""DefaultPreemption (PostFilter): find a node where removing lower-priority pods lets the pod
fit, evict the fewest/lowest of them (PodDisruptionBudgets respected where possible), and
nominate the node."""

from __future__ import annotations

import datetime as dt

from kybernetes.api.selectors import label_selector_from_object

from ..framework import UNRESOLVABLE, Plugin, unresolvable, unschedulable

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def _summary(n_nodes: int, reasons: dict[str, int]) -> str:
    parts = sorted(f"{c} {r}" for r, c in reasons.items())
    return f"0/{n_nodes} nodes are available: {', '.join(parts)}."


class Candidate:
    def __init__(self, node: str, victims: list, pdb_violations: int):
        self.node, self.victims, self.pdb_violations = node, victims, pdb_violations


class DefaultPreemption(Plugin):
    name = "DefaultPreemption"

    def eligible(self, pi) -> str | None:
        if pi.spec.get("preemptionPolicy") == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = (pi.pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            ni = self.handle.cache.nodes.get(nominated)
            if ni and any(p.terminating and p.priority < pi.priority for p in ni.pods.values()):
                return "not eligible due to a terminating pod on the nominated node."
        return None

    def post_filter(self, state, pi, statuses: dict):
        """Returns (Candidate or None, Status)."""
        why = self.eligible(pi)
        if why:
            return None, unschedulable(why)
        fw = self.handle.framework_for(pi)
        nodes = self.handle.cache.node_list
        reasons: dict[str, int] = {}
        candidates = []
        pdbs = self._pdbs(pi)
        for ni in nodes:
            st = statuses.get(ni.name)
            if st is not None and st.code == UNRESOLVABLE:
                reasons[NOT_HELPFUL] = reasons.get(NOT_HELPFUL, 0) + 1
                continue
            cand, st2 = self._victims_on(fw, state, pi, ni, pdbs)
            if cand is None:
                for r in st2.reasons:
                    reasons[r] = reasons.get(r, 0) + 1
            else:
                candidates.append(cand)
        if not candidates:
            return None, unschedulable("preemption: " + _summary(len(nodes), reasons))
        return pick_one(candidates), None

    def _pdbs(self, pi):
        out = []
        for pdb in self.handle.list("PodDisruptionBudget"):
            sel = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
            if sel.empty():
                continue            # upstream: a nil or empty PDB selector matches nothing
            status = pdb.get("status") or {}
            out.append((pdb["metadata"].get("namespace") or "default", sel,
                        status.get("disruptionsAllowed", 0), status.get("disruptedPods") or {}))
        return out

    def _victims_on(self, fw, state, pi, ni, pdbs):
        lower = [p for p in ni.pods.values() if p.priority < pi.priority]
        if not lower:
            return None, unresolvable(NO_VICTIMS)
        # Upstream SelectVictimsOnNode: a copy of the node and of the cycle state, the PreFilter
        # plugins told of each pod removed or put back (their counts follow the trial node).
        trial, state = ni.clone(), state.clone()
        for p in lower:
            trial.remove_pod(p.key)
            fw.run_pre_filter_extension(state, pi, p, trial, add=False)
        st = fw.run_filters(state, pi, trial)
        if st is not None:
            return None, st
        # Reprieve as many as possible: PDB-protected first, then by priority (highest first).
        # Upstream filterPodsWithPDBViolation: budgets counted down in MoreImportantPod order;
        # a pod the PDB already lists as disrupted neither counts nor violates.
        allowed = [b[2] for b in pdbs]
        violating, ok = [], []
        for p in sorted(lower, key=lambda p: (-p.priority, _start(p))):
            hit = False
            if p.labels:
                for i, (ns, sel, _, disrupted) in enumerate(pdbs):
                    if ns == p.namespace and p.name not in disrupted and sel.matches(p.labels):
                        allowed[i] -= 1
                        if allowed[i] < 0:
                            hit = True
            (violating if hit else ok).append(p)
        victims, n_violations = [], 0
        for group, counts in ((violating, True), (ok, False)):
            for p in group:
                trial.add_pod(p)
                fw.run_pre_filter_extension(state, pi, p, trial, add=True)
                if fw.run_filters(state, pi, trial) is not None:
                    trial.remove_pod(p.key)
                    fw.run_pre_filter_extension(state, pi, p, trial, add=False)
                    victims.append(p)
                    n_violations += counts
        return Candidate(ni.name, victims, n_violations), None


def _start(p) -> str:
    # Upstream GetPodStartTime: a pod not started yet counts as starting now, after all others.
    return (p.pod.get("status") or {}).get("startTime") or "\uffff"


def pick_one(cands: list[Candidate]) -> Candidate:
    """Upstream pickOneNodeForPreemption: fewest PDB violations, lowest highest-victim priority,
    smallest priority sum, fewest victims, latest start among the top victims, then first."""
    def key(c: Candidate):
        if not c.victims:
            return (c.pdb_violations, -(2**63), 0, 0, "")
        top = max(p.priority for p in c.victims)
        total = sum(p.priority + 2**31 for p in c.victims)  # upstream's MaxInt32+1 offset
        earliest_top = min(_start(p) for p in c.victims if p.priority == top)
        inv = "".join(chr(0x10FFFF - ord(ch)) for ch in earliest_top)  # latest first
        return (c.pdb_violations, top, total, len(c.victims), inv)
    return min(cands, key=key)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def victim_condition(scheduler_name: str) -> dict:
    return {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
            "lastTransitionTime": now()}


