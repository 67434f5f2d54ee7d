"""The node's image supply, offline: every image built by `kyb image build` is imported into
containerd and served by a local registry that containerd uses as the mirror of docker.io,
registry.k8s.io and the rest — so the docs' manifests run unchanged, even with
imagePullPolicy Always (`:latest`).

Start-up does only what is missing: an image containerd already holds under the same manifest
digest is not imported again, a tag the registry already serves at that digest is not pushed
again. Pushing runs in the background once the images are imported: until it is done a pull
finds nothing at the mirror and the kubelet uses the imported copy (imagepull.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tarfile
from pathlib import Path

from .containerd import Containerd
from .imagebuild import RECIPES, build_cached, cache_dir
from .registry import Registry, normalise, repository, write_mirror_config

log = logging.getLogger(__name__)
_ALWAYS_BUILT = ("pause", "busybox")  # cheap: made from busybox-static in a second


def available_archives(cache: Path | None = None) -> list[Path]:
    """pause and busybox (built if missing) plus the Debian-based images already cached."""
    cache = cache or cache_dir()
    out = []
    for name, recipe in RECIPES.items():
        path = cache / f"{name}-{recipe.key()}.tar"
        if name in _ALWAYS_BUILT:
            out.append(build_cached(name, cache))
        elif path.exists():
            out.append(path)
    return out


def archive_refs(archive: Path) -> dict[str, str]:
    """Image name → manifest digest, from an OCI archive's index.json."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return {m["annotations"]["io.containerd.image.name"]: m["digest"]
            for m in index["manifests"] if (m.get("annotations") or {}).get(
                "io.containerd.image.name")}


def parse_ctr_images(out: str) -> dict[str, str]:
    """`ctr images ls` → image name → digest (columns: REF TYPE DIGEST ...)."""
    refs = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].startswith("sha256:"):
            refs[cols[0]] = cols[2]
    return refs


def registry_tag_digest(storage: Path, name: str) -> str | None:
    """The digest the registry's filesystem storage serves NAME's tag at (None when absent)."""
    repo = repository(name)
    if "@" in repo:
        return None
    path, _, tag = repo.rpartition(":")
    link = (storage / "docker" / "registry" / "v2" / "repositories" / path / "_manifests" /
            "tags" / tag / "current" / "link")
    try:
        return link.read_text().strip()
    except OSError:
        return None


class ImageMirror:
    def __init__(self, data_dir: Path):
        self.registry = Registry(data_dir / "registry")
        self.started = False
        self._push: asyncio.Task | None = None
        self.pushed = asyncio.Event()  # set once every image is served (or pushing gave up)

    async def start(self, containerd: Containerd) -> None:
        archives = await asyncio.to_thread(available_archives)
        refs = {a: await asyncio.to_thread(archive_refs, a) for a in archives}
        await self._import(containerd, archives, refs)
        if not shutil.which("docker-registry") or not shutil.which("skopeo"):
            log.warning("docker-registry/skopeo missing: images are imported, but pulls "
                        "(imagePullPolicy Always) will fail")
            self.pushed.set()
            return
        await self.registry.start()
        self.started = True
        # Mirror config first: a pull must never go past the mirror, even before pushes end.
        write_mirror_config(containerd.registry, self.registry.address)
        self._push = asyncio.create_task(self._push_all(archives, refs), name="image-mirror")

    async def _import(self, containerd: Containerd, archives: list[Path],
                      refs: dict[Path, dict[str, str]]) -> None:
        try:
            held = parse_ctr_images((await containerd.ctr("images", "ls")).decode())
        except RuntimeError as e:
            log.warning("listing images: %s", e)
            held = {}
        missing = [a for a in archives
                   if any(held.get(normalise(n)) != d for n, d in refs[a].items())]

        async def one(a: Path) -> None:
            try:
                await containerd.ctr("images", "import", str(a))
            except RuntimeError as e:
                log.warning("importing %s: %s", a.name, e)

        await asyncio.gather(*(one(a) for a in missing))
        log.info("images: %d imported, %d already present", len(missing),
                 len(archives) - len(missing))

    async def _push_all(self, archives: list[Path], refs: dict[Path, dict[str, str]]) -> None:
        storage = self.registry.dir / "storage"
        try:
            for a in archives:
                todo = [n for n, d in refs[a].items() if registry_tag_digest(storage, n) != d]
                if not todo:
                    continue
                try:
                    await self.registry.push(a, todo)
                except (RuntimeError, ValueError) as e:
                    log.warning("pushing %s: %s", a.name, e)
            log.info("image mirror on %s with %s", self.registry.address,
                     ", ".join(a.name.split("-")[0] for a in archives))
        finally:
            self.pushed.set()

    async def stop(self) -> None:
        if self._push is not None:
            self._push.cancel()
            await asyncio.gather(self._push, return_exceptions=True)
        if self.started:
            await self.registry.stop()
