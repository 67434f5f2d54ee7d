"""The PersistentVolume binder: claims meet volumes.

As upstream pkg/controller/volume/persistentvolume (pv_controller.go, index.go): an unbound
claim is bound to the smallest Available volume that has its class, a superset of its access
modes, its volumeMode, enough capacity and labels matching its selector — or to the volume it
(or that volume) names in advance. Binding writes the volume's claimRef, then the claim's
volumeName with the annotations pv.kubernetes.io/bind-completed and bound-by-controller, then
both phases Bound. Claims of a WaitForFirstConsumer class are left to the scheduler until it
picks a node (volume.kubernetes.io/selected-node); then, with no volume chosen, the claim is
annotated for its class's (external) provisioner, as the local-path provisioner expects.
Claims with no class get the default class (retroactive default, GA in 1.28). A volume whose
claim is gone becomes Released; reclaim Retain keeps it; Delete is the provisioner's job when
it made the volume (pv.kubernetes.io/provisioned-by), otherwise the volume becomes Failed.
"""

from __future__ import annotations

import logging

from kybernetes.api.errors import ApiError
from kybernetes.api.quantity import parse_quantity
from kybernetes.api.selectors import SelectorError, label_selector_from_object
from kybernetes.client import Controller, EventRecorder, resource

log = logging.getLogger(__name__)

PVS = resource("v1", "PersistentVolume")
PVCS = resource("v1", "PersistentVolumeClaim")
CLASSES = resource("storage.k8s.io/v1", "StorageClass")

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


# ---- pure matching --------------------------------------------------------------------------------

def _storage(obj: dict, requested: bool):
    spec = obj.get("spec") or {}
    raw = (((spec.get("resources") or {}).get("requests") or {}) if requested
           else (spec.get("capacity") or {})).get("storage")
    return parse_quantity(raw if raw is not None else "0")


def claim_class(pvc: dict) -> str:
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def volume_class(pv: dict) -> str:
    return (pv.get("spec") or {}).get("storageClassName") or ""


def is_bound_to(pv: dict, pvc: dict) -> bool:
    """The volume's claimRef names this claim (and its uid, if the ref has one)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    meta = pvc["metadata"]
    if ref.get("name") != meta["name"] or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def find_best_match(pvc: dict, pvs: list[dict], delay_binding: bool) -> dict | None:
    """Upstream findBestMatchForClaim: a volume pre-bound to the claim wins; otherwise the
    Available volume with the fewest access modes (a superset of the claim's) and, among those,
    the least capacity that fits. Delayed-binding claims only take pre-bound volumes here (the
    scheduler binds them to volumes on the chosen node)."""
    spec = pvc.get("spec") or {}
    want = _storage(pvc, True)
    modes = set(spec.get("accessModes") or [])
    mode = spec.get("volumeMode") or "Filesystem"
    try:
        selector = label_selector_from_object(spec["selector"]) if spec.get("selector") else None
    except SelectorError:
        return None
    best, best_key = None, None
    for pv in pvs:
        pspec = pv.get("spec") or {}
        if _storage(pv, False) < want or (pspec.get("volumeMode") or "Filesystem") != mode:
            continue
        if pv["metadata"].get("deletionTimestamp"):
            continue
        if is_bound_to(pv, pvc):
            return pv
        if delay_binding:
            continue
        if (pv.get("status") or {}).get("phase") != "Available" or pspec.get("claimRef"):
            continue
        if selector is not None and not selector.matches(pv["metadata"].get("labels") or {}):
            continue
        if volume_class(pv) != claim_class(pvc):
            continue
        pv_modes = set(pspec.get("accessModes") or [])
        if not modes <= pv_modes:
            continue
        key = (len(pv_modes), _storage(pv, False), pv["metadata"]["name"])
        if best_key is None or key < best_key:
            best, best_key = pv, key
    return best


def default_class(classes: list[dict]) -> dict | None:
    """The default StorageClass; with several, the newest (then by name), as upstream."""
    marked = [c for c in classes
              if (c["metadata"].get("annotations") or {}).get(ANN_DEFAULT_CLASS) == "true"
              or (c["metadata"].get("annotations") or {}).get(ANN_BETA_DEFAULT_CLASS) == "true"]
    if not marked:
        return None
    return max(marked, key=lambda c: (c["metadata"].get("creationTimestamp") or "",
                                      c["metadata"]["name"]))


def claim_ref(pvc: dict) -> dict:
    meta = pvc["metadata"]
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta["namespace"],
            "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")}


# ---- the controller -------------------------------------------------------------------------------

class PersistentVolumeBinderController(Controller):
    name = "persistentvolume-binder"
    workers = 1  # one worker: a volume must never be handed to two claims at once

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, "persistentvolume-controller")
        self.pvs = self.factory.informer(PVS)
        self.pvcs = self.factory.informer(PVCS)
        self.classes = self.factory.informer(CLASSES)
        self.pvs.add_handler(self._pv, lambda old, new: self._pv(new), self._pv)
        self.pvcs.add_handler(self._pvc, lambda old, new: self._pvc(new), self._pvc_gone)
        self.classes.add_handler(self._class_changed, lambda o, n: self._class_changed(n), None)
        self._taken: dict[str, str] = {}  # volume → claim uid we bound it to, until the cache shows it

    def _pv(self, pv: dict) -> None:
        self.queue.add(f"volume/{pv['metadata']['name']}")
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and ref.get("namespace"):
            self.queue.add(f"claim/{ref['namespace']}/{ref.get('name')}")

    def _pvc(self, pvc: dict) -> None:
        self.queue.add(f"claim/{pvc['metadata']['namespace']}/{pvc['metadata']['name']}")

    def _pvc_gone(self, pvc: dict) -> None:
        vol = (pvc.get("spec") or {}).get("volumeName")
        if vol:
            self.queue.add(f"volume/{vol}")
        for pv in self.pvs.list():
            if is_bound_to(pv, pvc):
                self.queue.add(f"volume/{pv['metadata']['name']}")

    def _class_changed(self, _sc: dict) -> None:
        for pvc in self.pvcs.list():
            if not (pvc.get("spec") or {}).get("volumeName"):
                self._pvc(pvc)

    async def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition("/")
        if kind == "claim":
            pvc = self.pvcs.get(rest)
            if pvc is not None and not pvc["metadata"].get("deletionTimestamp"):
                await self.sync_claim(dict(pvc, apiVersion="v1", kind="PersistentVolumeClaim"))
        elif kind == "volume":
            pv = self.pvs.get(rest)
            if pv is not None and not pv["metadata"].get("deletionTimestamp"):
                await self.sync_volume(dict(pv, apiVersion="v1", kind="PersistentVolume"))
        return None

    # ---- claims ----

    async def sync_claim(self, pvc: dict) -> None:
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        ann = meta.get("annotations") or {}
        if "storageClassName" not in spec or spec.get("storageClassName") is None:
            sc = default_class(self.classes.list())
            if sc is not None and not spec.get("volumeName"):
                await self.client.patch(PVCS, meta["name"], {
                    "metadata": {"resourceVersion": meta["resourceVersion"]},
                    "spec": {"storageClassName": sc["metadata"]["name"]}}, meta["namespace"])
                return
        if ann.get(ANN_BIND_COMPLETED) is None:
            await self._sync_unbound_claim(pvc)
        else:
            await self._sync_bound_claim(pvc)

    async def _sync_unbound_claim(self, pvc: dict) -> None:
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        ann = meta.get("annotations") or {}
        cls_name = claim_class(pvc)
        sc = self.classes.get(cls_name) if cls_name else None
        delay = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        if not spec.get("volumeName"):
            pvs = [pv for pv in self.pvs.list()
                   if self._taken.get(pv["metadata"]["name"]) in (None, meta["uid"])]
            pv = find_best_match(pvc, pvs, delay)
            if pv is not None:
                await self._bind(pv, pvc)
                return
            if delay and not ann.get(ANN_SELECTED_NODE):
                self.recorder.event(pvc, "Normal", "WaitForFirstConsumer",
                                    "waiting for first consumer to be created before binding")
            elif sc is not None and (sc.get("provisioner") or NO_PROVISIONER) != NO_PROVISIONER:
                provisioner = sc["provisioner"]
                if ann.get(ANN_STORAGE_PROVISIONER) != provisioner:
                    await self.client.patch(PVCS, meta["name"], {"metadata": {"annotations": {
                        ANN_STORAGE_PROVISIONER: provisioner,
                        ANN_BETA_STORAGE_PROVISIONER: provisioner}}}, meta["namespace"])
                self.recorder.event(pvc, "Normal", "ExternalProvisioning",
                                    f"Waiting for a volume to be created either by the external "
                                    f"provisioner '{provisioner}' or manually by the system "
                                    f"administrator. If volume creation is delayed, please verify "
                                    f"that the provisioner is running and correctly registered.")
            elif sc is None and cls_name:
                self.recorder.event(pvc, "Warning", "ProvisioningFailed",
                                    f'storageclass.storage.k8s.io "{cls_name}" not found')
            else:
                self.recorder.event(pvc, "Normal", "FailedBinding",
                                    "no persistent volumes available for this claim and no "
                                    "storage class is set")
            await self._claim_phase(pvc, "Pending")
            return
        pv = self.pvs.get(spec["volumeName"])
        if pv is None:
            await self._claim_phase(pvc, "Pending")
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or is_bound_to(pv, pvc):
            await self._bind(pv, pvc)
        else:
            self.recorder.event(pvc, "Warning", "FailedBinding",
                                f'volume "{pv["metadata"]["name"]}" already bound to a different claim.')
            await self._claim_phase(pvc, "Pending")

    async def _sync_bound_claim(self, pvc: dict) -> None:
        spec = pvc.get("spec") or {}
        if not spec.get("volumeName"):
            await self._lost(pvc, "ClaimLost",
                             "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            return
        pv = self.pvs.get(spec["volumeName"])
        if pv is None:
            await self._lost(pvc, "ClaimLost",
                             "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or is_bound_to(pv, pvc):
            await self._bind(pv, pvc)
        else:
            await self._lost(pvc, "ClaimMisbound",
                             "Two claims are bound to the same volume, this one is bound incorrectly")

    async def _lost(self, pvc: dict, reason: str, message: str) -> None:
        if (pvc.get("status") or {}).get("phase") != "Lost":
            self.recorder.event(pvc, "Warning", reason, message)
            await self._claim_phase(pvc, "Lost")

    async def _claim_phase(self, pvc: dict, phase: str, pv: dict | None = None) -> None:
        status = pvc.get("status") or {}
        want: dict = {"phase": phase}
        if pv is not None:
            want["capacity"] = (pv.get("spec") or {}).get("capacity")
            want["accessModes"] = (pv.get("spec") or {}).get("accessModes")
        if all(status.get(k) == v for k, v in want.items()):
            return
        await self.client.patch(PVCS, pvc["metadata"]["name"], {"status": want},
                                pvc["metadata"]["namespace"], subresource="status")

    async def _bind(self, pv: dict, pvc: dict) -> None:
        """Volume first, then claim, then both phases (upstream bind)."""
        pv_name, pv_meta = pv["metadata"]["name"], pv["metadata"]
        if not is_bound_to(pv, pvc) or not ((pv.get("spec") or {}).get("claimRef") or {}).get("uid"):
            patch: dict = {"metadata": {"resourceVersion": pv_meta["resourceVersion"]},
                           "spec": {"claimRef": claim_ref(pvc)}}
            if not (pv.get("spec") or {}).get("claimRef"):
                patch["metadata"]["annotations"] = {ANN_BOUND_BY_CONTROLLER: "yes"}
            pv = await self.client.patch(PVS, pv_name, patch)
            self._taken[pv_name] = pvc["metadata"]["uid"]
        if (pv.get("status") or {}).get("phase") != "Bound":
            pv = await self.client.patch(PVS, pv_name, {"status": {"phase": "Bound"}},
                                         subresource="status")
        meta = pvc["metadata"]
        ann = meta.get("annotations") or {}
        if (pvc.get("spec") or {}).get("volumeName") != pv_name or ann.get(ANN_BIND_COMPLETED) != "yes":
            annotations = {ANN_BIND_COMPLETED: "yes"}
            if (pvc.get("spec") or {}).get("volumeName") != pv_name:
                annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
            pvc = await self.client.patch(PVCS, meta["name"], {
                "metadata": {"annotations": annotations, "resourceVersion": meta["resourceVersion"]},
                "spec": {"volumeName": pv_name}}, meta["namespace"])
        await self._claim_phase(pvc, "Bound", pv)
        self._taken.pop(pv_name, None)

    # ---- volumes ----

    async def sync_volume(self, pv: dict) -> None:
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef")
        if not ref:
            await self._volume_phase(pv, "Available")
            return
        key = f"{ref.get('namespace')}/{ref.get('name')}"
        pvc = self.pvcs.get(key)
        if pvc is None:
            try:  # the cache may lag behind a claim just created
                pvc = await self.client.get(PVCS, ref.get("name"), ref.get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
        if not ref.get("uid"):
            # Pre-bound by the user to a claim by name: the claim's sync binds it.
            if pvc is not None:
                self.queue.add(f"claim/{key}")
            await self._volume_phase(pv, "Available")
            return
        if pvc is None or pvc["metadata"].get("uid") != ref.get("uid"):
            await self._released(pv)
            return
        vol = (pvc.get("spec") or {}).get("volumeName")
        if not vol:
            self.queue.add(f"claim/{key}")  # binding in progress, or waiting for the claim
            return
        if vol == pv["metadata"]["name"]:
            await self._volume_phase(pv, "Bound")
            return
        # The claim went to another volume: give this one back if we bound it.
        ann = pv["metadata"].get("annotations") or {}
        patch: dict = {"metadata": {"resourceVersion": pv["metadata"]["resourceVersion"]}}
        if ann.get(ANN_BOUND_BY_CONTROLLER) == "yes":
            patch["spec"] = {"claimRef": None}
            patch["metadata"]["annotations"] = {ANN_BOUND_BY_CONTROLLER: None}
        else:
            patch["spec"] = {"claimRef": {"uid": None, "resourceVersion": None}}
        pv = await self.client.patch(PVS, pv["metadata"]["name"], patch)
        await self._volume_phase(pv, "Available")

    async def _released(self, pv: dict) -> None:
        phase = (pv.get("status") or {}).get("phase")
        if phase not in ("Released", "Failed"):
            pv = await self._volume_phase(pv, "Released")
        if phase == "Failed":
            return
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        ann = pv["metadata"].get("annotations") or {}
        if policy == "Retain":
            return
        if policy == "Delete" and ann.get(ANN_PROVISIONED_BY):
            return  # the provisioner that made it deletes it
        if policy == "Delete":
            message = (f'error getting deleter volume plugin for volume "{pv["metadata"]["name"]}": '
                       f"no deletable volume plugin matched")
            self.recorder.event(pv, "Warning", "VolumeFailedDelete", message)
        else:
            message = "No recycler plugin found for the volume!"
            self.recorder.event(pv, "Warning", "VolumeFailedRecycle", message)
        await self._volume_phase(pv, "Failed", message)

    async def _volume_phase(self, pv: dict, phase: str, message: str | None = None) -> dict:
        if (pv.get("status") or {}).get("phase") == phase:
            return pv
        status: dict = {"phase": phase}
        if message:
            status["message"] = message
        return await self.client.patch(PVS, pv["metadata"]["name"], {"status": status},
                                       subresource="status")
