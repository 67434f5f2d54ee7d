"""A built-in service load balancer, as k3s' ServiceLB: every LoadBalancer Service (without a
loadBalancerClass) gets status.loadBalancer.ingress = the IPs of the Ready nodes; kube-proxy on
each node then accepts traffic to those IPs. Register as controller "servicelb" with target
"kybernetes.proxy.servicelb:ServiceLBController"."""

from __future__ import annotations

import ipaddress

from kybernetes.client import Controller, resource, split_key

SERVICES = resource("v1", "Service")
NODES = resource("v1", "Node")


def _ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def node_ip(node: dict) -> str | None:
    """ExternalIP when the node has one, else InternalIP (k3s' preference)."""
    addrs = (node.get("status") or {}).get("addresses") or []
    for kind in ("ExternalIP", "InternalIP"):
        for a in addrs:
            if a.get("type") == kind and a.get("address"):
                return a["address"]
    return None


def wants_lb(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_for(svc: dict, nodes: list[dict]) -> list[dict]:
    """The ingress list to publish: ready nodes' IPs, sorted by address; empty when not ours."""
    if not wants_lb(svc):
        return []
    ips = {ip for n in nodes if _ready(n) and not (n.get("spec") or {}).get("unschedulable")
           if (ip := node_ip(n))}
    ordered = sorted(ips, key=lambda ip: ipaddress.ip_address(ip).packed)
    return [{"ip": ip} for ip in ordered]


class ServiceLBController(Controller):
    name = "servicelb"
    workers = 1

    def setup(self) -> None:
        self.services = self.factory.informer(SERVICES)
        self.nodes = self.factory.informer(NODES)
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new))
        self.nodes.add_handler(self._all, lambda old, new: self._all(new), self._all)

    def _all(self, _node: dict) -> None:
        for svc in self.services.list():
            if wants_lb(svc):
                self.enqueue(svc)

    async def reconcile(self, key: str) -> float | None:
        svc = self.services.get(key)
        if svc is None or not wants_lb(svc):
            return None
        want = ingress_for(svc, self.nodes.list())
        have = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if have == want:
            return None
        ns, name = split_key(key)
        await self.client.patch(SERVICES, name, {"status": {"loadBalancer": {"ingress": want}}},
                                ns, subresource="status")
        return None
