"""Images built offline: layer tars, OCI archives, the cache, containers of each image through the
CRI, and pulls through a local registry that containerd uses as its mirror."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybernetes.kubelet import imagebuild, registry
from kybernetes.kubelet.containerd import Containerd
from kybernetes.kubelet.cri.client import CRI, CRIError
from kybernetes.kubelet.cri.client import messages as pb

EXITED = pb.CONTAINER_EXITED


def _runtime_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("containerd", "runc", "ctr", "docker-registry", "skopeo", "debootstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _members(layer: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(layer, "r:gz") as tar:
        return tar.getmembers()


# --- layers and archives (no runtime needed) -------------------------------------------------

names = st.text("abcdefgh_.-", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
trees = st.recursive(st.binary(max_size=64),
                     lambda sub: st.dictionaries(names, sub, min_size=1, max_size=4), max_leaves=12)


def _write_tree(root: Path, tree) -> None:
    for name, sub in tree.items():
        if isinstance(sub, dict):
            (root / name).mkdir()
            _write_tree(root / name, sub)
        else:
            (root / name).write_bytes(sub)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(names, trees, min_size=1, max_size=4))
def test_layer_is_deterministic_and_complete(tmp_path_factory, tree):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    _write_tree(a, tree)
    _write_tree(b, tree)
    os.utime(a, (12345, 12345))  # timestamps must not matter
    for p in a.rglob("*"):
        os.utime(p, (99999, 99999))
    out = tmp_path_factory.mktemp("out")
    la = imagebuild.write_layer(a, out / "a.tar.gz", exclude=())
    lb = imagebuild.write_layer(b, out / "b.tar.gz", exclude=())
    assert (la.digest, la.diff_id) == (lb.digest, lb.diff_id)
    assert la.size == (out / "a.tar.gz").stat().st_size
    members = _members(la.path)
    assert {m.mtime for m in members} == {0}
    assert sorted(m.name for m in members) == sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    # every parent comes before its children, so extraction never needs a directory made up
    seen = set()
    for m in members:
        parent = m.name.rpartition("/")[0]
        assert not parent or parent in seen
        seen.add(m.name)
    raw = gzip.decompress(la.path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for p in a.rglob("*"):
            if p.is_file():
                assert tar.extractfile(str(p.relative_to(a))).read() == p.read_bytes()
    assert la.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a whiteout needs root")
def test_overlay_upper_whiteouts_become_oci_whiteouts(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc" / "gone-dir").mkdir(parents=True)
    (upper / "etc" / "kept").write_text("x")
    os.mknod(upper / "etc" / "removed", 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "gone-dir", "trusted.overlay.opaque", b"y")
    (upper / "etc" / "gone-dir" / "new").write_text("y")
    layer = imagebuild.write_layer(upper, tmp_path / "l.tar.gz", exclude=(), overlay_upper=True)
    by_name = {m.name: m for m in _members(layer.path)}
    assert by_name["etc/.wh.removed"].isreg() and by_name["etc/.wh.removed"].size == 0
    assert "etc/removed" not in by_name
    assert "etc/gone-dir/.wh..wh..opq" in by_name and "etc/gone-dir/new" in by_name
    assert by_name["etc/kept"].isreg()


def test_excluded_paths_are_left_out(tmp_path):
    root = tmp_path / "root"
    for d in ("dev", "proc", "var/lib/apt/lists", "usr/bin"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("big")
    (root / "proc/junk").write_text("x")
    (root / "usr/bin/tool").write_text("t")
    got = {m.name for m in _members(imagebuild.write_layer(root, tmp_path / "l.tar.gz").path)}
    assert {"dev", "proc", "var/lib/apt/lists", "usr/bin/tool"} <= got
    assert not {"proc/junk", "var/lib/apt/lists/deb.debian.org_Packages"} & got


@pytest.mark.parametrize("short,full", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("nginx:1.14.2", "docker.io/library/nginx:1.14.2"),
    ("bitnami/nginx:1.2", "docker.io/bitnami/nginx:1.2"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("quay.io/org/img@sha256:" + "0" * 64, "quay.io/org/img@sha256:" + "0" * 64),
])
def test_names_normalise_as_docker_does(short, full):
    assert registry.normalise(short) == full
    assert registry.repository(short) == full.split("/", 1)[1]


def test_archives_carry_every_name_of_the_docs(tmp_path):
    pause = imagebuild.build("pause", tmp_path, cache=tmp_path / "cache")
    busybox = imagebuild.build("busybox", tmp_path, cache=tmp_path / "cache")
    assert {"registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.10"} <= set(
        imagebuild.archive_names(pause))
    assert {"docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"} <= set(
        imagebuild.archive_names(busybox))
    with tarfile.open(busybox) as tar:
        index = json.load(tar.extractfile("index.json"))
        digests = {m["digest"] for m in index["manifests"]}
        assert len(digests) == 1  # one image, several tags
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digests.pop()[7:]}"))
        for layer in manifest["layers"]:
            blob = tar.extractfile(f"blobs/sha256/{layer['digest'][7:]}").read()
            assert len(blob) == layer["size"]


def test_cache_serves_a_rebuild(tmp_path):
    cache = tmp_path / "cache"
    first = imagebuild.build_cached("busybox", cache)
    inode = first.stat().st_ino
    again = imagebuild.build_cached("busybox", cache)
    assert again == first and again.stat().st_ino == inode
    out = imagebuild.build("busybox", tmp_path / "out", cache)
    assert out.read_bytes() == first.read_bytes()


def test_cli_build_writes_archives(tmp_path):
    env = {**os.environ, "KYB_IMAGE_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "kybernetes.cli.main", "image", "build", "--out",
                        str(tmp_path / "out"), "pause", "busybox"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["busybox.tar", "pause.tar"]


# --- a containerd, a registry, and containers -------------------------------------------------

pytestmark_runtime = pytest.mark.skipif(_runtime_missing() is not None,
                                        reason=_runtime_missing() or "")


class Runtime:
    def __init__(self, base: Path, containerd: Containerd, reg: registry.Registry, cri: CRI):
        self.base, self.containerd, self.registry, self.cri = base, containerd, reg, cri
        self.logs = base / "logs"
        self.logs.mkdir(exist_ok=True)

    async def run(self, name: str, image: str, command: list[str], *, wait: bool = True,
                  timeout: float = 60) -> tuple[str, str, int]:
        """Run one container in a host-network sandbox: (sandbox id, log text, exit code)."""
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=name, attempt=0),
            log_directory=str(self.logs),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE))))
        sb = (await self.cri.run_pod_sandbox(config=cfg)).pod_sandbox_id
        ccfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                                  image=pb.ImageSpec(image=image), command=command,
                                  log_path=f"{name}.log")
        cid = (await self.cri.create_container(pod_sandbox_id=sb, config=ccfg,
                                               sandbox_config=cfg)).container_id
        await self.cri.start_container(container_id=cid)
        code = -1
        if wait:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                st = (await self.cri.container_status(container_id=cid)).status
                if st.state == EXITED:
                    code = st.exit_code
                    break
                assert asyncio.get_running_loop().time() < deadline, f"{name} did not exit"
                await asyncio.sleep(0.1)
        log = self.logs / f"{name}.log"
        return sb, log.read_text() if log.exists() else "", code

    async def remove(self, sandbox: str) -> None:
        await self.cri.stop_pod_sandbox(pod_sandbox_id=sandbox)
        await self.cri.remove_pod_sandbox(pod_sandbox_id=sandbox)


def _unmount_under(base: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(base))), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(tmp_path_factory):
    reason = _runtime_missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("images")
    c = Containerd(base / "agent")
    reg = registry.Registry(base / "registry", _free_port())
    cri = None
    try:
        await reg.start()
        registry.write_mirror_config(c.registry, reg.address)
        await c.start()
        cri = CRI(c.endpoint)
        await c.ctr("images", "import", str(imagebuild.build_cached("pause")))
        yield Runtime(base, c, reg, cri)
    finally:
        if cri:
            sandboxes = await cri.list_pod_sandbox()
            for sb in sandboxes.items:
                await cri.stop_pod_sandbox(pod_sandbox_id=sb.id)
                await cri.remove_pod_sandbox(pod_sandbox_id=sb.id)
            await cri.close()
        await c.stop()
        await reg.stop()
        _unmount_under(base)


async def _image_present(cri: CRI, image: str) -> bool:
    st = await cri.image_status(image=pb.ImageSpec(image=image))
    return st.HasField("image") and bool(st.image.id)


@pytestmark_runtime
@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_python_image_runs_python(runtime):
    archive = await asyncio.to_thread(imagebuild.build_cached, "python")
    await runtime.containerd.ctr("images", "import", str(archive))
    for name in ("docker.io/library/python:3.11", "python:3.11-slim", "python:3"):
        assert await _image_present(runtime.cri, name), name
    sb, log, code = await runtime.run("py", "python:3.11", ["python3", "-c", "print(6*7)"])
    await runtime.remove(sb)
    assert code == 0, log
    assert [line.split(" ", 3)[3] for line in log.splitlines()] == ["42"]
    sb, log, code = await runtime.run("py2", "python:3", ["python", "-c",
                                                         "import ssl, json; print('ok')"])
    await runtime.remove(sb)
    assert code == 0 and log.rstrip().endswith("ok"), log


@pytestmark_runtime
@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_nginx_image_serves_a_page(runtime):
    archive = await asyncio.to_thread(imagebuild.build_cached, "nginx")
    await runtime.containerd.ctr("images", "import", str(archive))
    sb, log, code = await runtime.run("ngv", "nginx:1.25", ["nginx", "-v"])
    await runtime.remove(sb)
    assert code == 0 and "nginx version: nginx/" in log, log
    port = _free_port()
    sb, _, _ = await runtime.run(
        "ngx", "docker.io/library/nginx:latest",
        ["sh", "-c", f"sed -i 's/listen 80;/listen 127.0.0.1:{port};/' "
                     f"/etc/nginx/conf.d/default.conf && exec nginx -g 'daemon off;'"], wait=False)
    try:
        body = await asyncio.to_thread(_get_with_retries, f"http://127.0.0.1:{port}/")
        assert "Welcome to nginx!" in body
    finally:
        await runtime.remove(sb)


def _get_with_retries(url: str, tries: int = 100) -> str:
    for i in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if i == tries - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


@pytestmark_runtime
@pytest.mark.asyncio(loop_scope="module")
async def test_pull_through_the_local_mirror(runtime):
    """imagePullPolicy Always: the image is removed, then pulled from the mirror by its docs name."""
    await runtime.registry.push(imagebuild.build_cached("busybox"))
    name = "docker.io/library/busybox:1.36"
    if await _image_present(runtime.cri, name):
        await runtime.cri.remove_image(image=pb.ImageSpec(image=name))
    assert not await _image_present(runtime.cri, name)
    ref = (await runtime.cri.pull_image(image=pb.ImageSpec(image=name), timeout=60)).image_ref
    assert ref.startswith("sha256:")
    assert await _image_present(runtime.cri, "busybox:1.36")
    sb, log, code = await runtime.run("pulled", "busybox:1.36", ["sh", "-c", "echo pulled-ok"])
    await runtime.remove(sb)
    assert code == 0 and log.rstrip().endswith("pulled-ok"), log


@pytestmark_runtime
@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_pull_nginx_by_short_name_through_the_mirror(runtime):
    await runtime.registry.push(await asyncio.to_thread(imagebuild.build_cached, "nginx"),
                                ["nginx:1.14.2"])
    if await _image_present(runtime.cri, "nginx:1.14.2"):
        await runtime.cri.remove_image(image=pb.ImageSpec(image="nginx:1.14.2"))
    assert not await _image_present(runtime.cri, "nginx:1.14.2")
    await runtime.cri.pull_image(image=pb.ImageSpec(image="nginx:1.14.2"), timeout=120)
    assert await _image_present(runtime.cri, "docker.io/library/nginx:1.14.2")


@pytestmark_runtime
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("image", ["docker.io/library/no-such-image:1.0",
                                   "registry.k8s.io/no-such/thing:v1", "quay.io/nobody/nothing",
                                   # no hosts.toml of its own: containerd's _default one serves
                                   "example.com/nobody/nothing:1"])
async def test_unknown_image_fails_fast_with_not_found(runtime, image):
    with pytest.raises(CRIError) as e:
        await runtime.cri.pull_image(image=pb.ImageSpec(image=image), timeout=30)
    assert e.value.code.name != "DEADLINE_EXCEEDED"
    assert "not found" in e.value.details, e.value.details


@pytestmark_runtime
@pytest.mark.asyncio(loop_scope="module")
async def test_cli_push_tags_every_name(runtime):
    archive = imagebuild.build_cached("pause")
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kybernetes.cli.main", "image", "push", str(archive),
        "--registry", runtime.registry.address, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 120)
    assert p.returncode == 0, err.decode()
    pushed = out.decode().split()
    assert f"{runtime.registry.address}/pause:3.10" in pushed
    assert len(pushed) == len(imagebuild.archive_names(archive))
    tags = await asyncio.to_thread(_get_with_retries,
                                   f"http://{runtime.registry.address}/v2/pause/tags/list", 1)
    assert set(json.loads(tags)["tags"]) == {n.rsplit(":", 1)[1] for n in imagebuild.NAMES["pause"]}


@pytestmark_runtime
def test_cli_serve_pushes_every_name_and_writes_mirror_config(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kybernetes.cli.main", "image", "serve",
                             "--data-dir", str(tmp_path), "--port", str(port), "pause", "busybox"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert lines and lines[-1].startswith("serving on"), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/library/busybox/tags/list") as r:
            tags = set(json.load(r)["tags"])
        assert {"latest", "1.36"} <= tags
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/pause/tags/list") as r:
            assert {"3.9", "3.10"} <= set(json.load(r)["tags"])
        hosts = (tmp_path / "registry.d" / "docker.io" / "hosts.toml").read_text()
        assert f'[host."http://127.0.0.1:{port}"]' in hosts
        # the mirror is also the server: nothing falls through to the real registry
        assert f'server = "http://127.0.0.1:{port}"' in hosts
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
