"""The tuned garbage collector (kybernetes/cli/collector.py), each case in a fresh interpreter
so that this test process keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from kybernetes.cli.collector import YOUNG

_PRELUDE = """
import gc, time, weakref
from kybernetes.cli import collector
collector.install()

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a          # reference counting alone cannot free these
    return weakref.ref(a)
"""


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_installing_twice_is_the_same_as_once_and_raises_the_young_threshold():
    out = _run("""
        collector.install()
        print(gc.get_threshold()[0], gc.callbacks.count(collector._after_or_before))
    """)
    assert out == [str(YOUNG), "1"]


def test_young_collections_leave_cycles_and_an_explicit_collect_frees_them():
    out = _run("""
        gone = cycle()
        keep = [[{"n": [i]}] for i in range(5 * collector.YOUNG)]   # many young collections
        print(gone() is not None, gc.get_freeze_count() >= len(keep))
        gc.collect()
        print(gone() is None)
    """)
    assert out == ["True", "True", "True"]


def test_a_full_collection_runs_by_itself_once_the_frozen_set_has_doubled():
    out = _run("""
        collector.MIN_INTERVAL = 0
        gc.collect()
        base = collector._base
        gone = cycle()
        more = [[{"n": [i]}] for i in range(base)]     # three tracked objects each
        print(collector.full_collection_due())
        deadline = time.monotonic() + 60
        while (gone() is not None or collector._base == base) and time.monotonic() < deadline:
            time.sleep(0.1)
        print(gone() is None, collector._base > base, collector.full_collection_due())
    """)
    assert out == ["True", "True", "True", "False"]


def test_doubling_waits_for_the_interval_but_hard_growth_does_not():
    out = _run("""
        gc.collect()
        base = collector._base
        gone = cycle()
        more = [[{"n": [i]}] for i in range(base // 2)]       # 1.5 times the base: doubled
        time.sleep(2)
        print(collector.full_collection_due(), gone() is not None, collector._base == base)
        more2 = [[{"n": [i]}] for i in range(int(base * collector.HARD_GROWTH / 3))]
        deadline = time.monotonic() + 60
        while (gone() is not None or collector._base == base) and time.monotonic() < deadline:
            time.sleep(0.1)
        print(gone() is None, collector._base > base)
    """)
    assert out == ["False", "True", "True", "True", "True"]


def test_the_full_collection_runs_on_the_event_loop_thread():
    out = _run("""
        import asyncio, threading
        collector.MIN_INTERVAL = 0
        where = []
        gc.callbacks.insert(0, lambda phase, info: where.append(threading.current_thread().name)
                            if phase == "start" and info["generation"] == 2 else None)

        async def main():
            gc.collect()
            where.clear()
            gone = cycle()
            more = [[{"n": [i]}] for i in range(collector._base)]
            for _ in range(600):
                if gone() is None:
                    break
                await asyncio.sleep(0.1)
            return gone() is None
        print(asyncio.run(main()), where[:1] == [threading.main_thread().name])
    """)
    assert out == ["True", "True"]


def test_cycles_holding_much_memory_are_collected_without_object_growth():
    out = _run("""
        collector.MIN_INTERVAL = 0
        gc.collect()
        base = collector._base
        refs = []
        for _ in range(100):
            a, b = Node(), Node()
            a.other, b.other, a.blob = b, a, bytearray(3 << 20)   # 300 MiB in all
            refs.append(weakref.ref(a))
        del a, b
        deadline = time.monotonic() + 60
        while any(r() is not None for r in refs) and time.monotonic() < deadline:
            junk = [[{}] for _ in range(collector.YOUNG)]        # young collections look again
            time.sleep(0.1)
        print(all(r() is None for r in refs), collector._base < 4 * base)
    """)
    assert out == ["True", "True"]


def test_a_forked_child_goes_back_to_the_default_collector():
    out = _run("""
        import os
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, f"{gc.get_threshold()[0]} {collector._after_or_before in gc.callbacks}".encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 100).decode(), gc.get_threshold()[0])
    """)
    assert out == ["700", "False", str(YOUNG)]
