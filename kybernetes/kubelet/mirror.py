"""The node's image supply, offline: every image built by `kyb image build` is imported into
containerd and served by a local registry that containerd uses as the mirror of docker.io,
registry.k8s.io and the rest — so the docs' manifests run unchanged, even with
imagePullPolicy Always (`:latest`)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from .containerd import Containerd
from .imagebuild import RECIPES, build_cached, cache_dir
from .registry import Registry, write_mirror_config

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


class ImageMirror:
    def __init__(self, data_dir: Path):
        self.registry = Registry(data_dir / "registry")
        self.started = False

    async def start(self, containerd: Containerd) -> None:
        archives = await asyncio.to_thread(available_archives)
        for a in archives:
            try:
                await containerd.ctr("images", "import", str(a))
            except RuntimeError as e:
                log.warning("importing %s: %s", a.name, e)
        if not shutil.which("docker-registry") or not shutil.which("skopeo"):
            log.warning("docker-registry/skopeo missing: images are imported, but pulls "
                        "(imagePullPolicy Always) will fail")
            return
        await self.registry.start()
        self.started = True
        for a in archives:
            try:
                await self.registry.push(a)
            except (RuntimeError, ValueError) as e:
                log.warning("pushing %s: %s", a.name, e)
        write_mirror_config(containerd.registry, self.registry.address)
        log.info("image mirror on %s with %s", self.registry.address,
                 ", ".join(a.name.split("-")[0] for a in archives))

    async def stop(self) -> None:
        if self.started:
            await self.registry.stop()
