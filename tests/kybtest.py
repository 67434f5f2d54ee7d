"""Helpers shared by the test suites: a real `kyb apiserver` process, components as child
processes, and the versioned kubectl binaries. (Imported as `kybtest`, a name no other
module shares, so every test directory sees the same helpers.)"""


from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


KUBECTL_VERSIONS = ("1.27", "1.30", "1.32", "1.33")


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_apiserver(data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> Server:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "apiserver.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kybernetes", "apiserver", "--data-dir", str(data_dir),
         "--secure-port", str(port)] + (extra or []),
        stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    server = Server(data_dir, port, proc, log)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 30
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


def start_component(args: list[str], log: Path) -> subprocess.Popen:
    """`python -m kybernetes ARGS` as a child process logging to `log`; stop with stop_process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "kybernetes", *args],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
