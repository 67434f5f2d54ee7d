"""Base images made offline, as OCI image-layout tarballs that containerd imports.

No registry is reachable here, so the pause and busybox images are built from Debian's
busybox-static: one tar layer, an image config, a manifest and an index.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX = "/bin/busybox"
# The sandbox process must stay alive and end on TERM (see shared/node-runtime.md).
PAUSE_CMD = ["/bin/busybox", "sh", "-c",
             "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, target, 0, 0o777
    tar.addfile(info)


def busybox_layer(with_applets: bool = True) -> bytes:
    """A root filesystem: /bin/busybox, its applets as symlinks, /etc/passwd, /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "root", "var", "proc", "sys", "dev", "home"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_bytes(tar, "bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
        if with_applets:
            applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                                     check=True).stdout.split()
            dirs = {os.path.dirname(a) for a in applets} - {"bin", ""}
            for d in sorted(dirs):
                _add_dir(tar, d)
            for a in applets:
                if a != "bin/busybox":
                    _add_link(tar, a, "/bin/busybox")
        _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        _add_bytes(tar, "etc/group", b"root:x:0:\nnobody:x:65534:\n")
        _add_bytes(tar, "etc/hosts", b"127.0.0.1 localhost\n")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_archive(out: Path, name: str, layers: list[bytes], *, cmd: list[str] | None = None,
                entrypoint: list[str] | None = None, env: list[str] | None = None,
                workdir: str = "/", ports: list[str] | None = None) -> Path:
    """Write an OCI image layout tar that `ctr images import` understands."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0))
    config = {
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": cmd, "Entrypoint": entrypoint, "WorkingDir": workdir,
                   "ExposedPorts": {p: {} for p in ports or []} or None},
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer) for layer in layers]},
        "history": [{"created": created, "created_by": "kyb image build"} for _ in layers],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _sha(layer), "size": len(layer)} for layer in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _sha(manifest_bytes), "size": len(manifest_bytes),
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag}}]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for blob in [config_bytes, manifest_bytes, *layers]:
            _add_bytes(tar, f"blobs/sha256/{_sha(blob)[7:]}", blob)
    return out


def build_pause(out: Path, name: str = "registry.k8s.io/pause:3.9") -> Path:
    return oci_archive(out, name, [busybox_layer(with_applets=False)], entrypoint=PAUSE_CMD)


def build_busybox(out: Path, name: str = "docker.io/library/busybox:latest") -> Path:
    return oci_archive(out, name, [busybox_layer()], cmd=["sh"])
