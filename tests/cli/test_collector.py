"""The tuned garbage collector (kybernetes/cli/collector.py), each case in a fresh interpreter
so that this test process keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from kybernetes.cli.collector import YOUNG


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_survivors_of_a_full_collection_are_frozen_and_young_threshold_raised():
    out = _run("""
        import gc
        from kybernetes.cli import collector
        collector.install()
        collector.install()          # twice is the same as once
        keep = [[{"a": [1]}] for _ in range(50_000)]
        gc.collect()
        print(gc.get_threshold()[0], gc.callbacks.count(collector._after_collection),
              gc.get_freeze_count() > 100_000)
    """)
    assert out.split() == [str(YOUNG), "1", "True"]


def test_cyclic_garbage_among_frozen_objects_is_freed_once_the_heap_has_doubled():
    out = _run("""
        import gc, weakref
        from kybernetes.cli import collector
        collector.install()

        class Node:
            pass

        keep = [[{"a": [1]}] for _ in range(50_000)]
        gc.collect()                             # everything alive is frozen
        a, b = Node(), Node()
        a.other, b.other = b, a                  # a cycle: reference counting cannot free it
        gone = weakref.ref(a)
        gc.collect()                             # still referenced: frozen too
        del a, b
        gc.collect()
        print("frozen-garbage-kept", gone() is not None)
        more = [[{"a": [1]}] for _ in range(150_000)]   # the heap more than doubles
        for _ in range(3):
            gc.collect()
        print("freed", gone() is None)
    """)
    assert out.split() == ["frozen-garbage-kept", "True", "freed", "True"]
