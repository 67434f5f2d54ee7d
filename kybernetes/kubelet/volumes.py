"""Pod volumes on this node: each volume of a pod becomes a host directory (or file) that the CRI
bind-mounts into the containers that name it.

Per pod, under DATA/volumes/<uid>/<plugin>/<name> as the kubelet keeps /var/lib/kubelet/pods/<uid>/
volumes/kubernetes.io~<plugin>/<name>: emptyDir (a directory, or tmpfs for medium Memory),
configMap / secret / downwardAPI / projected (files written by `AtomicWriter`, rewritten on each
sync when their sources changed), hostPath (type checks), persistentVolumeClaim (the bound PV's
hostPath or local path). The projected service account token is requested through the
TokenRequest API and renewed at 80% of its lifetime, like the kubelet's token manager.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import stat
import time
from pathlib import Path

from kybernetes.api.errors import ApiError
from kybernetes.api.quantity import Quantity
from kybernetes.client import Client, resource

from . import podspec
from .cri.client import messages as pb

log = logging.getLogger("kyb.kubelet.volumes")

CONFIGMAPS = resource("v1", "ConfigMap")
SECRETS = resource("v1", "Secret")
PVCS = resource("v1", "PersistentVolumeClaim")
PVS = resource("v1", "PersistentVolume")
SERVICEACCOUNTS = resource("v1", "ServiceAccount")
DATA_LINK = "..data"
DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up yet (upstream's FailedMount)."""

    def __init__(self, volume: str, message: str):
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume


# ---- AtomicWriter: the kubelet's ..data symlink swap ----

def write_atomic(target: Path, payload: dict[str, tuple[bytes, int]]) -> bool:
    """Make `target` hold exactly `payload` (relative path → (content, mode)). Files live in a
    fresh hidden timestamped directory; `..data` is swapped to it by a rename (atomic), and each
    top-level name is a symlink through `..data`, so readers never see a half-written set.
    Returns whether anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data = target / DATA_LINK
    if data.is_symlink() and _same(target / os.readlink(data), payload):
        return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns() % 10**9}"
    stamp.mkdir()
    for rel, (content, mode) in payload.items():
        f = stamp / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        os.chmod(f, mode)
    old = os.readlink(data) if data.is_symlink() else None
    tmp = target / "..data_tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    tmp.rename(data)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops and entry.is_symlink():
            entry.unlink()
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{top}")
    if old and old != stamp.name:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _same(directory: Path, payload: dict[str, tuple[bytes, int]]) -> bool:
    try:
        found = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
        if found != set(payload):
            return False
        for rel, (content, mode) in payload.items():
            p = directory / rel
            if stat.S_IMODE(p.stat().st_mode) != mode or p.read_bytes() != content:
                return False
        return True
    except OSError:
        return False


# ---- payloads (pure) ----

def _key_bytes(kind: str, obj: dict, key: str) -> bytes | None:
    if kind == "Secret":
        raw = (obj.get("data") or {}).get(key)
        return base64.b64decode(raw) if raw is not None else None
    if key in (obj.get("data") or {}):
        return obj["data"][key].encode()
    raw = (obj.get("binaryData") or {}).get(key)
    return base64.b64decode(raw) if raw is not None else None


def object_payload(kind: str, obj: dict | None, source: dict, default_mode: int,
                   what: str) -> dict[str, tuple[bytes, int]]:
    """Files of a configMap/secret volume (or projection): every key, or just `items`."""
    if obj is None:
        if source.get("optional"):
            return {}
        raise LookupError(f'{what} "{source.get("name", "")}" not found')
    out: dict[str, tuple[bytes, int]] = {}
    items = source.get("items")
    if items is None:
        keys = list(obj.get("data") or {}) + ([] if kind == "Secret" else list(obj.get("binaryData") or {}))
        for k in keys:
            out[k] = (_key_bytes(kind, obj, k) or b"", default_mode)
        return out
    for it in items:
        content = _key_bytes(kind, obj, it["key"])
        if content is None:
            if source.get("optional"):
                continue
            raise LookupError(f'configmap references non-existent config key: {it["key"]}'
                              if kind == "ConfigMap" else
                              f'references non-existent secret key: {it["key"]}')
        out[it["path"]] = (content, it.get("mode", default_mode))
    return out


def downward_payload(pod: dict, items: list[dict], default_mode: int,
                     allocatable: dict | None = None) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or ()}
    for it in items:
        if it.get("fieldRef"):
            value = podspec.field_value(pod, it["fieldRef"]["fieldPath"])
        else:
            ref = it["resourceFieldRef"]
            c = containers.get(ref.get("containerName", "")) or next(iter(containers.values()), {})
            value = podspec.resource_value(c, ref, allocatable)
        out[it["path"]] = (value.encode(), it.get("mode", default_mode))
    return out


def _plugin(vol: dict) -> str:
    for key, name in (("emptyDir", "empty-dir"), ("configMap", "configmap"), ("secret", "secret"),
                      ("projected", "projected"), ("downwardAPI", "downward-api")):
        if key in vol:
            return f"kubernetes.io~{name}"
    return ""


def check_host_path(path: str, type_: str) -> None:
    """hostPath types as upstream checks them (DirectoryOrCreate and FileOrCreate create)."""
    p = Path(path)
    if type_ == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(parents=True, mode=0o755)
            os.chmod(p, 0o755)
        elif not p.is_dir():
            raise LookupError(f"hostPath type check failed: {path} is not a directory")
        return
    if type_ == "FileOrCreate":
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch(mode=0o644)
        elif p.is_dir():
            raise LookupError(f"hostPath type check failed: {path} is not a file")
        return
    checks = {"Directory": (stat.S_ISDIR, "a directory"), "File": (stat.S_ISREG, "a file"),
              "Socket": (stat.S_ISSOCK, "a socket file"),
              "CharDevice": (stat.S_ISCHR, "a character device"),
              "BlockDevice": (stat.S_ISBLK, "a block device")}
    if type_ in checks:
        test, what = checks[type_]
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            raise LookupError(f"hostPath type check failed: {path} is not {what}") from None
        if not test(mode):
            raise LookupError(f"hostPath type check failed: {path} is not {what}")


# ---- the manager ----

class VolumeManager:
    def __init__(self, client: Client, root: Path, allocatable=None):
        self.client = client
        self.root = root
        self.allocatable = allocatable or (lambda: {})
        self.paths: dict[str, dict[str, tuple[str, bool]]] = {}  # uid → name → (host path, ro)
        self._tokens: dict[tuple, tuple[str, float, float]] = {}  # → (token, issued, expires)

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    async def setup(self, pod: dict) -> None:
        """Make (or refresh) every volume of the pod; raises VolumeError for the first that
        cannot be set up."""
        uid = pod["metadata"]["uid"]
        paths: dict[str, tuple[str, bool]] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            try:
                paths[vol["name"]] = await self._setup_one(pod, vol)
            except (LookupError, OSError, ApiError) as e:
                raise VolumeError(vol["name"], str(e)) from None
        self.paths[uid] = paths

    async def _setup_one(self, pod: dict, vol: dict) -> tuple[str, bool]:
        uid = pod["metadata"]["uid"]
        ns = pod["metadata"]["namespace"]
        here = self.pod_dir(uid) / _plugin(vol) / vol["name"]
        if "hostPath" in vol:
            src = vol["hostPath"]
            await asyncio.to_thread(check_host_path, src["path"], src.get("type") or "")
            return src["path"], False
        if "persistentVolumeClaim" in vol:
            src = vol["persistentVolumeClaim"]
            return await self._claim_path(ns, src["claimName"]), bool(src.get("readOnly"))
        if "emptyDir" in vol:
            await asyncio.to_thread(here.mkdir, parents=True, exist_ok=True)
            os.chmod(here, 0o777)  # upstream: world-writable, any container user may write
            if (vol["emptyDir"] or {}).get("medium") == "Memory" and not os.path.ismount(here):
                limit = (vol["emptyDir"] or {}).get("sizeLimit")
                opts = "mode=0777" + (f",size={Quantity.parse(limit).value()}" if limit else "")
                await _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(here))
            return str(here), False
        if "configMap" in vol:
            src = vol["configMap"]
            obj = await self._get(CONFIGMAPS, ns, src.get("name", ""))
            payload = object_payload("ConfigMap", obj, src, src.get("defaultMode", DEFAULT_MODE),
                                     "configmap")
        elif "secret" in vol:
            src = vol["secret"]
            obj = await self._get(SECRETS, ns, src.get("secretName", ""))
            src = {**src, "name": src.get("secretName", "")}
            payload = object_payload("Secret", obj, src, src.get("defaultMode", DEFAULT_MODE),
                                     "secret")
        elif "downwardAPI" in vol:
            src = vol["downwardAPI"]
            payload = downward_payload(pod, src.get("items") or [],
                                       src.get("defaultMode", DEFAULT_MODE), self.allocatable())
        elif "projected" in vol:
            payload = await self._projected(pod, vol["projected"] or {})
        else:
            raise LookupError(f"unsupported volume type: {sorted(k for k in vol if k != 'name')}")
        await asyncio.to_thread(write_atomic, here, payload)
        return str(here), True

    async def _projected(self, pod: dict, src: dict) -> dict[str, tuple[bytes, int]]:
        ns = pod["metadata"]["namespace"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        out: dict[str, tuple[bytes, int]] = {}
        for s in src.get("sources") or ():
            if "configMap" in s:
                cm = s["configMap"]
                out.update(object_payload("ConfigMap", await self._get(CONFIGMAPS, ns, cm.get("name", "")),
                                          cm, mode, "configmap"))
            elif "secret" in s:
                sec = s["secret"]
                out.update(object_payload("Secret", await self._get(SECRETS, ns, sec.get("name", "")),
                                          sec, mode, "secret"))
            elif "downwardAPI" in s:
                out.update(downward_payload(pod, s["downwardAPI"].get("items") or [], mode,
                                            self.allocatable()))
            elif "serviceAccountToken" in s:
                t = s["serviceAccountToken"]
                token = await self.token(pod, t.get("audience") or "", int(t.get("expirationSeconds") or 3600))
                out[t["path"]] = (token.encode(), mode)
        return out

    async def token(self, pod: dict, audience: str, seconds: int) -> str:
        """A token bound to the pod, renewed once 80% of its life has passed (or after 24 h)."""
        m = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        key = (m["uid"], sa, audience, seconds)
        now = time.time()
        cached = self._tokens.get(key)
        if cached and now < cached[1] + min(0.8 * (cached[2] - cached[1]), 24 * 3600):
            return cached[0]
        spec: dict = {"expirationSeconds": seconds,
                      "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": m["name"],
                                         "uid": m["uid"]}}
        if audience:
            spec["audiences"] = [audience]
        out = await self.client.request(
            "POST", Client.path(SERVICEACCOUNTS, m["namespace"], sa, "token"),
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        token = out["status"]["token"]
        self._tokens[key] = (token, now, now + seconds)
        return token

    async def _claim_path(self, ns: str, claim: str) -> str:
        pvc = await self._get(PVCS, ns, claim)
        if pvc is None:
            raise LookupError(f'persistentvolumeclaim "{claim}" not found')
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise LookupError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = await self._get(PVS, None, pv_name)
        if pv is None:
            raise LookupError(f'persistentvolume "{pv_name}" not found')
        spec = pv.get("spec") or {}
        if spec.get("hostPath"):
            hp = spec["hostPath"]
            await asyncio.to_thread(check_host_path, hp["path"], hp.get("type") or "")
            return hp["path"]
        if spec.get("local"):
            path = spec["local"]["path"]
            if not os.path.exists(path):
                raise LookupError(f"path {path} does not exist")
            return path
        raise LookupError(f'persistentvolume "{pv_name}" has no hostPath or local source')

    async def _get(self, r, ns: str | None, name: str) -> dict | None:
        try:
            return await self.client.get(r, name, ns)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def mounts(self, pod: dict, container: dict) -> list[pb.Mount]:
        """The CRI mounts of one container (volumes must have been set up)."""
        uid = pod["metadata"]["uid"]
        paths = self.paths.get(uid)
        if paths is None:
            await self.setup(pod)
            paths = self.paths[uid]
        out = []
        for vm in container.get("volumeMounts") or ():
            if vm["name"] not in paths:
                raise VolumeError(vm["name"], "volume is not defined in the pod")
            host, forced_ro = paths[vm["name"]]
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                env = {e["name"]: e.get("value", "") for e in container.get("env") or ()
                       if "value" in e}
                sub = podspec.expand(vm["subPathExpr"], env)
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise VolumeError(vm["name"], f"invalid subpath {sub!r}")
                host = os.path.join(host, sub)
                if not os.path.exists(host):
                    os.makedirs(host, mode=0o777, exist_ok=True)
            out.append(pb.Mount(container_path=vm["mountPath"], host_path=host,
                                readonly=bool(vm.get("readOnly")) or forced_ro,  # API data is read-only
                                propagation=_propagation(vm.get("mountPropagation"))))
        return out

    async def teardown(self, pod_or_uid) -> None:
        """Unmount the pod's tmpfs volumes and remove its volume directories."""
        uid = pod_or_uid if isinstance(pod_or_uid, str) else pod_or_uid["metadata"]["uid"]
        self.paths.pop(uid, None)
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        d = self.pod_dir(uid)
        if not d.exists():
            return
        for sub in sorted(d.glob("*/*"), reverse=True):
            if os.path.ismount(sub):
                await _run("umount", str(sub))
        await asyncio.to_thread(shutil.rmtree, d, True)

    def known(self) -> list[str]:
        return [p.name for p in self.root.iterdir()] if self.root.exists() else []


def _propagation(mode: str | None) -> int:
    return {"HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER,
            "Bidirectional": pb.PROPAGATION_BIDIRECTIONAL}.get(mode or "None", pb.PROPAGATION_PRIVATE)


async def _run(*argv: str) -> None:
    p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                             stderr=asyncio.subprocess.PIPE)
    _, err = await p.communicate()
    if p.returncode:
        raise OSError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
