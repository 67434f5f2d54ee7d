"""API server throughput and latency, each beside the store alone so the overhead shows.

    .venv/bin/python benchmarks/apiserver.py [--quick] [--seconds N] [--pods N] [--watchers N]

Starts its own `kyb apiserver` process in a temporary directory (removed at the end) and talks to
it over HTTPS with aiohttp and the admin client certificate. Prints, never asserts:

  creates/s, gets/s   16 concurrent clients writing/reading ConfigMaps
  list N pods         median latency of a full list, as JSON and as a Table
  watch fan-out       W watchers on one namespace's pods; writes one at a time; delay from each
                      write's acknowledgement to its event reaching each watcher (p50/p99)

and the same operations on a SqliteStore used directly (no HTTP, no admission, no watch cache).
The client runs in this one Python process, so at high fan-out part of what is measured is the
client's own work; the store column has the same shape of client, for a fair ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_apiserver  # noqa: E402

from kybernetes.store.sqlite import SqliteStore  # noqa: E402

CLIENTS = 16
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name,
            "labels": {"app": "bench"}}, "data": {"key": "v" * 200, "other": "x" * 200}}


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                     "ports": [{"containerPort": 80}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                     "env": [{"name": "MODE", "value": "bench"}]}]}}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(int(len(values) * q), len(values) - 1)]


async def run_for(seconds: float, clients: int, op) -> tuple[int, float]:
    """`op(client, i)` in `clients` loops for `seconds`: (operations done, elapsed)."""
    done = 0
    start = time.perf_counter()
    stop = start + seconds

    async def loop(c: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            await op(c, i)
            i += 1
            done += 1

    await asyncio.gather(*(loop(c) for c in range(clients)))
    return done, time.perf_counter() - start


async def run_count(total: int, clients: int, op) -> float:
    """`op(i)` for i in range(total) over `clients` loops: elapsed seconds."""
    it = iter(range(total))
    start = time.perf_counter()

    async def loop() -> None:
        for i in it:
            await op(i)

    await asyncio.gather(*(loop() for _ in range(clients)))
    return time.perf_counter() - start


# ---- the API server -----------------------------------------------------------------------------


class Api:
    def __init__(self, server):
        tls = server.data_dir / "tls"
        self.ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        self.ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
        self.ctx.check_hostname = False
        self.base = server.url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ctx, limit=CLIENTS),
            timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, path: str, obj: dict) -> dict:
        async with self.session.post(self.base + path, data=orjson.dumps(obj),
                                     headers={"Content-Type": "application/json"}) as r:
            body = await r.read()
            if r.status != 201:
                raise RuntimeError(f"POST {path}: {r.status} {body[:300]!r}")
            return orjson.loads(body)

    async def get(self, path: str, accept: str = "application/json") -> bytes:
        async with self.session.get(self.base + path, headers={"Accept": accept}) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {body[:300]!r}")
            return body


async def api_figures(api: Api, args) -> dict[str, float]:
    out: dict[str, float] = {}
    await api.post("/api/v1/namespaces", {"metadata": {"name": "bench"}})
    await api.post("/api/v1/namespaces", {"metadata": {"name": "pods"}})
    await api.post("/api/v1/namespaces", {"metadata": {"name": "watch"}})
    cms = "/api/v1/namespaces/bench/configmaps"
    names: list[str] = []

    async def create(c: int, i: int) -> None:
        name = f"cm-{c}-{i}"
        await api.post(cms, configmap(name))
        names.append(name)

    n, t = await run_for(args.seconds, CLIENTS, create)
    out["creates/s"] = n / t

    async def get(c: int, i: int) -> None:
        await api.get(f"{cms}/{random.choice(names)}")

    n, t = await run_for(args.seconds, CLIENTS, get)
    out["gets/s"] = n / t

    print(f"  creating {args.pods} pods ...", file=sys.stderr)
    t = await run_count(args.pods, CLIENTS, lambda i: api.post("/api/v1/namespaces/pods/pods",
                                                             pod(f"pod-{i:05d}")))
    out[f"pod creates/s (while loading {args.pods})"] = args.pods / t
    for label, accept in (("JSON", "application/json"), ("Table", TABLE)):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            body = await api.get("/api/v1/namespaces/pods/pods", accept)
            times.append(time.perf_counter() - start)
            key = b'"rows"' if label == "Table" else b'"items"'
            assert key in body[:2000] or key in body  # decoded below once
        doc = orjson.loads(body)
        count = len(doc["rows"] if label == "Table" else doc["items"])
        if count != args.pods:
            raise RuntimeError(f"listed {count} pods, made {args.pods}")
        out[f"list {args.pods} pods as {label} ms (median)"] = statistics.median(times) * 1000
    return out


async def api_watch(server, api: Api, watchers: int, writes: int) -> dict[str, float]:
    """`watchers` watch streams on one namespace's pods; writes one at a time."""
    ctx = api.ctx
    rv = orjson.loads(await api.get("/api/v1/namespaces/watch/pods"))["metadata"]["resourceVersion"]
    acked: dict[str, float] = {}
    received: list[dict[str, float]] = [dict() for _ in range(watchers)]
    ready = asyncio.Semaphore(0)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    url = f"{server.url}/api/v1/namespaces/watch/pods?watch=true&resourceVersion={rv}&timeoutSeconds=300"

    async def watch(k: int) -> None:
        async with session.get(url) as r:
            ready.release()
            seen = received[k]
            async for line in r.content:
                now = time.perf_counter()
                ev = orjson.loads(line)
                seen[ev["object"]["metadata"]["name"]] = now
                if len(seen) == writes:
                    return

    tasks = [asyncio.create_task(watch(k)) for k in range(watchers)]
    try:
        for _ in range(watchers):
            await ready.acquire()
        for i in range(writes):
            name = f"w-{i:04d}"
            await api.post("/api/v1/namespaces/watch/pods", pod(name))
            acked[name] = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
    delays = [seen[n] - acked[n] for seen in received for n in seen]
    return {f"watch delay p50 ms ({watchers} watchers x {writes} writes)": pct(delays, 0.5) * 1000,
            f"watch delay p99 ms ({watchers} watchers x {writes} writes)": pct(delays, 0.99) * 1000}


# ---- the store alone ----------------------------------------------------------------------------


async def store_figures(path: Path, args) -> dict[str, float]:
    out: dict[str, float] = {}
    store = await SqliteStore(str(path)).open()
    try:
        value = orjson.dumps(configmap("x"))
        keys: list[str] = []

        async def create(c: int, i: int) -> None:
            key = f"/registry/configmaps/bench/cm-{c}-{i}"
            await store.create(key, value)
            keys.append(key)

        n, t = await run_for(args.seconds, CLIENTS, create)
        out["creates/s"] = n / t

        async def get(c: int, i: int) -> None:
            await store.get(random.choice(keys))

        n, t = await run_for(args.seconds, CLIENTS, get)
        out["gets/s"] = n / t

        pod_value = orjson.dumps(pod("x"))
        t = await run_count(args.pods, CLIENTS, lambda i: store.create(
            f"/registry/pods/pods/pod-{i:05d}", pod_value))
        out[f"pod creates/s (while loading {args.pods})"] = args.pods / t
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            res = await store.range("/registry/pods/pods/")
            [orjson.loads(kv.value) for kv in res.kvs]  # what a caller must do to use them
            times.append(time.perf_counter() - start)
        if len(res.kvs) != args.pods:
            raise RuntimeError(f"range gave {len(res.kvs)} keys, wrote {args.pods}")
        out[f"list {args.pods} pods as JSON ms (median)"] = statistics.median(times) * 1000
        out.update(await store_watch(store, args.watchers, args.writes))
    finally:
        await store.close()
    return out


async def store_watch(store, watchers: int, writes: int) -> dict[str, float]:
    acked: dict[str, float] = {}
    received: list[dict[str, float]] = [dict() for _ in range(watchers)]
    rev = await store.current_revision()

    async def watch(k: int) -> None:
        seen = received[k]
        async for ev in store.watch("/registry/pods/watch/", rev + 1):
            seen[ev.kv.key] = time.perf_counter()
            if len(seen) == writes:
                return

    tasks = [asyncio.create_task(watch(k)) for k in range(watchers)]
    await asyncio.sleep(0.5)  # let every watch register
    value = orjson.dumps(pod("w"))
    try:
        for i in range(writes):
            key = f"/registry/pods/watch/w-{i:04d}"
            await store.create(key, value)
            acked[key] = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delays = [seen[n] - acked[n] for seen in received for n in seen]
    return {f"watch delay p50 ms ({watchers} watchers x {writes} writes)": pct(delays, 0.5) * 1000,
            f"watch delay p99 ms ({watchers} watchers x {writes} writes)": pct(delays, 0.99) * 1000}


# ---- main -------------------------------------------------------------------------------------


def print_table(api: dict[str, float], store: dict[str, float]) -> None:
    rows = [("", "apiserver", "store alone", "store/apiserver")]
    for name, value in api.items():
        alone = store.get(name)
        if alone is None or alone <= 0 or value <= 0:  # a store watch can beat its own ack
            rows.append((name, f"{value:.1f}", "-" if alone is None else f"{alone:.1f}", "-"))
            continue
        # For rates the store is faster when larger; for times when smaller.
        ratio = alone / value if "/s" in name else value / alone
        rows.append((name, f"{value:.1f}", f"{alone:.1f}", f"{ratio:.1f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about 30 s in all")
    parser.add_argument("--seconds", type=float, help="per throughput figure")
    parser.add_argument("--pods", type=int, help="pods to list")
    parser.add_argument("--watchers", type=int)
    parser.add_argument("--writes", type=int)
    parser.add_argument("--repeats", type=int, default=5, help="lists per median")
    parser.add_argument("--keep-running", type=float, default=0,
                        help="seconds to pause before stopping the server (to attach a profiler)")
    args = parser.parse_args()
    defaults = (2.0, 2000, 100, 20) if args.quick else (5.0, 10_000, 1000, 50)
    for name, value in zip(("seconds", "pods", "watchers", "writes"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.watchers + 512))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the server inherits it too

    with tempfile.TemporaryDirectory(prefix="kyb-apiserver-bench-") as tmp:
        print("store alone ...", file=sys.stderr)
        store = await store_figures(Path(tmp) / "alone.db", args)
        print("apiserver ...", file=sys.stderr)
        server = start_apiserver(Path(tmp) / "server")
        print(f"  pid {server.proc.pid}", file=sys.stderr)
        api = Api(server)
        try:
            figures = await api_figures(api, args)
            print(f"  {args.watchers} watchers ...", file=sys.stderr)
            figures.update(await api_watch(server, api, args.watchers, args.writes))
            if args.keep_running:
                await asyncio.sleep(args.keep_running)
        finally:
            await api.close()
            server.stop()
    print(f"kybernetes apiserver vs SqliteStore ({CLIENTS} clients, {os.cpu_count()} cpus)")
    print_table(figures, store)


if __name__ == "__main__":
    asyncio.run(main())
