"""`kyb server`: the whole control plane from one command.

Each component runs as its own process (so two cores are used and `ps` shows the seed's
architecture), supervised here: prefixed logs, restart with backoff when one dies, and a clean
stop of all of them on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Component:
    name: str
    args: list[str]
    needs_kubeconfig: bool = True
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = 0.0
    pump: asyncio.Task | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, components: list[Component], data_dir: Path, port: int,
                 host: str = "127.0.0.1"):
        self.components = components
        self.data_dir = data_dir
        self.port = port
        self.host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.stopping = False

    async def _start(self, c: Component) -> None:
        c.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kybernetes", *c.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)  # Ctrl-C reaches us only; we stop the children in order
        c.started = time.monotonic()
        c.pump = asyncio.create_task(self._pump(c, c.proc))

    async def _pump(self, c: Component, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout
        width = max(len(x.name) for x in self.components)
        async for line in proc.stdout:
            sys.stdout.write(f"{c.name:<{width}} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    async def _watch(self, c: Component) -> None:
        """Restart `c` whenever it exits, with backoff (1 s doubling to 30 s)."""
        delay = 1.0
        while not self.stopping:
            assert c.proc
            code = await c.proc.wait()
            if self.stopping:
                return
            if time.monotonic() - c.started > 60:
                delay = 1.0
            self.say(f"{c.name} exited with {code}; restarting in {delay:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)
            c.restarts += 1
            await self._start(c)

    def say(self, text: str) -> None:
        print(f"kyb: {text}", flush=True)

    async def _wait_ready(self, timeout: float = 60) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.data_dir / "tls" / "ca.crt")) \
            if (self.data_dir / "tls" / "ca.crt").exists() else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ctx is None and (self.data_dir / "tls" / "ca.crt").exists():
                    ctx = ssl.create_default_context(cafile=str(self.data_dir / "tls" / "ca.crt"))
                if ctx is not None:
                    r, w = await asyncio.open_connection(self.host, self.port, ssl=ctx,
                                                         server_hostname="localhost")
                    w.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    await w.drain()
                    head = await r.read(64)
                    w.close()
                    if b" 200 " in head:
                        return True
            except OSError:
                pass
            await asyncio.sleep(0.2)
        return False

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        api, rest = self.components[0], self.components[1:]
        self.say(f"starting {api.name}")
        await self._start(api)
        watchers = [asyncio.create_task(self._watch(api))]
        if not await self._wait_ready():
            self.say("the API server did not become ready; see its log above")
            stop.set()
        else:
            self.say(f"{api.name} ready on https://{self.host}:{self.port}")
            for c in rest:
                await self._start(c)
                watchers.append(asyncio.create_task(self._watch(c)))
                self.say(f"started {c.name}")
            self.say(f"cluster ready. kubeconfig: {self.data_dir / 'kubeconfig.yaml'}")
            self.say(f"  export KUBECONFIG={self.data_dir / 'kubeconfig.yaml'}; kubectl get nodes")
        await stop.wait()
        self.stopping = True
        self.say("stopping")
        for c in reversed(self.components):  # dependents first, the API server last
            if c.proc and c.proc.returncode is None:
                c.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(c.proc.wait(), 15)
                except TimeoutError:
                    c.proc.kill()
                    await c.proc.wait()
            if c.pump:
                await asyncio.gather(c.pump, return_exceptions=True)
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self.say("stopped")
        return 0


def components_for(data_dir: Path, port: int, bind: str, etcd: str, disable: set[str],
                   advertise: str | None = None, sans: list[str] | None = None,
                   merge: str | None = None,
                   controller_manager_args: list[str] | None = None) -> list[Component]:
    kubeconfig = str(data_dir / "kubeconfig.yaml")
    api_args = ["apiserver", "--data-dir", str(data_dir), "--secure-port", str(port),
                "--bind-address", bind]
    if advertise:
        api_args += ["--advertise-address", advertise]
    for san in sans or []:
        api_args += ["--tls-san", san]
    if merge:
        api_args += ["--merge-kubeconfig", merge]
    if etcd:
        api_args += ["--etcd-endpoints", etcd]
    out = [Component("apiserver", api_args, needs_kubeconfig=False)]
    node = socket.gethostname().lower()
    optional = [
        ("controller-manager", ["controller-manager", "--kubeconfig", kubeconfig,
                                "--cluster-signing-cert-file", str(data_dir / "tls" / "ca.crt"),
                                "--cluster-signing-key-file", str(data_dir / "tls" / "ca.key"),
                                *_flags(controller_manager_args)]),
        ("scheduler", ["scheduler", "--kubeconfig", kubeconfig]),
        # The node side on this host, as k3s runs it: kubelet, overlay, service proxy, DNS.
        ("agent", ["agent", "--kubeconfig", kubeconfig, "--node-name", node,
                   "--data-dir", str(data_dir / "agent")]),
        ("overlay", ["overlay", "--kubeconfig", kubeconfig, "--node-name", node]),
        ("proxy", ["proxy", "--kubeconfig", kubeconfig, "--node-name", node]),
        ("dns", ["dns", "--kubeconfig", kubeconfig, "--listen", "10.43.0.10:53"]),
    ]
    node_side = {"agent", "overlay", "proxy", "dns"}
    for name, args in optional:
        if name in disable or (name in node_side and "agent" in disable):
            continue
        out.append(Component(name, args))
    return out


def _flags(pairs: list[str] | None) -> list[str]:
    """k3s' --kube-controller-manager-arg style: "node-monitor-grace-period=10s" → a flag."""
    return [p if p.startswith("--") else f"--{p}" for p in pairs or []]


def main(args) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    disable = set(args.disable or [])
    if args.disable_agent:
        disable.add("agent")
    comps = components_for(data_dir, args.https_listen_port, args.bind_address,
                           args.etcd_endpoints, disable, args.advertise_address, args.tls_san,
                           args.merge_kubeconfig, args.kube_controller_manager_arg)
    return asyncio.run(Supervisor(comps, data_dir, args.https_listen_port, args.bind_address).run())
