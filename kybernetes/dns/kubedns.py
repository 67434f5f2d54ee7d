"""The `kube-dns` Service in kube-system: the well-known address pods' resolv.conf names, and what
`kubectl cluster-info` lists ("CoreDNS is running at …") through the cluster-service label."""

from __future__ import annotations

import asyncio
import logging

from kybernetes.api.errors import ApiError
from kybernetes.client import Client

from .cluster import NAMESPACES, SERVICES

log = logging.getLogger(__name__)

NAMESPACE, NAME = "kube-system", "kube-dns"


def kube_dns_service(cluster_ip: str) -> dict:
    """The Service as CoreDNS' own deployment manifest defines it (same labels and ports)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": NAME, "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                       "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "selector": {"k8s-app": "kube-dns"},
            "clusterIP": cluster_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }


async def ensure_service(client: Client, cluster_ip: str) -> dict:
    """Create kube-dns when it is missing; an existing one is left as its owner set it."""
    try:
        return await client.get(SERVICES, NAME, NAMESPACE)
    except ApiError as e:
        if e.code != 404:
            raise
    try:
        await client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
    except ApiError as e:
        if e.code != 409:
            raise
    try:
        svc = await client.create(SERVICES, kube_dns_service(cluster_ip), NAMESPACE,
                                  field_manager="kyb-dns")
        log.info("dns: created Service %s/%s with clusterIP %s", NAMESPACE, NAME, cluster_ip)
        return svc
    except ApiError as e:
        if e.code != 409:
            raise
        return await client.get(SERVICES, NAME, NAMESPACE)


async def keep_service(client: Client, cluster_ip: str) -> None:
    """ensure_service until it succeeds (the API server may come up after us)."""
    delay = 0.5
    while True:
        try:
            await ensure_service(client, cluster_ip)
            return
        except ApiError as e:
            log.warning("dns: cannot ensure Service %s/%s: %s", NAMESPACE, NAME, e)
            if e.code in (400, 403, 422):
                return                                   # retrying cannot help
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30)
