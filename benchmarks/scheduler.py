"""Scheduler throughput (scheduler_perf shapes), end to end through the API or in-process.

    python benchmarks/scheduler.py [--only basic|spread|anti] [--nodes N --pods M] [--repeat N]
                                   [--profile DIR [--profile-rate HZ]]
    python benchmarks/scheduler.py --in-process [--only ...] [--nodes N --pods M]

End to end: starts its own API server and `kyb scheduler`, registers nodes through the API
(many requests in flight), then creates pods and reports pods/s from the first create to the
last pod bound (seen on a watch), with the API server's create and bind rates beside it.
--profile records both processes with py-spy while pods are created and scheduled (not
while nodes register or the processes exit) and prints where the time went.

In-process: feeds the scheduler's cache and queue through its informer handlers, with a
recording fake binder, and times its own scheduling cycles (no API server). Only for finding
the scheduler's own cost; the end-to-end figure is the one that counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kybernetes.cli import collector
from kybernetes.cli.main import run_fast  # uvloop, as `kyb apiserver` and `kyb scheduler` run
from kybernetes.client import Client, resource
from kybernetes.scheduler.framework import Plugin
from kybernetes.scheduler.scheduler import Scheduler

PODS, NODES = resource("v1", "Pod"), resource("v1", "Node")
ANCHOR = 680    # kube-scheduler CI floor for SchedulingBasic 5000 nodes / 10000 pods
GOAL = 1000     # this project's goal on a 2-core machine
RUNS = [("basic", 5000, 10000), ("spread", 1000, 5000), ("anti", 1000, 1000)]


# ---------------------------------------------------------------- objects

def node(i: int, zones: int = 10) -> dict:
    name = f"node-{i}"
    res = {"cpu": "4", "memory": "32Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(i + 1),
                         "labels": {"kubernetes.io/hostname": name,
                                    "topology.kubernetes.io/zone": f"zone-{i % zones}"}},
            "spec": {},
            "status": {"allocatable": res, "capacity": res,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(i: int, ns: str, kind: str) -> dict:
    """scheduler_perf's pod-default.yaml (100m / 500Mi), plus the constraint of the run."""
    labels = {"app": kind}
    spec: dict = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                  "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}],
                  "schedulerName": "default-scheduler", "restartPolicy": "Always",
                  "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
    if kind == "spread":
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}]
    elif kind == "anti":
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{kind}-{i}", "namespace": ns, "labels": labels},
            "spec": spec}


def _stored(obj: dict, rv: int) -> dict:
    """What the API server would hand the informer: uid, resourceVersion, timestamps."""
    meta = obj["metadata"]
    meta.setdefault("uid", str(uuid.uuid4()))
    meta["resourceVersion"] = str(rv)
    meta["creationTimestamp"] = "2024-01-01T00:00:00Z"
    obj.setdefault("status", {"phase": "Pending", "qosClass": "Burstable"})
    return obj




# ---------------------------------------------------------------- in-process

class StubClient:
    """Accepts every write (events, status patches) and does nothing."""

    def __init__(self) -> None:
        self.writes = 0

    async def request(self, *a, **kw) -> dict:
        self.writes += 1
        return {}

    async def create(self, r, obj, namespace=None, **kw) -> dict:
        self.writes += 1
        return obj

    async def patch(self, *a, **kw) -> dict:
        self.writes += 1
        return {}


class RecordingBinder(Plugin):
    """Records pod → node and delivers the bound pod the way the Pod informer would."""
    name = "DefaultBinder"

    def __init__(self, sched: Scheduler):
        super().__init__(sched)
        self.bound: dict[str, str] = {}

    async def bind(self, state, pi, node_name):
        self.bound[pi.key] = node_name
        old = pi.pod
        new = {**old, "spec": {**old["spec"], "nodeName": node_name}}
        self.handle.informers["Pod"].cache[pi.key] = new
        self.handle._on_pod_update(old, new)
        return None


async def run(n_nodes: int, n_pods: int, kind: str = "basic") -> dict:
    """Returns figures: enqueue and cycle seconds, pods/s, and where pods went."""
    sched = Scheduler(StubClient())   # type: ignore[arg-type]
    binder = RecordingBinder(sched)
    for prof in sched.profiles.values():
        prof.bind = [binder]
    sched.setup()
    pod_inf = sched.informers["Pod"]
    for i in range(n_nodes):
        n = node(i)
        sched.informers["Node"].cache[n["metadata"]["name"]] = n
        sched._on_node_add(n)
    pods = [_stored(pod(i, "bench", kind), n_nodes + i) for i in range(n_pods)]
    t0, c0 = time.perf_counter(), time.process_time()
    for p in pods:
        key = f"bench/{p['metadata']['name']}"
        pod_inf.cache[key] = p
        sched._on_pod_add(p)
    t1 = time.perf_counter()
    loop_task = asyncio.create_task(_cycles(sched, binder, n_pods))
    try:
        await asyncio.wait_for(loop_task, 600)
    finally:
        for t in list(sched._tasks):
            t.cancel()
        await asyncio.gather(*sched._tasks, return_exceptions=True)
        await sched.recorder.flush()
    t2, c2 = time.perf_counter(), time.process_time()
    per_node: dict[str, int] = {}
    for n in binder.bound.values():
        per_node[n] = per_node.get(n, 0) + 1
    return {"kind": kind, "nodes": n_nodes, "pods": n_pods, "bound": len(binder.bound),
            "enqueue_s": t1 - t0, "cycle_s": t2 - t1, "pods_per_s": len(binder.bound) / (t2 - t0),
            "cycle_pods_per_s": len(binder.bound) / (t2 - t1),
            "cpu_pods_per_s": len(binder.bound) / max(c2 - c0, 1e-9),
            "max_per_node": max(per_node.values(), default=0), "nodes_used": len(per_node)}


async def _cycles(sched: Scheduler, binder: RecordingBinder, n_pods: int) -> None:
    """The scheduler's own loop (Scheduler.run without informers), until every pod is bound."""
    queue = sched.queue
    while len(binder.bound) < n_pods:
        if not queue._active and not sched._tasks:
            if queue.unschedulable or not queue._backoff:
                return          # nothing left that can be scheduled
        qp = await queue.pop()
        sched.schedule_one(qp)
        await asyncio.sleep(0)


# ---------------------------------------------------------------- end to end

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


async def _gather_limited(coros, limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            await c
    await asyncio.gather(*(one(c) for c in coros))


def _api_object(obj: dict) -> dict:
    obj = {k: v for k, v in obj.items()}
    obj["metadata"] = {k: v for k, v in obj["metadata"].items()
                       if k not in ("uid", "resourceVersion")}
    return obj


async def _register_nodes(client: Client, n: int, in_flight: int) -> None:
    """Like a kubelet: create the Node with its status; write the status separately only if the
    server dropped it on create."""
    async def one(i):
        obj = _api_object(node(i))
        made = await client.create(NODES, obj)
        if not (made.get("status") or {}).get("allocatable"):
            made["status"] = obj["status"]
            await client.update_status(NODES, made)
    await _gather_limited((one(i) for i in range(n)), in_flight)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: a figure other load on the machine hardly
    changes, unlike wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy so far (all processes, the kernel too)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _profile(pid: int, out: Path, seconds: int, rate: int = 50) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate),
                             "-f", "raw", "-o", str(out), "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Collapsed stacks → the functions with the most samples, self and inclusive."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("/")[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self time:"]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top + 10)]
    return "\n".join(lines)


async def _wait_log(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {log}")
        await asyncio.sleep(0.2)


async def _pods_phase(client: Client, kind: str, n_pods: int, in_flight: int,
                      on_start=None) -> dict:
    ns = f"bench-{kind}"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": ns}})
    done = asyncio.Event()
    bound_at: list[float] = []
    _, rv = await client.list_all(PODS, ns)

    async def watch():
        seen: set[str] = set()
        # Only bound pods (the server filters): the load generator decodes one event per pod.
        async for ev in client.watch(PODS, ns, resource_version=rv, timeout_seconds=3600,
                                     field_selector="spec.nodeName!="):
            obj = ev["object"]
            name = obj["metadata"]["name"]
            if obj.get("spec", {}).get("nodeName") and name not in seen:
                seen.add(name)
                bound_at.append(time.monotonic())
                if len(seen) >= n_pods:
                    done.set()
                    return
    w = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    if on_start:
        on_start()
    start = time.monotonic()
    await _gather_limited((client.create(PODS, pod(i, ns, kind), ns) for i in range(n_pods)),
                          in_flight)
    created = time.monotonic()
    try:
        await asyncio.wait_for(done.wait(), 1800)
    finally:
        w.cancel()
        await asyncio.gather(w, return_exceptions=True)
    end = time.monotonic()
    events, _ = await client.list_all(resource("v1", "Event"), ns)
    # Binds landing after the last create: the scheduler+bind rate once creates stop competing.
    after = [t for t in bound_at if t > created]
    return {"created_s": created - start, "took_s": end - start,
            "events": len(events),
            "pods_per_s": n_pods / (end - start), "creates_per_s": n_pods / (created - start),
            "bound_during_creates": len(bound_at) - len(after),
            "binds_per_s_after_creates": len(after) / (end - created) if after and end > created else 0.0}


async def end_to_end(n_nodes: int, n_pods: int, kind: str, workdir: Path, in_flight: int,
                     profile: Path | None, profile_rate: int = 50) -> dict:
    port = _port()
    api_log, sched_log = workdir / "apiserver.log", workdir / "scheduler.log"
    api = _start(["apiserver", "--data-dir", str(workdir / "api"), "--secure-port", str(port)],
                 api_log)
    sched = None
    spies: list[subprocess.Popen] = []
    try:
        kubeconfig = workdir / "api" / "kubeconfig.yaml"
        for _ in range(300):
            if kubeconfig.exists():
                break
            await asyncio.sleep(0.1)
        client = Client.from_kubeconfig(kubeconfig)
        for _ in range(100):
            if await client.ready():
                break
            await asyncio.sleep(0.2)
        t = time.monotonic()
        await _register_nodes(client, n_nodes, in_flight)
        node_s = time.monotonic() - t
        print(f"  {n_nodes} nodes registered in {node_s:.1f}s ({n_nodes / node_s:.0f} nodes/s)",
              flush=True)
        sched = _start(["scheduler", "--kubeconfig", str(kubeconfig), "--leader-elect=false"],
                       sched_log)
        await _wait_log(sched_log, "scheduler synced", 120)

        def start_profiles():
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                for name, proc in (("apiserver", api), ("scheduler", sched)):
                    spy = _profile(proc.pid, profile / f"{kind}-{name}.txt", 600, profile_rate)
                    if spy is not None:
                        spies.append(spy)
        cpu0 = {n: _cpu_seconds(p.pid) for n, p in (("apiserver", api), ("scheduler", sched))}
        own0 = time.process_time()
        busy0, wall0 = _machine_busy_seconds(), time.monotonic()
        res = await _pods_phase(client, kind, n_pods, in_flight, start_profiles)
        res["machine_cores_busy"] = (_machine_busy_seconds() - busy0) / (time.monotonic() - wall0)
        for s in spies:     # only the pods phase: stopped, py-spy writes what it recorded
            s.send_signal(signal.SIGINT)
        res["cpu_ms_per_pod"] = {n: 1000 * (_cpu_seconds(p.pid) - cpu0[n]) / n_pods
                                 for n, p in (("apiserver", api), ("scheduler", sched))}
        res["cpu_ms_per_pod"]["load generator"] = 1000 * (time.process_time() - own0) / n_pods
        res["peak_rss_mib"] = {n: _peak_rss_mib(p.pid) for n, p in (("apiserver", api),
                                                                    ("scheduler", sched))}
        res["nodes_per_s"] = n_nodes / node_s
        await client.close()
    finally:
        for s in spies:
            try:
                s.wait(90)
            except subprocess.TimeoutExpired:
                s.kill()
                s.wait()
        if sched:
            _stop(sched)
        _stop(api)
    if profile is not None:
        for name in ("apiserver", "scheduler"):
            f = profile / f"{kind}-{name}.txt"
            if f.exists():
                print(f"  py-spy {name} ({f}):\n{summarize_profile(f)}", flush=True)
    return res


# ---------------------------------------------------------------- main


def _report_in_process(kind: str, n: int, p: int, r: dict) -> None:
    print(f"{kind} in-process: {n} nodes, {r['bound']}/{p} pods bound; enqueue "
          f"{r['enqueue_s']:.2f}s, cycles {r['cycle_s']:.2f}s -> {r['pods_per_s']:.0f} pods/s "
          f"({r['cycle_pods_per_s']:.0f} pods/s cycles only, {r['cpu_pods_per_s']:.0f} per CPU-second); nodes used {r['nodes_used']}, "
          f"max pods on a node {r['max_per_node']}", flush=True)


def _report_end_to_end(kind: str, r: dict) -> None:
    print(f"  pods created in {r['created_s']:.1f}s ({r['creates_per_s']:.0f} creates/s), "
          f"all bound in {r['took_s']:.1f}s -> {r['pods_per_s']:.0f} pods/s "
          f"[{r['bound_during_creates']} bound while creating; "
          f"{r['binds_per_s_after_creates']:.0f} binds/s after; {r['events']} events "
          f"written by then]", flush=True)
    cpu = r["cpu_ms_per_pod"]
    print(f"  CPU per pod: apiserver {cpu['apiserver']:.2f} ms, scheduler "
          f"{cpu['scheduler']:.2f} ms (one core each would allow "
          f"{1000 / max(cpu['apiserver'], 1e-9):.0f} and {1000 / max(cpu['scheduler'], 1e-9):.0f} "
          f"pods/s); this load generator {cpu['load generator']:.2f} ms", flush=True)
    print(f"  machine: {r['machine_cores_busy']:.2f} of {os.cpu_count()} cores busy meanwhile "
          f"(every process and the kernel)", flush=True)
    rss = r["peak_rss_mib"]
    print(f"  peak RSS: apiserver {rss['apiserver']:.0f} MiB, scheduler {rss['scheduler']:.0f} MiB",
          flush=True)
    if kind == "basic":
        print(f"  SchedulingBasic: {r['pods_per_s']:.0f} pods/s here | anchor: kube-scheduler CI "
              f"floor {ANCHOR} pods/s (bigger machine) | goal {GOAL} pods/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=[k for k, _, _ in RUNS], default=None)
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--pods", type=int, default=None)
    ap.add_argument("--in-process", action="store_true", help="the scheduler's own cycle only")
    ap.add_argument("--in-flight", type=int, default=256, help="concurrent creates")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    ap.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each shape, then their median: this host's speed drifts by "
                         "tens of percent from one minute to the next")
    args = ap.parse_args()
    collector.install()     # the load generator's decoded watch events pile up like any cache
    for kind, n, p in RUNS:
        if args.only and kind != args.only:
            continue
        n, p = args.nodes or n, args.pods or p
        rates = []
        for _ in range(max(args.repeat, 1)):
            if args.in_process:
                r = run_fast(run(n, p, kind))
                _report_in_process(kind, n, p, r)
                rates.append(r["cpu_pods_per_s"])
                continue
            print(f"{kind}: {n} nodes, {p} pods, end to end", flush=True)
            with tempfile.TemporaryDirectory() as d:
                r = run_fast(end_to_end(n, p, kind, Path(d), args.in_flight, args.profile,
                                        args.profile_rate))
            _report_end_to_end(kind, r)
            rates.append(r["pods_per_s"])
        if len(rates) > 1:
            unit = "pods per CPU-second" if args.in_process else "pods/s"
            print(f"{kind}: {len(rates)} runs, median {statistics.median(rates):.0f} {unit} "
                  f"(min {min(rates):.0f}, max {max(rates):.0f})", flush=True)


if __name__ == "__main__":
    main()
