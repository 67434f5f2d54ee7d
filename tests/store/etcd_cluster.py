"""Start a throwaway etcd cluster (the Debian `etcd` binary) on 127.0.0.1 for tests and benchmarks.

    cluster = EtcdCluster(tmp_path, members=3)
    endpoints = cluster.start()      # ["127.0.0.1:PORT", ...]
    cluster.kill(0); cluster.restart(0)
    cluster.stop()

Every process is started and stopped by its PID; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK)


def _free_ports(n: int) -> list[int]:
    # Hold all sockets open until every port is picked so the n ports differ.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    def __init__(self, workdir: Path, members: int = 3, *, token: str = "kyb-test"):
        self.workdir = Path(workdir)
        self.members = members
        self.token = token
        self.client_ports: list[int] = []
        self.peer_ports: list[int] = []
        self.procs: list[subprocess.Popen | None] = [None] * members

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def _name(self, i: int) -> str:
        return f"m{i}"

    def _command(self, i: int) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        initial = ",".join(
            f"{self._name(j)}=http://127.0.0.1:{self.peer_ports[j]}" for j in range(self.members)
        )
        return [
            ETCD,
            "--name", self._name(i),
            "--data-dir", str(self.workdir / self._name(i)),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            # short timeouts: a killed leader is replaced in about a second
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            # room for a value of MAX_VALUE_BYTES plus the request's own overhead
            "--max-request-bytes", str(2 * 1024 * 1024),
            "--logger", "zap",
            "--log-level", "warn",
        ]

    def _spawn(self, i: int) -> None:
        log = open(self.workdir / f"{self._name(i)}.log", "ab")
        try:
            self.procs[i] = subprocess.Popen(
                self._command(i),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the test runner must not hit etcd first
            )
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(2 * self.members)
        self.client_ports = ports[: self.members]
        self.peer_ports = ports[self.members :]
        for i in range(self.members):
            self._spawn(i)
        try:
            self.wait_healthy(range(self.members), timeout)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def healthy(self, i: int) -> bool:
        url = f"http://127.0.0.1:{self.client_ports[i]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def wait_healthy(self, members, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(members)
        while pending:
            for i in list(pending):
                proc = self.procs[i]
                if proc is None or proc.poll() is not None:
                    log = (self.workdir / f"{self._name(i)}.log").read_text(errors="replace")
                    raise RuntimeError(f"etcd member {i} exited:\n{log[-2000:]}")
                if self.healthy(i):
                    pending.remove(i)
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd members {pending} not healthy in {timeout}s")
                time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member i (a crash: no clean shutdown)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.procs[i] = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start member i again on its old ports and data dir and wait until it is healthy."""
        self.kill(i)
        self._spawn(i)
        self.wait_healthy([i], timeout)

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM every member, SIGKILL what is left after `grace` seconds (a leader with a dead
        peer spends seconds on a leadership transfer that a throwaway cluster does not need)."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.procs[i] = None

    def __enter__(self) -> "EtcdCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
