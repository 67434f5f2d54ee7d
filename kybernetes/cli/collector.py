"""Garbage collection for processes that hold large caches of decoded JSON.

The API server's watch cache and every informer keep millions of small dicts and lists alive.
CPython's default collector looks at the young objects every 700 allocations and scans the whole
heap each time it has grown by a quarter: in `benchmarks/scheduler.py` that was about 6 s of CPU
per process for 10,000 pods. Nearly all of it was wasted: these objects hold no reference cycles,
and reference counting frees them the moment they are dropped.

So here the young collections scan nothing: when one starts, everything is frozen (`gc.freeze`,
a list splice) and later collections skip it. Only cyclic garbage outlives its last reference
then. A full collection, which unfreezes and looks at everything, runs once the frozen set has
doubled since the last one (Go's default GOGC=100 trigger) and a minute has passed, or at once
when it has grown eightfold. So a cache filling up fast (10,000 pods in half a minute) costs one
full collection rather than one per doubling. Such cycles are rare here: a full collection
after that benchmark found about 2,000 objects to free among 400,000. An explicit `gc.collect()`
is a full collection too.

The growth is counted from the young generation's count at each freeze (allocations less frees):
`gc.get_freeze_count()` walks the whole frozen list, about 150 ms for 3 million objects.
"""

from __future__ import annotations

import gc
import threading
import time

YOUNG = 10_000          # allocations between young collections (default 700); they are cheap now
GROWTH = 2.0            # the frozen set may grow this much before a full collection ...
MIN_INTERVAL = 60.0     # ... once this many seconds have passed since the last one
HARD_GROWTH = 8.0       # beyond this, at once
MIN_BASE = 100_000      # small processes: no full collection before this many objects
CHECK_SECONDS = 1.0

_base = MIN_BASE        # frozen objects after the last full collection
_grown = 0              # objects frozen since then, less those freed (never fewer than that)
_last_full = time.monotonic()
_thread: threading.Thread | None = None


def install() -> None:
    global _thread
    if _after_or_before not in gc.callbacks:
        gc.set_threshold(YOUNG, 10, 10)
        gc.callbacks.append(_after_or_before)
    if _thread is None:
        _thread = threading.Thread(target=_watch, name="gc-growth", daemon=True)
        _thread.start()


def full_collection_due() -> bool:
    heap = _base + _grown
    if heap > HARD_GROWTH * _base:
        return True
    return heap > GROWTH * _base and time.monotonic() - _last_full >= MIN_INTERVAL


def _watch() -> None:
    while True:
        time.sleep(CHECK_SECONDS)
        if full_collection_due():
            gc.collect()


def _after_or_before(phase: str, info: dict) -> None:
    global _base, _grown, _last_full
    if info["generation"] < 2:
        if phase == "start":
            # The young count goes up per allocation and down per free, but stops at 0: so
            # the sum may only overstate the growth.
            _grown += gc.get_count()[0]
            gc.freeze()     # the collection that follows finds nothing young to scan
        return
    if phase == "start":
        gc.unfreeze()       # a full collection sees everything
    else:
        gc.freeze()
        _base, _grown = max(gc.get_freeze_count(), MIN_BASE), 0
        _last_full = time.monotonic()
