"""Scheduler throughput end to end through the API (scheduler_perf shapes).

    python benchmarks/scheduler.py [--nodes 5000 --pods 10000] [--only basic|spread|anti]

Starts its own API server and `kyb scheduler`, creates nodes through the API, then creates pods
(many requests in flight) and reports pods/s from the first create to the last pod bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kybernetes.client import Client, resource

PODS, NODES = resource("v1", "Pod"), resource("v1", "Node")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kybernetes", *args],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _gather_limited(coros, limit: int = 64) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            await c
    await asyncio.gather(*(one(c) for c in coros))


def _node(i: int, zones: int = 10) -> dict:
    name = f"node-{i}"
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": f"zone-{i % zones}"}},
            "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                       "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(i: int, ns: str, kind: str) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                  "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    labels = {"app": kind}
    if kind == "spread":
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}]
    elif kind == "anti":
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}}
    return {"metadata": {"name": f"{kind}-{i}", "namespace": ns, "labels": labels}, "spec": spec}


async def _nodes(client: Client, n: int) -> None:
    async def one(i):
        obj = _node(i)
        made = await client.create(NODES, obj)
        made["status"] = obj["status"]
        await client.update_status(NODES, made)
    await _gather_limited((one(i) for i in range(n)), 64)


async def _run(client: Client, kind: str, n_pods: int) -> float:
    ns = f"bench-{kind}"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": ns}})
    bound = 0
    done = asyncio.Event()
    _, rv = await client.list_all(PODS, ns)

    async def watch():
        nonlocal bound
        seen: set[str] = set()
        async for ev in client.watch(PODS, ns, resource_version=rv, timeout_seconds=3600):
            obj = ev["object"]
            if obj.get("spec", {}).get("nodeName") and obj["metadata"]["name"] not in seen:
                seen.add(obj["metadata"]["name"])
                bound = len(seen)
                if bound >= n_pods:
                    done.set()
                    return
    w = asyncio.create_task(watch())
    start = time.monotonic()
    await _gather_limited((client.create(PODS, _pod(i, ns, kind), ns) for i in range(n_pods)), 64)
    created = time.monotonic()
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        w.cancel()
    took = time.monotonic() - start
    print(f"{kind}: {n_pods} pods, created in {created - start:.1f}s, all bound in {took:.1f}s "
          f"-> {n_pods / took:.0f} pods/s", flush=True)
    return n_pods / took


async def bench(nodes: int, pods: int, kind: str, workdir: Path) -> None:
    port = _port()
    api = _start(["apiserver", "--data-dir", str(workdir / "api"), "--secure-port", str(port)],
                 workdir / "apiserver.log")
    sched = None
    try:
        kubeconfig = workdir / "api" / "kubeconfig.yaml"
        for _ in range(300):
            if kubeconfig.exists():
                break
            await asyncio.sleep(0.1)
        client = Client.from_kubeconfig(kubeconfig)
        for _ in range(100):
            try:
                await client.request("GET", "/readyz")
                break
            except Exception:
                await asyncio.sleep(0.2)
        t = time.monotonic()
        await _nodes(client, nodes)
        print(f"{nodes} nodes registered in {time.monotonic() - t:.1f}s", flush=True)
        sched = _start(["scheduler", "--kubeconfig", str(kubeconfig), "--leader-elect=false"],
                       workdir / "scheduler.log")
        await asyncio.sleep(3)   # let it list the nodes
        await _run(client, kind, pods)
        await client.close()
    finally:
        if sched:
            _stop(sched)
        _stop(api)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["basic", "spread", "anti"], default=None)
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--pods", type=int, default=None)
    args = ap.parse_args()
    runs = [("basic", 5000, 10000), ("spread", 1000, 5000), ("anti", 1000, 1000)]
    for kind, n, p in runs:
        if args.only and kind != args.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(bench(args.nodes or n, args.pods or p, kind, Path(d)))


if __name__ == "__main__":
    main()
