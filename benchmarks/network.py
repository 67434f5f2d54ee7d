"""Cluster network figures in a multi-node lab (root, containerd, kubectl needed).

    python benchmarks/network.py [--nodes 3] [--proxy-mode iptables|nftables] [--trials 5]
                                 [--seconds 5] [--data-dir DIR]

Builds a lab (`kyb lab up`), runs a python client pod on the first host and nginx pods on the
others, then prints:

- network programming latency: from the API write to the first TCP connection accepted through
  the ClusterIP, seen from the client pod on another node than the backends — for a new Service
  (selector already matching running pods) and for an endpoints change (a pod labelled into an
  existing Service's selector); median and range of --trials;
- DNS answers/s from inside the client pod (processes with a window of queries in flight against
  the node-local cluster DNS on 10.43.0.10);
- HTTP requests/s pod → Service → nginx pods on other nodes, one connection per request and
  keep-alive connections.

Clocks: the pod and this script share the machine's clock, so in-pod timestamps compare with
ours directly. The lab is torn down in every case (`kyb lab down`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kybernetes.client import Client, resource

SERVICES = resource("v1", "Service")
PODS = resource("v1", "Pod")
NS = "bench"
PYTHON = "docker.io/library/python:3.11"
NGINX = "docker.io/library/nginx:latest"

# Polls connect() to IP:PORT; prints the wall clock of the first accepted connection.
POLL = r"""
import socket, sys, time
ip, port, deadline = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
print("polling", flush=True)
while time.time() < deadline:
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((ip, port))
        print("ok", repr(time.time()), flush=True)
        break
    except OSError:
        time.sleep(0.002)
    finally:
        s.close()
else:
    print("timeout", flush=True)
"""

# Processes × a window of A queries in flight over UDP; prints answers/s (NOERROR with data).
DNS = r"""
import multiprocessing, os, socket, struct, sys, time
name, procs, window, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"

def query(i):
    return struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\0\1\0\1"

def run(out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("10.43.0.10", 53))
    s.settimeout(0.5)
    n = ok = 0
    end = time.time() + seconds
    for _ in range(window):
        s.send(query(n)); n += 1
    while time.time() < end:
        try:
            data = s.recv(4096)
        except socket.timeout:
            for _ in range(window):          # lost ones: refill the window
                s.send(query(n)); n += 1
            continue
        flags, ancount = struct.unpack("!H", data[2:4])[0], struct.unpack("!H", data[6:8])[0]
        if flags & 0xF == 0 and ancount:
            ok += 1
        s.send(query(n)); n += 1
    out.put(ok)

q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=run, args=(q,)) for _ in range(procs)]
for p in ps: p.start()
total = sum(q.get() for _ in ps)
for p in ps: p.join()
print(total / seconds)
"""

# Processes hammering http://IP/ for N seconds; prints requests/s (only 200s are counted).
HTTP = r"""
import http.client, multiprocessing, socket, sys, time
ip, procs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
keepalive = sys.argv[4] == "1"

def run(out):
    ok, end, conn = 0, time.time() + seconds, None
    while time.time() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(ip, 80, timeout=2)
            conn.request("GET", "/", headers={} if keepalive else {"Connection": "close"})
            r = conn.getresponse()
            r.read()
            ok += r.status == 200
            if not keepalive or r.will_close:
                conn.close(); conn = None
        except (OSError, http.client.HTTPException):
            if conn: conn.close()
            conn = None
    out.put(ok)

q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=run, args=(q,)) for _ in range(procs)]
for p in ps: p.start()
total = sum(q.get() for _ in ps)
for p in ps: p.join()
print(total / seconds)
"""


def kyb(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "kybernetes", *args], check=True, timeout=300)


class Bench:
    def __init__(self, data_dir: Path, hosts: list[str]):
        self.dir, self.hosts = data_dir, hosts
        self.kubeconfig = data_dir / "kubeconfig.yaml"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", NS, *args],
                              input=input, capture_output=True, text=True, check=True,
                              timeout=120).stdout

    def in_pod(self, *argv: str) -> str:
        return self.kubectl("exec", "client", "--", *argv)

    def poller(self, ip: str, port: int = 80, limit: float = 30) -> subprocess.Popen:
        p = subprocess.Popen(["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", NS, "exec",
                              "client", "--", "python3", "-c", POLL, ip, str(port), str(limit)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout and p.stdout.readline().strip() == "polling"
        return p

    @staticmethod
    def reached(p: subprocess.Popen) -> float | None:
        out, _ = p.communicate(timeout=60)
        word, *rest = out.split()
        return float(rest[0]) if word == "ok" else None


def wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := fn():
            return out
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def setup(b: Bench) -> list[dict]:
    def ready_nodes() -> bool:
        nodes = json.loads(b.kubectl("get", "nodes", "-o", "json"))["items"]
        return sum(any(c["type"] == "Ready" and c["status"] == "True"
                       for c in n["status"].get("conditions") or []) for n in nodes) == len(b.hosts)
    wait(ready_nodes, 240, "Ready nodes")
    b.kubectl("create", "namespace", NS)
    wait(lambda: "default" in b.kubectl("get", "serviceaccounts", "-o", "name"), 60,
         "the default service account")
    away = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "NotIn", "values": [b.hosts[0]]}]}]}}}
    objs = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"nodeName": b.hosts[0], "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "c", "image": PYTHON, "command": ["sleep", "3600"]}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
         "spec": {"replicas": max(1, len(b.hosts) - 1),
                  "selector": {"matchLabels": {"app": "nginx"}},
                  "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {
                      "affinity": away, "terminationGracePeriodSeconds": 1,
                      "topologySpreadConstraints": [{
                          "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                          "whenUnsatisfiable": "DoNotSchedule",
                          "labelSelector": {"matchLabels": {"app": "nginx"}}}],
                      "containers": [{"name": "nginx", "image": NGINX,
                                      "ports": [{"containerPort": 80}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
         "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80}]}},
    ]
    b.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": objs}))

    def running() -> list[dict] | None:
        pods = json.loads(b.kubectl("get", "pods", "-o", "json"))["items"]
        ok = [p for p in pods if p["status"].get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]
        return ok if len(ok) == len(pods) == 1 + max(1, len(b.hosts) - 1) else None
    pods = wait(running, 240, "the client and nginx pods")
    return [p for p in pods if p["metadata"]["name"] != "client"]


async def programming_latency(b: Bench, trials: int, backends: list[dict]) -> dict:
    out: dict[str, list[float]] = {"new Service": [], "endpoints change": []}
    async with Client.from_kubeconfig(b.kubeconfig) as c:
        for i in range(trials):
            ip = f"10.43.250.{10 + i}"
            p = await asyncio.to_thread(b.poller, ip)
            t0 = time.time()
            await c.create(SERVICES, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"lat-{i}"},
                "spec": {"clusterIP": ip, "selector": {"app": "nginx"}, "ports": [{"port": 80}]}},
                NS)
            if (t := await asyncio.to_thread(b.reached, p)) is not None:
                out["new Service"].append(t - t0)

            ip = f"10.43.251.{10 + i}"
            await c.create(SERVICES, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"ep-{i}"},
                "spec": {"clusterIP": ip, "selector": {"lat": f"t{i}"}, "ports": [{"port": 80}]}},
                NS)
            await asyncio.sleep(2)      # the proxy has programmed the empty service by now
            p = await asyncio.to_thread(b.poller, ip)
            pod = backends[i % len(backends)]["metadata"]["name"]
            t0 = time.time()
            await c.patch(PODS, pod, {"metadata": {"labels": {"lat": f"t{i}"}}}, NS)
            if (t := await asyncio.to_thread(b.reached, p)) is not None:
                out["endpoints change"].append(t - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--procs", type=int, default=4, help="client processes in the pod")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="kyb-netbench-"))
    hosts = [f"kyb-lab-{i}" for i in range(1, args.nodes + 1)]
    b = Bench(data, hosts)
    print(f"lab: {args.nodes} nodes, kube-proxy {args.proxy_mode} mode, data in {data}")
    try:
        t = time.monotonic()
        kyb("lab", "up", "--nodes", str(args.nodes), "--data-dir", str(data),
            "--proxy-mode", args.proxy_mode)
        backends = setup(b)
        print(f"  lab up, client on {hosts[0]}, nginx on "
              f"{', '.join(p['spec']['nodeName'] for p in backends)}: "
              f"{time.monotonic() - t:.0f} s")

        lat = asyncio.run(programming_latency(b, args.trials, backends))
        print("network programming latency (API write → first connection from a pod on "
              "another node):")
        for what, xs in lat.items():
            if xs:
                print(f"  {what:17s} median {statistics.median(xs) * 1000:7.0f} ms   "
                      f"min {min(xs) * 1000:.0f}  max {max(xs) * 1000:.0f}  "
                      f"({len(xs)}/{args.trials} reached)")
            else:
                print(f"  {what:17s} never reached")

        name = f"nginx.{NS}.svc.cluster.local"
        for procs, window in ((1, 1), (2, 32)):
            qps = float(b.in_pod("python3", "-c", DNS, name, str(procs), str(window),
                                 str(args.seconds)))
            print(f"DNS: {qps:8.0f} answers/s  ({procs} process(es), {window} in flight, "
                  f"A {name} from the client pod)")

        ip = b.kubectl("get", "service", "nginx", "-o", "jsonpath={.spec.clusterIP}")
        for keepalive in (False, True):
            rps = float(b.in_pod("python3", "-c", HTTP, ip, str(args.procs), str(args.seconds),
                                 "1" if keepalive else "0"))
            how = "keep-alive" if keepalive else "a new connection per request"
            print(f"HTTP pod → Service → nginx on other nodes: {rps:8.0f} requests/s "
                  f"({args.procs} processes, {how})")
    finally:
        if (data / "lab.json").exists():    # ours: `up` records the lab before building it
            subprocess.run([sys.executable, "-m", "kybernetes", "lab", "down", "--data-dir",
                            str(data)], timeout=300)
            left = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                  text=True).stdout
            stale = [h for h in hosts if h in left.split()]
            print(f"lab down; lab hosts left: {stale or 'none'}")


if __name__ == "__main__":
    main()
