"""Discovery documents: legacy (/api, /apis, APIResourceList) and aggregated (apidiscovery v2,
v2beta1). kubectl sees no resources unless the aggregated reply has the exact content type."""

from __future__ import annotations

import hashlib

import orjson

from kybernetes.api.registry import Registry, Resource

KUBE_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0+kyb",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-11-26T00:00:00Z",
                "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64"}

_SUB_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "ephemeralcontainers": ("get", "patch", "update"),
    "resize": ("get", "patch", "update"),
    "token": ("create",),
    "finalize": ("update",),
    "approval": ("get", "patch", "update"),
}


def _sub_kind(r: Resource, sub: str) -> tuple[str, str, str]:
    """(group, version, kind) a subresource answers with."""
    if sub == "scale":
        return ("autoscaling", "v1", "Scale")
    if sub == "binding":
        return ("", "v1", "Binding")
    if sub == "eviction":
        return ("policy", "v1", "Eviction")
    if sub == "token":
        return ("authentication.k8s.io", "v1", "TokenRequest")
    if sub in ("exec", "attach", "portforward", "proxy"):
        names = {"exec": "PodExecOptions", "attach": "PodAttachOptions",
                 "portforward": "PodPortForwardOptions"}
        kind = names.get(sub) or f"{r.kind}ProxyOptions"
        return ("", "v1", kind)
    return (r.group, r.version, r.kind)


def _hash(r: Resource) -> str:
    raw = f"{r.group}/{r.version}/{r.kind}".encode()
    import base64

    return base64.b64encode(hashlib.sha256(raw).digest()[:8]).decode()


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group_entry(group: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> dict:
    groups = [_group_entry(g, vs) for g, vs in registry.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict | None:
    for g, vs in registry.groups():
        if g == group and g:
            return dict(_group_entry(g, vs), kind="APIGroup", apiVersion="v1")
    return None


def resource_list(registry: Registry, group: str, version: str) -> dict | None:
    rs = registry.in_group_version(group, version)
    if not rs:
        return None
    out = []
    for r in sorted(rs, key=lambda r: r.plural):
        entry = {"name": r.plural, "singularName": r.singular_name, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = _hash(r)
        out.append(entry)
        for sub in r.subresources:
            sg, sv, sk = _sub_kind(r, sub)
            se = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                  "kind": sk, "verbs": list(_SUB_VERBS.get(sub, ("get",)))}
            if (sg, sv) != (r.group, r.version):
                se["group"], se["version"] = sg, sv
            out.append(se)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _aggregated_resource(r: Resource) -> dict:
    entry = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular_name,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        sg, sv, sk = _sub_kind(r, sub)
        subs.append({"subresource": sub,
                     "responseKind": {"group": sg, "version": sv, "kind": sk},
                     "verbs": list(_SUB_VERBS.get(sub, ("get",)))})
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(registry: Registry, core: bool, version: str) -> bytes:
    """APIGroupDiscoveryList for /api (core) or /apis (every named group)."""
    items = []
    for g, vs in registry.groups():
        if core != (g == ""):
            continue
        versions = []
        for v in vs:
            rs = sorted(registry.in_group_version(g, v), key=lambda r: r.plural)
            versions.append({"version": v, "resources": [_aggregated_resource(r) for r in rs],
                             "freshness": "Current"})
        meta = {"name": g} if g else {}
        meta["creationTimestamp"] = None
        items.append({"metadata": meta, "versions": versions})
    doc = {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
           "metadata": {}, "items": items}
    return orjson.dumps(doc)


def wants_aggregated(accept: str | None) -> str | None:
    """The apidiscovery version the client asked for first (v2 or v2beta1), if any."""
    if not accept:
        return None
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
