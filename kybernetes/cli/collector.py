"""Garbage collection for processes that hold large caches of decoded JSON.

The API server's watch cache and every informer keep millions of small dicts and lists alive.
CPython's default collector scans the whole heap each time the old generation has grown by a
quarter, and looks at young objects every 700 allocations: in `benchmarks/scheduler.py` that was
about 6 s of CPU per process for 10,000 pods, most of it in full collections.

Here the objects that survive a full collection are frozen (`gc.freeze`): later collections skip
them, while reference counting still frees them when they are dropped. Only cyclic garbage among
frozen objects could stay, so once the frozen set has doubled (Go's default GOGC=100 trigger) it
is unfrozen and the next full collection looks at everything once more.
"""

from __future__ import annotations

import gc

YOUNG = 10_000      # allocations between young collections (default 700)
GROWTH = 2.0        # the frozen set may grow this much before everything is scanned again

_base = 0           # frozen objects after the last collection that saw everything


def install() -> None:
    if _after_collection not in gc.callbacks:
        gc.set_threshold(YOUNG, 10, 10)
        gc.callbacks.append(_after_collection)


def _after_collection(phase: str, info: dict) -> None:
    global _base
    if phase != "stop" or info["generation"] != 2:
        return
    if _base and gc.get_freeze_count() > GROWTH * _base:
        gc.unfreeze()   # the next full collection scans everything
        _base = 0
        return
    gc.freeze()
    if not _base:
        _base = gc.get_freeze_count()
