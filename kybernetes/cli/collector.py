"""Garbage collection for processes that hold large caches of decoded JSON.

The API server's watch cache and every informer keep millions of small dicts and lists alive.
CPython's default collector looks at the young objects every 700 allocations and scans the whole
heap each time it has grown by a quarter: in `benchmarks/scheduler.py` that was about 6 s of CPU
per process for 10,000 pods. Nearly all of it was wasted: these objects hold no reference cycles,
and reference counting frees them the moment they are dropped.

So here the young collections scan nothing: when one starts, everything is frozen (`gc.freeze`,
a list splice) and later collections skip it. Only cyclic garbage outlives its last reference
then. A full collection, which unfreezes and looks at everything, runs once the frozen objects
or the process's resident memory have doubled since the last one (Go's default GOGC=100
trigger) and a minute has passed, or at once when they have grown eightfold (memory: fourfold).
So a cache filling up fast (10,000 pods in half a minute) costs one full collection rather than
one per doubling. Such cycles are rare here: a full collection after that benchmark found about
2,000 objects to free among 400,000. An explicit `gc.collect()` is a full collection too.

The growth is estimated from the young generation's count at each freeze (allocations less
frees, but never below 0, so it can only overstate): `gc.get_freeze_count()` walks the whole
frozen list (about 150 ms for 3 million objects), so it only confirms an estimate that says a
collection is due. The full collection runs on the event loop of the thread that noticed (where
asyncio objects' finalizers expect to run); a process without a running loop collects from a
small thread instead.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

YOUNG = 10_000          # allocations between young collections (default 700); they are cheap now
GROWTH = 2.0            # the frozen set or memory may grow this much before a full collection ...
MIN_INTERVAL = 60.0     # ... once this many seconds have passed since the last one
HARD_GROWTH = 8.0       # objects beyond this, at once
HARD_RSS_GROWTH = 4.0   # resident memory beyond this, at once (cycles may hold large buffers)
MIN_BASE = 100_000      # small processes: no full collection before this many objects ...
MIN_RSS = 64 << 20      # ... or this much memory
FALLBACK_SECONDS = 5.0  # a due collection no event loop took is run by the thread after this

_base = MIN_BASE        # frozen objects after the last full collection
_grown = 0              # objects frozen since then, less those freed (never fewer than that)
_base_rss = MIN_RSS
_last_full = time.monotonic()
_due_since = 0.0        # when a collection was handed to an event loop (0: none pending)
_thread: threading.Thread | None = None
_PAGE = os.sysconf("SC_PAGE_SIZE")


def install() -> None:
    global _thread
    if _after_or_before in gc.callbacks:
        return
    gc.set_threshold(YOUNG, 10, 10)
    gc.callbacks.append(_after_or_before)
    _thread = threading.Thread(target=_fallback, name="gc-fallback", daemon=True)
    _thread.start()


def _uninstall_in_child() -> None:
    """A forked child has no fallback thread: it goes back to CPython's defaults."""
    if _after_or_before in gc.callbacks:
        gc.callbacks.remove(_after_or_before)
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


os.register_at_fork(after_in_child=_uninstall_in_child)


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def full_collection_due() -> bool:
    """What the estimate and the memory figure say (cheap: no walk over the objects)."""
    heap, rss = _base + _grown, _rss()
    if heap > HARD_GROWTH * _base or rss > HARD_RSS_GROWTH * _base_rss:
        return True
    return ((heap > GROWTH * _base or rss > GROWTH * _base_rss)
            and time.monotonic() - _last_full >= MIN_INTERVAL)


def _confirmed() -> bool:
    """The estimate checked against the real count (the memory figure is exact already)."""
    global _grown
    if _rss() > GROWTH * _base_rss:
        return True
    _grown = max(gc.get_freeze_count() - _base, 0)
    return full_collection_due()


def _collect() -> None:
    global _due_since
    _due_since = 0.0
    gc.collect()


def _fallback() -> None:
    while True:
        time.sleep(1.0)
        if _due_since and time.monotonic() - _due_since > FALLBACK_SECONDS:
            _collect()


def _after_or_before(phase: str, info: dict) -> None:
    global _base, _grown, _base_rss, _last_full, _due_since
    if info["generation"] < 2:
        if phase != "start":
            return
        _grown += gc.get_count()[0]
        gc.freeze()     # the collection that follows finds nothing young to scan
        if not _due_since and full_collection_due() and _confirmed():
            _due_since = time.monotonic()
            try:
                asyncio.get_running_loop().call_soon(_collect)
            except RuntimeError:
                # No loop in this thread. A helper thread of a process whose main thread runs
                # one leaves it to the main thread's next young collection; a process without
                # a loop gets the fallback thread.
                if threading.current_thread() is not threading.main_thread():
                    _due_since = 0.0
        return
    if phase == "start":
        gc.unfreeze()   # a full collection sees everything
    else:
        gc.freeze()
        _base, _grown = max(gc.get_freeze_count(), MIN_BASE), 0
        _base_rss = max(_rss(), MIN_RSS)
        _last_full = time.monotonic()
        _due_since = 0.0
