"""`kyb scheduler`: the process entry, with leader election on the "kube-scheduler" Lease."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from kybernetes.client import Client, LeaderElector

from .config import load
from .scheduler import Scheduler

log = logging.getLogger("kyb.scheduler")


async def serve(kubeconfig: str | None, config_path: str | None = None, *,
                leader_elect: bool = True) -> None:
    client = Client.from_kubeconfig(kubeconfig, user_agent="kube-scheduler")
    cfg = load(config_path) if config_path else load()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    identity = f"{socket.gethostname()}_{os.getpid()}"
    elector = LeaderElector(client, "kube-scheduler", identity) if leader_elect else None

    async def work() -> None:
        await Scheduler(client, cfg).run()

    task = asyncio.create_task(elector.run(work) if elector else work())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopper):
        t.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)
    if elector:
        await elector.release()
    await client.close()
