"""Store throughput and watch latency: SQLite (embedded) next to a real etcd on this machine.

    .venv/bin/python benchmarks/store.py [--seconds N] [--clients 1,16,128] [--no-etcd3]

Prints, for each backend, creates/s and gets/s with 1, 16 and 128 concurrent clients (asyncio
tasks sharing one store, as the API server's handlers do) and the delay from the start of a write
to its watch event (p50/p99), then the ratio sqlite/etcd. Figures only, nothing is asserted.
The issue's goal: SQLite writes/s >= 0.5 x etcd's at 16 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "store"))

from etcd_cluster import EtcdCluster, etcd_available  # noqa: E402

from kybernetes.store.etcd import EtcdStore  # noqa: E402

VALUE = os.urandom(512).hex().encode()  # 1 KiB, about one small Kubernetes object


async def _run_for(seconds: float, clients: int, op) -> int:
    """Run `op(client, i)` in `clients` loops for `seconds`; return how many completed."""
    done = 0
    stop = time.monotonic() + seconds

    async def loop(c: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            await op(c, i)
            i += 1
            done += 1

    await asyncio.gather(*(loop(c) for c in range(clients)))
    return done


async def measure(store, seconds: float, client_counts: list[int]) -> dict[str, float]:
    figures: dict[str, float] = {}
    written: list[str] = []
    for clients in client_counts:
        run = f"/bench/c{clients}"

        async def create(c: int, i: int) -> None:
            key = f"{run}/{c}/{i:08d}"
            await store.create(key, VALUE)
            written.append(key)

        t = time.monotonic()
        n = await _run_for(seconds, clients, create)
        figures[f"write/s c={clients}"] = n / (time.monotonic() - t)

    async def get(c: int, i: int) -> None:
        if await store.get(random.choice(written)) is None:
            raise RuntimeError("a written key is missing")

    for clients in client_counts:
        t = time.monotonic()
        n = await _run_for(seconds, clients, get)
        figures[f"read/s c={clients}"] = n / (time.monotonic() - t)

    # watch delay: 4 writers, one watcher over their prefix
    started: dict[str, float] = {}
    delays: list[float] = []
    events = store.watch("/bench/watch/")

    async def write(c: int, i: int) -> None:
        key = f"/bench/watch/{c}/{i:08d}"
        started[key] = time.monotonic()
        await store.create(key, VALUE)

    async def receive() -> None:
        async for ev in events:
            delays.append(time.monotonic() - started[ev.kv.key])

    receiver = asyncio.create_task(receive())
    n = await _run_for(seconds, 4, write)
    try:
        async with asyncio.timeout(10):
            while len(delays) < n:
                await asyncio.sleep(0.01)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await events.aclose()
    delays.sort()
    figures["watch p50 ms"] = delays[len(delays) // 2] * 1000
    figures["watch p99 ms"] = delays[min(int(len(delays) * 0.99), len(delays) - 1)] * 1000
    return figures


async def bench_sqlite(workdir: Path, seconds: float, clients: list[int]) -> dict[str, float]:
    from kybernetes.store.sqlite import SqliteStore

    store = await SqliteStore(str(workdir / "bench.db")).open()
    try:
        return await measure(store, seconds, clients)
    finally:
        await store.close()


async def bench_etcd(workdir: Path, members: int, seconds: float, clients: list[int]):
    cluster = EtcdCluster(workdir / f"etcd{members}", members=members)
    endpoints = cluster.start()
    try:
        store = await EtcdStore.open(endpoints)
        try:
            return await measure(store, seconds, clients)
        finally:
            await store.close()
    finally:
        cluster.stop()


def _table(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    rows = list(next(iter(results.values())))
    etcds = [n for n in names if n.startswith("etcd")]
    head = ["", *names] + ([f"sqlite/{e}" for e in etcds] if "sqlite" in results else [])
    lines = [head]
    for row in rows:
        line = [row] + [f"{results[n][row]:.1f}" for n in names]
        if "sqlite" in results:
            line += [f"{results['sqlite'][row] / results[e][row]:.2f}" for e in etcds]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", default="1,16,128")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-etcd3", action="store_true", help="skip the 3-member cluster")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kyb-store-bench-") as tmp:
        workdir = Path(tmp)
        if not args.no_sqlite:
            print("sqlite ...", file=sys.stderr)
            results["sqlite"] = await bench_sqlite(workdir, args.seconds, clients)
        if etcd_available():
            print("etcd, 1 member ...", file=sys.stderr)
            results["etcd-1"] = await bench_etcd(workdir, 1, args.seconds, clients)
            if not args.no_etcd3:
                print("etcd, 3 members ...", file=sys.stderr)
                results["etcd-3"] = await bench_etcd(workdir, 3, args.seconds, clients)
        else:
            print("etcd binary not found: etcd columns skipped", file=sys.stderr)
    if results:
        print(_table(results))
    if "sqlite" in results and "etcd-1" in results and 16 in clients:
        ratio = results["sqlite"]["write/s c=16"] / results["etcd-1"]["write/s c=16"]
        print(f"goal: sqlite writes/s at 16 clients >= 0.5 x etcd-1's -> measured {ratio:.2f} x")


if __name__ == "__main__":
    asyncio.run(main())
