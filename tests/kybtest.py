"""Helpers shared by the test suites: a real `kyb apiserver` process, components (a controller
manager, the scheduler, simulated nodes) as child processes, the versioned kubectl binaries, and
patient polling (`wait_for`, `until`). (Imported as `kybtest`, a name no other module shares, so
every test directory sees the same helpers.)"""


from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest


KUBECTL_VERSIONS = ("1.27", "1.30", "1.32", "1.33")

# Cluster-level conditions (a pod scheduled, a controller catching up) can take long on shared,
# slow CI machines: the default deadlines are patient. Failing fast is not the point of a wait.
PATIENCE = 60.0


def kubectl_dir() -> Path | None:
    found = shutil.which("kubectl")
    if not found:
        return None
    return Path(os.path.realpath(found)).parent


def kubectl_binary(version: str) -> Path | None:
    d = kubectl_dir()
    if d is None:
        return None
    p = d / f"kubectl.{version}"
    return p if p.exists() else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    port: int
    proc: subprocess.Popen
    log: Path
    host: str = "127.0.0.1"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_apiserver(data_dir: Path, port: int | None = None, extra: list[str] | None = None,
                    host: str = "127.0.0.1") -> Server:
    """`kyb apiserver` on `host` (a non-loopback one is bound and put in the certificate),
    returned once /readyz answers and the kubeconfig is written."""
    port = port or free_port(host)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "apiserver.log"
    on_host = [] if host == "127.0.0.1" else ["--bind-address", host, "--tls-san", host]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kybernetes", "apiserver", "--data-dir", str(data_dir),
         "--secure-port", str(port), *on_host] + (extra or []),
        stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    server = Server(data_dir, port, proc, log, host)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"apiserver exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", context=ctx, timeout=1) as r:
                if r.status == 200 and server.kubeconfig.exists():
                    return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"apiserver not ready: {log.read_text()[-3000:]}")


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path, cache_dir: Path):
        self.binary, self.kubeconfig, self.cache_dir = binary, kubeconfig, cache_dir

    def run(self, *args: str, input: str | None = None, check: bool = True,
            env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.binary), "--kubeconfig", str(self.kubeconfig),
               "--cache-dir", str(self.cache_dir), *args]
        full_env = dict(os.environ, **(env or {}))
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env=full_env)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def __call__(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout


def kyb(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m kybernetes ARGS` run to the end, output captured; asserts it succeeded unless
    check=False."""
    p = subprocess.run([sys.executable, "-m", "kybernetes", *args], capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"kyb {' '.join(args)}: {p.stdout}{p.stderr}"
    return p


# For suites that start a cluster only to drive it with kubectl 1.33: skip before starting it.
needs_kubectl = pytest.mark.skipif(kubectl_binary("1.33") is None, reason="kubectl 1.33 missing")


def kubectl_binary_or_skip(version: str) -> Path:
    """The kubectl `version` binary; the test is skipped where it is not installed."""
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} is not installed")
    return binary


def kubectl_or_skip(kubeconfig: Path, cache_dir: Path, version: str = "1.33") -> Kubectl:
    """kubectl `version` against `kubeconfig`; the test is skipped where it is not installed."""
    return Kubectl(kubectl_binary_or_skip(version), kubeconfig, cache_dir)


def get_json(kubectl: Kubectl, *args: str) -> dict:
    """`kubectl get ARGS -o json`, decoded."""
    return json.loads(kubectl("get", *args, "-o", "json"))


def json_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path into a JSON value (keys and list indexes), the root's () first: so that a
    mutation can land anywhere in a valid object."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, prefix + (i,))


def create_namespace(kubectl: Kubectl, prefix: str) -> str:
    """A fresh namespace named `prefix-<random>`, made with kubectl."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


async def new_namespace(client, prefix: str) -> str:
    """A fresh namespace named `prefix-<random>`, made through the API client."""
    from kybernetes.client import resource
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": name}})
    return name


async def get_or_none(client, r, name: str, ns: str | None = None) -> dict | None:
    """The object, or None where the API answers 404 (not there yet, or gone)."""
    try:
        return await client.get(r, name, ns)
    except Exception as e:
        if getattr(e, "code", None) == 404:
            return None
        raise


def wait_for(fn: Callable[[], Any], timeout: float = PATIENCE, what: str = "condition",
             every: float = 0.2) -> Any:
    """Call `fn` until it returns something truthy and return that; AssertionError (with the last
    value seen) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(every)


async def until(fn: Callable[[], Awaitable[Any] | Any], timeout: float = PATIENCE,
                every: float = 0.1) -> Any:
    """Await (or call) `fn` until it gives something truthy and return that; TimeoutError after
    `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            out = fn()
            if inspect.isawaitable(out):
                out = await out
            if out:
                return out
            await asyncio.sleep(every)


def start_component(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m kybernetes ARGS` as a child process logging to `log`, with `env` added to this
    process's environment; stop with stop_process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "kybernetes", *args],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, **env) if env else None)


def controller_manager_args(kubeconfig: Path, controllers: str) -> list[str]:
    """A controller-manager running only `controllers` (comma-separated), no leader election."""
    return ["controller-manager", "--kubeconfig", str(kubeconfig), "--controllers", controllers,
            "--leader-elect=false"]


def start_controller_manager(kubeconfig: Path, controllers: str, log: Path,
                             env: dict[str, str] | None = None,
                             flags: tuple[str, ...] = ()) -> subprocess.Popen:
    return start_component([*controller_manager_args(kubeconfig, controllers), *flags], log, env)


def start_sim_nodes(kubeconfig: Path, log: Path, *args: str) -> subprocess.Popen:
    """`kyb sim nodes` with `args` (--count, --name-prefix, delays, taints...)."""
    return start_component(["sim", "nodes", "--kubeconfig", str(kubeconfig), *args], log)


@contextlib.contextmanager
def controller_manager_running(kubeconfig: Path, controllers: str,
                               log: Path) -> Iterator[subprocess.Popen]:
    """start_controller_manager(...), stopped on exit."""
    proc = start_controller_manager(kubeconfig, controllers, log)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def control_plane(kubeconfig: Path, logs: Path, controllers: str,
                  *sims: list[str]) -> Iterator[list[subprocess.Popen]]:
    """A controller-manager running `controllers`, the scheduler and one `sim nodes` per entry of
    `sims` (its arguments), logging to `logs`; all stopped on exit, the last started first."""
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_controller_manager(kubeconfig, controllers, logs / "cm.log"))
        procs.append(start_component(["scheduler", "--kubeconfig", str(kubeconfig),
                                      "--leader-elect=false"], logs / "sched.log"))
        for i, args in enumerate(sims):
            procs.append(start_sim_nodes(kubeconfig, logs / (f"sim-{i}.log" if i else "sim.log"),
                                         *args))
        yield procs
    finally:
        for p in reversed(procs):
            stop_process(p)


@contextlib.contextmanager
def own_cluster(logs: Path, controllers: str, *sims: list[str]) -> Iterator[Server]:
    """An API server of its own (data in `logs`/api) with control_plane(...) around it."""
    server = start_apiserver(logs / "api")
    try:
        with control_plane(server.kubeconfig, logs, controllers, *sims):
            yield server
    finally:
        server.stop()


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
