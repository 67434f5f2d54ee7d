"""Base images built offline from Debian packages, as OCI image-layout tarballs.

The python and nginx images share one layer: a `debootstrap --variant=minbase` root filesystem.
Each adds one layer made by installing its packages in a chroot over an overlay mount of that
base, so the layer is the overlay's upper directory (deletions become OCI whiteouts). Layer tars
are deterministic (sorted, mtime 0, numeric owners only) and every built tarball is cached under
a key that hashes its recipe, so a rebuild is a file copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import images

BUILDER_VERSION = "1"  # bump when the way layers are written changes
DEFAULT_CACHE = "/var/cache/kybernetes/images"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Left out of every rootfs layer: runtime mounts, package caches, build logs.
EXCLUDE = ("dev/*", "proc/*", "sys/*", "run/*", "tmp/*", "var/tmp/*",
           "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
           "var/log/apt/*", "var/log/dpkg.log", "var/log/alternatives.log",
           "var/log/bootstrap.log", "debootstrap", "debootstrap/*",
           "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/resolv.conf")

# The names the Kubernetes docs' manifests use; one image answers to all of its names.
NAMES = {
    "pause": ["registry.k8s.io/pause:" + t for t in ("3.10", "3.9", "3.8", "3.6", "3.1", "2.0",
                                                       "latest")],
    "busybox": ["docker.io/library/busybox:" + t for t in ("latest", "1.36", "1.37", "1.35",
                                                           "1.34", "1.28", "stable")],
    "python": ["docker.io/library/python:" + t for t in ("3.11", "3.11-slim", "3", "3-slim",
                                                         "slim", "latest")],
    "nginx": ["docker.io/library/nginx:" + t for t in ("latest", "1.14.2", "1.16.1", "1.25",
                                                       "1.27", "stable", "mainline")],
}
ALL = list(NAMES)

_NGINX_SETUP = r"""
rm -f /etc/nginx/sites-enabled/default
cat > /etc/nginx/conf.d/default.conf <<'EOF'
server {
    listen 80;
    server_name localhost;
    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
EOF
mkdir -p /usr/share/nginx/html
[ -f /usr/share/nginx/html/index.html ] || cat > /usr/share/nginx/html/index.html <<'EOF'
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
</body></html>
EOF
# Logs go to the container's output, as in the official image.
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log
"""

# Hash-based .pyc files: the layer's mtime 0 would otherwise make every timestamped .pyc stale.
_PYTHON_SETUP = r"""
python3 -m compileall -q -f --invalidation-mode unchecked-hash /usr/lib/python3.11 \
    /usr/lib/python3/dist-packages >/dev/null || true
"""


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str  # of the gzip blob
    diff_id: str  # of the uncompressed tar
    size: int

    def to_json(self) -> dict:
        return {"path": str(self.path), "digest": self.digest, "diff_id": self.diff_id,
                "size": self.size}

    @classmethod
    def from_json(cls, d: dict) -> "Layer":
        return cls(Path(d["path"]), d["digest"], d["diff_id"], d["size"])


@dataclass
class ImageConfig:
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    ports: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    workdir: str = "/"

    def to_json(self) -> dict:
        c = {"Cmd": self.cmd, "Entrypoint": self.entrypoint, "Env": self.env,
             "WorkingDir": self.workdir, "StopSignal": self.stop_signal,
             "ExposedPorts": {p: {} for p in self.ports} or None}
        return {k: v for k, v in c.items() if v is not None}


# --- deterministic layer tars ---------------------------------------------------------------

class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, sink):
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        self.sink.write(b)
        return len(b)


def _walk(root: Path, rel: str = ""):
    """(relative path, absolute path) of everything under root, sorted, parents first."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        r = f"{rel}/{e.name}" if rel else e.name
        yield r, e.path
        if e.is_dir(follow_symlinks=False):
            yield from _walk(root, r)


def _excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(rel, pat) for pat in exclude)


def _normalise(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.mtime, ti.uname, ti.gname = 0, "", ""
    return ti


def write_layer(root: Path, out: Path, exclude: tuple[str, ...] = EXCLUDE,
                overlay_upper: bool = False) -> Layer:
    """Tar a directory tree as a gzip layer. With overlay_upper, the tree is an overlayfs upper
    dir: its whiteouts (0/0 char devices) and opaque dirs become OCI `.wh.` entries."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as f:
        blob = _Hashing(f)
        gz = gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=6, mtime=0)
        diff = _Hashing(gz)
        with tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel, path in _walk(root):
                if _excluded(rel, exclude):
                    continue
                st = os.lstat(path)
                if overlay_upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    parent, _, name = rel.rpartition("/")
                    wh = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                    tar.addfile(_normalise(wh))
                    continue
                ti = tar.gettarinfo(path, arcname=rel)
                if ti is None:  # sockets
                    continue
                _normalise(ti)
                if ti.isreg():
                    with open(path, "rb") as src:
                        tar.addfile(ti, src)
                else:
                    tar.addfile(ti)
                if overlay_upper and ti.isdir() and _opaque(path):
                    tar.addfile(_normalise(tarfile.TarInfo(f"{rel}/.wh..wh..opq")))
        gz.close()
    os.replace(tmp, out)
    return Layer(out, "sha256:" + blob.sha.hexdigest(), "sha256:" + diff.sha.hexdigest(),
                 blob.size)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def layer_from_bytes(data: bytes, out: Path) -> Layer:
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(data)
    blob = buf.getvalue()
    out.write_bytes(blob)
    return Layer(out, "sha256:" + hashlib.sha256(blob).hexdigest(),
                 "sha256:" + hashlib.sha256(data).hexdigest(), len(blob))


# --- OCI image layout ------------------------------------------------------------------------

def _tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _add_blob(tar: tarfile.TarFile, data: bytes | None, path: Path | None, digest: str) -> None:
    ti = tarfile.TarInfo(f"blobs/sha256/{digest[7:]}")
    ti.mode = 0o644
    if data is not None:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    else:
        ti.size = path.stat().st_size
        with open(path, "rb") as f:
            tar.addfile(ti, f)


def write_oci_archive(out: Path, names: list[str], layers: list[Layer], config: ImageConfig,
                      history: list[str] | None = None) -> Path:
    """An OCI image-layout tar with one manifest listed once per name (containerd imports each
    `io.containerd.image.name`; skopeo selects by `org.opencontainers.image.ref.name`)."""
    created = "1970-01-01T00:00:00Z"
    cfg = {"created": created, "architecture": "amd64", "os": "linux",
           "config": config.to_json(),
           "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
           "history": [{"created": created, "created_by": h}
                       for h in history or ["kyb image build"] * len(layers)]}
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cfg_digest, "size": len(cfg_bytes)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": la.digest, "size": la.size} for la in layers]}
    man_bytes = json.dumps(manifest, sort_keys=True).encode()
    man_digest = "sha256:" + hashlib.sha256(man_bytes).hexdigest()
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest,
         "size": len(man_bytes),
         "annotations": {"io.containerd.image.name": n, "org.opencontainers.image.ref.name": _tag(n)}}
        for n in names]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index, sort_keys=True).encode())):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        _add_blob(tar, cfg_bytes, None, cfg_digest)
        _add_blob(tar, man_bytes, None, man_digest)
        seen = set()
        for la in layers:
            if la.digest not in seen:
                seen.add(la.digest)
                _add_blob(tar, None, la.path, la.digest)
    os.replace(tmp, out)
    return out


def archive_names(archive: Path) -> list[str]:
    """The image names an OCI archive carries (its index annotations)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return [m.get("annotations", {}).get("io.containerd.image.name", "") for m in index["manifests"]]


# --- the cache and the recipes ---------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("KYB_IMAGE_CACHE") or DEFAULT_CACHE)


def _key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps({"v": BUILDER_VERSION, **recipe},
                                     sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(cache: Path):
    """One build at a time per cache (two test processes may build the same base)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], what: str) -> None:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        raise RuntimeError(f"{what} failed ({p.returncode}):\n{p.stdout[-3000:]}")


def _mirror() -> str:
    return os.environ.get("KYB_DEBIAN_MIRROR") or DEBIAN_MIRROR


def base_recipe() -> dict:
    return {"kind": "debootstrap", "suite": SUITE, "variant": "minbase", "mirror": _mirror()}


def debian_base(cache: Path) -> tuple[Path, Layer]:
    """The shared base: a minbase root filesystem (kept, for the image layers) and its layer."""
    d = cache / f"base-{_key(base_recipe())}"
    meta = d / "layer.json"
    if meta.exists():
        return d / "rootfs", Layer.from_json(json.loads(meta.read_text()))
    if d.exists():
        shutil.rmtree(d)
    rootfs = d / "rootfs"
    rootfs.mkdir(parents=True)
    # In a private mount namespace, so the /proc and /sys that debootstrap mounts go with it.
    _run(["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
          SUITE, str(rootfs), _mirror()], "debootstrap")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file():
                p.unlink()
    layer = write_layer(rootfs, d / "layer.tar.gz")
    meta.write_text(json.dumps(layer.to_json()))
    return rootfs, layer


def _chroot_install(base: Path, work: Path, packages: list[str], setup: str) -> Path:
    """Install packages over an overlay of the base; returns the overlay's upper dir."""
    upper, ovl_work, merged = work / "upper", work / "work", work / "merged"
    for p in (upper, ovl_work, merged):
        p.mkdir(parents=True)
    inner = (
        "set -e; export DEBIAN_FRONTEND=noninteractive LC_ALL=C;"
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d;"
        "apt-get -q update; apt-get -q install -y --no-install-recommends "
        + " ".join(shlex.quote(p) for p in packages) + "\n"
        + setup + "\n"
        "apt-get clean; rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d")
    m = shlex.quote(str(merged))
    outer = (
        "set -e;"
        f"mount -t overlay overlay -o lowerdir={shlex.quote(str(base))},"
        f"upperdir={shlex.quote(str(upper))},workdir={shlex.quote(str(ovl_work))},"
        f"metacopy=off,redirect_dir=off,index=off {m};"
        f"mount -t proc proc {m}/proc; mount --rbind /dev {m}/dev;"
        f"cp /etc/resolv.conf {m}/etc/resolv.conf;"
        f"chroot {m} /bin/sh -c {shlex.quote(inner)};"
        f"rm -f {m}/etc/resolv.conf")
    # A private mount namespace: every mount disappears when the shell exits, even on failure.
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", outer],
         f"installing {' '.join(packages)}")
    shutil.rmtree(ovl_work, ignore_errors=True)
    return upper


@dataclass
class Recipe:
    name: str
    config: ImageConfig
    packages: list[str] = field(default_factory=list)  # debian images only
    setup: str = ""

    @property
    def debian(self) -> bool:
        return bool(self.packages)

    def key(self) -> str:
        desc = {"name": self.name, "names": NAMES[self.name], "config": self.config.to_json(),
                "packages": self.packages, "setup": self.setup}
        if self.debian:
            desc["base"] = base_recipe()
        else:
            # busybox-based images change with the host's busybox binary.
            desc["busybox"] = hashlib.sha256(Path(images.BUSYBOX).read_bytes()).hexdigest()
        return _key(desc)


RECIPES = {
    "pause": Recipe("pause", ImageConfig(entrypoint=images.PAUSE_CMD)),
    "busybox": Recipe("busybox", ImageConfig(cmd=["sh"])),
    "python": Recipe("python", ImageConfig(cmd=["python3"], env=[PATH_ENV, "LANG=C.UTF-8"]),
                     packages=["python3", "python-is-python3", "ca-certificates"],
                     setup=_PYTHON_SETUP),
    "nginx": Recipe("nginx", ImageConfig(cmd=["nginx", "-g", "daemon off;"], ports=["80/tcp"],
                                         stop_signal="SIGQUIT"),
                    packages=["nginx"], setup=_NGINX_SETUP),
}


def build_cached(name: str, cache: Path | None = None) -> Path:
    """The OCI archive of one image, from the cache or built now."""
    cache = cache or cache_dir()
    recipe = RECIPES[name]
    out = cache / f"{name}-{recipe.key()}.tar"
    if out.exists():
        return out
    with _locked(cache):
        if out.exists():
            return out
        if recipe.debian:
            rootfs, base = debian_base(cache)
            with tempfile.TemporaryDirectory(dir=cache, prefix=f"build-{name}-") as tmp:
                upper = _chroot_install(rootfs, Path(tmp), recipe.packages, recipe.setup)
                top = write_layer(upper, Path(tmp) / "layer.tar.gz", overlay_upper=True)
                write_oci_archive(out, NAMES[name], [base, top], recipe.config,
                                  [f"debootstrap --variant=minbase {SUITE}",
                                   "apt-get install " + " ".join(recipe.packages)])
        else:
            with tempfile.TemporaryDirectory(dir=cache, prefix=f"build-{name}-") as tmp:
                layer = layer_from_bytes(images.busybox_layer(with_applets=name != "pause"),
                                         Path(tmp) / "layer.tar.gz")
                write_oci_archive(out, NAMES[name], [layer], recipe.config)
        for old in cache.glob(f"{name}-*.tar"):  # earlier recipes of this image
            if old != out:
                old.unlink(missing_ok=True)
    return out


def build(name: str, out_dir: Path, cache: Path | None = None) -> Path:
    """Build (or take from the cache) one image and place it at OUT_DIR/NAME.tar."""
    src = build_cached(name, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{name}.tar"
    if dst.resolve() == src.resolve():
        return dst
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst
