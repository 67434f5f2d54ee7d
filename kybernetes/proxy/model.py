"""Services and EndpointSlices → the service ports and endpoints a proxy programs (pure).

Endpoint selection follows pkg/proxy/topology.go (CategorizeEndpoints): ready endpoints serve;
when none is ready, serving+terminating endpoints do ("terminating endpoints fallback"); Local
traffic policies only use endpoints on this node. Headless and ExternalName services get nothing.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str | None = None

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str            # "TCP" | "UDP" | "SCTP"
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    affinity_seconds: int = 0          # 0: no ClientIP affinity
    internal_local: bool = False       # internalTrafficPolicy: Local
    external_local: bool = False       # externalTrafficPolicy: Local (external-facing only)
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def port_key(self) -> str:
        """Upstream's ServicePortName.String(): "ns/name:port" (":port" only when named)."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.lb_ips)


@dataclass
class NodeInfo:
    name: str
    cluster_cidr: str = "10.42.0.0/16"


def port_proto_hash(key: str, proto: str) -> str:
    """sha256 → base32 → 16 chars, as upstream's portProtoHash (chain names KUBE-SVC-…)."""
    digest = hashlib.sha256((key + proto).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def endpoint_hash(key: str, proto: str, addr: str) -> str:
    digest = hashlib.sha256((key + proto + addr).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


# ---- API objects → model ----

def _is_ipv4(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def _cond(conds: dict, name: str, default: bool) -> bool:
    v = conds.get(name)
    return default if v is None else bool(v)


def slice_endpoints(slices: list[dict], port_name: str, protocol: str) -> list[Endpoint]:
    """Endpoints for one service port from its slices, matched by port name + protocol (the slice
    controller already resolved named target ports). Duplicates across slices: keep the best."""
    found: dict[str, Endpoint] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        port = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                port = p.get("port")
                break
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            conds = ep.get("conditions") or {}
            # nil ready/serving mean true (API doc); serving defaults to ready.
            ready = _cond(conds, "ready", True)
            serving = _cond(conds, "serving", ready)
            terminating = _cond(conds, "terminating", False)
            for ip in (ep.get("addresses") or [])[:1]:   # only the first address is used
                if not _is_ipv4(ip):
                    continue
                e = Endpoint(ip, int(port), ready, serving, terminating, ep.get("nodeName"))
                old = found.get(e.addr)
                if old is None or (e.ready and not old.ready):
                    found[e.addr] = e
    return sorted(found.values(), key=lambda e: (ipaddress.ip_address(e.ip).packed, e.port))


def service_ports(svc: dict, slices: list[dict]) -> list[ServicePort]:
    spec = svc.get("spec") or {}
    meta = svc["metadata"]
    ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or not ip or ip == "None" or not _is_ipv4(ip):
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    typ = spec.get("type") or "ClusterIP"
    external = [a for a in spec.get("externalIPs") or [] if _is_ipv4(a)]
    lb = []
    if typ == "LoadBalancer":
        lb = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
              if i.get("ip") and _is_ipv4(i["ip"])]
    out = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        sp = ServicePort(
            namespace=meta.get("namespace") or "default", name=meta["name"],
            port_name=p.get("name") or "", protocol=proto, cluster_ip=ip, port=int(p["port"]),
            node_port=int(p.get("nodePort") or 0) if typ in ("NodePort", "LoadBalancer") else 0,
            external_ips=list(external), lb_ips=list(lb), affinity_seconds=affinity,
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            external_local=spec.get("externalTrafficPolicy") == "Local",
            endpoints=slice_endpoints(slices, p.get("name") or "", proto))
        out.append(sp)
    return out


def build(services: list[dict], slices: list[dict]) -> list[ServicePort]:
    """Every proxied service port, sorted so rendering is deterministic."""
    by_svc: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        name = ((sl.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            by_svc.setdefault((sl["metadata"].get("namespace") or "default", name), []).append(sl)
    out: list[ServicePort] = []
    for svc in services:
        key = (svc["metadata"].get("namespace") or "default", svc["metadata"]["name"])
        out.extend(service_ports(svc, by_svc.get(key, [])))
    out.sort(key=lambda s: (s.namespace, s.name, s.port_name, s.protocol))
    return out


# ---- endpoint categories (upstream CategorizeEndpoints) ----

def _usable(eps: list[Endpoint]) -> list[Endpoint]:
    ready = [e for e in eps if e.ready]
    if ready:
        return ready
    return [e for e in eps if e.serving and e.terminating]


def cluster_endpoints(sp: ServicePort) -> list[Endpoint]:
    return _usable(sp.endpoints)


def local_endpoints(sp: ServicePort, node: str) -> list[Endpoint]:
    return _usable([e for e in sp.endpoints if e.node == node])


def uses_local(sp: ServicePort) -> bool:
    return sp.internal_local or (sp.external_local and sp.has_external)


def needs_cluster(sp: ServicePort) -> bool:
    # Even with externalTrafficPolicy Local, pod traffic short-circuits to the cluster endpoints.
    return not sp.internal_local or sp.has_external


def reachable_endpoints(sp: ServicePort, node: str) -> list[Endpoint]:
    """Every endpoint some rule of this service port may DNAT to (one SEP chain each)."""
    eps: dict[str, Endpoint] = {}
    if needs_cluster(sp):
        eps.update({e.addr: e for e in cluster_endpoints(sp)})
    if uses_local(sp):
        eps.update({e.addr: e for e in local_endpoints(sp, node)})
    return list(eps.values())
