"""The controller path end to end: a big Deployment on simulated nodes, then a rolling update.

    python benchmarks/controllers.py [--replicas 3000] [--nodes 100] [--keep]

Starts its own API server (temp dir), the controller-manager (deployment, replicaset,
garbagecollector), the scheduler and `kyb sim nodes`; creates a busybox Deployment and reports
seconds until status.availableReplicas == replicas, pods created/s and bound/s during the ramp
(seen through a pod watch), then `set image` and seconds until the rollout is complete as
`kubectl rollout status` judges it. RSS (VmRSS) and CPU seconds of every component are printed
at the end. Prints figures; asserts nothing.
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

from prometheus_client.parser import text_string_to_metric_families

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource

PODS, NODES = resource("v1", "Pod"), resource("v1", "Node")
DEPLOYMENTS = resource("apps/v1", "Deployment")
NS = "bench"
_TICK = os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except OSError:
        return 0.0


class Procs:
    """The components this benchmark started, stopped by PID."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.peak: dict[str, float] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "kybernetes", *args], stdout=log,
                             stderr=subprocess.STDOUT)
        self.procs[name] = p
        return p

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise SystemExit(f"{name} exited ({p.returncode}); see {self.workdir}/{name}.log")

    def sample(self) -> None:
        for name, p in self.procs.items():
            self.peak[name] = max(self.peak.get(name, 0.0), _rss_mib(p.pid))

    def cpu(self) -> dict[str, float]:
        return {name: _cpu_s(p.pid) for name, p in self.procs.items()}

    def stop_all(self) -> None:
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _deployment(replicas: int) -> dict:
    labels = {"app": "bench"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bench", "namespace": NS, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 30,
                         "containers": [{"name": "busybox", "image": "busybox:1.36",
                                         "command": ["sleep", "infinity"]}]}}}}


def rollout_complete(d: dict) -> bool:
    """`kubectl rollout status` for a Deployment: observed, updated, old pods gone, available."""
    spec, st = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    return (st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
            and st.get("updatedReplicas", 0) >= want
            and st.get("replicas", 0) <= st.get("updatedReplicas", 0)
            and st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0))


class PodCounter:
    """Watches the namespace's pods: when each was first seen, and first seen bound."""

    def __init__(self, client: Client):
        self.client = client
        self.added: list[float] = []
        self.bound: list[float] = []
        self.by_owner: dict[str, int] = {}  # pods created per ReplicaSet
        self._seen: set[str] = set()
        self._bound: set[str] = set()
        self.task: asyncio.Task | None = None

    def reset(self) -> None:
        self.added, self.bound, self.by_owner = [], [], {}

    async def start(self) -> None:
        _, rv = await self.client.list_all(PODS, NS)
        self.task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for ev in self.client.watch(PODS, NS, resource_version=rv,
                                                  timeout_seconds=3600):
                    pod = ev["object"]
                    rv = pod["metadata"].get("resourceVersion") or rv
                    if ev["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    uid = pod["metadata"]["uid"]
                    now = time.monotonic()
                    if uid not in self._seen:
                        self._seen.add(uid)
                        self.added.append(now)
                        owner = (pod["metadata"].get("ownerReferences") or [{}])[0].get("name", "-")
                        self.by_owner[owner] = self.by_owner.get(owner, 0) + 1
                    if pod["spec"].get("nodeName") and uid not in self._bound:
                        self._bound.add(uid)
                        self.bound.append(now)
            except asyncio.CancelledError:
                raise
            except ApiError as e:  # a dropped watch: resume from the last event seen
                print(f"  (pod watch: {e}; resuming)", flush=True)
                if e.code == 410:
                    _, rv = await self.client.list_all(PODS, NS)
                await asyncio.sleep(0.5)


class DeploymentWatch:
    """The latest copy of the Deployment, kept by one long-lived watch."""

    def __init__(self, client: Client):
        self.client = client
        self.obj: dict = {}
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.obj = await self.client.get(DEPLOYMENTS, "bench", NS)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        rv = self.obj["metadata"]["resourceVersion"]
        while True:
            try:
                async for ev in self.client.watch(DEPLOYMENTS, NS, resource_version=rv,
                                                  field_selector="metadata.name=bench",
                                                  timeout_seconds=600):
                    rv = ev["object"]["metadata"].get("resourceVersion") or rv
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.obj = ev["object"]
                        self.changed.set()
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:  # too old: start again from a fresh read
                    self.obj = await self.client.get(DEPLOYMENTS, "bench", NS)
                    rv = self.obj["metadata"]["resourceVersion"]
                    self.changed.set()
                else:
                    await asyncio.sleep(0.5)

    async def wait(self, done, procs: Procs, timeout: float, progress: str) -> float:
        """Seconds until done(deployment); every 2 s checks the processes and samples RSS."""
        start = time.monotonic()
        last_print = start
        while not done(self.obj):
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{progress}: not done after {timeout:.0f}s: "
                                   f"{self.obj.get('status')}")
            self.changed.clear()
            try:
                async with asyncio.timeout(2):
                    await self.changed.wait()
            except TimeoutError:
                pass
            procs.check()
            procs.sample()
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                st = self.obj.get("status") or {}
                print(f"  {progress} {last_print - start:5.0f}s: replicas {st.get('replicas', 0)} "
                      f"updated {st.get('updatedReplicas', 0)} ready {st.get('readyReplicas', 0)} "
                      f"available {st.get('availableReplicas', 0)}", flush=True)
        return time.monotonic() - start


def _rate(times: list[float], start: float) -> str:
    if not times:
        return "none"
    took = max(times[-1] - start, 1e-6)
    # the busiest 5-second window, for a steady-state figure beside the average
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 5:
            j += 1
        best = max(best, i - j + 1)
    return (f"{len(times)} in {took:.1f}s = {len(times) / took:.0f}/s "
            f"(peak 5s window {best / 5:.0f}/s)")


async def wait_nodes(client: Client, n: int, procs: Procs, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        procs.check()
        items, _ = await client.list_all(NODES)
        ready = sum(1 for node in items
                    for c in (node.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready" and c.get("status") == "True")
        if ready >= n:
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only some of {n} nodes became Ready")


async def api_requests(client: Client) -> dict[tuple[str, str], float]:
    """The API server's request counters by (verb, resource), and latency sums by verb."""
    resp = await client.session.get("/metrics")
    text = await resp.text()
    out: dict[tuple[str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "apiserver_request_total":
                key = (s.labels["verb"], s.labels["resource"])
                out[key] = out.get(key, 0) + s.value
            elif s.name in ("apiserver_request_duration_seconds_sum",
                            "apiserver_request_duration_seconds_count"):
                key = (s.name.rpartition("_")[2], s.labels["verb"])
                out[key] = out.get(key, 0) + s.value
    return out


def _requests_report(before: dict, after: dict, took: float) -> str:
    diff = {k: after[k] - before.get(k, 0) for k in after}
    writes = sorted(((v, k) for k, v in diff.items() if k[0] not in ("sum", "count")
                     and v > 0), reverse=True)
    total = sum(v for v, _ in writes)
    lines = [f"  API requests:   {total:.0f} ({total / took:.0f}/s): "
             + ", ".join(f"{verb} {res} {v:.0f}" for v, (verb, res) in writes[:8])]
    # GET is left out: watches count as GETs lasting minutes
    lat = [f"{verb} {1000 * diff[('sum', verb)] / diff[('count', verb)]:.0f}ms"
           for (kind, verb) in diff if kind == "count" and verb != "GET" and diff[(kind, verb)] > 0]
    lines.append("  mean latency:   " + "  ".join(lat) + " (writes)")
    return "\n".join(lines)


def _cpu_line(before: dict[str, float], after: dict[str, float]) -> str:
    return "  ".join(f"{k} {after[k] - before.get(k, 0):.1f}" for k in after)


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    procs = Procs(workdir)
    port = _port()
    kubeconfig = workdir / "api" / "kubeconfig.yaml"
    procs.start("apiserver", ["apiserver", "--data-dir", str(workdir / "api"),
                              "--secure-port", str(port)])
    client = None
    try:
        for _ in range(600):
            procs.check()
            if kubeconfig.exists():
                break
            await asyncio.sleep(0.1)
        client = Client.from_kubeconfig(kubeconfig, timeout=60)
        for _ in range(300):
            if await client.ready():
                break
            await asyncio.sleep(0.2)
        kc = str(kubeconfig)
        procs.start("sim", ["sim", "nodes", "--kubeconfig", kc, "--count", str(args.nodes),
                            "--pods", "110", "--start-delay", str(args.start_delay),
                            "--ready-delay", str(args.ready_delay)])
        took = await wait_nodes(client, args.nodes, procs)
        print(f"{args.nodes} simulated nodes Ready in {took:.1f}s", flush=True)
        procs.start("scheduler", ["scheduler", "--kubeconfig", kc, "--leader-elect=false"])
        procs.start("controller-manager", ["controller-manager", "--kubeconfig", kc,
                                           "--controllers", "deployment,replicaset,garbagecollector",
                                           "--leader-elect=false"])
        await client.create(resource("v1", "Namespace"), {"metadata": {"name": NS}})
        await asyncio.sleep(3)  # let the components list and start watching
        procs.sample()
        idle = {k: v for k, v in procs.peak.items()}
        pods = PodCounter(client)
        await pods.start()

        # ---- ramp: 0 → replicas ----
        cpu0 = procs.cpu()
        req0 = await api_requests(client)
        t0 = time.monotonic()
        await client.create(DEPLOYMENTS, _deployment(args.replicas), NS)
        deployment = DeploymentWatch(client)
        await deployment.start()
        await deployment.wait(
            lambda d: (d.get("status") or {}).get("availableReplicas", 0) >= args.replicas,
            procs, args.timeout, "ramp")
        ramp = time.monotonic() - t0
        cpu1 = procs.cpu()
        req1 = await api_requests(client)
        print(f"\nramp: {args.replicas} replicas on {args.nodes} nodes available in {ramp:.1f}s "
              f"({args.replicas / ramp:.0f} pods/s end to end)")
        print(f"  pods created: {_rate(pods.added, t0)}")
        print(f"  pods bound:   {_rate(pods.bound, t0)}")
        print(f"  CPU seconds:  {_cpu_line(cpu0, cpu1)}")
        print(_requests_report(req0, req1, ramp), flush=True)

        # ---- rolling update: set image ----
        pods.reset()
        t1 = time.monotonic()
        patched = await client.patch(DEPLOYMENTS, "bench", {"spec": {"template": {"spec": {
            "containers": [{"name": "busybox", "image": "busybox:1.37"}]}}}}, NS, type="strategic")
        generation = patched["metadata"]["generation"]
        await deployment.wait(  # only copies with the new template count
            lambda d: d["metadata"].get("generation", 0) >= generation and rollout_complete(d),
            procs, args.timeout, "rollout")
        roll = time.monotonic() - t1
        final = deployment.obj
        await deployment.stop()
        cpu2 = procs.cpu()
        req2 = await api_requests(client)
        print(f"\nrolling update (set image, maxSurge/maxUnavailable 25%): complete in {roll:.1f}s")
        print(f"  new pods created: {_rate(pods.added, t1)}")
        print(f"  new pods bound:   {_rate(pods.bound, t1)}")
        print(f"  pods created by:  {pods.by_owner}")
        print(f"  CPU seconds:      {_cpu_line(cpu1, cpu2)}")
        print(_requests_report(req1, req2, roll))
        print(f"  final status: {final.get('status', {}).get('replicas')} replicas, "
              f"{final.get('status', {}).get('updatedReplicas')} updated, "
              f"{final.get('status', {}).get('availableReplicas')} available", flush=True)

        procs.sample()
        print("\nRSS MiB (idle before the Deployment → peak during the run → now):")
        for name, p in procs.procs.items():
            print(f"  {name:20s} {idle.get(name, 0):7.1f} → {procs.peak.get(name, 0):7.1f} "
                  f"→ {_rss_mib(p.pid):7.1f}")
        if pods.task:
            pods.task.cancel()
            await asyncio.gather(pods.task, return_exceptions=True)
        if args.keep:
            print(f"\nkept running: kubeconfig {kubeconfig}; Ctrl-C to stop", flush=True)
            await asyncio.Event().wait()
    finally:
        if client is not None:
            await client.close()
        procs.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=3000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--start-delay", type=float, default=0.2, help="sim: bound → Running")
    ap.add_argument("--ready-delay", type=float, default=0.2, help="sim: Running → Ready")
    ap.add_argument("--timeout", type=float, default=1800, help="per phase, seconds")
    ap.add_argument("--keep", action="store_true", help="keep everything running at the end")
    ap.add_argument("--workdir", help="logs here (default: a temp dir removed at the end)")
    args = ap.parse_args()
    print(f"controllers benchmark: {args.replicas} replicas, {args.nodes} nodes", flush=True)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        asyncio.run(bench(args, Path(args.workdir)))
        return
    with tempfile.TemporaryDirectory(prefix="kyb-bench-ctl-") as d:
        try:
            asyncio.run(bench(args, Path(d)))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
