"""API discovery for controllers that act on every kind (garbage collector, namespace deletion).

Reads the legacy discovery documents (/api/v1, /apis, /apis/GROUP/VERSION), which every
Kubernetes-compatible server serves, and returns the top-level resources of each group's
preferred version — what client-go's ServerPreferredResources gives upstream controllers.
"""

from __future__ import annotations

import asyncio
import logging

from kybernetes.api.errors import ApiError
from kybernetes.api.registry import Resource

from .rest import Client

log = logging.getLogger(__name__)


def parse_resource_list(doc: dict) -> list[Resource]:
    """Resources of one APIResourceList; subresources ("pods/status") are left out."""
    group, _, version = doc.get("groupVersion", "").rpartition("/")
    out = []
    for item in doc.get("resources") or []:
        if "/" in item.get("name", ""):
            continue
        out.append(Resource(group, version, item["kind"], item["name"],
                            namespaced=bool(item.get("namespaced")),
                            verbs=tuple(item.get("verbs") or ()),
                            short_names=tuple(item.get("shortNames") or ())))
    return out


def supports(r: Resource, *verbs: str) -> bool:
    return all(v in r.verbs for v in verbs)


async def preferred_resources(client: Client) -> tuple[list[Resource], list[str]]:
    """(resources of every group's preferred version, group versions whose discovery failed)."""
    core = await client.request("GET", "/api/v1")
    groups = await client.request("GET", "/apis")
    versions = [g["preferredVersion"]["groupVersion"] for g in groups.get("groups") or []
                if g.get("preferredVersion")]
    docs = await asyncio.gather(*(client.request("GET", f"/apis/{gv}") for gv in versions),
                                return_exceptions=True)
    resources = parse_resource_list(core)
    failed = []
    for gv, doc in zip(versions, docs):
        if isinstance(doc, BaseException):
            if not isinstance(doc, ApiError):
                raise doc
            log.debug("discovery of %s failed: %s", gv, doc)
            failed.append(gv)
            continue
        resources.extend(parse_resource_list(doc))
    return resources, failed
