"""Figures for `kyb sim nodes` (not a test): registration time, steady renewal CPU, pods/s.

    .venv/bin/python tests/sim/bench_sim.py --nodes 1000 --pods 2000

Starts its own API server and simulator process (both stopped by PID at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kybtest as conftest  # noqa: E402
from kybernetes.client import Client, InformerFactory, resource  # noqa: E402

NODES, PODS, NS = resource("v1", "Node"), resource("v1", "Pod"), resource("v1", "Namespace")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


async def wait_ready_nodes(client: Client, prefix: str, n: int) -> None:
    while True:
        items, _ = await client.list_all(NODES, label_selector="type=kwok")
        ready = sum(1 for x in items if x["metadata"]["name"].startswith(prefix) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in (x.get("status") or {}).get("conditions") or []))
        if ready >= n:
            return
        await asyncio.sleep(0.2)


async def bench(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="simbench-"))
    api = conftest.start_apiserver(work / "api")
    sim = None
    try:
        async with Client.from_kubeconfig(api.kubeconfig) as client:
            t0 = time.monotonic()
            sim = conftest.start_component(
                ["sim", "nodes", "--kubeconfig", str(api.kubeconfig), "--count", str(args.nodes),
                 "--start-delay", "0", "--ready-delay", "0"], work / "sim.log")
            await wait_ready_nodes(client, "sim-", args.nodes)
            print(f"register {args.nodes} nodes (process start → all Ready): {time.monotonic() - t0:.1f} s")
            await asyncio.sleep(12)  # past the first renewal period: steady state
            c0, w0 = cpu_seconds(sim.pid), time.monotonic()
            await asyncio.sleep(args.window)
            c1, w1 = cpu_seconds(sim.pid), time.monotonic()
            print(f"steady lease+status renewals for {args.nodes} nodes: "
                  f"{100 * (c1 - c0) / (w1 - w0):.1f} % of one CPU (sim process, {args.window:.0f} s window)")

            ns = "bench"
            await client.create(NS, {"metadata": {"name": ns}})
            sem = asyncio.Semaphore(64)

            async def create(i: int) -> None:
                async with sem:
                    await client.create(PODS, {"metadata": {"name": f"p{i}"}, "spec": {
                        "containers": [{"name": "c", "image": "pause"}]}}, ns)

            await asyncio.gather(*(create(i) for i in range(args.pods)))
            factory = InformerFactory(client)
            inf = factory.informer(PODS, ns)
            running: set[str] = set()
            done = asyncio.Event()

            def seen(_old, new=None):
                p = new or _old
                if (p.get("status") or {}).get("phase") == "Running":
                    running.add(p["metadata"]["name"])
                    if len(running) >= args.pods:
                        done.set()
            inf.add_handler(seen, seen)
            factory.start()
            await factory.wait_for_sync()
            c0 = cpu_seconds(sim.pid)
            t0 = time.monotonic()

            async def bind(i: int) -> None:
                async with sem:
                    await client.request("POST", Client.path(PODS, ns, f"p{i}", "binding"), body={
                        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"p{i}"},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": f"sim-{i % args.nodes}"}})

            await asyncio.gather(*(bind(i) for i in range(args.pods)))
            bound = time.monotonic() - t0
            await asyncio.wait_for(done.wait(), 600)
            took = time.monotonic() - t0
            print(f"{args.pods} pods bound in {bound:.1f} s; all Running after {took:.1f} s: "
                  f"{args.pods / took:.0f} pods/s (sim CPU {cpu_seconds(sim.pid) - c0:.1f} s)")
            await factory.stop()
    finally:
        if sim is not None:
            conftest.stop_process(sim)
        api.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--window", type=float, default=30)
    asyncio.run(bench(p.parse_args()))
