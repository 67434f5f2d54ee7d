"""A local image registry (Debian's `docker-registry`) that containerd uses as its only mirror.

Images built offline are pushed into it under the names the Kubernetes docs use, and containerd's
hosts.toml files send docker.io, registry.k8s.io, quay.io … to it. Each file's `server` is the
mirror itself: containerd falls back to a file's server when its hosts answer 404, and the real
registries must never be contacted, so an unknown name fails at the mirror ("not found").
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .imagebuild import archive_names

# Registries the docs' manifests pull from; `_default` covers the rest where containerd reads it.
MIRRORED = ("docker.io", "registry.k8s.io", "k8s.gcr.io", "quay.io", "gcr.io", "ghcr.io",
            "registry.gitlab.com", "public.ecr.aws", "_default")
# Upstream each host would use; recorded in hosts.toml comments only.
UPSTREAM = {"docker.io": "https://registry-1.docker.io"}

_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: {addr}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
"""


def free_port(preferred: int = 5000) -> int:
    """PREFERRED when it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def normalise(name: str) -> str:
    """`busybox:1.36` → `docker.io/library/busybox:1.36` (docker's reference rules)."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if "@" not in path and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}"


def repository(name: str) -> str:
    """The path of NAME inside the mirror: the reference without its registry host."""
    return normalise(name).split("/", 1)[1]


def hosts_toml(address: str, host: str) -> str:
    upstream = UPSTREAM.get(host, f"https://{host}")
    return (f"# Mirror of {upstream}; the mirror is also the server so nothing goes past it.\n"
            f'server = "http://{address}"\n\n'
            f'[host."http://{address}"]\n'
            f'  capabilities = ["pull", "resolve"]\n'
            f"  skip_verify = true\n")


def write_mirror_config(registry_d: Path, address: str, hosts: tuple[str, ...] = MIRRORED) -> None:
    """containerd's config_path tree: REGISTRY_D/HOST/hosts.toml for each mirrored registry."""
    for host in hosts:
        d = registry_d / host
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "hosts.toml.tmp"
        tmp.write_text(hosts_toml(address, host))
        os.replace(tmp, d / "hosts.toml")


class Registry:
    """A docker-registry process on loopback, started and stopped by its owner (by PID)."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.dir = data_dir
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20) -> None:
        self.port = self.port or free_port()
        storage = self.dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        config.write_text(_CONFIG.format(storage=storage, addr=self.address))
        log = open(self.dir / "registry.log", "ab")
        self.proc = await asyncio.create_subprocess_exec(
            "docker-registry", "serve", str(config), stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL)
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await loop.run_in_executor(None, self._answers):
            if self.proc.returncode is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}; "
                                   f"see {self.dir / 'registry.log'}")
            if loop.time() > deadline:
                await self.stop()
                raise RuntimeError("docker-registry did not answer in time")
            await asyncio.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def push(self, archive: Path, names: list[str] | None = None) -> list[str]:
        """Push an OCI archive under each of its names (or NAMES); returns what was pushed."""
        return await push(archive, self.address, names)


async def _skopeo(*args: str) -> None:
    p = await asyncio.create_subprocess_exec(
        "skopeo", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    out, _ = await p.communicate()
    if p.returncode:
        raise RuntimeError(f"skopeo {' '.join(args)}: {out.decode(errors='replace').strip()}")


async def push(archive: Path, address: str, names: list[str] | None = None) -> list[str]:
    """Copy the image of ARCHIVE to the registry at ADDRESS once per name, with skopeo.

    The archive is unpacked once into an OCI layout directory: skopeo would otherwise unpack it
    again for every tag; from the second tag on only the manifest travels."""
    carried = [n for n in archive_names(archive) if n]
    targets = names or carried
    if not carried:
        raise ValueError(f"{archive}: no image names in index.json")
    with tempfile.TemporaryDirectory(prefix="kyb-push-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        ref = carried[0].rsplit("/", 1)[-1]
        ref = ref.rsplit(":", 1)[1] if ":" in ref else "latest"
        for name in targets:
            await _skopeo("copy", "--quiet", "--dest-tls-verify=false", f"oci:{tmp}:{ref}",
                          f"docker://{address}/{repository(name)}")
    return targets
