"""Stand-ins the scheduler's loop tests share: a client that accepts every write, a binder that
records bindings (or fails the first few), and DefaultPreemption run as a cycle runs it."""

from __future__ import annotations

from kybernetes.scheduler.framework import CycleState, Plugin, error
from kybernetes.scheduler.podinfo import PodInfo


class StubClient:
    """Accepts every write; patches are kept as (resource plural, name, body)."""

    def __init__(self):
        self.patches: list[tuple[str, str, dict]] = []

    async def create(self, r, obj, namespace=None, **kw):
        return obj

    async def patch(self, r, name, body, namespace=None, **kw):
        self.patches.append((r.plural, name, body))
        return {}

    async def delete(self, *a, **kw):
        return {}

    async def request(self, *a, **kw):
        return {}


class RecordingBinder(Plugin):
    """DefaultBinder's stand-in: records pod key → node; the first `fail` bindings fail."""

    name = "DefaultBinder"

    def __init__(self, fail: int = 0):
        super().__init__()
        self.fail = fail
        self.bound: dict[str, str] = {}

    async def bind(self, state, pi, node_name):
        if self.fail:
            self.fail -= 1
            return error("boom")
        self.bound[pi.key] = node_name
        return None


def run_preemption(sched, incoming: dict):
    """PreFilter, Filter on every node (none may fit), then DefaultPreemption's PostFilter:
    its (candidate or None, status)."""
    pi = PodInfo(incoming, incoming["spec"]["priority"])
    fw = sched.framework_for(pi)
    nodes = sched.cache.node_list
    state = CycleState()
    assert fw.run_pre_filter(state, pi, nodes) is None
    statuses = {ni.name: fw.run_filters(state, pi, ni) for ni in nodes}
    assert all(st is not None for st in statuses.values()), statuses  # nothing fits as is
    return fw.plugins["DefaultPreemption"].post_filter(state, pi, statuses)
