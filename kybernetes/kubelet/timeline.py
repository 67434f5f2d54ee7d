"""Where a pod's start-up time goes, for the debug log.

The worker marks each step of a new pod (seen, volumes, sandbox, image, created, started,
patched); once the status that says Running is written, one debug line gives the wall-clock time
the pod was seen and each step's offset from it, so a benchmark (benchmarks/pod_startup.py
--trace) can add the time from creation to seen. Nothing is kept once a pod has started.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("kyb.kubelet.startup")


class Timelines:
    def __init__(self) -> None:
        self._open: dict[str, tuple[float, float, list[tuple[str, float]]]] = {}

    def seen(self, uid: str) -> None:
        if log.isEnabledFor(logging.DEBUG) and uid not in self._open:
            self._open[uid] = (time.time(), time.monotonic(), [])

    def mark(self, uid: str, step: str) -> None:
        entry = self._open.get(uid)
        if entry is not None:
            entry[2].append((step, time.monotonic() - entry[1]))

    def done(self, uid: str, name: str) -> None:
        """The pod's Running status is written: log its timeline and forget it."""
        entry = self._open.pop(uid, None)
        if entry is None:
            return
        wall, _, steps = entry
        log.debug("startup %s seen=%.6f %s", name, wall,
                  " ".join(f"{s}=+{t:.3f}" for s, t in steps))

    def forget(self, uid: str) -> None:
        self._open.pop(uid, None)
