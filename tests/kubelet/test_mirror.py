"""The agent's image mirror: images imported into containerd and pushed to the local registry,
and an agent restarted on the same data dir redoing none of it (real containerd, registry)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess

import pytest

from kybernetes.kubelet import mirror
from kybernetes.kubelet.containerd import Containerd
from kybernetes.kubelet.registry import Registry


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("containerd", "runc", "ctr", "docker-registry", "skopeo"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


def test_ctr_listing_is_read_by_name_and_digest():
    out = ("REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
           "docker.io/library/busybox:latest application/vnd.oci.image.manifest.v1+json "
           "sha256:aa 1.2 MiB linux/amd64 io.cri-containerd.image=managed\n"
           "sha256:bb application/vnd.oci.image.manifest.v1+json sha256:bb 1.2 MiB "
           "linux/amd64 -\n")
    assert mirror.parse_ctr_images(out) == {"docker.io/library/busybox:latest": "sha256:aa",
                                            "sha256:bb": "sha256:bb"}


async def test_restarted_mirror_imports_and_pushes_nothing_again(tmp_path, monkeypatch, caplog):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("KYB_IMAGE_CACHE", str(tmp_path / "cache"))  # pause + busybox only
    data = tmp_path / "agent"
    c = Containerd(data)
    await c.start()
    caplog.set_level(logging.INFO, logger=mirror.log.name)
    try:
        archives = mirror.available_archives()
        refs = {n: d for a in archives for n, d in mirror.archive_refs(a).items()}
        assert "docker.io/library/busybox:latest" in refs

        first = mirror.ImageMirror(data)
        await first.start(c)
        await asyncio.wait_for(first.pushed.wait(), 180)
        await first.stop()
        held = mirror.parse_ctr_images((await c.ctr("images", "ls")).decode())
        storage = data / "registry" / "storage"
        for name, digest in refs.items():
            assert held.get(name) == digest
            assert mirror.registry_tag_digest(storage, name) == digest
        assert f"images: {len(archives)} imported, 0 already present" in caplog.text

        pushes = []

        async def push(self, archive, names=None):
            pushes.append((archive, names))
            return names or []

        monkeypatch.setattr(Registry, "push", push)
        caplog.clear()
        again = mirror.ImageMirror(data)
        await again.start(c)
        await asyncio.wait_for(again.pushed.wait(), 60)
        await again.stop()
        assert f"images: 0 imported, {len(archives)} already present" in caplog.text
        assert pushes == []
    finally:
        await c.stop()
        subprocess.run(["umount", "-R", str(data / "containerd")], stderr=subprocess.DEVNULL)
