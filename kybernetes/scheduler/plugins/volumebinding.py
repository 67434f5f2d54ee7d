"""VolumeBinding: bound claims must have their PV reachable from the node; unbound claims of a
WaitForFirstConsumer class are matched to an available PV on the chosen node (or left to dynamic
provisioning) and bound in PreBind."""

from __future__ import annotations

from kybernetes.api.errors import ApiError

from ..framework import SKIPPED, Plugin, error, unresolvable
from ..podinfo import quantity
from .nodeaffinity import term_matches

ERR_CONFLICT = "node(s) had volume node affinity conflict"
ERR_BIND = "node(s) didn't find available persistent volumes to bind"
ERR_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def pv_fits_node(pv: dict, ni) -> bool:
    req = ((pv["spec"].get("nodeAffinity") or {}).get("required") or {})
    terms = req.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(term_matches(t, ni.labels, ni.name) for t in terms)


def _size(obj: dict, path: str) -> int:
    v = ((obj["spec"].get("resources") or {}).get("requests") or {}).get("storage") \
        if path == "pvc" else (obj["spec"].get("capacity") or {}).get("storage")
    return quantity("storage", str(v)) if v is not None else 0


def pv_matches_claim(pv: dict, pvc: dict, class_name: str) -> bool:
    spec = pv["spec"]
    if spec.get("claimRef") or (pv.get("status") or {}).get("phase") not in (None, "Available"):
        return False
    if (spec.get("storageClassName") or "") != class_name:
        return False
    if (spec.get("volumeMode") or "Filesystem") != (pvc["spec"].get("volumeMode") or "Filesystem"):
        return False
    if not set(pvc["spec"].get("accessModes") or ()) <= set(spec.get("accessModes") or ()):
        return False
    return _size(pv, "pv") >= _size(pvc, "pvc")


class VolumeBinding(Plugin):
    name = "VolumeBinding"
    events = ("Node/Add", "Node/Update", "PersistentVolume/Add", "PersistentVolume/Update",
              "PersistentVolumeClaim/Add", "PersistentVolumeClaim/Update", "StorageClass/Add")

    def _claims(self, pi) -> list[str]:
        names = []
        for v in pi.spec.get("volumes") or ():
            if v.get("persistentVolumeClaim"):
                names.append(v["persistentVolumeClaim"].get("claimName", ""))
            elif v.get("ephemeral"):
                names.append(f"{pi.name}-{v.get('name', '')}")
        return names

    def pre_filter(self, state, pi, nodes):
        names = self._claims(pi)
        if not names:
            return SKIPPED
        h = self.handle
        bound, delayed = [], []
        for n in names:
            pvc = h.get("PersistentVolumeClaim", f"{pi.namespace}/{n}")
            if pvc is None:
                return unresolvable(f'persistentvolumeclaim "{n}" not found')
            if pvc["metadata"].get("deletionTimestamp"):
                return unresolvable(f'persistentvolumeclaim "{n}" is being deleted')
            vol = pvc["spec"].get("volumeName")
            if vol:
                pv = h.get("PersistentVolume", vol)
                if pv is not None:
                    bound.append(pv)
                continue
            cls_name = pvc["spec"].get("storageClassName") or ""
            sc = h.get("StorageClass", cls_name) if cls_name else None
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return unresolvable(ERR_IMMEDIATE)
            delayed.append((pvc, cls_name, sc.get("provisioner") or ""))
        state[self.name] = {"bound": bound, "delayed": delayed, "choices": {}}
        return None

    def filter(self, state, pi, ni):
        s = state[self.name]
        for pv in s["bound"]:
            if not pv_fits_node(pv, ni):
                return unresolvable(ERR_CONFLICT)
        if not s["delayed"]:
            return None
        taken: set[str] = set()
        choice = []
        pvs = self.handle.list("PersistentVolume")
        for pvc, cls_name, provisioner in s["delayed"]:
            fits = [pv for pv in pvs if pv["metadata"]["name"] not in taken
                    and pv_matches_claim(pv, pvc, cls_name) and pv_fits_node(pv, ni)]
            if fits:
                pv = min(fits, key=lambda p: _size(p, "pv"))   # smallest that fits
                taken.add(pv["metadata"]["name"])
                choice.append((pvc, pv))
            elif provisioner and provisioner != NO_PROVISIONER:
                choice.append((pvc, None))                       # dynamic provisioning
            else:
                return unresolvable(ERR_BIND)
        s["choices"][ni.name] = choice
        return None

    async def pre_bind(self, state, pi, node_name):
        s = state.get(self.name)
        if not s:
            return None
        client, h = self.handle.client, self.handle
        try:
            for pvc, pv in s["choices"].get(node_name, ()):
                meta = pvc["metadata"]
                if pv is None:
                    await client.patch(h.resource("PersistentVolumeClaim"), meta["name"], {
                        "metadata": {"annotations": {"volume.kubernetes.io/selected-node": node_name}}},
                        meta["namespace"])
                    continue
                await client.patch(h.resource("PersistentVolume"), pv["metadata"]["name"], {
                    "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
                    "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                          "namespace": meta["namespace"], "name": meta["name"],
                                          "uid": meta.get("uid")}}})
                await client.patch(h.resource("PersistentVolumeClaim"), meta["name"], {
                    "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                                 "pv.kubernetes.io/bound-by-controller": "yes"}},
                    "spec": {"volumeName": pv["metadata"]["name"]}}, meta["namespace"])
        except ApiError as e:
            return error(f"binding volumes: {e}")
        return None
