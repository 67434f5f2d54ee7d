"""The scheduling framework's vocabulary: status codes, Status, CycleState, the plugin base.

A plugin implements only the extension points it needs, as methods named after them
(`pre_filter`, `filter`, `score`, ...); the profile finds them by name. Success is `None` on the
hot paths (Filter/Score run thousands of times per pod), a `Status` otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Any

SUCCESS, ERROR, UNSCHEDULABLE, UNRESOLVABLE, WAIT, SKIP, PENDING = range(7)
CODE_NAMES = ("Success", "Error", "Unschedulable", "UnschedulableAndUnresolvable", "Wait",
              "Skip", "Pending")
MAX_NODE_SCORE = 100

# The extension points in the order a pod meets them.
EXTENSION_POINTS = ("pre_enqueue", "queue_sort", "pre_filter", "filter", "post_filter",
                    "pre_score", "score", "reserve", "permit", "pre_bind", "bind", "post_bind")
# Names as KubeSchedulerConfiguration spells them.
CONFIG_POINTS = {"preEnqueue": "pre_enqueue", "queueSort": "queue_sort",
                 "preFilter": "pre_filter", "filter": "filter", "postFilter": "post_filter",
                 "preScore": "pre_score", "score": "score", "reserve": "reserve",
                 "permit": "permit", "preBind": "pre_bind", "bind": "bind",
                 "postBind": "post_bind"}


class Status:
    __slots__ = ("code", "reasons", "plugin")

    def __init__(self, code: int, *reasons: str, plugin: str = ""):
        self.code = code
        self.reasons = list(reasons)
        self.plugin = plugin

    @property
    def success(self) -> bool:
        return self.code == SUCCESS

    @property
    def rejected(self) -> bool:
        return self.code in (UNSCHEDULABLE, UNRESOLVABLE)

    def message(self) -> str:
        return ", ".join(self.reasons)

    def __repr__(self) -> str:
        return f"Status({CODE_NAMES[self.code]}, {self.reasons!r}, plugin={self.plugin!r})"


def unschedulable(*reasons: str) -> Status:
    return Status(UNSCHEDULABLE, *reasons)


def unresolvable(*reasons: str) -> Status:
    return Status(UNRESOLVABLE, *reasons)


def error(message: str) -> Status:
    return Status(ERROR, message)


SKIPPED = Status(SKIP)
MAX_PERMIT_WAIT = 15 * 60.0   # upstream caps a Permit plugin's wait at 15 minutes


class Wait(Status):
    """What a Permit plugin returns to hold the pod, at most `timeout` seconds."""

    __slots__ = ("timeout",)

    def __init__(self, timeout: float):
        super().__init__(WAIT)
        self.timeout = timeout


def go_duration(seconds: float) -> str:
    """Go's time.Duration text for the usual cases (100ms, 1.5s, 2m0s), as upstream messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    m, s = divmod(seconds, 60)
    return f"{int(m)}m{s:g}s" if m else f"{s:g}s"


class WaitingPod:
    """A pod held after Reserve until every Permit plugin that said Wait allows it (upstream
    framework.WaitingPod). One Reject, or any one plugin's timeout, rejects it. `result` is
    None when allowed, the rejecting Status otherwise."""

    def __init__(self, pi, waits: dict[str, float]):
        self.pod_info = pi
        loop = asyncio.get_running_loop()
        self.result: asyncio.Future = loop.create_future()
        self._timers = {
            name: loop.call_later(t, self.reject, name,
                                  f"rejected due to timeout after waiting {go_duration(t)} "
                                  f"at plugin {name}")
            for name, t in waits.items()}

    @property
    def pod(self) -> dict:
        return self.pod_info.pod

    def pending_plugins(self) -> list[str]:
        return list(self._timers)

    def allow(self, plugin: str) -> None:
        t = self._timers.pop(plugin, None)
        if t is not None:
            t.cancel()
        if not self._timers and not self.result.done():
            self.result.set_result(None)

    def reject(self, plugin: str, message: str) -> None:
        self.stop()
        if not self.result.done():
            self.result.set_result(Status(UNSCHEDULABLE, message, plugin=plugin))

    def stop(self) -> None:
        for t in self._timers.values():
            t.cancel()


class CycleState(dict):
    """Per-pod scratch space shared by plugins during one scheduling attempt (keyed by plugin)."""

    skip_filter: set[str]
    skip_score: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.skip_filter = set()
        self.skip_score = set()

    def clone(self) -> "CycleState":
        c = CycleState()
        for k, v in self.items():
            c[k] = v.clone() if hasattr(v, "clone") else v
        c.skip_filter = set(self.skip_filter)
        c.skip_score = set(self.skip_score)
        return c


class Plugin:
    """Base of every plugin. `handle` gives access to the cluster (cache, informers, client)."""

    name = ""
    # Cluster events that can make a pod this plugin rejected schedulable, e.g. "Node/Add".
    events: tuple[str, ...] = ()
    # True when Filter and Score read nothing of the node but what NodeInfo.sig() covers
    # (resources, pod count, taints, cordon, images) and NormalizeScore depends only on the
    # extremes: the cycle then evaluates the plugin once per distinct node state.
    node_state_only = False
    # A plugin whose Filter, after its PreFilter, depends only on node labels may also offer
    # `filter_labels(state, pi)`: the same decisions as label checks (cycle.label_verdict), so
    # the cycle can filter many nodes at once. It must agree with `filter` on every node.

    def __init__(self, handle: Any = None, args: dict | None = None):
        self.handle = handle
        self.args = args or {}


class PreFilterResult:
    """Optional PreFilter output: only these nodes can pass (None = all)."""

    __slots__ = ("node_names",)

    def __init__(self, node_names: set[str] | None):
        self.node_names = node_names


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Upstream helper.DefaultNormalizeScore: scale to [0, 100] by the max; reverse flips it."""
    top = max(0, max(scores, default=0))  # upstream's maximum starts at 0
    if top == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        s = MAX_NODE_SCORE * s
        s = s // top if s >= 0 else -(-s // top)  # Go's division truncates toward zero
        scores[i] = MAX_NODE_SCORE - s if reverse else s
