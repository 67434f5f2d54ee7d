"""Sync latency of `kyb proxy` with many services (not a test; prints figures; root only).

    .venv/bin/python tests/proxy/bench_sync_latency.py --services 1000 --mode iptables

Builds the proxylab topology, creates N Services + EndpointSlices through the API, then times
(a) all N programmed after the proxy starts, (b) one endpoint change → its rule visible in the
kernel (polled with iptables-save / nft list), repeated; min sync period 1 s as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # kybtest

from proxylab import PODS, Lab, setup, start_apiserver, stop_process, teardown  # noqa: E402

from kybernetes.client import Client, resource  # noqa: E402

SERVICES = resource("v1", "Service")
SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")


def visible(lab: Lab, mode: str, needle: str) -> bool:
    argv = ["iptables-save", "-t", "nat"] if mode == "iptables" else ["nft", "list", "table", "ip", "kube-proxy"]
    out = subprocess.run(["ip", "netns", "exec", lab.node, *argv], capture_output=True, text=True).stdout
    return needle in out


async def wait_visible(lab, mode, needle, timeout=120.0) -> float:
    t0 = time.monotonic()
    while not visible(lab, mode, needle):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(needle)
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def main(n: int, mode: str, changes: int) -> None:
    tag = f"{random.getrandbits(24):06x}"
    lab = Lab(tag=tag, node=f"kyb-t-{tag}-n1", ext=f"kyb-t-{tag}-ext",
              pods={p: f"kyb-t-{tag}-{p}" for p in PODS}, host_link=f"kyb{tag}h",
              host_ip=f"169.254.{random.randint(1, 254)}.1", dir=Path(tempfile.mkdtemp()))
    server = proxy = None
    try:
        setup(lab)
        server = start_apiserver(lab.dir / "api", lab.host_ip)
        client = Client.from_kubeconfig(server.kubeconfig)
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                name = f"s{i}"
                await client.create(SERVICES, {"metadata": {"name": name, "namespace": "default"},
                                               "spec": {"ports": [{"name": "http", "port": 80}]}})
                await client.create(SLICES, {
                    "metadata": {"name": f"{name}-x", "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [f"10.42.{100 + i // 250}.{i % 250 + 1}"]}]})

        t = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        print(f"created {n} services + slices in {time.monotonic() - t:.1f}s")
        t = time.monotonic()
        proxy = lab.spawn(lab.node, [sys.executable, "-m", "kybernetes", "proxy", "--kubeconfig",
                                     str(server.kubeconfig), "--node-name", "n1", "--mode", mode],
                          "proxy.log")
        last = f"10.42.{100 + (n - 1) // 250}.{(n - 1) % 250 + 1}:8080"
        await wait_visible(lab, mode, last)
        print(f"{mode}: proxy start → {n} services programmed: {time.monotonic() - t:.2f}s")
        lat = []
        for k in range(changes):
            await asyncio.sleep(1.1)   # let the min sync period pass, as for a lone change
            name = f"s{random.randrange(n)}"
            sl = await client.get(SLICES, f"{name}-x", "default")
            ip = f"10.42.200.{k + 1}"
            sl["endpoints"].append({"addresses": [ip]})
            t = time.monotonic()
            await client.update(SLICES, sl)
            await wait_visible(lab, mode, f"{ip}:8080")
            lat.append(time.monotonic() - t)
        print(f"{mode}: endpoint change → rule in the kernel, {n} services, {changes} changes: "
              f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
        logged = [float(line.split(", ")[-1].split("s ")[0]) for line in
                  (lab.dir / "proxy.log").read_text().splitlines() if "after the first change" in line]
        if logged:
            print(f"{mode}: proxy-reported sync (change seen → applied), last {changes}: "
                  f"median {statistics.median(logged[-changes:]) * 1000:.0f} ms")
        await client.close()
    finally:
        if proxy is not None:
            stop_process(proxy)
        if server is not None:
            server.stop()
        teardown(lab)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--mode", choices=("iptables", "nftables"), default="iptables")
    ap.add_argument("--changes", type=int, default=10)
    a = ap.parse_args()
    asyncio.run(main(a.services, a.mode, a.changes))
