"""Running containerd for the agent, like k3s does: its own config, state under the agent's data
dir, the CRI plugin set up for this machine (see shared/node-runtime.md)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

PAUSE_IMAGE = "registry.k8s.io/pause:3.9"

_CONFIG = """version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry}"
"""


class Containerd:
    """A containerd process owned by the agent (started and stopped by it)."""

    def __init__(self, data_dir: Path, cni_bin: str = "/usr/lib/cni", pause_image: str = PAUSE_IMAGE):
        self.dir = data_dir / "containerd"
        self.socket = str(self.dir / "containerd.sock")
        self.cni_conf = data_dir / "cni" / "net.d"
        self.registry = data_dir / "registry.d"
        self.cni_bin = cni_bin
        self.pause_image = pause_image
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def write_config(self) -> Path:
        for d in (self.dir / "root", self.dir / "state", self.cni_conf, self.registry):
            d.mkdir(parents=True, exist_ok=True)
        path = self.dir / "config.toml"
        path.write_text(_CONFIG.format(root=self.dir / "root", state=self.dir / "state",
                                       socket=self.socket, pause=self.pause_image,
                                       cni_bin=self.cni_bin, cni_conf=self.cni_conf,
                                       registry=self.registry))
        return path

    async def start(self, timeout: float = 30) -> None:
        config = self.write_config()
        log = open(self.dir / "containerd.log", "ab")
        self.proc = await asyncio.create_subprocess_exec(
            "containerd", "--config", str(config), stdout=log, stderr=log)
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while not os.path.exists(self.socket):
            if self.proc.returncode is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}; see {self.dir / 'containerd.log'}")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("containerd did not create its socket in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def ctr(self, *args: str, stdin: bytes | None = None) -> bytes:
        """Run `ctr` against this containerd in the CRI's namespace."""
        p = await asyncio.create_subprocess_exec(
            "ctr", "--address", self.socket, "--namespace", "k8s.io", *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate(stdin)
        if p.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {err.decode(errors='replace').strip()}")
        return out
