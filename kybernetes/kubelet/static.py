"""Static pods: Pod manifests in a folder (--pod-manifest-path), run by this agent on its own.

As the kubelet's file source (pkg/kubelet/config/file.go, common.go): every regular file of the
folder whose name does not start with '.' holds one Pod (YAML or JSON). The pod is named
`<name>-<node>`, its namespace defaults to `default`, its UID is a hash of the node, the file
and its content (so an edit is a new pod), and it is annotated kubernetes.io/config.source=file,
config.hash=<UID>, config.seen. The pod workers run it like any other pod.

For each static pod a mirror pod is kept in the API server (pkg/kubelet/pod/mirror_client.go):
the same pod with kubernetes.io/config.mirror=<hash> and the Node as controller owner. A mirror
pod that is deleted, or has a stale hash, is deleted (grace 0) and created again; a mirror pod
whose static pod is gone is deleted. The static pod's status is written to its mirror pod.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import yaml

from kybernetes.api import defaults
from kybernetes.api.errors import ApiError
from kybernetes.api.validation import validate
from kybernetes.client import resource

from .podworkers import force_delete, pod_sandboxes

log = logging.getLogger("kyb.kubelet.static")

PODS = resource("v1", "Pod")
SOURCE = "kubernetes.io/config.source"
HASH = "kubernetes.io/config.hash"
MIRROR = "kubernetes.io/config.mirror"
SEEN = "kubernetes.io/config.seen"


def is_mirror(pod: dict) -> bool:
    return MIRROR in ((pod.get("metadata") or {}).get("annotations") or {})


def _key(pod: dict) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace')}/{m['name']}"


def _seen_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod_from_manifest(raw: dict, path: str, node_name: str) -> dict:
    """The static pod a manifest describes (upstream applyDefaults + defaulting + validation).
    Raises ValueError for anything that is not a valid v1 Pod."""
    if not isinstance(raw, dict) or raw.get("kind") != "Pod" or raw.get("apiVersion") != "v1":
        raise ValueError("not a v1 Pod")
    pod = copy.deepcopy(raw)
    meta = pod.setdefault("metadata", {})
    if not meta.get("name"):
        raise ValueError("metadata.name is required")
    if not meta.get("uid"):
        h = hashlib.md5()
        h.update(f"host:{node_name}".encode())
        h.update(f"file:{path}".encode())
        h.update(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode())
        meta["uid"] = h.hexdigest()
    meta["name"] = f"{meta['name']}-{node_name.lower()}"
    meta["namespace"] = meta.get("namespace") or "default"
    annotations = meta.setdefault("annotations", {})
    annotations[HASH] = meta["uid"]
    annotations[SOURCE] = "file"
    spec = pod.setdefault("spec", {})
    spec["nodeName"] = node_name
    # Like upstream: static pods tolerate every NoExecute taint (node problems never evict them).
    tolerations = spec.setdefault("tolerations", [])
    if not any(t.get("operator") == "Exists" and not t.get("key") and
               t.get("effect") == "NoExecute" for t in tolerations):
        tolerations.append({"operator": "Exists", "effect": "NoExecute"})
    defaults.pod(pod)
    pod["status"] = {"phase": "Pending"}
    result = validate("v1", "Pod", pod, strict=False)
    if not result.ok:
        causes = result.decode_errors + result.errors
        raise ValueError("invalid pod: " + "; ".join(
            f"{c.get('field', '')}: {c.get('message', '')}" for c in causes))
    return pod


def read_manifests(folder: Path, node_name: str) -> tuple[dict[str, dict], list[str]]:
    """key → static pod for every valid manifest of the folder, and the errors met."""
    pods: dict[str, dict] = {}
    errors: list[str] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        return pods, [f"{folder}: {e}"]
    for p in entries:
        if p.name.startswith(".") or not p.is_file():
            continue  # upstream skips dot files and does not recurse
        try:
            raw = yaml.safe_load(p.read_text())
            pod = pod_from_manifest(raw, str(p), node_name)
        except (OSError, yaml.YAMLError, ValueError) as e:
            errors.append(f"{p}: {e}")
            continue
        key = _key(pod)
        if key in pods:
            errors.append(f"{p}: a static pod {key} is already defined; ignored")
            continue
        pods[key] = pod
    return pods, errors


def folder_signature(folder: Path) -> tuple:
    try:
        return tuple(sorted((p.name, s.st_mtime_ns, s.st_size, s.st_ino)
                            for p in folder.iterdir() if (s := p.stat())))
    except OSError:
        return ()


class StaticPods:
    """Feeds the folder's pods to the pod workers and keeps their mirror pods."""

    def __init__(self, client, workers, cri, *, node_name: str, folder: Path,
                 node_uid: Callable[[], str], period: float = 1.0):
        self.client, self.workers, self.cri = client, workers, cri
        self.node_name, self.folder, self.node_uid = node_name, folder, node_uid
        self.period = period
        self.pods: dict[str, dict] = {}          # key → the static pod being run
        self.waiting: dict[str, dict] = {}       # key → a new version, until the old one is gone
        self.terminating: dict[str, dict] = {}   # uid → an old version being stopped
        self.mirrors: dict[str, dict] = {}       # key → mirror pod as the informer last saw it
        self.mirrors_synced = False
        self._signature: tuple = ()
        self._errors: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ---- the folder ----

    def load(self) -> None:
        """Read the folder and hand its pods to the workers (before they look for orphans)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rescan()

    def _rescan(self) -> None:
        sig = folder_signature(self.folder)
        if sig == self._signature:
            return
        self._signature = sig
        fresh, errors = read_manifests(self.folder, self.node_name)
        for e in errors:
            if e not in self._errors:
                log.error("static pod manifest %s", e)
        self._errors = errors
        for key, pod in list(self.pods.items()):
            new = fresh.get(key)
            if new is None or new["metadata"]["uid"] != pod["metadata"]["uid"]:
                self._terminate(pod)
                del self.pods[key]
        for key, pod in fresh.items():
            if key in self.pods:
                continue
            if any(_key(old) == key for old in self.terminating.values()):
                self.waiting[key] = pod  # one pod of a name at a time, as upstream
            else:
                self._add(key, pod)
        for key in [k for k in self.waiting if k not in fresh or k in self.pods]:
            del self.waiting[key]

    def _add(self, key: str, pod: dict) -> None:
        pod["metadata"].setdefault("annotations", {})[SEEN] = _seen_now()
        log.info("static pod %s (%s) from %s", key, pod["metadata"]["uid"][:8], self.folder)
        self.pods[key] = pod
        self.waiting.pop(key, None)
        self.workers.upsert(copy.deepcopy(pod))

    def _terminate(self, pod: dict) -> None:
        """Stop a static pod through its worker: a deletion it carries out itself."""
        uid = pod["metadata"]["uid"]
        log.info("static pod %s (%s) removed", _key(pod), uid[:8])
        current = self.workers.pods.get(uid, pod)
        gone = copy.deepcopy(current)
        gone["metadata"]["deletionTimestamp"] = _seen_now()[:19] + "Z"
        gone["metadata"]["deletionGracePeriodSeconds"] = \
            (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        self.terminating[uid] = gone
        self.workers.upsert(gone)

    async def _reap(self) -> None:
        """Old versions whose sandboxes are gone leave the workers; their successors start."""
        for uid, pod in list(self.terminating.items()):
            try:
                left = await pod_sandboxes(self.cri, uid)
            except Exception as e:
                log.info("static pod %s: %s", uid[:8], e)
                continue
            if left:
                continue
            del self.terminating[uid]
            self.workers.remove(pod)
            key = _key(pod)
            if key in self.waiting and key not in self.pods:
                self._add(key, self.waiting.pop(key))

    # ---- mirror pods (from the agent's pod informer) ----

    def mirror_changed(self, pod: dict) -> None:
        key = _key(pod)
        self.mirrors[key] = pod
        static = self.pods.get(key)
        if static is not None and _hash(pod) == static["metadata"]["uid"] and \
                not pod["metadata"].get("deletionTimestamp"):
            uid = static["metadata"]["uid"]
            if uid in self.workers.pods and uid not in self.terminating:
                # The worker computes status from the last one written (startTime, transitions).
                self.workers.pods[uid] = {**self.workers.pods[uid],
                                          "status": pod.get("status") or {}}
        self._wake.set()

    def mirror_removed(self, pod: dict) -> None:
        key = _key(pod)
        if (self.mirrors.get(key) or {}).get("metadata", {}).get("uid") == pod["metadata"]["uid"]:
            del self.mirrors[key]
        self._wake.set()

    def mark_synced(self) -> None:
        self.mirrors_synced = True
        self._wake.set()

    async def sync_mirrors(self) -> None:
        if not self.mirrors_synced:
            return
        for key, static in list(self.pods.items()):
            mirror = self.mirrors.get(key)
            if mirror is not None and (mirror["metadata"].get("deletionTimestamp") or
                                       _hash(mirror) != static["metadata"]["uid"]):
                await self._delete_mirror(mirror)
                mirror = None
            if mirror is None:
                await self._create_mirror(static)
        for key, mirror in list(self.mirrors.items()):
            if key not in self.pods and not _owned_elsewhere(mirror, self.node_name):
                await self._delete_mirror(mirror)

    async def _delete_mirror(self, mirror: dict) -> None:
        m = mirror["metadata"]
        log.info("deleting mirror pod %s/%s", m["namespace"], m["name"])
        await force_delete(self.client, mirror)
        if self.mirrors.get(_key(mirror)) is mirror:
            del self.mirrors[_key(mirror)]

    async def _create_mirror(self, static: dict) -> None:
        node_uid = self.node_uid()
        if not node_uid:
            return  # the Node is not registered (yet): the owner reference needs its UID
        body = mirror_pod(static, self.node_name, node_uid)
        try:
            out = await self.client.create(PODS, body, body["metadata"]["namespace"])
        except ApiError as e:
            if e.code != 409:
                log.warning("mirror pod %s: %s", _key(static), e)
                return
            try:
                out = await self.client.get(PODS, body["metadata"]["name"],
                                            body["metadata"]["namespace"])
            except ApiError:
                return
            if _hash(out) != static["metadata"]["uid"]:
                return  # a stale one: the next pass deletes it
        self.mirrors[_key(out)] = out
        self._resend_status(static)

    def _resend_status(self, static: dict) -> None:
        """A new mirror pod has no status yet: have the worker write it again.
        PodWorkers writes only changes, and knows nothing of mirror pods, so its record of
        the last written status is dropped here."""
        uid = static["metadata"]["uid"]
        if uid not in self.workers.pods or uid in self.terminating:
            return
        self.workers.resend_status(uid)

    # ---- loop ----

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="static-pods")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._rescan()
                await self._reap()
                await self.sync_mirrors()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("static pods: %s", e)
            try:
                async with asyncio.timeout(self.period):  # wait_for can lose a cancel (3.11)
                    await self._wake.wait()
            except TimeoutError:
                pass


def _hash(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(MIRROR, "")


def _owned_elsewhere(mirror: dict, node_name: str) -> bool:
    """A mirror pod bound here but owned by another Node is not ours to remove."""
    spec_node = (mirror.get("spec") or {}).get("nodeName")
    return bool(spec_node) and spec_node != node_name


def mirror_pod(static: dict, node_name: str, node_uid: str) -> dict:
    """The API object for a static pod (upstream CreateMirrorPod)."""
    meta = static["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[MIRROR] = annotations.get(HASH, meta["uid"])
    out_meta = {k: v for k, v in meta.items()
                if k not in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "generation", "managedFields",
                             "ownerReferences", "selfLink")}
    out_meta["annotations"] = annotations
    out_meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                    "uid": node_uid, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": out_meta,
            "spec": copy.deepcopy(static.get("spec") or {})}
