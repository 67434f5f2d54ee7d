"""EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for every Service with a selector.

As pkg/controller/endpointslice does: slices are named `<service>-<random>`, labelled
`kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, owned by the Service
(the garbage collector removes them with it), hold at most 100 endpoints of one port mapping and
one address type, and carry ready/serving/terminating conditions per endpoint. The reconciler
keeps churn low: endpoints stay in the slice they are in, changed slices are updated in place and
filled with new endpoints before any new slice is created. A Service without endpoints gets one
empty placeholder slice.
"""

from __future__ import annotations

import copy
import time

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, owner_reference, resource, split_key

from .endpoints import (HEADLESS, PODS, SERVICES, TRIGGER_TIME, ServicePodHandlers, find_port,
                        ip_for_family, is_pod_ready, pod_matches, service_family,
                        should_pod_be_in_endpoints, should_set_hostname, target_ref,
                        trigger_time)

SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")
NODES = resource("v1", "Node")

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ZONE = "topology.kubernetes.io/zone"
MAX_PER_SLICE = 100


# ---- pure helpers ----

def slice_ports(svc: dict, pod: dict) -> list[dict]:
    ports = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        port = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def ports_key(ports: list[dict] | None) -> tuple:
    return tuple(sorted((p.get("name") or "", p.get("port"), p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or []))


def pod_endpoint(svc: dict, pod: dict, ip: str, node: dict | None) -> dict:
    """One endpoint; `ready` is never true for a terminating pod unless not-ready pods are
    published (upstream's compatibility rule)."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    serving = publish or is_pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    ready = publish or (serving and not terminating)
    ep: dict = {"addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = target_ref(pod)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE)
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_key(ep: dict) -> str:
    ref = ep.get("targetRef") or {}
    return ref.get("uid") or ",".join(ep.get("addresses") or [])


def address_type(svc: dict) -> str:
    return "IPv6" if service_family(svc) == 6 else "IPv4"


def slice_labels(svc: dict) -> dict:
    labels = {k: v for k, v in (svc["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME, MANAGED_BY, HEADLESS)}
    labels[SERVICE_NAME] = svc["metadata"]["name"]
    labels[MANAGED_BY] = CONTROLLER_NAME
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


def _sorted(endpoints: list[dict]) -> list[dict]:
    return sorted(endpoints, key=lambda e: (e["addresses"][0], endpoint_key(e)))


def plan(desired: dict[tuple, tuple[list[dict], dict[str, dict]]], existing: list[dict],
         max_per_slice: int = MAX_PER_SLICE) -> tuple[list[dict], list[dict], list[dict]]:
    """(to create, to update, to delete) slices turning `existing` into `desired`.

    `desired` maps a ports key to (ports, {endpoint key: endpoint}). Slices come back with
    `ports` and `endpoints` set; everything else about them is the caller's.
    """
    remaining = {pk: dict(eps) for pk, (_, eps) in desired.items()}
    updates, deletes, keep = [], [], []
    for s in existing:
        pk = ports_key(s.get("ports"))
        want = remaining.get(pk, {})
        kept, changed = [], False
        for ep in s.get("endpoints") or []:
            k = endpoint_key(ep)
            new = want.pop(k, None)
            if new is None:
                changed = True
            else:
                kept.append(new)
                changed = changed or new != ep
        if not kept:
            deletes.append(s)
            continue
        s = dict(s, endpoints=kept)
        (updates if changed else keep).append(s)
    # New endpoints fill slices that change anyway (fullest first), then full new slices; a
    # remainder under a slice's worth goes into the unchanged slice it fills best, else a new
    # one (reconcileByPortMapping does the same: full slices are cut before the remainder is
    # fitted, so 11 existing + 109 new gives 100 + 20, not 11 + 100 + 9).
    creates: list[dict] = []
    for pk, eps in remaining.items():
        todo = list(eps.values())
        ports = desired[pk][0]
        for s in sorted(updates, key=lambda s: -len(s["endpoints"])):
            if not todo:
                break
            if ports_key(s.get("ports")) == pk and len(s["endpoints"]) < max_per_slice:
                room = max_per_slice - len(s["endpoints"])
                s["endpoints"] = s["endpoints"] + todo[:room]
                todo = todo[room:]
        while todo:
            target = None
            if len(todo) < max_per_slice:
                fits = [s for s in keep if ports_key(s.get("ports")) == pk
                        and len(s["endpoints"]) + len(todo) <= max_per_slice]
                target = max(fits, key=lambda s: len(s["endpoints"]), default=None)
            if target is not None:
                target["endpoints"] = target["endpoints"] + todo
                todo = []
                keep.remove(target)
                updates.append(target)
            else:
                creates.append({"ports": ports, "endpoints": todo[:max_per_slice]})
                todo = todo[max_per_slice:]
    # Reuse a slice being deleted instead of creating one (fewer writes, same name).
    while creates and deletes:
        s = deletes.pop()
        updates.append(dict(s, **creates.pop()))
    if not desired or not any(eps for _, eps in desired.values()):
        if not keep and not updates and not creates:
            # Keep exactly one empty placeholder slice.
            placeholder = next((s for s in deletes if not s.get("endpoints") and not s.get("ports")), None)
            if placeholder is not None:
                deletes.remove(placeholder)
            elif deletes:
                updates.append(dict(deletes.pop(), endpoints=[], ports=None))
            else:
                creates.append({"ports": None, "endpoints": []})
    for s in creates + updates:
        s["endpoints"] = _sorted(s["endpoints"])
    return creates, updates, deletes


# ---- the controller ----

class EndpointSliceController(ServicePodHandlers, Controller):
    name = "endpointslice-controller"
    workers = 5

    def setup(self) -> None:
        self.services = self.factory.informer(SERVICES)
        self.pods = self.factory.informer(PODS)
        self.nodes = self.factory.informer(NODES)
        self.slices = self.factory.informer(SLICES)
        self.slices.add_index("service", _service_index)
        # What we last wrote per service (slice name → (resourceVersion or None if deleted,
        # when)): until the cache shows it, a reconcile would act on stale slices and duplicate
        # them. After a few seconds we stop waiting (someone else may have changed it since).
        self._written: dict[str, dict[str, tuple[str | None, float]]] = {}
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        self.nodes.add_handler(self._node_changed, self._node_updated, self._node_changed)
        self.slices.add_handler(self._slice_changed, lambda old, new: self._slice_changed(new),
                                self._slice_changed)


    def _node_changed(self, node: dict) -> None:
        for svc in self.services.list():
            self.enqueue(svc)

    def _node_updated(self, old: dict, new: dict) -> None:
        if (old["metadata"].get("labels") or {}).get(ZONE) != (new["metadata"].get("labels") or {}).get(ZONE):
            self._node_changed(new)

    def _slice_changed(self, s: dict) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.queue.add(f"{s['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    def _desired(self, svc: dict) -> dict[tuple, tuple[list[dict], dict[str, dict]]]:
        ns = svc["metadata"]["namespace"]
        spec = svc.get("spec") or {}
        family = service_family(svc)
        desired: dict[tuple, tuple[list[dict], dict[str, dict]]] = {}
        for pod in self.pods.list(ns):
            if not pod_matches(svc, pod) or not should_pod_be_in_endpoints(pod, True):
                continue
            node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None:
                continue  # upstream skips pods whose Node it cannot see (yet)
            ip = ip_for_family(pod, family)
            if ip is None:
                continue
            ports = slice_ports(svc, pod)
            if not ports and spec.get("ports"):
                continue
            ep = pod_endpoint(svc, pod, ip, node)
            pk = ports_key(ports)
            desired.setdefault(pk, (ports, {}))[1][endpoint_key(ep)] = ep
        return desired

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        if svc is None or not (svc.get("spec") or {}).get("selector") \
                or (svc.get("spec") or {}).get("type") == "ExternalName":
            return None  # slices of a deleted Service go with it (ownerReferences + GC)
        if self._cache_is_stale(key):
            return 0.05
        want_type = address_type(svc)
        existing, foreign = [], []
        for s in self.slices.by_index("service", key):
            if (s["metadata"].get("labels") or {}).get(MANAGED_BY) != CONTROLLER_NAME:
                continue
            (existing if s.get("addressType") == want_type else foreign).append(s)
        creates, updates, deletes = plan(self._desired(svc), existing)
        pods = [p for p in self.pods.list(ns) if pod_matches(svc, p)]
        when = trigger_time(svc, pods)
        labels = slice_labels(svc)
        owner = owner_reference(dict(svc, apiVersion="v1", kind="Service"))
        # Slices whose endpoints did not change still get labels/owner fixed.
        planned = {s["metadata"]["name"] for s in updates + deletes}
        for s in existing:
            if s["metadata"]["name"] not in planned and (
                    (s["metadata"].get("labels") or {}) != labels
                    or owner["uid"] not in [r.get("uid") for r in s["metadata"].get("ownerReferences") or []]):
                updates.append(s)
        written = self._written.setdefault(key, {})
        for s in updates:
            await self._write(s, labels, owner, when, written, create=False)
        for s in creates:
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": _prefix(name), "namespace": ns},
                    "addressType": want_type, **s}
            await self._write(body, labels, owner, when, written, create=True)
        for s in deletes + foreign:
            try:
                await self.client.delete(SLICES, s["metadata"]["name"], ns)
            except ApiError as e:
                if e.code != 404:
                    raise
            written[s["metadata"]["name"]] = (None, time.monotonic())
        return None

    def _cache_is_stale(self, key: str) -> bool:
        written = self._written.get(key)
        if not written:
            return False
        ns, _ = split_key(key)
        for name, (rv, when) in list(written.items()):
            cached = self.slices.get(f"{ns}/{name}")
            if time.monotonic() - when > 5:
                seen = True
            elif rv is None:
                seen = cached is None
            else:
                seen = cached is not None and _rv(cached) >= _rv_value(rv)
            if not seen:
                return True
            del written[name]
        return False

    async def _write(self, s: dict, labels: dict, owner: dict, when: str | None,
                     written: dict, *, create: bool) -> None:
        s = copy.deepcopy(s)
        meta = s["metadata"]
        meta["labels"] = labels
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["uid"]
                and not r.get("controller")]
        meta["ownerReferences"] = refs + [owner]
        if when:
            meta["annotations"] = dict(meta.get("annotations") or {}, **{TRIGGER_TIME: when})
        if s.get("ports") is None:
            s.pop("ports", None)
        try:
            if create:
                out = await self.client.create(SLICES, s, meta["namespace"])
            else:
                out = await self.client.update(SLICES, s)
            written[out["metadata"]["name"]] = (out["metadata"]["resourceVersion"], time.monotonic())
        except ApiError as e:
            if e.code == 403 and "terminat" in str(e).lower():
                return
            if e.code == 404 and not create:
                self.queue.add(f"{meta['namespace']}/{labels[SERVICE_NAME]}")
                return
            raise


def _rv_value(rv: str) -> int:
    try:
        return int(rv)
    except (TypeError, ValueError):
        return 0


def _rv(obj: dict) -> int:
    return _rv_value(obj["metadata"].get("resourceVersion"))


def _service_index(s: dict) -> list[str]:
    svc = (s["metadata"].get("labels") or {}).get(SERVICE_NAME)
    return [f"{s['metadata']['namespace']}/{svc}"] if svc else []


def _prefix(service: str) -> str:
    # generateName adds 5 characters; names are at most 253 (upstream trims the same way).
    prefix = f"{service}-"
    return prefix if len(prefix) <= 248 else prefix[:248]
