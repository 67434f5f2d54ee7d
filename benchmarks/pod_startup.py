"""Pod startup latency on a real node: N busybox pods (image present) from creation to Running
as seen through a watch; p50/p99, and the agent's (and its containerd's) resident memory.

    sudo .venv/bin/python benchmarks/pod_startup.py [--pods 100] [--concurrency 10]

Starts its own API server and `kyb agent` in a temporary directory and removes everything after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kybernetes.client import Client, resource

PODS = resource("v1", "Pod")
NODE, BRIDGE = "bench-node", "kybb0"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_file(path: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[3]} exited; see {path}")
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {text!r} in {path}")


def _pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                 "command": ["sleep", "3600"]}]}}


async def measure(kubeconfig: Path, n: int, concurrency: int) -> list[float]:
    client = Client.from_kubeconfig(kubeconfig)
    ns = "bench"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": ns}})
    # Pods get the kube-api-access volume: wait for what the controllers put in a namespace.
    for r, name in ((resource("v1", "ServiceAccount"), "default"),
                    (resource("v1", "ConfigMap"), "kube-root-ca.crt")):
        while True:
            try:
                await client.get(r, name, ns)
                break
            except Exception:
                await asyncio.sleep(0.1)
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    _, rv = await client.list_all(PODS, ns)
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in client.watch(PODS, ns, resource_version=rv, timeout_seconds=600):
            pod = ev["object"]
            name = pod["metadata"]["name"]
            if (pod.get("status") or {}).get("phase") == "Running" and name not in running:
                running[name] = time.monotonic()
                if len(running) == n:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    sem = asyncio.Semaphore(concurrency)

    async def create(i: int) -> None:
        async with sem:
            created[f"bench-{i}"] = time.monotonic()
            await client.create(PODS, _pod(i), ns)

    await asyncio.gather(*(create(i) for i in range(n)))
    await asyncio.wait_for(done.wait(), 600)
    watcher.cancel()
    await client.close()
    return sorted(running[k] - created[k] for k in created)


async def cleanup(kubeconfig: Path) -> None:
    client = Client.from_kubeconfig(kubeconfig)
    items, _ = await client.list_all(PODS, "bench")
    await asyncio.gather(*(client.delete(PODS, p["metadata"]["name"], "bench") for p in items))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (await client.list_all(PODS, "bench"))[0]:
        await asyncio.sleep(0.5)
    await client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=10)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kyb-bench-"))
    print("logs in", base)
    api_port, kubelet_port = _port(), _port()
    py = [sys.executable, "-m", "kybernetes"] + (["-v"] if os.environ.get("KYB_BENCH_DEBUG") else [])
    api = subprocess.Popen(py + ["apiserver", "--data-dir", str(base / "api"), "--secure-port",
                                 str(api_port)], stdout=open(base / "api.log", "wb"),
                           stderr=subprocess.STDOUT)
    agent = controllers = None
    try:
        kubeconfig = base / "api" / "kubeconfig.yaml"
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        controllers = subprocess.Popen(py + [
            "controller-manager", "--kubeconfig", str(kubeconfig), "--controllers",
            "serviceaccount,root-ca-cert-publisher", "--leader-elect=false"],
            stdout=open(base / "controllers.log", "wb"), stderr=subprocess.STDOUT)
        agent = subprocess.Popen(py + ["agent", "--kubeconfig", str(kubeconfig), "--data-dir",
                                       str(base / "agent"), "--kubelet-port", str(kubelet_port),
                                       "--node-name", NODE, "--node-ip", "127.0.0.1",
                                       "--cni-bridge", BRIDGE, "--pod-cidr", "10.244.0.0/24"],
                                 stdout=open(base / "agent.log", "wb"), stderr=subprocess.STDOUT)
        _wait_file(base / "agent.log", "agent ready", agent)
        lat = asyncio.run(measure(kubeconfig, args.pods, args.concurrency))
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
        rss = _rss_kib(agent.pid)
        containerd = [c for c in _children(agent.pid)
                      if b"containerd" in Path(f"/proc/{c}/cmdline").read_bytes()]
        print(f"pods: {len(lat)}  concurrency: {args.concurrency}")
        print(f"creation → Running (watch): p50 {p(0.50):.3f} s  p99 {p(0.99):.3f} s  "
              f"max {lat[-1]:.3f} s")
        print(f"agent RSS: {rss / 1024:.1f} MiB"
              + (f"  containerd RSS: {_rss_kib(containerd[0]) / 1024:.1f} MiB" if containerd else ""))
        asyncio.run(cleanup(kubeconfig))
    finally:
        if agent and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        if controllers and controllers.poll() is None:
            controllers.send_signal(signal.SIGTERM)
            controllers.wait(30)
        from kybernetes.kubelet.agent import teardown
        asyncio.run(teardown(base / "agent", BRIDGE))
        api.send_signal(signal.SIGTERM)
        api.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
