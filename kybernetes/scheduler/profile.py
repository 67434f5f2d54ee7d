"""A profile: the plugins of one schedulerName, wired per extension point, and the runners the
scheduling cycle calls (PreFilter → Filter → PreScore → Score/Normalize with weights)."""

from __future__ import annotations

import logging

from .config import ProfileConfig
from .framework import ERROR, MAX_PERMIT_WAIT, SKIP, SUCCESS, WAIT, CycleState, Status
from .plugins import REGISTRY

log = logging.getLogger(__name__)


class Profile:
    def __init__(self, cfg: ProfileConfig, handle):
        self.name = cfg.scheduler_name
        self.percentage = cfg.percentage_of_nodes_to_score
        used = {n for names in cfg.points.values() for n in names}
        self.plugins = {n: REGISTRY[n](handle, cfg.args.get(n)) for n in used}

        def at(point: str) -> list:
            return [self.plugins[n] for n in cfg.points.get(point, [])]

        self.pre_enqueue, self.queue_sort = at("pre_enqueue"), at("queue_sort")
        self.pre_filter, self.filter = at("pre_filter"), at("filter")
        self.post_filter, self.pre_score = at("post_filter"), at("pre_score")
        self.score = [(p, cfg.weights.get(p.name, 1)) for p in at("score")]
        self.reserve, self.permit = at("reserve"), at("permit")
        self.pre_bind, self.bind, self.post_bind = at("pre_bind"), at("bind"), at("post_bind")

    def sort_key(self, qp) -> tuple:
        return self.queue_sort[0].sort_key(qp) if self.queue_sort else (qp.timestamp,)

    def run_pre_enqueue(self, pi) -> Status | None:
        for p in self.pre_enqueue:
            st = p.pre_enqueue(pi)
            if st is not None:
                st.plugin = p.name
                return st
        return None

    def run_pre_filter(self, state: CycleState, pi, nodes) -> Status | None:
        for p in self.pre_filter:
            st = p.pre_filter(state, pi, nodes)
            if st is None:
                continue
            if st.code == SKIP:
                state.skip_filter.add(p.name)
                continue
            st.plugin = p.name
            return st
        state["filters"] = [p for p in self.filter if p.name not in state.skip_filter]
        return None

    def run_pre_filter_extension(self, state: CycleState, pi, other, ni, add: bool) -> None:
        """Upstream RunPreFilterExtensionAddPod/RemovePod: the PreFilter plugins that ran (not
        skipped) update their state for `other` joining or leaving node `ni`."""
        for p in self.pre_filter:
            fn = getattr(p, "add_pod" if add else "remove_pod", None)
            if fn is not None and p.name not in state.skip_filter:
                fn(state, pi, other, ni)

    def run_filters(self, state: CycleState, pi, ni) -> Status | None:
        for p in state["filters"]:
            st = p.filter(state, pi, ni)
            if st is not None:
                st.plugin = p.name
                return st
        return None

    def scorers(self, state: CycleState, pi, nodes) -> list[tuple]:
        """Run PreScore; the (plugin, weight) pairs that score this pod (Skip drops one)."""
        for p in self.pre_score:
            st = p.pre_score(state, pi, nodes)
            if st is not None and st.code == SKIP:
                state.skip_score.add(p.name)
        skip = state.skip_score
        return [(p, w) for p, w in self.score if p.name not in skip]

    def run_scores(self, state: CycleState, pi, nodes) -> list[int]:
        """Weighted, normalized totals per node (the plain form; the cycle uses cycle.py)."""
        totals = [0] * len(nodes)
        for p, w in self.scorers(state, pi, nodes):
            scores = [p.score(state, pi, ni) for ni in nodes]
            norm = getattr(p, "normalize_score", None)
            if norm is not None:
                norm(state, pi, scores)
            totals = [a + b * w for a, b in zip(totals, scores)]
        return totals

    def run_permit(self, state: CycleState, pi, node: str) -> tuple[Status | None, dict]:
        """Upstream RunPermitPlugins: the first rejection or error ends it (no wait then);
        otherwise the plugins that said Wait, with their timeouts (capped)."""
        waits: dict[str, float] = {}
        for p in self.permit:
            st = p.permit(state, pi, node)
            if st is None or st.code == SUCCESS:
                continue
            if st.code == WAIT:
                waits[p.name] = min(getattr(st, "timeout", MAX_PERMIT_WAIT), MAX_PERMIT_WAIT)
                continue
            if not st.rejected:
                st = Status(ERROR, f'running Permit plugin "{p.name}": {st.message()}')
            st.plugin = p.name
            return st, {}
        return None, waits
