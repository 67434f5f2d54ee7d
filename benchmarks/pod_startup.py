"""Pod start-up on a real node: busybox pods (image present) from creation to Running as seen
through a watch.

Two ways to create them, printed one after the other:
  burst  all N at once: the node's throughput (pods/s) and how long the last one waits;
  paced  N at a steady --rate per second: per-pod latency, as upstream's pod start-up SLO
         measures it (p99 ≤ 5 s with pods created at a rate the node sustains).
Each prints p50/p99/max, throughput, the agent's CPU seconds per pod and resident memory, and the
agent's own start-up and exit times. --trace runs the agent with debug logging and adds where a
pod's time goes (its `startup` log lines, kybernetes/kubelet/timeline.py): creation → seen by the
agent → volumes → sandbox → container started → status written → watch event.

    sudo .venv/bin/python benchmarks/pod_startup.py [--pods 100] [--rate 5] [--mode both]
                                                    [--trace]

Starts its own API server and `kyb agent` in a temporary directory and removes everything after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kybernetes.client import Client, resource

PODS = resource("v1", "Pod")
NODE, BRIDGE, NS = "bench-node", "kybb0", "bench"
_TICK = os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its waited-for children included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_file(path: Path, text: str | tuple[str, ...], proc: subprocess.Popen,
               timeout: float = 180) -> None:
    texts = (text,) if isinstance(text, str) else text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[3]} exited; see {path}")
        if path.exists() and any(t in path.read_text(errors="replace") for t in texts):
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {text!r} in {path}")


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                 "command": ["sleep", "3600"]}]}}


async def _namespace(client: Client) -> None:
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": NS}})
    # Pods get the kube-api-access volume: wait for what the controllers put in a namespace.
    for r, name in ((resource("v1", "ServiceAccount"), "default"),
                    (resource("v1", "ConfigMap"), "kube-root-ca.crt")):
        while True:
            try:
                await client.get(r, name, NS)
                break
            except Exception:
                await asyncio.sleep(0.1)


async def run_once(client: Client, prefix: str, n: int, rate: float, concurrency: int
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Create N pods (all at once when RATE is 0, else RATE per second); wall-clock times of
    each creation request and of the watch event that shows it Running."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    _, rv = await client.list_all(PODS, NS)
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in client.watch(PODS, NS, resource_version=rv, timeout_seconds=900):
            pod = ev["object"]
            name = pod["metadata"]["name"]
            if (name.startswith(prefix) and name not in running
                    and (pod.get("status") or {}).get("phase") == "Running"):
                running[name] = time.time()
                if len(running) == n:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    sem = asyncio.Semaphore(concurrency)

    async def create(i: int) -> None:
        name = f"{prefix}-{i}"
        async with sem:
            created[name] = time.time()
            await client.create(PODS, _pod(name), NS)

    if rate <= 0:
        await asyncio.gather(*(create(i) for i in range(n)))
    else:
        start, tasks = time.monotonic(), []
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(create(i)))
        await asyncio.gather(*tasks)
    await asyncio.wait_for(done.wait(), 900)
    watcher.cancel()
    return created, running


async def cleanup(client: Client) -> None:
    items, _ = await client.list_all(PODS, NS)
    await asyncio.gather(*(client.delete(PODS, p["metadata"]["name"], NS) for p in items))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (await client.list_all(PODS, NS))[0]:
        await asyncio.sleep(0.5)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


_STARTUP = re.compile(r"startup (\S+)/(\S+) seen=([\d.]+) (.*)")


def breakdown(log: Path, created: dict[str, float], running: dict[str, float]) -> str:
    """Median time of each step after creation, from the agent's `startup` debug lines."""
    steps: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _STARTUP.search(line)
        if not m or m.group(2) not in created:
            continue
        name, seen = m.group(2), float(m.group(3))
        steps.setdefault("seen", []).append(seen - created[name])
        marks = dict(kv.split("=+") for kv in m.group(4).split())
        for step, at in marks.items():
            steps.setdefault(step, []).append(seen - created[name] + float(at))
        if "patched" in marks:
            steps.setdefault("watch", []).append(running[name] - created[name])
    if not steps:
        return "  (no startup lines: run with --trace)"
    order = sorted(steps, key=lambda s: statistics.median(steps[s]))
    return "\n".join(f"  {s:<8} p50 {statistics.median(steps[s]):7.3f} s  "
                     f"p99 {_pct(steps[s], 0.99):7.3f} s  (after creation, {len(steps[s])} pods)"
                     for s in order)


def report(label: str, created: dict[str, float], running: dict[str, float],
           cpu: float) -> None:
    lat = [running[k] - created[k] for k in created]
    span = max(running.values()) - min(created.values())
    print(f"{label}: {len(lat)} pods  creation → Running (watch): p50 {_pct(lat, 0.5):.3f} s  "
          f"p99 {_pct(lat, 0.99):.3f} s  max {max(lat):.3f} s")
    print(f"  throughput {len(lat) / span:.1f} pods/s (first creation to last Running "
          f"{span:.1f} s)  agent CPU {cpu / len(lat) * 1000:.0f} ms/pod")


async def measure(kubeconfig: Path, args, agent: subprocess.Popen, log: Path) -> None:
    client = Client.from_kubeconfig(kubeconfig)
    try:
        await _namespace(client)
        runs = []
        if args.mode in ("burst", "both"):
            runs.append(("burst", 0.0))
        if args.mode in ("paced", "both"):
            runs.append((f"paced {args.rate:g}/s", args.rate))
        for label, rate in runs:
            cpu0 = _cpu_s(agent.pid)
            created, running = await run_once(client, label.split()[0], args.pods, rate,
                                              args.concurrency)
            report(label, created, running, _cpu_s(agent.pid) - cpu0)
            if args.trace:
                await asyncio.sleep(1)  # the agent logs a pod's timeline just after its patch
                print(breakdown(log, created, running))
            rss = _rss_kib(agent.pid)
            containerd = [c for c in _children(agent.pid)
                          if b"containerd" in Path(f"/proc/{c}/cmdline").read_bytes()]
            print(f"  agent RSS {rss / 1024:.1f} MiB" +
                  (f"  containerd RSS {_rss_kib(containerd[0]) / 1024:.1f} MiB"
                   if containerd else ""))
            t0 = time.monotonic()
            await cleanup(client)
            print(f"  (deleting them took {time.monotonic() - t0:.1f} s)")
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--mode", choices=("burst", "paced", "both"), default="both")
    ap.add_argument("--rate", type=float, default=5.0, help="pods per second in paced mode")
    ap.add_argument("--concurrency", type=int, default=100,
                    help="creation requests in flight at once")
    ap.add_argument("--trace", action="store_true", help="agent debug log + time breakdown")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kyb-bench-"))
    print("logs in", base)
    api_port, kubelet_port = _port(), _port()
    py = [sys.executable, "-m", "kybernetes"]
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
        t0 = time.monotonic()
        agent = subprocess.Popen(py + (["-v"] if args.trace else []) + [
            "agent", "--kubeconfig", str(kubeconfig), "--data-dir", str(base / "agent"),
            "--kubelet-port", str(kubelet_port), "--node-name", NODE, "--node-ip", "127.0.0.1",
            "--cni-bridge", BRIDGE, "--pod-cidr", "10.244.0.0/24"],
            stdout=open(base / "agent.log", "wb"), stderr=subprocess.STDOUT)
        _wait_file(base / "agent.log", "agent ready", agent)
        ready = time.monotonic() - t0
        # The mirror's pushes go on after ready: let them end so they do not share the CPU.
        _wait_file(base / "agent.log", ("image mirror on", "skopeo missing"), agent)
        print(f"agent start-up: {ready:.1f} s to ready, {time.monotonic() - t0:.1f} s to its "
              "image mirror serving")
        asyncio.run(measure(kubeconfig, args, agent, base / "agent.log"))
    finally:
        if agent and agent.poll() is None:
            t0 = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
            print(f"agent exit: {time.monotonic() - t0:.1f} s after SIGTERM")
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
