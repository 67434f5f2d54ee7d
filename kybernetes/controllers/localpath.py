"""The local-path provisioner: k3s' default dynamic storage, node-local directories.

It keeps a default StorageClass `local-path` (provisioner rancher.io/local-path,
WaitForFirstConsumer, reclaimPolicy Delete), as k3s ships it. Once the scheduler has chosen a
node for a claim of that class (volume.kubernetes.io/selected-node) and the binder handed the
claim to this provisioner, it creates a PersistentVolume `pvc-<claim uid>`, pre-bound to the
claim, with a hostPath `<base>/<pv>_<namespace>_<claim>` and a node affinity for that node.

The directory contract: the hostPath has type DirectoryOrCreate, so the node's kubelet creates
the directory when it first mounts the volume; if the node is this very host the provisioner
creates it at once. On reclaim Delete of a Released volume the directory is removed — here
directly when the node is this host, otherwise by a short-lived helper pod pinned to the node
(`rm -rf` of the directory, as rancher's local-path-provisioner does) — and then the volume is
deleted. A volume whose node no longer exists is deleted without cleanup.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, EventRecorder, resource

from .persistentvolume import (ANN_BETA_STORAGE_PROVISIONER, ANN_DEFAULT_CLASS, ANN_PROVISIONED_BY,
                               ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, CLASSES, PVCS, PVS)

log = logging.getLogger(__name__)

PODS = resource("v1", "Pod")
NODES = resource("v1", "Node")
PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "local-path"
BASE_DIR = os.environ.get("KYBERNETES_LOCAL_PATH_DIR", "/var/lib/kybernetes/storage")
HELPER_NAMESPACE = "kube-system"
HELPER_LABEL = "kybernetes.io/local-path-helper"
HELPER_IMAGE = "busybox:latest"
ANN_NODE = "local.path.provisioner/selected-node"  # rancher's record of the volume's node
# Simulated nodes (kybernetes/sim) run a container until told to exit; a real kubelet ignores it.
SIM_EXIT_AFTER = "sim.kybernetes.io/exit-after"


def storage_class() -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": CLASS_NAME, "annotations": {ANN_DEFAULT_CLASS: "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"}


def volume_path(base: str, pv_name: str, pvc: dict) -> str:
    meta = pvc["metadata"]
    return os.path.join(base, f"{pv_name}_{meta['namespace']}_{meta['name']}")


def new_volume(pvc: dict, sc: dict, node: dict | None, node_name: str, base: str) -> dict:
    """The volume for `pvc` on `node_name` (pure)."""
    meta, spec = pvc["metadata"], pvc.get("spec") or {}
    name = f"pvc-{meta['uid']}"
    hostname = ((node or {}).get("metadata", {}).get("labels") or {}).get(
        "kubernetes.io/hostname", node_name)
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: PROVISIONER,
                                                   ANN_NODE: node_name}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                         "resourceVersion": meta.get("resourceVersion")},
            "hostPath": {"path": volume_path(base, name, pvc), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]}]}]}},
        },
    }


def helper_pod(pv: dict, node_name: str) -> dict:
    """A pod on the volume's node that removes its directory."""
    path = pv["spec"]["hostPath"]["path"]
    parent = os.path.dirname(path)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"helper-pod-delete-{pv['metadata']['name']}"[:63],
                     "namespace": HELPER_NAMESPACE,
                     "labels": {HELPER_LABEL: pv["metadata"]["name"][:63]},
                     "annotations": {SIM_EXIT_AFTER: "0s"}},
        "spec": {"nodeName": node_name, "restartPolicy": "Never",
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "helper-pod", "image": HELPER_IMAGE,
                                 "command": ["rm", "-rf", path],
                                 "volumeMounts": [{"name": "data", "mountPath": parent}]}],
                 "volumes": [{"name": "data", "hostPath": {"path": parent,
                                                           "type": "DirectoryOrCreate"}}]},
    }


def _this_host(node_name: str) -> bool:
    return node_name in (socket.gethostname(), socket.getfqdn())


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"
    workers = 2
    base_dir = BASE_DIR

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, PROVISIONER)
        self.pvcs = self.factory.informer(PVCS)
        self.pvs = self.factory.informer(PVS)
        self.classes = self.factory.informer(CLASSES)
        self.nodes = self.factory.informer(NODES)
        self.helpers = self.factory.informer(PODS, HELPER_NAMESPACE, label_selector=HELPER_LABEL)
        self.pvcs.add_handler(self._claim, lambda o, n: self._claim(n), None)
        self.pvs.add_handler(self._volume, lambda o, n: self._volume(n), None)
        self.classes.add_handler(None, None, lambda sc: self.queue.add("class"))
        self.helpers.add_handler(self._helper, lambda o, n: self._helper(n), None)
        self.queue.add("class")

    def _claim(self, pvc: dict) -> None:
        self.queue.add(f"claim/{pvc['metadata']['namespace']}/{pvc['metadata']['name']}")

    def _volume(self, pv: dict) -> None:
        if (pv["metadata"].get("annotations") or {}).get(ANN_PROVISIONED_BY) == PROVISIONER:
            self.queue.add(f"volume/{pv['metadata']['name']}")

    def _helper(self, pod: dict) -> None:
        self.queue.add(f"volume/{(pod['metadata'].get('labels') or {}).get(HELPER_LABEL)}")

    async def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition("/")
        if kind == "class":
            await self._ensure_class()
        elif kind == "claim":
            pvc = self.pvcs.get(rest)
            if pvc is not None:
                await self._provision(dict(pvc, apiVersion="v1", kind="PersistentVolumeClaim"))
        elif kind == "volume":
            pv = self.pvs.get(rest)
            if pv is not None:
                return await self._reclaim(dict(pv, apiVersion="v1", kind="PersistentVolume"))
        return None

    async def _ensure_class(self) -> None:
        if self.classes.get(CLASS_NAME) is not None:
            return
        try:
            await self.client.create(CLASSES, storage_class())
        except ApiError as e:
            if e.code != 409:
                raise

    def _wants(self, pvc: dict) -> tuple[dict, str] | None:
        """(class, node) when this claim is ours to provision now."""
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        ann = meta.get("annotations") or {}
        if meta.get("deletionTimestamp") or spec.get("volumeName"):
            return None
        sc = self.classes.get(spec.get("storageClassName") or "")
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return None
        handed = ann.get(ANN_STORAGE_PROVISIONER) or ann.get(ANN_BETA_STORAGE_PROVISIONER)
        node = ann.get(ANN_SELECTED_NODE)
        if handed != PROVISIONER or not node:
            return None
        return sc, node

    async def _provision(self, pvc: dict) -> None:
        wanted = self._wants(pvc)
        if wanted is None:
            return
        sc, node_name = wanted
        meta = pvc["metadata"]
        name = f"pvc-{meta['uid']}"
        if self.pvs.get(name) is not None:
            return
        node = self.nodes.get(node_name)
        base = (sc.get("parameters") or {}).get("basePath") or self.base_dir
        pv = new_volume(pvc, sc, node, node_name, base)
        self.recorder.event(pvc, "Normal", "Provisioning",
                            f'External provisioner is provisioning volume for claim '
                            f'"{meta["namespace"]}/{meta["name"]}"')
        if _this_host(node_name):
            try:
                os.makedirs(pv["spec"]["hostPath"]["path"], mode=0o777, exist_ok=True)
            except OSError as e:  # the kubelet creates it on mount anyway
                log.info("local-path: cannot create %s here: %s", pv["spec"]["hostPath"]["path"], e)
        try:
            await self.client.create(PVS, pv)
        except ApiError as e:
            if e.code == 409:
                return
            self.recorder.event(pvc, "Warning", "ProvisioningFailed",
                                f"failed to provision volume with StorageClass "
                                f'"{sc["metadata"]["name"]}": {e.message}')
            raise
        self.recorder.event(pvc, "Normal", "ProvisioningSucceeded",
                            f"Successfully provisioned volume {name}")

    async def _reclaim(self, pv: dict) -> float | None:
        ann = pv["metadata"].get("annotations") or {}
        spec = pv.get("spec") or {}
        if (ann.get(ANN_PROVISIONED_BY) != PROVISIONER or pv["metadata"].get("deletionTimestamp")
                or (pv.get("status") or {}).get("phase") != "Released"
                or spec.get("persistentVolumeReclaimPolicy") != "Delete"):
            return None
        node_name = ann.get(ANN_NODE) or ""
        path = (spec.get("hostPath") or {}).get("path")
        if path and node_name and self.nodes.get(node_name) is not None:
            if _this_host(node_name):
                shutil.rmtree(path, ignore_errors=True)
            elif not await self._cleaned_by_helper(pv, node_name):
                return None  # the helper pod's progress requeues this volume
        try:
            await self.client.delete(PVS, pv["metadata"]["name"],
                                     preconditions={"uid": pv["metadata"]["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return None

    async def _cleaned_by_helper(self, pv: dict, node_name: str) -> bool:
        body = helper_pod(pv, node_name)
        name = body["metadata"]["name"]
        pod = self.helpers.get(f"{HELPER_NAMESPACE}/{name}")
        if pod is None:
            try:
                await self.client.create(PODS, body, HELPER_NAMESPACE)
            except ApiError as e:
                if e.code == 409:
                    return False
                if e.code == 404:  # no kube-system namespace: nothing can clean up; just delete
                    log.warning("local-path: no %s namespace; %s left on %s", HELPER_NAMESPACE,
                                pv["spec"]["hostPath"]["path"], node_name)
                    return True
                raise
            return False
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed"):
            return False
        try:
            await self.client.delete(PODS, name, HELPER_NAMESPACE, grace_seconds=0)
        except ApiError as e:
            if e.code != 404:
                raise
        if phase == "Failed":
            self.recorder.event(pv, "Warning", "VolumeFailedDelete",
                                f"failed to delete volume {pv['metadata']['name']}: helper pod failed")
            return False
        return True
