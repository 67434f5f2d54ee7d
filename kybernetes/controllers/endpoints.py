"""Endpoints controller: one core/v1 Endpoints per Service with a selector, listing its pods.

Like pkg/controller/endpoint: ready pods go to `addresses`, the others to `notReadyAddresses`
(unless the Service publishes not-ready addresses); pods are grouped into subsets by the ports
they resolve (a named targetPort can map to a different number per pod); more than 1000
addresses are truncated with the `endpoints.kubernetes.io/over-capacity` annotation. Services
without a selector are left alone: their Endpoints belong to the user.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import math

from kybernetes.api.errors import ApiError
from kybernetes.api.selectors import selector_from_set
from kybernetes.client import Controller, resource, split_key
from kybernetes.client.informer import Informer

log = logging.getLogger(__name__)

PODS = resource("v1", "Pod")
SERVICES = resource("v1", "Service")
ENDPOINTS = resource("v1", "Endpoints")

MAX_ADDRESSES = 1000
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
HEADLESS = "service.kubernetes.io/headless"


# ---- pure helpers shared with the EndpointSlice controller ----

def is_pod_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_ips(pod: dict) -> list[str]:
    status = pod.get("status") or {}
    ips = [p["ip"] for p in status.get("podIPs") or [] if p.get("ip")]
    return ips or ([status["podIP"]] if status.get("podIP") else [])


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """Terminal pods and pods without an IP never are; terminating ones only when asked."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    if not include_terminating and pod["metadata"].get("deletionTimestamp"):
        return False
    return True


def find_port(pod: dict, svc_port: dict) -> int | None:
    """The container port a service port's targetPort means for this pod (None: not served)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return p.get("containerPort")
    return None


def should_set_hostname(pod: dict, svc: dict) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == svc["metadata"]["name"] \
        and pod["metadata"].get("namespace") == svc["metadata"].get("namespace")


def service_family(svc: dict) -> int:
    families = (svc.get("spec") or {}).get("ipFamilies") or ["IPv4"]
    return 6 if families[0] == "IPv6" else 4


def ip_for_family(pod: dict, family: int) -> str | None:
    for ip in pod_ips(pod):
        try:
            if ipaddress.ip_address(ip).version == family:
                return ip
        except ValueError:
            continue
    return None


def pod_matches(svc: dict, pod: dict) -> bool:
    sel = (svc.get("spec") or {}).get("selector")
    return bool(sel) and selector_from_set(sel).matches(pod["metadata"].get("labels") or {})


def services_for_pod(services: Informer, pod: dict) -> list[dict]:
    ns = pod["metadata"].get("namespace")
    return [s for s in services.list(ns) if pod_matches(s, pod)]


def target_ref(pod: dict) -> dict:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
            "uid": meta.get("uid")}


def pod_projection(pod: dict) -> tuple:
    """What of a pod matters to endpoints; updates that change none of it are ignored."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ports = [(c.get("name"), tuple((p.get("name"), p.get("containerPort"), p.get("protocol"))
                                   for p in c.get("ports") or []))
             for c in spec.get("containers") or []]
    return (tuple(sorted((meta.get("labels") or {}).items())), tuple(pod_ips(pod)),
            is_pod_ready(pod), meta.get("deletionTimestamp"), status.get("phase"),
            spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"), tuple(ports))


def _address(pod: dict, svc: dict, ip: str) -> dict:
    addr = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    if (pod.get("spec") or {}).get("nodeName"):
        addr["nodeName"] = pod["spec"]["nodeName"]
    addr["targetRef"] = target_ref(pod)
    return addr


def _port_key(ports: list[dict]) -> tuple:
    return tuple(sorted((p.get("name", ""), p["port"], p.get("protocol", "TCP")) for p in ports))


def desired_subsets(svc: dict, pods: list[dict]) -> tuple[list[dict], bool]:
    """Subsets for `svc` from candidate pods, and whether they were truncated."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    family = service_family(svc)
    groups: dict[tuple, dict] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        ip = ip_for_family(pod, family)
        if ip is None:
            continue
        ports = []
        for sp in spec.get("ports") or []:
            num = find_port(pod, sp)
            if num is None:
                log.debug("pod %s serves no port for %s", pod["metadata"]["name"], sp)
                continue
            port = {"port": num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                port["name"] = sp["name"]
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            ports.append(port)
        if not ports and (spec.get("ports") or spec.get("clusterIP") != "None"):
            continue  # only headless services without ports list bare addresses
        key = _port_key(ports)
        subset = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [],
                                         "ports": sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))})
        ready = publish or is_pod_ready(pod)
        subset["addresses" if ready else "notReadyAddresses"].append(_address(pod, svc, ip))
    subsets = []
    for key in sorted(groups):
        s = groups[key]
        for field in ("addresses", "notReadyAddresses"):
            s[field].sort(key=lambda a: (a["ip"], a["targetRef"].get("uid") or ""))
        subsets.append({k: v for k, v in s.items() if v})
    truncated = truncate(subsets, MAX_ADDRESSES)
    return subsets, truncated


def truncate(subsets: list[dict], limit: int) -> bool:
    """Keep at most `limit` addresses, ready ones first, each subset keeping its share."""
    ready = sum(len(s.get("addresses", [])) for s in subsets)
    not_ready = sum(len(s.get("notReadyAddresses", [])) for s in subsets)
    if ready + not_ready <= limit:
        return False
    cut_ready = ready > limit
    budget = limit if cut_ready else limit - ready
    total = ready if cut_ready else not_ready
    left = budget
    for s in subsets:
        field = "addresses" if cut_ready else "notReadyAddresses"
        share = min(left, math.ceil(len(s.get(field, [])) / total * budget))
        left -= share
        if s.get(field):
            s[field] = s[field][:share]
        if cut_ready:
            s.pop("notReadyAddresses", None)
        for f in ("addresses", "notReadyAddresses"):
            if f in s and not s[f]:
                del s[f]
    return True


def trigger_time(svc: dict, pods: list[dict]) -> str | None:
    """The newest change among the inputs: service creation, pod creation or readiness flip."""
    times = [svc["metadata"].get("creationTimestamp")]
    for pod in pods:
        times.append(pod["metadata"].get("creationTimestamp"))
        times.append(pod["metadata"].get("deletionTimestamp"))
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                times.append(c.get("lastTransitionTime"))
    times = [t for t in times if t]
    return max(times) if times else None


def desired_labels(svc: dict) -> dict:
    labels = dict(svc["metadata"].get("labels") or {})
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    else:
        labels.pop(HEADLESS, None)
    return labels


# ---- the controller ----

class ServicePodHandlers:
    """Pod handlers shared by the Endpoints and EndpointSlice controllers: a pod change
    enqueues the Services selecting it (before and after the change)."""

    services: Informer

    def _pod_changed(self, pod: dict) -> None:
        for svc in services_for_pod(self.services, pod):
            self.enqueue(svc)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if pod_projection(old) == pod_projection(new):
            return
        for svc in {id(s): s for s in services_for_pod(self.services, old)
                    + services_for_pod(self.services, new)}.values():
            self.enqueue(svc)


class EndpointsController(ServicePodHandlers, Controller):
    name = "endpoints-controller"
    workers = 5

    def setup(self) -> None:
        self.services = self.factory.informer(SERVICES)
        self.pods = self.factory.informer(PODS)
        self.endpoints = self.factory.informer(ENDPOINTS)
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        self.endpoints.add_handler(on_delete=self._endpoints_deleted)


    def _endpoints_deleted(self, ep: dict) -> None:
        key = f"{ep['metadata']['namespace']}/{ep['metadata']['name']}"
        if self.services.get(key) is not None:
            self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            # The Service is gone: its Endpoints go too (they carry no ownerReference).
            if current is not None:
                await self._delete(ns, name)
            return None
        if not (svc.get("spec") or {}).get("selector"):
            return None
        pods = [p for p in self.pods.list(ns) if pod_matches(svc, p)]
        subsets, truncated = desired_subsets(svc, pods)
        labels = desired_labels(svc)
        if current is not None:
            annotations = current["metadata"].get("annotations") or {}
            same = (current.get("subsets") or []) == subsets \
                and (current["metadata"].get("labels") or {}) == labels \
                and (annotations.get(OVER_CAPACITY) == "truncated") == truncated
            if same:
                return None
        obj = copy.deepcopy(current) if current is not None else {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns}}
        meta = obj["metadata"]
        meta["labels"] = labels
        annotations = dict(meta.get("annotations") or {})
        when = trigger_time(svc, pods)
        if when:
            annotations[TRIGGER_TIME] = when
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        meta["annotations"] = annotations
        obj["subsets"] = subsets
        try:
            if current is None:
                await self.client.create(ENDPOINTS, obj, ns)
            else:
                await self.client.update(ENDPOINTS, obj)
        except ApiError as e:
            if e.code == 409 and current is None:
                return 0.1  # created meanwhile (or the cache is behind): look again
            if e.code == 403 and "terminat" in str(e).lower():
                return None  # namespace going away
            action = "Create" if current is None else "Update"
            self.recorder.event(svc, "Warning", f"FailedTo{action}Endpoint",
                                f"Failed to {action.lower()} endpoint {ns}/{name}: {e}")
            raise
        return None

    async def _delete(self, ns: str, name: str) -> None:
        try:
            await self.client.delete(ENDPOINTS, name, ns)
        except ApiError as e:
            if e.code != 404:
                raise

