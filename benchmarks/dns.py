"""Cluster DNS queries per second over UDP.

    python benchmarks/dns.py [--services 200] [--seconds 5] [--clients 2] [--window 64]

Starts its own API server and a `kyb dns` process on 127.0.0.1, creates ClusterIP and headless
Services (with EndpointSlices), then runs load-generator processes, each an asyncio UDP client
keeping `window` queries in flight, for three query mixes: one name again and again (the answer
cache), every service name in turn, and names that do not exist (NXDOMAIN). Prints answers/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dnslib import DNSRecord

from kybernetes.client import Client, resource

SERVICES = resource("v1", "Service")
SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")
NAMESPACES = resource("v1", "Namespace")


def _port(kind: int = socket.SOCK_STREAM) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


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


class _Load(asyncio.DatagramProtocol):
    """Keeps `window` queries in flight; a query unanswered for a second is replaced (lost)."""

    def __init__(self, queries: list[bytes], window: int):
        self.queries, self.window = queries, window
        self.answered = self.lost = 0
        self.next = 0
        self.inflight: dict[bytes, float] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        for _ in range(self.window):
            self._send()

    def _send(self) -> None:
        i = self.next
        self.next += 1
        q = self.queries[i % len(self.queries)]
        qid = (i % 65536).to_bytes(2, "big")
        self.inflight[qid] = time.monotonic()
        self.transport.sendto(qid + q[2:])

    def datagram_received(self, data: bytes, addr) -> None:
        if self.inflight.pop(data[:2], None) is not None:
            self.answered += 1
            self._send()

    def sweep(self) -> None:
        now = time.monotonic()
        for qid, sent in list(self.inflight.items()):
            if now - sent > 1.0:
                del self.inflight[qid]
                self.lost += 1
                self._send()


async def _client(port: int, names: list[str], seconds: float, window: int) -> tuple[int, int]:
    queries = [bytes(DNSRecord.question(n, "A").pack()) for n in names]
    loop = asyncio.get_running_loop()
    transport, load = await loop.create_datagram_endpoint(
        lambda: _Load(queries, window), remote_addr=("127.0.0.1", port))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
        load.sweep()
    transport.close()
    return load.answered, load.lost


def _client_proc(args) -> tuple[int, int]:
    return asyncio.run(_client(*args))


def run_mix(label: str, port: int, names: list[str], seconds: float, clients: int,
            window: int) -> None:
    with multiprocessing.Pool(clients) as pool:
        t = time.monotonic()
        results = pool.map(_client_proc, [(port, names, seconds, window)] * clients)
        took = time.monotonic() - t
    answered = sum(a for a, _ in results)
    lost = sum(x for _, x in results)
    print(f"{label:<28} {answered / seconds:>9.0f} answers/s  ({answered} answered, {lost} lost, "
          f"{clients} clients x {window} in flight, {took:.1f}s)", flush=True)


async def setup(client: Client, n: int) -> list[str]:
    ns = "bench-dns"
    await client.create(NAMESPACES, {"metadata": {"name": ns}})
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            headless = i % 4 == 0
            spec: dict = {"ports": [{"name": "http", "port": 80}]}
            if headless:
                spec["clusterIP"] = "None"
            await client.create(SERVICES, {"metadata": {"name": f"svc-{i}"}, "spec": spec}, ns)
            if headless:
                await client.create(SLICES, {
                    "metadata": {"name": f"svc-{i}-x",
                                 "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
                    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [{"addresses": [f"10.42.{i % 250}.{k + 1}"]} for k in range(3)],
                }, ns)
    await asyncio.gather(*(one(i) for i in range(n)))
    return [f"svc-{i}.{ns}.svc.cluster.local" for i in range(n)]


async def prepare(workdir: Path, n: int) -> tuple[subprocess.Popen, subprocess.Popen, int, list[str]]:
    api_port, dns_port, http_port = _port(), _port(), _port()
    api = _start(["apiserver", "--data-dir", str(workdir / "api"), "--secure-port", str(api_port)],
                 workdir / "apiserver.log")
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
    names = await setup(client, n)
    await client.close()
    dns = _start(["dns", "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{dns_port}",
                  "--metrics-listen", f"127.0.0.1:{http_port}", "--cluster-ip", ""],
                 workdir / "dns.log")
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=1):
                break
        except OSError:
            await asyncio.sleep(0.1)
    return api, dns, dns_port, names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        api, dns, port, names = asyncio.run(prepare(Path(d), args.services))
        try:
            print(f"{len(names)} services (1 in 4 headless with 3 endpoints); kyb dns on "
                  f"127.0.0.1:{port}", flush=True)
            run_mix("one name (cached)", port, names[1:2], args.seconds, args.clients, args.window)
            run_mix(f"{len(names)} names round-robin", port, names, args.seconds, args.clients,
                    args.window)
            missing = [f"nope-{i}.bench-dns.svc.cluster.local" for i in range(len(names))]
            run_mix("NXDOMAIN names", port, missing, args.seconds, args.clients, args.window)
        finally:
            _stop(dns)
            _stop(api)


if __name__ == "__main__":
    main()
