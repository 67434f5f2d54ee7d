"""The scheduling queue: active heap (QueueSort order), backoff (initial × 2^(attempts-1), capped)
and the unschedulable set, which a cluster event empties for the pods a rejecting plugin said
that event could help."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Callable

from .podinfo import PodInfo

UNSCHEDULABLE_FLUSH = 300.0   # upstream podMaxInUnschedulablePodsDuration


class QueuedPod:
    __slots__ = ("info", "timestamp", "attempts", "rejectors", "backoff_until", "seq")

    def __init__(self, info: PodInfo):
        self.info = info
        self.timestamp = time.monotonic()
        self.attempts = 0
        self.rejectors: set[str] = set()
        self.backoff_until = 0.0
        self.seq = 0


class SchedulingQueue:
    def __init__(self, sort_key: Callable[[QueuedPod], tuple], initial_backoff: float = 1.0,
                 max_backoff: float = 10.0, events_of: Callable[[str], tuple] | None = None):
        self.sort_key = sort_key
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.events_of = events_of or (lambda name: ())
        self._active: list[tuple] = []
        self._backoff: list[tuple[float, int, str]] = []
        self.pods: dict[str, QueuedPod] = {}        # every pod the queue holds, by key
        self.where: dict[str, str] = {}             # key → "active" | "backoff" | "unschedulable" | "gated" | "inflight"
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.moved_while_inflight: set[str] = set()
        self.unschedulable: set[str] = set()
        self.inflight: set[str] = set()

    def __len__(self) -> int:
        return len(self.pods)

    def _push_active(self, qp: QueuedPod) -> None:
        qp.seq = next(self._seq)
        heapq.heappush(self._active, (self.sort_key(qp), qp.seq, qp.info.key))
        self._set(qp.info.key, "active")
        self._wake.set()

    def add(self, info: PodInfo, gated: bool = False) -> None:
        qp = self.pods.get(info.key)
        if qp is None:
            qp = self.pods[info.key] = QueuedPod(info)
        else:
            qp.info = info
        if gated:
            self._set(info.key, "gated")
            return
        if self.where.get(info.key) != "active" and self.where.get(info.key) != "inflight":
            self._push_active(qp)

    def update(self, info: PodInfo, gated: bool = False) -> None:
        qp = self.pods.get(info.key)
        if qp is None:
            self.add(info, gated)
            return
        qp.info = info
        where = self.where.get(info.key)
        if where == "gated" and not gated:
            self._push_active(qp)
        elif where == "unschedulable":
            # An update to the pod itself may make it schedulable: retry after its backoff.
            self._to_backoff_or_active(qp)
        elif where == "active":
            self._push_active(qp)   # re-sorted; the stale heap entry is skipped

    def _set(self, key: str, where: str) -> None:
        self.where[key] = where
        if where == "unschedulable":
            self.unschedulable.add(key)
        else:
            self.unschedulable.discard(key)
        if where == "inflight":
            self.inflight.add(key)
        else:
            self.inflight.discard(key)

    def delete(self, key: str) -> None:
        self.pods.pop(key, None)
        self.where.pop(key, None)
        self.unschedulable.discard(key)
        self.inflight.discard(key)

    def _backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff * (2 ** max(qp.attempts - 1, 0))
        return min(d, self.max_backoff)

    def _to_backoff_or_active(self, qp: QueuedPod) -> None:
        until = qp.backoff_until
        if until > time.monotonic():
            heapq.heappush(self._backoff, (until, next(self._seq), qp.info.key))
            self._set(qp.info.key, "backoff")
            self._wake.set()
        else:
            self._push_active(qp)

    async def pop(self) -> QueuedPod:
        while True:
            self._flush_backoff()
            while self._active:
                _, seq, key = heapq.heappop(self._active)
                qp = self.pods.get(key)
                if qp is None or self.where.get(key) != "active" or qp.seq != seq:
                    continue
                qp.attempts += 1
                self._set(key, "inflight")
                return qp
            self._wake.clear()
            timeout = None
            if self._backoff:
                timeout = max(self._backoff[0][0] - time.monotonic(), 0.001)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _flush_backoff(self) -> None:
        now = time.monotonic()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            qp = self.pods.get(key)
            if qp is not None and self.where.get(key) == "backoff":
                self._push_active(qp)

    def done(self, key: str) -> None:
        """The pod was scheduled (assumed); the queue forgets it."""
        self.delete(key)
        self.moved_while_inflight.discard(key)

    def requeue(self, qp: QueuedPod, rejectors: set[str], error: bool = False) -> None:
        """After a failed attempt: unschedulable (wait for an event) or backoff (errors, or an
        event arrived while the pod was being tried)."""
        key = qp.info.key
        if key not in self.pods:
            return
        qp.rejectors = rejectors
        qp.backoff_until = time.monotonic() + self._backoff_duration(qp)
        if error or key in self.moved_while_inflight:
            self.moved_while_inflight.discard(key)
            self._to_backoff_or_active(qp)
        else:
            self._set(key, "unschedulable")

    def readd(self, qp: QueuedPod, rejectors: set[str], error: bool = False) -> None:
        """After a failed binding cycle: back in as after any failed attempt (upstream
        AddUnschedulableIfNotPresent), though done() may have dropped it (it keeps its attempts)."""
        if self.pods.setdefault(qp.info.key, qp) is qp:
            self.requeue(qp, rejectors, error)

    def on_event(self, event: str, skip: str = "") -> int:
        """A cluster event ("Node/Add", "Pod/Delete", …): move the unschedulable pods it may help
        (but not `skip`, the pod the event is about)."""
        moved = 0
        self.moved_while_inflight |= self.inflight
        for key in list(self.unschedulable):
            if key == skip:
                continue
            qp = self.pods[key]
            if not qp.rejectors or any(event in self.events_of(r) for r in qp.rejectors):
                self._to_backoff_or_active(qp)
                moved += 1
        return moved

    def flush_unschedulable(self, older_than: float = UNSCHEDULABLE_FLUSH) -> None:
        now = time.monotonic()
        for key in list(self.unschedulable):
            if now - self.pods[key].backoff_until > older_than:
                self._to_backoff_or_active(self.pods[key])

    def pending(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.where.values():
            out[w] = out.get(w, 0) + 1
        return out
