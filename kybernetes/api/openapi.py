"""The OpenAPI documents kube-apiserver serves: `/openapi/v3` (a root plus one document per
group-version) and `/openapi/v2` (one Swagger 2.0 document).

kubectl reads these before `create`/`apply` (to learn that the server does field validation and
strategic merge patch) and for `explain`. Schemas are the official definitions (JSON Schema
2020-12, from `schemas.definitions()`) rewritten the way upstream publishes them; paths are
synthesized from the registry. Plain data: documents are built as dicts and cached as bytes.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct

import orjson

from kybernetes.api import schemas
from kybernetes.api.registry import Registry, Resource

KUBERNETES_VERSION = "v1.33.0"
_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_OBJECT_META = _META + "ObjectMeta"
_LIST_META = _META + "ListMeta"

_API_VERSION_DESC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#resources")
_KIND_DESC = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#types-kinds")
_METADATA_DESC = (
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata")

# The JSON Schema files spell these two as oneOf; upstream OpenAPI publishes them as strings.
_SCALARS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "format": "int-or-string", "type": "string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number, written as a string "
                       "such as 100m, 1Gi or 2.5.",
        "type": "string"},
}

# --- schema conversion ----------------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _convert(node, prefix: str, v3: bool, in_items: bool = False):
    """JSON Schema 2020-12 → OpenAPI style: refs renamed, nullable type lists made plain."""
    if isinstance(node, list):
        return [_convert(x, prefix, v3) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "$ref":
            out[k] = prefix + _ref_name(v)
        elif k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            if types:
                out[k] = types[0]
        elif k == "properties":
            out[k] = {name: _convert(p, prefix, v3) for name, p in v.items()}
        elif k == "items":
            out[k] = _convert(v, prefix, v3, in_items=True)
        elif k in ("enum", "required", "default", "example") or k.startswith("x-kubernetes-"):
            out[k] = v
        else:
            out[k] = _convert(v, prefix, v3)
    if v3 and "$ref" in out and (len(out) > 1 or in_items):
        # OpenAPI 3.0 ignores siblings of $ref, so upstream wraps it; embedded structs get {}.
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
        if in_items:
            out["default"] = {}
    return out


def _convert_definition(schema: dict, prefix: str, v3: bool) -> dict:
    out = _convert(schema, prefix, v3)
    props = out.get("properties")
    if props and "x-kubernetes-group-version-kind" in out:
        # The JSON Schema generator added apiVersion/kind enums; upstream has none.
        for key in ("apiVersion", "kind"):
            if key in props:
                props[key] = {k: v for k, v in props[key].items() if k != "enum"}
    if v3 and props and "metadata" in props and "allOf" in props["metadata"]:
        props["metadata"]["default"] = {}
    return out


@functools.cache
def _definitions(v3: bool) -> dict[str, dict]:
    """Every official definition converted once (v3 or v2 style)."""
    prefix = _V3_REF if v3 else _V2_REF
    out = {}
    for name, schema in schemas.definitions().items():
        out[name] = dict(_SCALARS[name]) if name in _SCALARS else _convert_definition(
            schema, prefix, v3)
    return out


@functools.cache
def _direct_refs() -> dict[str, frozenset[str]]:
    refs: dict[str, frozenset[str]] = {}
    for name, schema in _definitions(True).items():
        found: set[str] = set()
        _collect_refs(schema, found)
        refs[name] = frozenset(found)
    return refs


def _collect_refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.add(_ref_name(v))
            elif isinstance(v, (dict, list)):
                _collect_refs(v, found)
    elif isinstance(node, list):
        for x in node:
            _collect_refs(x, found)


def _closure(roots: set[str]) -> set[str]:
    refs = _direct_refs()
    seen: set[str] = set()
    todo = [r for r in roots if r in refs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(r for r in refs[name] if r not in seen)
    return seen


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in schemas.definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk.get("group", ""), gvk["version"], gvk["kind"]), name)
    return index


def _gvk(group: str, version: str, kind: str) -> dict:
    return {"group": group, "kind": kind, "version": version}


def _custom_name(group: str, version: str, kind: str) -> str:
    # Upstream names CRD schemas by the reversed group: com.example.stable.v1.CronTab
    return ".".join([*reversed(group.split(".")), version, kind]) if group else f"{version}.{kind}"


def _custom_schemas(r: Resource, v3: bool) -> dict[str, dict]:
    """The kind and list schemas of a resource the official definitions lack (CRDs)."""
    prefix = _V3_REF if v3 else _V2_REF
    name = _custom_name(r.group, r.version, r.kind)

    def ref(target: str, desc: str, default: bool) -> dict:
        if not v3:
            return {"$ref": prefix + target, "description": desc}
        out = {"allOf": [{"$ref": prefix + target}], "description": desc}
        return out | ({"default": {}} if default else {})

    base = dict(r.schema) if r.schema else {"x-kubernetes-preserve-unknown-fields": True}
    props = dict(base.get("properties") or {})
    props["apiVersion"] = {"description": _API_VERSION_DESC, "type": "string"}
    props["kind"] = {"description": _KIND_DESC, "type": "string"}
    props["metadata"] = ref(_OBJECT_META, _METADATA_DESC, False)
    kind_schema = {**base, "type": "object", "properties": props,
                   "x-kubernetes-group-version-kind": [_gvk(r.group, r.version, r.kind)]}
    list_schema = {
        "description": f"{r.kind}List is a list of {r.kind}",
        "properties": {
            "apiVersion": props["apiVersion"],
            "items": {"description": f"List of {r.plural.lower()}.",
                      "items": ref(name, "", True) if v3 else {"$ref": prefix + name},
                      "type": "array"},
            "kind": props["kind"],
            "metadata": ref(_LIST_META, "ListMeta", True),
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [_gvk(r.group, r.version, r.list_kind)],
    }
    if v3:
        del list_schema["properties"]["items"]["items"]["description"]
    return {name: kind_schema, name + "List": list_schema}


# --- operations -----------------------------------------------------------------------------------

_JSON_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_WATCH_TYPES = _JSON_TYPES + ("application/json;stream=watch",
                              "application/vnd.kubernetes.protobuf;stream=watch")
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
               "application/merge-patch+json", "application/strategic-merge-patch+json")
# Custom resources have no patch strategies, so upstream does not offer strategic merge for them.
CUSTOM_PATCH_TYPES = PATCH_TYPES[:3]


def _param(name: str, type_: str, desc: str, where: str = "query") -> dict:
    p = {"description": desc, "in": where, "name": name,
         "schema": {"type": type_, "uniqueItems": True}}
    if where == "path":
        p["required"] = True
    return p


_P = {
    "pretty": _param("pretty", "string", "If 'true', then the output is pretty printed."),
    "dryRun": _param("dryRun", "string", "When present, indicates that modifications should not "
                     "be persisted. Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": _param("fieldManager", "string", "fieldManager is a name associated with the "
                           "actor or entity that is making these changes."),
    "fieldValidation": _param("fieldValidation", "string", "fieldValidation instructs the server "
                              "on how to handle objects in the request (POST/PUT/PATCH) containing "
                              "unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
    "force": _param("force", "boolean", "Force is going to \"force\" Apply requests."),
    "allowWatchBookmarks": _param("allowWatchBookmarks", "boolean",
                                  "allowWatchBookmarks requests watch events with type BOOKMARK."),
    "continue": _param("continue", "string", "The continue option should be set when retrieving "
                       "more results from the server."),
    "fieldSelector": _param("fieldSelector", "string", "A selector to restrict the list of "
                            "returned objects by their fields. Defaults to everything."),
    "labelSelector": _param("labelSelector", "string", "A selector to restrict the list of "
                            "returned objects by their labels. Defaults to everything."),
    "limit": _param("limit", "integer", "limit is a maximum number of responses to return for a "
                    "list call."),
    "resourceVersion": _param("resourceVersion", "string", "resourceVersion sets a constraint on "
                              "what resource versions a request may be served from."),
    "resourceVersionMatch": _param("resourceVersionMatch", "string", "resourceVersionMatch "
                                   "determines how resourceVersion is applied to list calls."),
    "sendInitialEvents": _param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be "
                                "set together with `watch=true`."),
    "timeoutSeconds": _param("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    "watch": _param("watch", "boolean", "Watch for changes to the described resources and return "
                    "them as a stream of add, update, and remove notifications."),
    "gracePeriodSeconds": _param("gracePeriodSeconds", "integer", "The duration in seconds "
                                 "before the object should be deleted."),
    "orphanDependents": _param("orphanDependents", "boolean", "Deprecated: please use the "
                               "PropagationPolicy."),
    "propagationPolicy": _param("propagationPolicy", "string", "Whether and how garbage "
                                "collection will be performed: Orphan, Background or Foreground."),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
                "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_DELETECOLLECTION_PARAMS = tuple(sorted(set(_LIST_PARAMS + _DELETE_PARAMS) - {"watch",
                                        "allowWatchBookmarks"}))

# Query parameters of the streaming subresources.
_SUB_PARAMS = {
    "log": (("container", "string"), ("follow", "boolean"), ("insecureSkipTLSVerifyBackend",
            "boolean"), ("limitBytes", "integer"), ("previous", "boolean"),
            ("sinceSeconds", "integer"), ("stream", "string"), ("tailLines", "integer"),
            ("timestamps", "boolean")),
    "exec": (("command", "string"), ("container", "string"), ("stderr", "boolean"),
             ("stdin", "boolean"), ("stdout", "boolean"), ("tty", "boolean")),
    "attach": (("container", "string"), ("stderr", "boolean"), ("stdin", "boolean"),
               ("stdout", "boolean"), ("tty", "boolean")),
    "portforward": (("ports", "integer"),),
    "proxy": (("path", "string"),),
}


def _content(ref: str | None, types=_JSON_TYPES) -> dict:
    schema = {"$ref": _V3_REF + ref} if ref else {"type": "string"}
    return {t: {"schema": schema} for t in types}


def _responses(codes: dict[str, str | None], types=_JSON_TYPES) -> dict:
    words = {"200": "OK", "201": "Created", "202": "Accepted"}
    out = {code: {"content": _content(ref, types), "description": words[code]}
           for code, ref in codes.items()}
    out["401"] = {"description": "Unauthorized"}
    return out


def _operation(action: str, op_id: str, desc: str, tag: str, gvk: dict, params=(),
               body: str | None = None, body_types=("*/*",), responses=None) -> dict:
    op = {"description": desc, "operationId": op_id,
          "responses": responses or {}, "tags": [tag], "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": gvk}
    if params:
        op["parameters"] = [_P[p] if isinstance(p, str) else p for p in params]
    if body:
        op["requestBody"] = {"content": _content(body, body_types), "required": True}
    return op


def _camel(s: str) -> str:
    return s[:1].upper() + s[1:]


def group_name(group: str) -> str:
    """Upstream's name of a group inside operation ids: rbac.authorization.k8s.io → RbacAuthorization."""
    if not group:
        return "Core"
    return "".join(_camel(p) for p in re.split(r"[.\-]", group.removesuffix(".k8s.io")) if p)


class _PathBuilder:
    """Paths of one group-version, in upstream's shape (operation ids, actions, parameters)."""

    def __init__(self, group: str, version: str):
        self.group, self.version = group, version
        gn = group_name(group)
        self.gv = gn + _camel(version)
        self.tag = gn[:1].lower() + gn[1:] + "_" + version
        self.prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        self.paths: dict[str, dict] = {}

    def _item(self, path: str, params: list[dict]) -> dict:
        item = self.paths.setdefault(path, {})
        item["parameters"] = params
        return item

    def add(self, r: Resource, kind_ref: str, list_ref: str | None, custom: bool = False) -> None:
        self.patch_types = CUSTOM_PATCH_TYPES if custom else PATCH_TYPES
        gvk = _gvk(r.group, r.version, r.kind)
        ns = "Namespaced" if r.namespaced else ""
        k = r.kind
        scope = [_param("namespace", "string", "object name and auth scope, such as for teams and "
                        "projects", "path")] if r.namespaced else []
        name_p = _param("name", "string", f"name of the {k}", "path")
        base = self.prefix + ("/namespaces/{namespace}" if r.namespaced else "")
        coll, item = f"{base}/{r.plural}", f"{base}/{r.plural}/{{name}}"
        verbs = set(r.verbs)
        op = functools.partial(_operation, tag=self.tag, gvk=gvk)

        c = self._item(coll, scope + [_P["pretty"]]) if verbs & {"list", "create",
                                                                 "deletecollection"} else {}
        if "list" in verbs:
            c["get"] = op("list", f"list{self.gv}{ns}{k}", f"list or watch objects of kind {k}",
                          params=_LIST_PARAMS,
                          responses=_responses({"200": list_ref}, _WATCH_TYPES))
        if "create" in verbs:
            c["post"] = op("post", f"create{self.gv}{ns}{k}", f"create a {k}",
                           params=_WRITE_PARAMS, body=kind_ref,
                           responses=_responses({"200": kind_ref, "201": kind_ref,
                                                 "202": kind_ref}))
        if "deletecollection" in verbs:
            c["delete"] = op("deletecollection", f"delete{self.gv}Collection{ns}{k}",
                             f"delete collection of {k}", params=_DELETECOLLECTION_PARAMS,
                             body=_META + "DeleteOptions",
                             responses=_responses({"200": _META + "Status"}))
        if verbs & {"get", "update", "patch", "delete"}:
            i = self._item(item, [name_p] + scope + [_P["pretty"]])
            self._item_ops(i, op, verbs, f"{self.gv}{ns}{k}", k, kind_ref, gvk)
        if "watch" in verbs:
            self._watch(r, op, scope, name_p, list_ref)
        for sub in r.subresources:
            self._subresource(r, sub, item, [name_p] + scope, kind_ref)

    def _item_ops(self, i: dict, op, verbs, ident: str, what: str, ref: str, gvk: dict,
                  sub: str = "") -> None:
        suffix = f" {sub} of" if sub else ""
        if "get" in verbs:
            i["get"] = op("get", f"read{ident}", f"read{suffix} the specified {what}",
                          responses=_responses({"200": ref}), gvk=gvk)
        if "update" in verbs:
            i["put"] = op("put", f"replace{ident}", f"replace{suffix} the specified {what}",
                          params=_WRITE_PARAMS, body=ref, gvk=gvk,
                          responses=_responses({"200": ref, "201": ref}))
        if "patch" in verbs:
            i["patch"] = op("patch", f"patch{ident}", f"partially update{suffix} the specified "
                            f"{what}", params=_WRITE_PARAMS + ("force",),
                            body=_META + "Patch", body_types=self.patch_types, gvk=gvk,
                            responses=_responses({"200": ref, "201": ref}))
        if "delete" in verbs:
            i["delete"] = op("delete", f"delete{ident}", f"delete a {what}",
                             params=_DELETE_PARAMS, body=_META + "DeleteOptions", gvk=gvk,
                             responses=_responses({"200": ref, "202": ref}))

    def _watch(self, r: Resource, op, scope, name_p, list_ref) -> None:
        ns = "Namespaced" if r.namespaced else ""
        k, w = r.kind, _META + "WatchEvent"
        list_params = [_P[p] for p in _LIST_PARAMS]
        base = self.prefix + "/watch" + ("/namespaces/{namespace}" if r.namespaced else "")
        self._item(f"{base}/{r.plural}", list_params[:-1] + scope + [_P["pretty"]] +
                   list_params[-1:])["get"] = op(
            "watchlist", f"watch{self.gv}{ns}{k}List", f"watch individual changes to a list of "
            f"{k}. deprecated: use the 'watch' parameter with a list operation instead.",
            responses=_responses({"200": w}, _WATCH_TYPES))
        self._item(f"{base}/{r.plural}/{{name}}", [name_p] + scope + list_params)["get"] = op(
            "watch", f"watch{self.gv}{ns}{k}", f"watch changes to an object of kind {k}. "
            "deprecated: use the 'watch' parameter with a list operation instead, filtered to a "
            "single item with the 'fieldSelector' parameter.",
            responses=_responses({"200": w}, _WATCH_TYPES))
        if r.namespaced:
            self._item(f"{self.prefix}/{r.plural}", list_params)["get"] = op(
                "list", f"list{self.gv}{k}ForAllNamespaces", f"list or watch objects of kind {k}",
                responses=_responses({"200": list_ref}, _WATCH_TYPES))
            self._item(f"{self.prefix}/watch/{r.plural}", list_params)["get"] = op(
                "watchlist", f"watch{self.gv}{k}ListForAllNamespaces", f"watch individual "
                f"changes to a list of {k}. deprecated: use the 'watch' parameter with a list "
                "operation instead.", responses=_responses({"200": w}, _WATCH_TYPES))

    def _subresource(self, r: Resource, sub: str, item: str, params: list[dict],
                     kind_ref: str) -> None:
        ns = "Namespaced" if r.namespaced else ""
        ident = f"{self.gv}{ns}{r.kind}{_camel(sub)}"
        gvk = _gvk(r.group, r.version, r.kind)
        op = functools.partial(_operation, tag=self.tag, gvk=gvk)
        path = f"{item}/{sub}"
        pretty = [_P["pretty"]]
        if sub in ("status", "scale", "ephemeralcontainers", "resize", "approval"):
            ref, sub_gvk = kind_ref, gvk
            if sub == "scale":
                ref, sub_gvk = "io.k8s.api.autoscaling.v1.Scale", _gvk("autoscaling", "v1",
                                                                       "Scale")
            self._item_ops(self._item(path, params + pretty), op, {"get", "update", "patch"},
                           ident, r.kind, ref, sub_gvk, sub)
        elif sub == "finalize":
            self._item_ops(self._item(path, params + pretty), op, {"update"}, ident, r.kind,
                           kind_ref, gvk, sub)
        elif sub in ("binding", "eviction", "token"):
            ref, sub_gvk = {
                "binding": ("io.k8s.api.core.v1.Binding", _gvk("", "v1", "Binding")),
                "eviction": ("io.k8s.api.policy.v1.Eviction", _gvk("policy", "v1", "Eviction")),
                "token": ("io.k8s.api.authentication.v1.TokenRequest",
                          _gvk("authentication.k8s.io", "v1", "TokenRequest")),
            }[sub]
            self._item(path, params + pretty)["post"] = op(
                "post", f"create{ident}", f"create {sub} of a {r.kind}", params=_WRITE_PARAMS,
                body=ref, gvk=sub_gvk,
                responses=_responses({"200": ref, "201": ref, "202": ref}))
        elif sub == "log":
            self._item(path, params + pretty)["get"] = op(
                "get", f"read{ident}", f"read log of the specified {r.kind}",
                params=[_param(n, t, n) for n, t in _SUB_PARAMS["log"]],
                responses=_responses({"200": None}, ("text/plain", "application/json",
                                                     "application/yaml",
                                                     "application/vnd.kubernetes.protobuf")))
        elif sub in ("exec", "attach", "portforward", "proxy"):
            # Connect operations name the options kind (PodExecOptions...), so clients never
            # mistake them for the object's own patch operation.
            opts_kind = _CONNECT_NAMES[sub].replace("Portforward", "PortForward")
            opts = _gvk(r.group, r.version, f"{r.kind}{opts_kind}Options")
            methods = ("get", "post") if sub != "proxy" else (
                "get", "post", "put", "patch", "delete", "head", "options")
            targets = [(path, "", params)]
            if sub == "proxy":
                targets.append((path + "/{path}", "WithPath",
                                params + [_param("path", "string", "path to the resource",
                                                 "path")]))
            for p, suffix, path_params in targets:
                i = self._item(p, path_params)
                qp = [_param(n, t, n) for n, t in _SUB_PARAMS[sub] if not (suffix and n == "path")]
                for m in methods:
                    i[m] = op("connect", f"connect{self.gv}{_camel(m)}{ns}{r.kind}"
                              f"{_CONNECT_NAMES[sub]}{suffix}",
                              f"connect {m.upper()} requests to {sub} of {r.kind}",
                              params=qp, gvk=opts, responses=_responses({"200": None}, ("*/*",)))

    def add_discovery(self) -> None:
        self.paths[self.prefix + "/"] = {"get": {
            "description": "get available resources", "operationId": f"get{self.gv}APIResources",
            "responses": _responses({"200": _META + "APIResourceList"}), "tags": [self.tag]}}


_CONNECT_NAMES = {"exec": "Exec", "attach": "Attach", "portforward": "Portforward",
                  "proxy": "Proxy"}


# --- documents ------------------------------------------------------------------------------------


def _dumps(doc: dict) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _hash(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()


def _info() -> dict:
    return {"title": "Kubernetes", "version": KUBERNETES_VERSION}


def _discovery_path(op_id: str, tag: str, ref: str, desc: str) -> dict:
    return {"get": {"description": desc, "operationId": op_id,
                    "responses": _responses({"200": ref}), "tags": [tag]}}


class OpenAPI:
    """Builds and caches the OpenAPI documents of what `registry` serves."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._generation = -1
        self._v3: dict[str, bytes | None] = {}
        self._root: dict | None = None
        self._v2: bytes | None = None
        self._v2_pb: bytes | None = None

    def _fresh(self) -> None:
        if self._generation != self.registry.generation:
            self._generation = self.registry.generation
            self._v3, self._root, self._v2, self._v2_pb = {}, None, None, None

    def _group_versions(self) -> list[tuple[str, str]]:
        return [(g, v) for g, vs in self.registry.groups() for v in vs]

    # -- v3

    def v3_paths(self) -> list[str]:
        """Every document path the v3 root lists (api/v1, apis/apps, apis/apps/v1, ...)."""
        out = ["api", "apis", "version"]
        for g, vs in self.registry.groups():
            if g:
                out.append(f"apis/{g}")
            out.extend(f"apis/{g}/{v}" if g else f"api/{v}" for v in vs)
        return out

    def v3_root(self) -> dict:
        self._fresh()
        if self._root is None:
            paths = {}
            for path in self.v3_paths():
                data = self.v3_group_version(path)
                if data is not None:
                    url = f"/openapi/v3/{path}?hash={_hash(data)}"
                    paths[path] = {"serverRelativeURL": url}
            self._root = {"paths": paths}
        return self._root

    def v3_group_version(self, path: str) -> bytes | None:
        """The document at /openapi/v3/<path>, or None when nothing is served there."""
        self._fresh()
        path = path.strip("/")
        if path not in self._v3:
            doc = self._build_v3(path)
            self._v3[path] = None if doc is None else _dumps(doc)
        return self._v3[path]

    def _build_v3(self, path: str) -> dict | None:
        parts = path.split("/")
        if parts == ["api"]:
            return self._doc(_discovery_doc("/api/", "getCoreAPIVersions", "core",
                                            _META + "APIVersions"))
        if parts == ["apis"]:
            return self._doc(_discovery_doc("/apis/", "getAPIVersions", "apis",
                                            _META + "APIGroupList"))
        if parts == ["version"]:
            return self._doc({"/version/": _discovery_path(
                "getCodeVersion", "version", "io.k8s.apimachinery.pkg.version.Info",
                "get the version information for this server")})
        if len(parts) == 2 and parts[0] == "apis":
            if not any(g == parts[1] for g, _ in self.registry.groups()):
                return None
            gn = group_name(parts[1])
            return self._doc(_discovery_doc(f"/apis/{parts[1]}/", f"get{gn}APIGroup",
                                            gn[:1].lower() + gn[1:], _META + "APIGroup"))
        if len(parts) == 2 and parts[0] == "api":
            group, version = "", parts[1]
        elif len(parts) == 3 and parts[0] == "apis":
            group, version = parts[1], parts[2]
        else:
            return None
        resources = self.registry.in_group_version(group, version)
        if not resources:
            return None
        paths, custom = self._gv_paths(group, version, resources, v3=True)
        return self._doc(paths, custom)

    def _gv_paths(self, group: str, version: str, resources: list[Resource],
                  v3: bool) -> tuple[dict, dict]:
        """The paths of one group-version and the schemas the official definitions lack."""
        b = _PathBuilder(group, version)
        b.add_discovery()
        custom: dict[str, dict] = {}
        index = _gvk_index()
        for r in sorted(resources, key=lambda r: r.plural):
            kind_ref = None if r.schema else index.get((r.group, r.version, r.kind))
            list_ref = index.get((r.group, r.version, r.list_kind)) if kind_ref else None
            is_custom = kind_ref is None or (list_ref is None and "list" in r.verbs)
            if is_custom:
                extra = _custom_schemas(r, v3)
                custom.update(extra)
                kind_ref, list_ref = list(extra)
            b.add(r, kind_ref, list_ref, is_custom)
        return b.paths, custom

    def _doc(self, paths: dict, custom: dict | None = None) -> dict:
        custom = custom or {}
        refs: set[str] = set()
        _collect_refs(paths, refs)
        _collect_refs(custom, refs)
        defs = _definitions(True)
        schemas_ = {n: defs[n] for n in _closure(refs)}
        schemas_.update(custom)
        return {"components": {"schemas": schemas_}, "info": _info(), "openapi": "3.0.0",
                "paths": paths}

    # -- v2

    def v2(self) -> bytes:
        """The Swagger 2.0 document of /openapi/v2 (JSON)."""
        self._fresh()
        if self._v2 is None:
            self._v2 = _dumps(self._build_v2())
        return self._v2

    def v2_protobuf(self) -> bytes:
        """/openapi/v2 for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`."""
        self._fresh()
        if self._v2_pb is None:
            self._v2_pb = v2_protobuf(orjson.loads(self.v2()))
        return self._v2_pb

    def _build_v2(self) -> dict:
        paths: dict[str, dict] = {}
        custom: dict[str, dict] = {}
        for doc in (_discovery_doc("/api/", "getCoreAPIVersions", "core", _META + "APIVersions"),
                    _discovery_doc("/apis/", "getAPIVersions", "apis", _META + "APIGroupList"),
                    {"/version/": _discovery_path(
                        "getCodeVersion", "version", "io.k8s.apimachinery.pkg.version.Info",
                        "get the version information for this server")}):
            paths.update(doc)
        for g, v in self._group_versions():
            if g:
                gn = group_name(g)
                paths.update(_discovery_doc(f"/apis/{g}/", f"get{gn}APIGroup",
                                            gn[:1].lower() + gn[1:], _META + "APIGroup"))
            gv_paths, gv_custom = self._gv_paths(g, v, self.registry.in_group_version(g, v),
                                                 v3=False)
            paths.update(gv_paths)
            custom.update(gv_custom)
        refs: set[str] = set()
        _collect_refs(paths, refs)
        _collect_refs(custom, refs)
        defs = _definitions(False)
        definitions = {n: defs[n] for n in _closure(refs)}
        definitions.update(custom)
        return {
            "definitions": definitions,
            "info": _info(),
            "paths": {p: _v2_path_item(item) for p, item in paths.items()},
            "security": [{"BearerToken": []}],
            "securityDefinitions": {"BearerToken": {
                "description": "Bearer Token authentication", "in": "header",
                "name": "authorization", "type": "apiKey"}},
            "swagger": "2.0",
        }


def _discovery_doc(path: str, op_id: str, tag: str, ref: str) -> dict:
    return {path: _discovery_path(op_id, tag, ref, "get available API versions")}


def _v2_ref(schema: dict) -> dict:
    ref = schema.get("$ref")
    return {"$ref": _V2_REF + _ref_name(ref)} if ref else dict(schema)


def _v2_param(p: dict) -> dict:
    out = {k: v for k, v in p.items() if k != "schema"}
    out.update(p.get("schema", {}))
    return out


def _v2_path_item(item: dict) -> dict:
    out: dict = {}
    for key, value in item.items():
        if key == "parameters":
            out[key] = [_v2_param(p) for p in value]
            continue
        op = {k: v for k, v in value.items() if k not in ("requestBody", "responses")}
        params = [_v2_param(p) for p in value.get("parameters", ())]
        body = value.get("requestBody")
        if body:
            types = list(body["content"])
            params.insert(0, {"in": "body", "name": "body", "required": True,
                              "schema": _v2_ref(body["content"][types[0]]["schema"])})
            op["consumes"] = types
        if params:
            op["parameters"] = params
        responses, produces = {}, []
        for code, resp in value["responses"].items():
            r = {"description": resp["description"]}
            for t, media in resp.get("content", {}).items():
                r["schema"] = _v2_ref(media["schema"])
                if t not in produces:
                    produces.append(t)
            responses[code] = r
        op["produces"] = produces
        op["responses"] = responses
        op["schemes"] = ["https"]
        out[key] = op
    return out


# --- /openapi/v2 as protobuf ----------------------------------------------------------------------
# kubectl ≤ 1.28 asks only for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`: the
# gnostic OpenAPIv2 messages (package openapi.v2). This writes the subset a Kubernetes document
# uses; field numbers are those of gnostic's OpenAPIv2.proto. Free-form values (vendor extensions,
# enum, default, example) travel as `Any{yaml}`, and JSON is YAML.

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _str(num: int, s: str) -> bytes:
    return _field(num, s.encode()) if s else b""


def _bool(num: int, b: bool) -> bytes:
    return _varint(num << 3) + b"\x01" if b else b""


def _any(num: int, value) -> bytes:
    return _field(num, _str(2, orjson.dumps(value).decode() + "\n"))


def _named(num: int, name: str, value: bytes) -> bytes:
    return _field(num, _str(1, name) + _field(2, value))


def _extensions(num: int, node: dict) -> bytes:
    return b"".join(_field(num, _str(1, k) + _any(2, v))
                    for k, v in sorted(node.items()) if k.startswith("x-"))


def _pb_schema(s: dict) -> bytes:
    out = [_str(1, s.get("$ref", "")), _str(2, s.get("format", "")),
           _str(3, s.get("title", "")), _str(4, s.get("description", ""))]
    if "default" in s:
        out.append(_any(5, s["default"]))
    for num, key in ((7, "maximum"), (9, "minimum")):
        if isinstance(s.get(key), (int, float)) and not isinstance(s[key], bool):
            out.append(_varint(num << 3 | 1) + struct.pack("<d", float(s[key])))
    for num, key in ((11, "maxLength"), (12, "minLength"), (14, "maxItems"), (15, "minItems"),
                     (17, "maxProperties"), (18, "minProperties")):
        if isinstance(s.get(key), int):
            out.append(_varint(num << 3) + _varint(s[key]))
    out.append(_str(13, s.get("pattern", "")))
    out.append(_bool(16, s.get("uniqueItems", False)))
    out.extend(_str(19, r) for r in s.get("required", ()))
    out.extend(_any(20, e) for e in s.get("enum", ()))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        out.append(_field(21, _field(1, _pb_schema(extra))))
    elif isinstance(extra, bool):
        out.append(_field(21, _varint(2 << 3) + (b"\x01" if extra else b"\x00")))
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out.append(_field(22, b"".join(_str(1, t) for t in types if t != "null")))
    items = s.get("items")
    if isinstance(items, dict):
        out.append(_field(23, _field(1, _pb_schema(items))))
    out.extend(_field(24, _pb_schema(x)) for x in s.get("allOf", ()))
    if s.get("properties"):
        out.append(_field(25, b"".join(_named(1, k, _pb_schema(v))
                                       for k, v in sorted(s["properties"].items()))))
    out.append(_bool(27, s.get("readOnly", False)))
    if "example" in s:
        out.append(_any(30, s["example"]))
    out.append(_extensions(31, s))
    return b"".join(out)


def _pb_parameter(p: dict) -> bytes:
    if p["in"] == "body":
        body = (_str(1, p.get("description", "")) + _str(2, p["name"]) + _str(3, "body") +
                _bool(4, p.get("required", False)) + _field(5, _pb_schema(p["schema"])))
        return _field(1, _field(1, body))
    # Query and path sub-schemas share the first fields; `type` and uniqueItems sit one apart.
    query = p["in"] != "path"
    sub = (_bool(1, p.get("required", False)) + _str(2, p["in"]) +
           _str(3, p.get("description", "")) + _str(4, p["name"]) +
           _str(6 if query else 5, p.get("type", "")) +
           _bool(20 if query else 19, p.get("uniqueItems", False)))
    return _field(1, _field(2, _field(3 if query else 4, sub)))


_PB_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _pb_operation(op: dict) -> bytes:
    out = [b"".join(_str(1, t) for t in op.get("tags", ())), _str(3, op.get("description", "")),
           _str(5, op.get("operationId", ""))]
    out.extend(_str(6, t) for t in op.get("produces", ()))
    out.extend(_str(7, t) for t in op.get("consumes", ()))
    out.extend(_field(8, _pb_parameter(p)) for p in op.get("parameters", ()))
    codes = b""
    for code, resp in sorted(op.get("responses", {}).items()):
        r = _str(1, resp.get("description", ""))
        if "schema" in resp:
            r += _field(2, _field(1, _pb_schema(resp["schema"])))
        codes += _named(1, code, _field(1, r))
    out.append(_field(9, codes))
    out.extend(_str(10, s) for s in op.get("schemes", ()))
    out.append(_extensions(13, op))
    return b"".join(out)


def _pb_path_item(item: dict) -> bytes:
    out = []
    for method, num in _PB_METHODS.items():
        if method in item:
            out.append(_field(num, _pb_operation(item[method])))
    out.extend(_field(9, _pb_parameter(p)) for p in item.get("parameters", ()))
    return b"".join(out)


def v2_protobuf(doc: dict) -> bytes:
    """A Swagger 2.0 document (as `OpenAPI.v2` builds it) in gnostic's protobuf encoding."""
    out = [_str(1, doc["swagger"]),
           _field(2, _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"])),
           _field(8, b"".join(_named(2, p, _pb_path_item(i))
                              for p, i in sorted(doc["paths"].items()))),
           _field(9, b"".join(_named(1, n, _pb_schema(s))
                              for n, s in sorted(doc["definitions"].items())))]
    for req in doc.get("security", ()):
        out.append(_field(12, b"".join(_named(1, k, b"".join(_str(1, x) for x in v))
                                       for k, v in req.items())))
    items = b""
    for name, sd in doc.get("securityDefinitions", {}).items():
        key = (_str(1, sd["type"]) + _str(2, sd["name"]) + _str(3, sd["in"]) +
               _str(4, sd.get("description", "")))
        items += _named(1, name, _field(2, key))
    out.append(_field(13, items))
    return b"".join(out)
