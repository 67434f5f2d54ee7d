"""VolumeBinding: bound claims must have their PV reachable from the node; unbound claims of a
WaitForFirstConsumer class are matched to an available PV on the chosen node (or left to dynamic
provisioning), assumed in Reserve, and bound in PreBind.

Binding is asynchronous, so Reserve records its decisions (upstream AssumePodVolumes: a PV
taken for a claim, a claim given a node to provision on) and later cycles see them before the
informers do; Unreserve releases them (RevertAssumedPodVolumes). An assumption ends when the
informer shows the real binding, or shows a newer object once no pod relying on it is still
assumed in the cache (its binding done or undone)."""

from __future__ import annotations

import weakref

from kybernetes.api.errors import ApiError

from ..framework import SKIPPED, Plugin, error, unresolvable
from ..podinfo import quantity
from .nodeaffinity import term_matches

ERR_CONFLICT = "node(s) had volume node affinity conflict"
ERR_BIND = "node(s) didn't find available persistent volumes to bind"
ERR_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PV, PVC = "PersistentVolume", "PersistentVolumeClaim"


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


def bound_to_claim(pv: dict, pvc: dict) -> bool:
    """Upstream IsVolumeBoundToClaim: claimRef names the claim (and its uid, when set)."""
    ref = pv["spec"].get("claimRef")
    if not ref:
        return False
    meta = pvc["metadata"]
    return (ref.get("name") == meta["name"] and ref.get("namespace") == meta.get("namespace")
            and (not ref.get("uid") or ref.get("uid") == meta.get("uid")))


def _shows_binding(kind: str, obj: dict) -> bool:
    if kind == PV:
        return bool(obj["spec"].get("claimRef"))
    return bool(obj["spec"].get("volumeName")
                or SELECTED_NODE in (obj["metadata"].get("annotations") or {}))


class _Assumed:
    __slots__ = ("value", "rv", "owners")

    def __init__(self, value: str, rv):
        self.value = value       # PV: the claim key it is taken for; PVC: the selected node
        self.rv = rv             # informer resourceVersion when assumed, then when written
        self.owners: set[str] = set()   # keys of the pods whose bindings rely on it


# (kind, name) → _Assumed, one table per scheduler so that all its profiles see it.
_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class VolumeBinding(Plugin):
    name = "VolumeBinding"
    events = ("Node/Add", "Node/Update", "PersistentVolume/Add", "PersistentVolume/Update",
              "PersistentVolumeClaim/Add", "PersistentVolumeClaim/Update", "StorageClass/Add",
              "StorageClass/Update")

    def __init__(self, handle=None, args: dict | None = None):
        super().__init__(handle, args)
        try:
            self.assumed: dict[tuple[str, str], _Assumed] = _TABLES.setdefault(handle, {})
        except TypeError:     # no handle (unit tests): a table of its own
            self.assumed = {}

    def _claims(self, pi) -> list[str]:
        names = []
        for v in pi.spec.get("volumes") or ():
            if v.get("persistentVolumeClaim"):
                names.append(v["persistentVolumeClaim"].get("claimName", ""))
            elif v.get("ephemeral"):
                names.append(f"{pi.name}-{v.get('name', '')}")
        return names

    def _expire(self) -> None:
        h = self.handle
        cache = getattr(h, "cache", None)
        for key, a in list(self.assumed.items()):
            obj = h.get(*key)
            if (obj is None or _shows_binding(key[0], obj)
                    or (obj["metadata"].get("resourceVersion") != a.rv
                        and not (cache is not None and any(map(cache.is_assumed, a.owners))))):
                del self.assumed[key]

    def pre_filter(self, state, pi, nodes):
        names = self._claims(pi)
        if not names:
            return SKIPPED
        h = self.handle
        bound, unbound = [], []
        for n in names:
            pvc = h.get(PVC, f"{pi.namespace}/{n}")
            if pvc is None:
                return unresolvable(f'persistentvolumeclaim "{n}" not found')
            if pvc["metadata"].get("deletionTimestamp"):
                return unresolvable(f'persistentvolumeclaim "{n}" is being deleted')
            vol = pvc["spec"].get("volumeName")
            if vol:
                pv = h.get(PV, vol)
                if pv is not None:
                    bound.append(pv)
                continue
            cls_name = pvc["spec"].get("storageClassName") or ""
            sc = h.get("StorageClass", cls_name) if cls_name else None
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return unresolvable(ERR_IMMEDIATE)
            unbound.append((pvc, cls_name, sc.get("provisioner") or ""))
        delayed = []
        if unbound:
            assumed = self.assumed
            if assumed:
                self._expire()
            pvs = h.list(PV)
            unbound.sort(key=lambda u: _size(u[0], "pvc"))   # smallest claims choose first
            for pvc, cls_name, provisioner in unbound:
                ckey = f"{pvc['metadata'].get('namespace')}/{pvc['metadata']['name']}"
                a = assumed.get((PVC, ckey))
                selected = a.value if a is not None else \
                    (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE)
                pre, cands = None, []
                if selected is None:
                    need = _size(pvc, "pvc")
                    for pv in pvs:
                        a = assumed.get((PV, pv["metadata"]["name"]))
                        if a is not None:
                            mine = a.value == ckey      # taken by us for this very claim
                        elif pv["spec"].get("claimRef"):
                            mine = bound_to_claim(pv, pvc)
                        else:
                            if pv_matches_claim(pv, pvc, cls_name):
                                cands.append(pv)
                            continue
                        if mine and pre is None and _size(pv, "pv") >= need:
                            pre = pv
                    cands.sort(key=lambda p: _size(p, "pv"))
                delayed.append((pvc, provisioner, selected, pre, cands))
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
        for pvc, provisioner, selected, pre, cands in s["delayed"]:
            if selected is None:
                # Upstream FindMatchingVolume: a PV bound to the claim is its only match.
                if pre is not None:
                    pv = pre if pv_fits_node(pre, ni) else None
                else:
                    pv = next((p for p in cands if p["metadata"]["name"] not in taken
                               and pv_fits_node(p, ni)), None)
                if pv is not None:
                    taken.add(pv["metadata"]["name"])
                    choice.append((pvc, pv))
                    continue
            elif selected != ni.name:
                return unresolvable(ERR_BIND)
            if not provisioner or provisioner == NO_PROVISIONER:
                return unresolvable(ERR_BIND)
            choice.append((pvc, None))                           # dynamic provisioning
        s["choices"][ni.name] = choice
        return None

    def reserve(self, state, pi, node_name):
        s = state.get(self.name)
        if not s or not s["delayed"]:
            return None
        made = s["reserved"] = []
        for pvc, pv in s["choices"].get(node_name, ()):
            meta = pvc["metadata"]
            ckey = f"{meta.get('namespace')}/{meta['name']}"
            if pv is None:
                key, value, obj = (PVC, ckey), node_name, pvc
            else:
                key, value, obj = (PV, pv["metadata"]["name"]), ckey, pv
            a = self.assumed.get(key)
            if a is None:
                a = self.assumed[key] = _Assumed(value, obj["metadata"].get("resourceVersion"))
            elif a.value != value:   # Filter saw it free: should not happen
                self.unreserve(state, pi, node_name)
                return error(f"{key[0]} {key[1]} is already assumed for {a.value}")
            a.owners.add(pi.key)
            made.append(key)
        return None

    def unreserve(self, state, pi, node_name):
        s = state.get(self.name)
        for key in (s.pop("reserved", ()) if s else ()):
            a = self.assumed.get(key)
            if a is not None:
                a.owners.discard(pi.key)
                if not a.owners:
                    del self.assumed[key]

    def _writing(self, key: tuple[str, str]) -> dict | None:
        """The informer's object about to be written; the assumption now waits for a newer one."""
        obj = self.handle.get(*key)
        a = self.assumed.get(key)
        if a is not None and obj is not None:
            a.rv = obj["metadata"].get("resourceVersion")
        return obj

    async def pre_bind(self, state, pi, node_name):
        s = state.get(self.name)
        if not s:
            return None
        client, h = self.handle.client, self.handle
        try:
            for pvc, pv in s["choices"].get(node_name, ()):
                meta = pvc["metadata"]
                if pv is None:
                    self._writing((PVC, f"{meta['namespace']}/{meta['name']}"))
                    await client.patch(h.resource(PVC), meta["name"], {
                        "metadata": {"annotations": {SELECTED_NODE: node_name}}},
                        meta["namespace"])
                    continue
                name = pv["metadata"]["name"]
                cur = self._writing((PV, name))
                if cur is not None and cur["spec"].get("claimRef") and not bound_to_claim(cur, pvc):
                    # Bound elsewhere meanwhile (upstream's Update would conflict): retry.
                    return error(f'persistentvolume "{name}" is bound to another claim')
                await client.patch(h.resource(PV), name, {
                    "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
                    "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                          "namespace": meta["namespace"], "name": meta["name"],
                                          "uid": meta.get("uid")}}})
                await client.patch(h.resource(PVC), meta["name"], {
                    "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                                 "pv.kubernetes.io/bound-by-controller": "yes"}},
                    "spec": {"volumeName": name}}, meta["namespace"])
        except ApiError as e:
            return error(f"binding volumes: {e}")
        return None
