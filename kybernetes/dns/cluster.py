"""What the DNS server knows about the cluster: informer caches of Services, EndpointSlices,
Namespaces (and Pods in `verified` pod mode), indexed the ways DNS looks things up.

Every change bumps `generation`, which is how the answer cache knows it is stale.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kybernetes.client import Informer, InformerFactory, resource

SERVICES = resource("v1", "Service")
SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")
NAMESPACES = resource("v1", "Namespace")
PODS = resource("v1", "Pod")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Endpoint:
    """One address of one EndpointSlice endpoint, as DNS needs it."""
    ip: str
    hostname: str          # the endpoint's hostname, or its IP with dashes (like CoreDNS)
    ready: bool
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port) of the slice


def dashed(ip: str) -> str:
    """10.0.0.1 → 10-0-0-1, fd00::1 → fd00--1: the system-assigned endpoint/pod hostname."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """The inverse of `dashed`, or None when the label is not an IP address."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def _service_index(obj: dict) -> list[str]:
    svc = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{obj['metadata'].get('namespace')}/{svc}"] if svc else []


def _slice_ip_index(obj: dict) -> list[str]:
    return [_norm(a) for ep in obj.get("endpoints") or [] for a in ep.get("addresses") or []]


def _cluster_ip_index(obj: dict) -> list[str]:
    spec = obj.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_norm(ip) for ip in ips if ip and ip != "None"]


def _pod_ip_index(obj: dict) -> list[str]:
    status = obj.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return [_norm(ip) for ip in ips if ip]


def _norm(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


class ClusterState:
    def __init__(self, services: Informer, slices: Informer, namespaces: Informer,
                 pods: Informer | None = None):
        self.services, self.slices, self.namespaces, self.pods = services, slices, namespaces, pods
        self.generation = 0
        slices.add_index("service", _service_index)
        slices.add_index("ip", _slice_ip_index)
        services.add_index("ip", _cluster_ip_index)
        if pods is not None:
            pods.add_index("ip", _pod_ip_index)
        for inf in (services, slices, namespaces, pods):
            if inf is not None:
                inf.add_handler(self._changed, self._changed_update, self._changed)

    @classmethod
    def from_factory(cls, factory: InformerFactory, *, pods: bool = False) -> "ClusterState":
        return cls(factory.informer(SERVICES), factory.informer(SLICES),
                   factory.informer(NAMESPACES), factory.informer(PODS) if pods else None)

    def _changed(self, _obj: dict) -> None:
        self.generation += 1

    def _changed_update(self, _old: dict, _new: dict) -> None:
        self.generation += 1

    @property
    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in (self.services, self.slices, self.namespaces,
                                                   self.pods) if inf is not None)

    # ---- lookups (names are compared lower-case: DNS is case-insensitive) ----

    def namespace_exists(self, ns: str) -> bool:
        return self.namespaces.get(ns) is not None

    def service(self, ns: str, name: str) -> dict | None:
        return self.services.get(f"{ns}/{name}")

    def endpoints(self, svc: dict) -> list[Endpoint]:
        """Every address of the Service's EndpointSlices, de-duplicated (an address can sit in
        two slices while the endpointslice controller moves it)."""
        meta = svc["metadata"]
        out: dict[tuple[str, str], Endpoint] = {}
        publish_all = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        for s in self.slices.by_index("service", f"{meta['namespace']}/{meta['name']}"):
            if s.get("addressType") not in ("IPv4", "IPv6"):
                continue
            ports = tuple(((p.get("name") or "").lower(), (p.get("protocol") or "TCP").lower(),
                           p.get("port")) for p in s.get("ports") or [] if p.get("port"))
            for ep in s.get("endpoints") or []:
                ready = (ep.get("conditions") or {}).get("ready")
                ready = publish_all or ready is None or bool(ready)
                for addr in ep.get("addresses") or []:
                    ip = _norm(addr)
                    host = (ep.get("hostname") or dashed(ip)).lower()
                    prev = out.get((host, ip))
                    if prev is None or (ready and not prev.ready):
                        out[(host, ip)] = Endpoint(ip, host, ready, ports)
        return sorted(out.values(), key=lambda e: (e.hostname, ipaddress.ip_address(e.ip)))

    def services_with_ip(self, ip: str) -> list[dict]:
        return self.services.by_index("ip", ip)

    def endpoints_with_ip(self, ip: str) -> list[tuple[dict, Endpoint]]:
        """(service, endpoint) pairs whose ready endpoint has this address."""
        out = []
        for s in self.slices.by_index("ip", ip):
            name = _service_index(s)
            if not name:
                continue
            ns, svc_name = name[0].split("/", 1)
            svc = self.service(ns, svc_name)
            if svc is None:
                continue
            out.extend((svc, e) for e in self.endpoints(svc) if e.ip == ip and e.ready)
        return out

    def pod_exists(self, ns: str, ip: str) -> bool:
        if self.pods is None:
            return False
        return any(p["metadata"].get("namespace") == ns for p in self.pods.by_index("ip", ip))
