"""The official OpenAPI definitions of the built-in kinds, and a structural walker over them.

The definitions come from the `kubernetes-validate` package (JSON Schema 2020-12, `$defs`, with the
x-kubernetes-* extensions). They are loaded once, on first use; each definition is compiled into a
small `Node` tree (refs resolved, recursion allowed) so the walk that runs on every write does no
schema lookups. The walk finds what the apiserver's decoder would: unknown fields, values of the
wrong JSON type (a 400 at decode time upstream) and fields the schema lists as required.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
from dataclasses import dataclass, field
from importlib import resources

SCHEMA_VERSION = "v1.33.0-local"
_REF_PREFIX = "#/$defs/"

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


@functools.cache
def definitions() -> dict:
    """All `$defs` of the shipped schema, by definition name (io.k8s.api.apps.v1.Deployment...)."""
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION
    with (root / "_definitions.json").open("rb") as f:
        return json.load(f)["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            group, version = gvk.get("group", ""), gvk["version"]
            api_version = f"{group}/{version}" if group else version
            # DeleteOptions/WatchEvent are listed under every group: the first definition wins.
            index.setdefault((api_version, gvk["kind"]), name)
    return index


def definition_for(api_version: str, kind: str) -> str | None:
    """The definition name describing (apiVersion, kind), or None for kinds the schema lacks."""
    return _gvk_index().get((api_version, kind))


def resolve(schema: dict) -> dict:
    """Follow a `$ref` (once; definitions never point at bare refs)."""
    ref = schema.get("$ref")
    if ref and ref.startswith(_REF_PREFIX):
        return definitions()[ref[len(_REF_PREFIX):]]
    return schema


# --- compiled nodes -------------------------------------------------------------------------------

ANY, OBJECT, MAP, ARRAY, STRING, INTEGER, NUMBER, BOOLEAN, INT_OR_STRING, QUANTITY = range(10)


@dataclass(eq=False, slots=True)
class Node:
    kind: int = ANY
    go_type: str = ""  # how Go names the target type, for decode error messages
    props: dict[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    item: Node | None = None  # array items / map values
    fmt: str = ""
    preserve_unknown: bool = False


def _short(def_name: str) -> str:
    # io.k8s.api.apps.v1.DeploymentSpec -> v1.DeploymentSpec (Go's package.Type)
    parts = def_name.split(".")
    return ".".join(parts[-2:])


_node_cache: dict[str, Node] = {}


def node_for(def_name: str) -> Node:
    """The compiled node of a definition (cached; recursive definitions share nodes)."""
    node = _node_cache.get(def_name)
    if node is None:
        node = Node()
        _node_cache[def_name] = node  # before filling, so self-references terminate
        _fill(node, definitions()[def_name], _short(def_name))
    return node


def _compile(schema: dict) -> Node:
    ref = schema.get("$ref")
    if ref and ref.startswith(_REF_PREFIX):
        return node_for(ref[len(_REF_PREFIX):])
    node = Node()
    _fill(node, schema, "")
    return node


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def _fill(node: Node, schema: dict, go_name: str) -> None:
    one_of = schema.get("oneOf")
    if one_of:
        kinds = set().union(*(_types(s) for s in one_of))
        node.kind = QUANTITY if "number" in kinds else INT_OR_STRING
        node.go_type = "resource.Quantity" if node.kind == QUANTITY else "intstr.IntOrString"
        return
    types = _types(schema) - {"null"}
    node.fmt = schema.get("format", "")
    node.preserve_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if "object" in types:
        if "properties" in schema:
            node.kind = OBJECT
            node.go_type = go_name or "struct"
            node.props = {k: _compile(v) for k, v in schema["properties"].items()}
            node.required = tuple(schema.get("required", ()))
        elif isinstance(schema.get("additionalProperties"), dict):
            node.kind = MAP
            node.item = _compile(schema["additionalProperties"])
            node.go_type = f"map[string]{node.item.go_type or 'interface {}'}"
        else:
            node.kind = ANY  # RawExtension, FieldsV1...: free-form
    elif "array" in types:
        node.kind = ARRAY
        node.item = _compile(schema.get("items", {}))
        node.go_type = "[]" + (node.item.go_type or "interface {}")
    elif "string" in types:
        node.kind = STRING
        node.go_type = "[]uint8" if node.fmt == "byte" else "string"
    elif "integer" in types:
        node.kind = INTEGER
        node.go_type = node.fmt or "int64"
    elif "number" in types:
        node.kind = NUMBER
        node.go_type = "float64"
    elif "boolean" in types:
        node.kind = BOOLEAN
        node.go_type = "bool"


# --- the walk ------------------------------------------------------------------------------------

@dataclass(slots=True)
class WalkResult:
    unknown_fields: list[str] = field(default_factory=list)
    # (field path, message) pairs: what the decoder would have refused with a 400
    decode_errors: list[tuple[str, str, object]] = field(default_factory=list)
    required: list[str] = field(default_factory=list)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def walk(value: object, node: Node, result: WalkResult, path: str = "",
         struct: str = "", go_path: str = "") -> None:
    """Check `value` against `node`, appending findings to `result`.

    `path` is the API field path (spec.containers[0].image); `struct`/`go_path` track the innermost
    Go struct and dotted path the way encoding/json reports them.
    """
    if value is None:
        return  # null decodes to the zero value everywhere
    kind = node.kind
    if kind == OBJECT:
        if not isinstance(value, dict):
            _type_error(result, path, value, struct, go_path, node.go_type)
            return
        props = node.props
        for key, sub in value.items():
            child = props.get(key)
            sub_path = f"{path}.{key}" if path else key
            if child is None:
                if not node.preserve_unknown:
                    result.unknown_fields.append(sub_path)
                continue
            if sub is not None and child.kind != ANY:
                walk(sub, child, result, sub_path, node.go_type,
                     f"{go_path}.{key}" if go_path else key)
        for key in node.required:
            if value.get(key) is None:
                result.required.append(f"{path}.{key}" if path else key)
    elif kind == MAP:
        if not isinstance(value, dict):
            _type_error(result, path, value, struct, go_path, node.go_type)
            return
        item = node.item
        if item is not None and item.kind != ANY:
            for key, sub in value.items():
                walk(sub, item, result, f"{path}[{key}]", struct, go_path)
    elif kind == ARRAY:
        if not isinstance(value, list):
            _type_error(result, path, value, struct, go_path, node.go_type)
            return
        item = node.item
        if item is not None and item.kind != ANY:
            for i, sub in enumerate(value):
                walk(sub, item, result, f"{path}[{i}]", struct, go_path)
    elif kind == STRING:
        if not isinstance(value, str):
            _type_error(result, path, value, struct, go_path, node.go_type)
        elif node.fmt == "byte":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as e:
                result.decode_errors.append((path, f"illegal base64 data: {e}", value))
        elif node.fmt == "date-time" and value:
            try:
                datetime.datetime.fromisoformat(value)
            except ValueError:
                result.decode_errors.append(
                    (path, f'parsing time "{value}" as RFC3339: cannot parse', value))
    elif kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            _type_error(result, path, value, struct, go_path, node.go_type)
            return
        low, high = INT32 if node.fmt == "int32" else INT64
        if not low <= value <= high:
            result.decode_errors.append((path, _unmarshal_msg(
                f"number {value}", struct, go_path, node.go_type), value))
    elif kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _type_error(result, path, value, struct, go_path, node.go_type)
    elif kind == BOOLEAN:
        if not isinstance(value, bool):
            _type_error(result, path, value, struct, go_path, node.go_type)
    elif kind in (INT_OR_STRING, QUANTITY):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
                kind == INT_OR_STRING and isinstance(value, float) and not value.is_integer()):
            _type_error(result, path, value, struct, go_path, node.go_type)


def _unmarshal_msg(what: str, struct: str, go_path: str, go_type: str) -> str:
    struct_name = struct.split(".")[-1] if struct else ""
    where = f"Go struct field {struct_name}.{go_path}" if struct_name and go_path else "Go value"
    return f"json: cannot unmarshal {what} into {where} of type {go_type}"


def _type_error(result: WalkResult, path: str, value: object, struct: str, go_path: str,
                go_type: str) -> None:
    result.decode_errors.append(
        (path, _unmarshal_msg(_json_type(value), struct, go_path, go_type), value))


# Kinds every string value is clean for (a STRING only without a format the walk parses).
_ANY_STRING = (STRING, QUANTITY, INT_OR_STRING)


def clean(value: object, node: Node) -> bool:
    """Whether walk() would find nothing at all. Most writes are clean, and this answers without
    building the field paths walk() needs for its findings (they showed in profiles)."""
    if value is None:
        return True
    kind = node.kind
    if kind == OBJECT:
        if not isinstance(value, dict):
            return False
        props = node.props
        for key, sub in value.items():
            child = props.get(key)
            if child is None:
                if not node.preserve_unknown:
                    return False
            elif sub is None or child.kind == ANY:
                continue
            elif isinstance(sub, str) and child.kind in _ANY_STRING and not child.fmt:
                continue  # most leaves: no call for them
            elif not clean(sub, child):
                return False
        for key in node.required:
            if value.get(key) is None:
                return False
        return True
    if kind == MAP or kind == ARRAY:
        if not isinstance(value, dict if kind == MAP else list):
            return False
        item = node.item
        if item is None or item.kind == ANY:
            return True
        subs = value.values() if kind == MAP else value
        if item.kind in _ANY_STRING and not item.fmt:  # labels, args, requests: no call each
            for sub in subs:
                if sub is not None and not isinstance(sub, str) and not clean(sub, item):
                    return False
            return True
        for sub in subs:
            if not clean(sub, item):
                return False
        return True
    if kind == STRING:
        if not isinstance(value, str):
            return False
        fmt = node.fmt
        if fmt != "byte" and (fmt != "date-time" or not value):
            return True  # no format the walk parses
    elif kind == QUANTITY or kind == INT_OR_STRING:
        # walk()'s own test, without a WalkResult per value (every container's requests)
        if isinstance(value, str):
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return kind == QUANTITY or not isinstance(value, float) or value.is_integer()
    elif kind == NUMBER:
        return not isinstance(value, bool) and isinstance(value, (int, float))
    if kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            return False
        low, high = INT32 if node.fmt == "int32" else INT64
        return low <= value <= high
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == ANY:
        return True
    result = WalkResult()  # string formats (byte, date-time): the walk's own checks
    walk(value, node, result)
    return not (result.decode_errors or result.unknown_fields or result.required)


def check(api_version: str, kind: str, obj: dict) -> WalkResult | None:
    """Walk a whole object of a built-in kind; None when the schema does not know the kind."""
    name = definition_for(api_version, kind)
    if name is None:
        return None
    result = WalkResult()
    node = node_for(name)
    if not clean(obj, node):
        walk(obj, node, result, "", _short(name), "")
    return result
