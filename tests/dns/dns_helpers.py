"""Helpers for the DNS tests: cluster state fed straight from objects, and object builders."""

from __future__ import annotations

import copy

from kybernetes.client import Informer
from kybernetes.dns.cluster import NAMESPACES, PODS, SERVICES, SLICES, ClusterState


class FakeCluster:
    """Real informer caches with events applied by hand (no API server)."""

    def __init__(self, pods: bool = False):
        self.informers = {r.plural: Informer(None, r) for r in (SERVICES, SLICES, NAMESPACES, PODS)}
        self.state = ClusterState(self.informers["services"], self.informers["endpointslices"],
                                  self.informers["namespaces"],
                                  self.informers["pods"] if pods else None)
        for inf in self.informers.values():
            inf.synced.set()
        self._rv = 0

    def apply(self, obj: dict, event: str = "ADDED") -> dict:
        self._rv += 1
        obj = copy.deepcopy(obj)                 # the cache keeps its own copy, as over the wire
        obj["metadata"]["resourceVersion"] = str(self._rv)
        plural = {"Service": "services", "EndpointSlice": "endpointslices",
                  "Namespace": "namespaces", "Pod": "pods"}[obj["kind"]]
        self.informers[plural]._apply({"type": event, "object": obj})
        return obj


def namespace(name: str) -> dict:
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}}


def service(ns: str, name: str, cluster_ip: str | list[str] | None = None, *,
            ports: list[dict] | None = None, type: str = "ClusterIP",
            external_name: str | None = None, publish_not_ready: bool = False) -> dict:
    spec: dict = {"type": type, "ports": ports or []}
    if type == "ExternalName":
        spec["externalName"] = external_name
    elif cluster_ip is not None:
        ips = [cluster_ip] if isinstance(cluster_ip, str) else cluster_ip
        spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(ns: str, svc: str, name: str, endpoints: list[dict], *,
                   ports: list[dict] | None = None, address_type: str = "IPv4") -> dict:
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type, "endpoints": endpoints, "ports": ports or []}


def ep(ip: str, *, ready: bool | None = True, hostname: str | None = None) -> dict:
    out: dict = {"addresses": [ip]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if hostname:
        out["hostname"] = hostname
    return out
