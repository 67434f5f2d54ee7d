"""The hot part of a scheduling cycle: Filter over the nodes from a rotating start until enough
are feasible (upstream findNodesThatPassFilters), then Score/Normalize and pick the host.

Plugins marked `node_state_only` are evaluated once per distinct node state (NodeInfo.sig()),
not once per node: in a cluster of alike nodes a cycle costs a dict lookup per node instead of
a Python call per plugin per node. Plugins that state their Filter as label checks
(`filter_labels`: InterPodAffinity, PodTopologySpread) are applied to whole chunks of nodes in
C-level passes; other plugins run per node. Either way in the configured order, so a node's
reported reason is the one upstream would report.
"""

from __future__ import annotations

import random
from itertools import compress, repeat
from operator import attrgetter, not_
from typing import Callable

from .cache import NodeInfo
from .framework import CycleState, Status

MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5
_SID = attrgetter("sig_id")
_LABELS = attrgetter("labels")
_NAME = attrgetter("name")
_DRAWS = 64     # rejection draws before a full scan: each accepted draw is uniform among the best


def num_feasible_nodes_to_find(percentage: int, total: int) -> int:
    """Upstream numFeasibleNodesToFind: adaptive 50% - nodes/125, at least 5% and 100 nodes."""
    if total < MIN_FEASIBLE_NODES:
        return total
    pct = percentage
    if pct <= 0:
        pct = max(50 - total // 125, MIN_FEASIBLE_PERCENT)
    n = total * pct // 100
    return max(n, MIN_FEASIBLE_NODES)


class NodeStatuses:
    """Node name → the Status that rejected it (upstream's diagnosis, NodeToStatusMap). Only a
    failed cycle reads it, and a spread or anti-affinity cycle rejects most nodes every time, so
    nodes rejected together are kept as (nodes, status) and named only when something reads."""

    __slots__ = ("_named", "_later")

    def __init__(self) -> None:
        self._named: dict[str, Status] = {}
        self._later: list[tuple[list[NodeInfo], Status]] = []

    def later(self, nodes: list[NodeInfo], status: Status) -> None:
        self._later.append((nodes, status))

    def _all(self) -> dict[str, Status]:
        if self._later:
            for nodes, st in self._later:
                self._named.update(zip(map(_NAME, nodes), repeat(st)))
            self._later.clear()
        return self._named

    def __setitem__(self, name: str, status: Status) -> None:
        self._all()[name] = status

    def __getitem__(self, name: str) -> Status:
        return self._all()[name]

    def get(self, name: str, default=None):
        return self._all().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def values(self):
        return self._all().values()

    def items(self):
        return self._all().items()


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


def label_verdict(checks: list[tuple], labels: dict) -> Status | None:
    """A plugin's Filter given as label checks (its `filter_labels`): each check is
    (key, values, status, missing, listed_fails); a node without `key` gets `missing` (None:
    passes this check), otherwise `status` when (its value in `values`) == listed_fails.
    The first failing check decides, as Filter's own order would."""
    for key, values, status, missing, listed_fails in checks:
        v = labels.get(key)
        if v is None:
            if missing is not None:
                return missing
        elif (v in values) == listed_fails:
            return status
    return None


def _checked(nodes: list[NodeInfo], tables: list[tuple[int, list]], statuses: NodeStatuses,
             first: Callable[[str], list] | None = None) -> list[NodeInfo]:
    """label_verdict over many nodes at once (all of them passed the other filters): one check
    at a time over the nodes still passing, in C-level passes. Returns the nodes that pass.
    `first(key)`, when given, is the nodes' values of `key` (from the cache's columns)."""
    known: dict[str, list] = {}     # key → values, aligned with `nodes`
    for _, checks in tables:
        for key, values, status, missing, listed_fails in checks:
            if not nodes:
                return nodes
            vals = known.get(key)
            if vals is None:
                if first is not None and not known:
                    vals = first(key)
                else:
                    vals = list(map(dict.get, map(_LABELS, nodes), repeat(key)))
                known[key] = vals
            fail = list(map(values.__contains__, vals))     # label values are never None
            if not listed_fails:
                fail = list(map(not_, fail))
            if (missing is not None or not listed_fails) and None in vals:
                # Nodes without the key: `missing` decides.
                fail = [missing is not None if v is None else f for v, f in zip(vals, fail)]
                for ni, v, f in zip(nodes, vals, fail):
                    if f:
                        statuses[ni.name] = missing if v is None else status
            elif any(fail):
                statuses.later(list(compress(nodes, fail)), status)
            else:
                continue
            keep = list(map(not_, fail))
            nodes = list(compress(nodes, keep))
            known = {k: list(compress(v, keep)) for k, v in known.items()}
    return nodes


def _label_checks(filters: list, state: CycleState, pi) -> list[tuple[int, list]] | None:
    """(position, checks) of every per-node filter that can state itself as label checks for
    this pod, or None if one cannot."""
    out = []
    for j, p in enumerate(filters):
        if p.node_state_only:
            continue
        fl = getattr(p, "filter_labels", None)
        checks = fl(state, pi) if fl is not None else None
        if checks is None:
            return None
        out.append((j, checks))
    return out


def find_feasible(filters: list, state: CycleState, pi, nodes: list[NodeInfo], start: int,
                  want: int, statuses: NodeStatuses,
                  adjust: Callable[[NodeInfo], NodeInfo] | None = None,
                  sids: list[int] | None = None,
                  column: Callable[[str], list] | None = None
                  ) -> tuple[list[NodeInfo], int, dict[int, NodeInfo]]:
    """Feasible nodes (at most `want`) from `start` on, how many nodes were examined, and one
    feasible node per distinct state. `adjust` substitutes a node's view (nominated pods added);
    `sids`, when given, are the nodes' current sig ids (Cache.sids), read without touching them;
    `column(key)` likewise the nodes' values of a label (Cache.column)."""
    total = len(nodes)
    feasible: list[NodeInfo] = []
    reps: dict[int, NodeInfo] = {}
    if not total:
        return feasible, 0, reps
    memo: dict[int, tuple[int, Status | None]] = {}
    n_filters = len(filters)
    tables = _label_checks(filters, state, pi) if adjust is None else None
    if tables is not None:
        # Chunks of exactly as many nodes as are still wanted: the same nodes get examined as
        # one by one, but the per-node work is list comprehensions, set and label lookups.
        processed = 0
        while processed < total and len(feasible) < want:
            pos = (start + processed) % total
            k = min(want - len(feasible), total - processed)
            chunk = _take(nodes, pos, k)
            processed += k
            chunk_sids = _take(sids, pos, k) if sids is not None else list(map(_SID, chunk))
            distinct = set(chunk_sids)
            if len(distinct) <= 16:     # alike nodes: first node of each state, found in C
                by_sid = {sid: chunk[chunk_sids.index(sid)] for sid in distinct}
            else:
                by_sid = dict(zip(chunk_sids, chunk))
            for sid, ni in by_sid.items():
                if sid not in memo:
                    memo[sid] = _state_filter(filters, state, pi, ni)
            ok = {sid for sid in by_sid if memo[sid][0] == n_filters}
            if len(ok) == len(by_sid):
                if not tables:
                    feasible.extend(chunk)
                    for sid in ok:
                        reps.setdefault(sid, by_sid[sid])
                    continue
                passed = _checked(chunk, tables, statuses,
                                  None if column is None else
                                  lambda key: _take(column(key), pos, k))
                feasible.extend(passed)
                for sid, ni in dict(zip(map(_SID, passed), passed)).items():
                    reps.setdefault(sid, ni)
                continue
            for ni, sid in zip(chunk, chunk_sids):
                fail_at, st = memo[sid]
                for j, checks in tables:
                    if j > fail_at:
                        break
                    st2 = label_verdict(checks, ni.labels)
                    if st2 is not None:
                        fail_at, st = j, st2
                        break
                if fail_at == n_filters:
                    feasible.append(ni)
                    if sid not in reps:
                        reps[sid] = ni
                else:
                    statuses[ni.name] = st   # type: ignore[assignment]
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
    for _ in range(_DRAWS):
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
        if len(top) == len(sids):
            return random.choice(feasible)
        for _ in range(_DRAWS):
            ni = random.choice(feasible)
            if ni.sig_id in top:
                return ni
        return random.choice(list(compress(feasible, map(top.__contains__, map(_SID, feasible)))))
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
