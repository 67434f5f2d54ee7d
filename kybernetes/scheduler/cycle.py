"""The hot part of a scheduling cycle: Filter over the nodes from a rotating start until enough
are feasible (upstream findNodesThatPassFilters), then Score/Normalize and pick the host.

Plugins marked `node_state_only` are evaluated once per distinct node state (NodeInfo.sig()),
not once per node: in a cluster of alike nodes a cycle costs a dict lookup per node instead of
a Python call per plugin per node. Other plugins run per node, in the configured order, so a
node's reported reason is the one upstream would report.
"""

from __future__ import annotations

import random
from typing import Callable

from .cache import NodeInfo
from .framework import CycleState, Status

MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5


def num_feasible_nodes_to_find(percentage: int, total: int) -> int:
    """Upstream numFeasibleNodesToFind: adaptive 50% - nodes/125, at least 5% and 100 nodes."""
    if total < MIN_FEASIBLE_NODES:
        return total
    pct = percentage
    if pct <= 0:
        pct = max(50 - total // 125, MIN_FEASIBLE_PERCENT)
    n = total * pct // 100
    return max(n, MIN_FEASIBLE_NODES)


def _state_filter(filters: list, state: CycleState, pi, ni: NodeInfo) -> tuple[int, Status | None]:
    """(index of the first node_state_only filter that rejects, its status), or (len, None)."""
    for j, p in enumerate(filters):
        if p.node_state_only:
            st = p.filter(state, pi, ni)
            if st is not None:
                st.plugin = p.name
                return j, st
    return len(filters), None


def _take(nodes: list, pos: int, k: int) -> list:
    """k nodes from pos on, wrapping around."""
    end = pos + k
    if end <= len(nodes):
        return nodes[pos:end]
    return nodes[pos:] + nodes[:end - len(nodes)]


def find_feasible(filters: list, state: CycleState, pi, nodes: list[NodeInfo], start: int,
                  want: int, statuses: dict[str, Status],
                  adjust: Callable[[NodeInfo], NodeInfo] | None = None
                  ) -> tuple[list[NodeInfo], int, dict[int, NodeInfo]]:
    """Feasible nodes (at most `want`) from `start` on, how many nodes were examined, and one
    feasible node per distinct state. `adjust` substitutes a node's view (nominated pods added)."""
    total = len(nodes)
    feasible: list[NodeInfo] = []
    reps: dict[int, NodeInfo] = {}
    if not total:
        return feasible, 0, reps
    memo: dict[int, tuple[int, Status | None]] = {}
    n_filters = len(filters)
    if adjust is None and all(p.node_state_only for p in filters):
        # Chunks of exactly as many nodes as are still wanted: the same nodes get examined as
        # one by one, but the per-node work is list comprehensions and set lookups.
        processed = 0
        while processed < total and len(feasible) < want:
            chunk = _take(nodes, (start + processed) % total, min(want - len(feasible), total - processed))
            processed += len(chunk)
            sids = [ni.sig_id if ni.sig_id is not None else ni.sig() for ni in chunk]
            by_sid = dict(zip(sids, chunk))
            for sid, ni in by_sid.items():
                if sid not in memo:
                    memo[sid] = _state_filter(filters, state, pi, ni)
            ok = {sid for sid in by_sid if memo[sid][0] == n_filters}
            if len(ok) == len(by_sid):
                feasible.extend(chunk)
            else:
                for ni, sid in zip(chunk, sids):
                    if sid in ok:
                        feasible.append(ni)
                    else:
                        statuses[ni.name] = memo[sid][1]   # type: ignore[assignment]
            for sid in ok:
                reps.setdefault(sid, by_sid[sid])
        return feasible, processed, reps
    per_node = [(j, p) for j, p in enumerate(filters) if not p.node_state_only]
    append = feasible.append
    processed = 0
    for ni in nodes[start:] + nodes[:start] if start else nodes:
        processed += 1
        if adjust is not None:
            ni = adjust(ni)
        sid = ni.sig_id
        if sid is None:
            sid = ni.sig()
        hit = memo.get(sid)
        if hit is None:
            hit = memo[sid] = _state_filter(filters, state, pi, ni)
        fail_at, st = hit
        for j, p in per_node:
            if j > fail_at:
                break
            st2 = p.filter(state, pi, ni)
            if st2 is not None:
                st2.plugin = p.name
                fail_at, st = j, st2
                break
        if fail_at == n_filters:
            append(ni)
            if sid not in reps:
                reps[sid] = ni
            if len(feasible) >= want:
                break
        else:
            statuses[ni.name] = st   # type: ignore[assignment]
    return feasible, processed, reps


def _choice_among(feasible: list[NodeInfo], is_top: Callable[[int], bool]) -> NodeInfo:
    """Uniformly random node with is_top(index): a few rejection draws, then the full scan."""
    n = len(feasible)
    for _ in range(8):
        i = random.randrange(n)
        if is_top(i):
            return feasible[i]
    return random.choice([ni for i, ni in enumerate(feasible) if is_top(i)])


def score_and_pick(scorers: list[tuple], state: CycleState, pi, feasible: list[NodeInfo],
                   reps: dict[int, NodeInfo]) -> NodeInfo:
    """Weighted sum of normalized scores; a uniformly random node among the best."""
    by_state = [(p, w) for p, w in scorers if p.node_state_only]
    per_node = [(p, w) for p, w in scorers if not p.node_state_only]
    sids = list(reps)
    sid_total = dict.fromkeys(sids, 0)
    for p, w in by_state:
        # Distinct states only: these plugins' normalization depends on the extremes alone.
        scores = [p.score(state, pi, reps[s]) for s in sids]
        norm = getattr(p, "normalize_score", None)
        if norm is not None:
            norm(state, pi, scores)
        for s, v in zip(sids, scores):
            sid_total[s] += v * w
    if not per_node:
        if len(sids) == 1:
            return random.choice(feasible)
        best = max(sid_total.values())
        top = {s for s, v in sid_total.items() if v == best}
        return _choice_among(feasible, lambda i: feasible[i].sig_id in top)
    totals = [sid_total[ni.sig_id] for ni in feasible]   # type: ignore[index]
    for p, w in per_node:
        score = p.score
        scores = [score(state, pi, ni) for ni in feasible]
        norm = getattr(p, "normalize_score", None)
        if norm is not None:
            norm(state, pi, scores)
        totals = [a + b * w for a, b in zip(totals, scores)]
    best = max(totals)
    return _choice_among(feasible, lambda i: totals[i] == best)
