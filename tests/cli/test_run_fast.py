"""`kyb apiserver` and `kyb scheduler` run on uvloop (cli/main.py run_fast); the node components
stay on asyncio's own loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from kybernetes.cli.main import run_fast


def test_run_fast_runs_the_coroutine_on_uvloop_and_returns_its_value():
    async def which() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    assert run_fast(which()).startswith("uvloop")


def test_without_uvloop_it_is_asyncio_run():
    code = ("import sys, asyncio; sys.modules['uvloop'] = None\n"
            "from kybernetes.cli.main import run_fast\n"
            "async def which(): return type(asyncio.get_running_loop()).__module__\n"
            "print(run_fast(which()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.startswith("asyncio")
