"""Custom resources against their CRD's structural schema, as apiextensions-apiserver does it:
prune unknown fields, apply `default`s, validate (kube-openapi's checks and wording), and the
essentials of validating a CustomResourceDefinition itself. Plain data, no I/O.

x-kubernetes-validations (CEL rules) are accepted and not evaluated.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import ipaddress
import json
import math
import re
import uuid

from . import names
from .validation_errors import (Cause, Raw, duplicate, forbidden, invalid, not_supported,
                                required, too_long, type_invalid)

OBJECT_META_FIELDS = frozenset((
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields"))
_TYPE_META = ("apiVersion", "kind", "metadata")


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- pruning ------------------------------------------------------------------------------------

def prune(schema: dict, obj: dict) -> list[str]:
    """Drop the fields `schema` does not specify, in place; return their paths."""
    dropped: list[str] = []
    _prune(schema, obj, "", dropped, root=True)
    return dropped


def _prune_meta(meta: object, path: str, dropped: list[str]) -> None:
    if isinstance(meta, dict):
        for k in [k for k in meta if k not in OBJECT_META_FIELDS]:
            del meta[k]
            dropped.append(_child(path, k))


def _prune(schema: dict | None, value: object, path: str, dropped: list[str],
           root: bool = False) -> None:
    if not isinstance(schema, dict) or schema.get("x-kubernetes-int-or-string"):
        return
    if isinstance(value, list):
        items = schema.get("items")
        for i, v in enumerate(value):
            _prune(items, v, f"{path}[{i}]", dropped)
        return
    if not isinstance(value, dict):
        return
    embedded = root or schema.get("x-kubernetes-embedded-resource")
    props = schema.get("properties") or {}
    addl = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or addl is True
    for k in list(value):
        if embedded and k in _TYPE_META:
            if k == "metadata":
                _prune_meta(value[k], _child(path, k), dropped)
            continue
        if k in props:
            _prune(props[k], value[k], _child(path, k), dropped)
        elif isinstance(addl, dict):
            _prune(addl, value[k], _child(path, k), dropped)
        elif not keep_unknown:
            del value[k]
            dropped.append(_child(path, k))


# --- defaulting ---------------------------------------------------------------------------------

def apply_defaults(schema: dict, value: object) -> None:
    """Fill absent fields (and nulls where null is not allowed) from `default`, in place."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, list):
        for v in value:
            apply_defaults(schema.get("items"), v)
        return
    if not isinstance(value, dict):
        return
    for k, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if "default" in sub and (k not in value or (value[k] is None and not sub.get("nullable"))):
            value[k] = copy.deepcopy(sub["default"])
        if k in value:
            apply_defaults(sub, value[k])
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        for v in value.values():
            apply_defaults(addl, v)


# --- validation ---------------------------------------------------------------------------------

def validate(schema: dict, obj: dict) -> list[Cause]:
    """Causes for everything `obj` (a whole custom resource) breaks in `schema`.
    apiVersion, kind and metadata are the API server's (checked like ObjectMeta elsewhere)."""
    body = {k: v for k, v in obj.items() if k not in _TYPE_META}
    root = dict(schema)
    props = root.get("properties")
    if isinstance(props, dict):
        root["properties"] = {k: v for k, v in props.items() if k not in _TYPE_META}
    root["required"] = [k for k in root.get("required") or () if k not in _TYPE_META]
    errs: list[Cause] = []
    _validate(root, body, "", errs)
    return errs


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(want: str, value: object) -> bool:
    have = _json_type(value)
    return have == want or (want == "number" and have == "integer")


def _in_body(path: str) -> str:
    return f"{path or 'body'} in body"


def _num(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _validate(schema: object, value: object, path: str, errs: list[Cause]) -> None:
    if not isinstance(schema, dict):
        return
    if value is None:
        if not schema.get("nullable") and (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
            want = schema.get("type") or "integer,string"
            errs.append(type_invalid(path, "null", f'{_in_body(path)} must be of type {want}: "null"'))
        return
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if _json_type(value) not in ("integer", "string"):
            errs.append(type_invalid(path, _json_type(value),
                                     f'{_in_body(path)} must be of type integer,string: "{_json_type(value)}"'))
            return
    elif want and not _type_ok(want, value):
        have = _json_type(value)
        errs.append(type_invalid(path, have, f'{_in_body(path)} must be of type {want}: "{have}"'))
        return
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        shown = [e if isinstance(e, str) else json.dumps(e) for e in schema["enum"]]
        errs.append(not_supported(path, value, shown))
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        _validate_number(schema, value, path, errs)
    elif isinstance(value, str):
        _validate_string(schema, value, path, errs)
    elif isinstance(value, list):
        _validate_array(schema, value, path, errs)
    elif isinstance(value, dict):
        _validate_object(schema, value, path, errs)
    for sub in schema.get("allOf") or ():
        _validate(sub, value, path, errs)


def _validate_number(schema: dict, value: float, path: str, errs: list[Cause]) -> None:
    where = _in_body(path)
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if isinstance(lo, (int, float)):
        if schema.get("exclusiveMinimum") and value <= lo:
            errs.append(invalid(path, value, f"{where} should be greater than {_num(lo)}"))
        elif value < lo:
            errs.append(invalid(path, value, f"{where} should be greater than or equal to {_num(lo)}"))
    if isinstance(hi, (int, float)):
        if schema.get("exclusiveMaximum") and value >= hi:
            errs.append(invalid(path, value, f"{where} should be less than {_num(hi)}"))
        elif value > hi:
            errs.append(invalid(path, value, f"{where} should be less than or equal to {_num(hi)}"))
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0 and not math.isclose(
            value / step, round(value / step), abs_tol=1e-9):
        errs.append(invalid(path, value, f"{where} should be a multiple of {_num(step)}"))
    fmt = schema.get("format")
    bits = {"int32": 31, "int64": 63}.get(fmt or "")
    if bits and not (-(1 << bits) <= value < (1 << bits)):
        errs.append(invalid(path, value, f'{where} must be of type {fmt}: "{_num(value)}"'))


def _validate_string(schema: dict, value: str, path: str, errs: list[Cause]) -> None:
    where = _in_body(path)
    max_len, min_len = schema.get("maxLength"), schema.get("minLength")
    if isinstance(max_len, int) and len(value) > max_len:
        errs.append(too_long(path, max_len))
    if isinstance(min_len, int) and len(value) < min_len:
        errs.append(invalid(path, value, f"{where} should be at least {min_len} chars long"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if re.search(pattern, value) is None:
                errs.append(invalid(path, value, f"{where} should match '{pattern}'"))
        except re.error:
            pass  # ECMA syntax Python lacks: the CRD check reports bad patterns
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS and not _FORMATS[fmt](value):
        errs.append(invalid(path, value, f'{where} must be of type {fmt}: "{value}"'))


def _validate_array(schema: dict, value: list, path: str, errs: list[Cause]) -> None:
    where = _in_body(path)
    max_items, min_items = schema.get("maxItems"), schema.get("minItems")
    if isinstance(max_items, int) and len(value) > max_items:
        errs.append({"reason": "FieldValueTooMany", "field": path,
                     "message": f"Too many: {len(value)}: must have at most {max_items} items"})
    if isinstance(min_items, int) and len(value) < min_items:
        errs.append(invalid(path, Raw(_go_slice(value)), f"{where} should have at least {min_items} items"))
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") and list_type != "set" and _has_duplicates(value):
        errs.append(invalid(path, Raw(_go_slice(value)), f"{where} shouldn't contain duplicates"))
    if list_type == "set":
        seen: list = []
        for i, v in enumerate(value):
            if v in seen:
                errs.append(duplicate(f"{path}[{i}]", v))
            else:
                seen.append(v)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list = []
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                continue
            k = {key: v.get(key) for key in keys if key in v}
            if k in seen_keys:
                errs.append(duplicate(f"{path}[{i}]", Raw(_go_map(k))))
            else:
                seen_keys.append(k)
    items = schema.get("items")
    for i, v in enumerate(value):
        _validate(items, v, f"{path}[{i}]", errs)


def _validate_object(schema: dict, value: dict, path: str, errs: list[Cause]) -> None:
    where = _in_body(path)
    if schema.get("x-kubernetes-embedded-resource"):
        for k in ("apiVersion", "kind"):
            if not value.get(k):
                errs.append(required(_child(path, k), "must not be empty"))
    for k in schema.get("required") or ():
        if k not in value:
            errs.append(required(_child(path, k)))
    max_p, min_p = schema.get("maxProperties"), schema.get("minProperties")
    if isinstance(max_p, int) and len(value) > max_p:
        errs.append({"reason": "FieldValueTooMany", "field": path,
                     "message": f"Too many: {len(value)}: must have at most {max_p} items"})
    if isinstance(min_p, int) and len(value) < min_p:
        errs.append(invalid(path, Raw(_go_map(value)), f"{where} should have at least {min_p} properties"))
    props = schema.get("properties") or {}
    addl = schema.get("additionalProperties")
    for k, v in value.items():
        if k in props:
            _validate(props[k], v, _child(path, k), errs)
        elif isinstance(addl, dict):
            _validate(addl, v, _child(path, k), errs)


def _has_duplicates(value: list) -> bool:
    seen = set()
    for v in value:
        key = json.dumps(v, sort_keys=True)
        if key in seen:
            return True
        seen.add(key)
    return False


def _go_slice(value: list) -> str:
    return "[]interface {}{" + ", ".join(_go_any(v) for v in value) + "}"


def _go_map(value: dict) -> str:
    inner = ", ".join(f"{json.dumps(k)}:{_go_any(v)}" for k, v in sorted(value.items()))
    return "map[string]interface {}{" + inner + "}"


def _go_any(v: object) -> str:
    if isinstance(v, dict):
        return _go_map(v)
    if isinstance(v, list):
        return _go_slice(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"{_num(v)}"
    if v is None:
        return "interface {}(nil)"
    return json.dumps(v)


# --- formats (the ones apiextensions recognizes) ------------------------------------------------

def _date_time(s: str) -> bool:
    try:
        dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        return "T" in s.upper() or " " in s
    except ValueError:
        return False


def _date(s: str) -> bool:
    try:
        dt.date.fromisoformat(s)
        return len(s) == 10
    except ValueError:
        return False


def _ip(version: int):
    def check(s: str) -> bool:
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False
    return check


def _cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
        return "/" in s
    except ValueError:
        return False


def _byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return len(s) == 36
    except ValueError:
        return False


_DURATION = re.compile(r"[-+]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+|[-+]?0")

_FORMATS = {
    "date-time": _date_time,
    "datetime": _date_time,
    "date": _date,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "byte": _byte,
    "uuid": _uuid,
    "hostname": lambda s: not names.is_dns1123_subdomain(s),
    "email": lambda s: re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", s) is not None,
    "mac": lambda s: re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", s) is not None,
    "duration": lambda s: _DURATION.fullmatch(s) is not None,
}


# --- CustomResourceDefinition objects -----------------------------------------------------------

def crd_defaults(crd: dict) -> None:
    """SetDefaults for a CRD: singular and listKind from kind, conversion strategy None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names_ = spec.get("names")
    if isinstance(names_, dict) and isinstance(names_.get("kind"), str) and names_["kind"]:
        names_.setdefault("singular", names_["kind"].lower())
        names_.setdefault("listKind", names_["kind"] + "List")
    if not isinstance(spec.get("conversion"), dict):
        spec["conversion"] = {"strategy": "None"}


def validate_crd(crd: dict, old: dict | None = None) -> list[Cause]:
    """apiextensions' ValidateCustomResourceDefinition, the parts clients run into."""
    errs: list[Cause] = []
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    meta = crd.get("metadata") or {}
    group = spec.get("group") or ""
    names_ = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    plural = names_.get("plural") or ""
    if not group:
        errs.append(required("spec.group"))
    elif names.is_dns1123_subdomain(group) or "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    if meta.get("name") != f"{plural}.{group}":
        errs.append(invalid("metadata.name", meta.get("name", ""),
                            'must be spec.names.plural+"."+spec.group'))
    for field in ("plural", "singular", "listKind", "kind"):
        v = names_.get(field)
        if field in ("plural", "kind", "listKind") and not v:
            errs.append(required(f"spec.names.{field}"))
        elif v and field in ("plural", "singular") and names.is_dns1035_label(v):
            errs.append(invalid(f"spec.names.{field}", v, "; ".join(names.is_dns1035_label(v))))
        elif v and field in ("kind", "listKind") and names.is_dns1035_label(v.lower()):
            errs.append(invalid(f"spec.names.{field}", v, "; ".join(names.is_dns1035_label(v.lower()))))
    if names_.get("kind") and names_.get("listKind") and names_["kind"] == names_["listKind"]:
        errs.append(invalid("status.acceptedNames.listKind", names_["listKind"],
                            "kind and listKind may not be the same or parsing become ambiguous"))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        errs.append(not_supported("spec.scope", scope or "", ["Cluster", "Namespaced"])
                    if scope else required("spec.scope"))
    errs += _versions(spec.get("versions"))
    conv = spec.get("conversion") if isinstance(spec.get("conversion"), dict) else {}
    strategy = conv.get("strategy", "None")
    if strategy not in ("None", "Webhook"):
        errs.append(not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"]))
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("scope") and old_spec.get("scope") != scope:
            errs.append(invalid("spec.scope", scope, "field is immutable"))
    return errs


def _versions(versions: object) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(versions, list) or not versions:
        return [invalid("spec.versions", Raw("[]apiextensions.CustomResourceDefinitionVersion(nil)"),
                        "must have exactly one version marked as storage version")]
    storage = sum(1 for v in versions if isinstance(v, dict) and v.get("storage"))
    if storage != 1:
        errs.append(invalid("spec.versions", Raw("[]apiextensions.CustomResourceDefinitionVersion{...}"),
                            "must have exactly one version marked as storage version"))
    if not any(isinstance(v, dict) and v.get("served") for v in versions):
        errs.append(invalid("spec.versions", Raw("[]apiextensions.CustomResourceDefinitionVersion{...}"),
                            "must have at least one version marked as served"))
    seen: set[str] = set()
    for i, v in enumerate(versions):
        p = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            continue
        name = v.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        elif names.is_dns1035_label(name):
            errs.append(invalid(f"{p}.name", name, "; ".join(names.is_dns1035_label(name))))
        elif name in seen:
            errs.append(duplicate(f"{p}.name", name))
        seen.add(name)
        schema = (v.get("schema") or {}).get("openAPIV3Schema") if isinstance(v.get("schema"), dict) else None
        sp = f"{p}.schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            errs.append(required(sp, "schemas are required"))
            continue
        if schema.get("type") != "object":
            errs.append(required(f"{sp}.type", "must be object at the root") if not schema.get("type")
                        else not_supported(f"{sp}.type", schema["type"], ["object"]))
        errs += _structural(schema, sp, root=True)
    return errs


def _structural(schema: dict, path: str, root: bool = False) -> list[Cause]:
    """The structural-schema rules a CRD author hits most: types everywhere, items on
    arrays, properties xor additionalProperties, patterns that compile."""
    errs: list[Cause] = []
    t = schema.get("type")
    special = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not t and not special and not root:
        errs.append(required(f"{path}.type", "must not be empty for specified object fields"))
    if t and t not in ("object", "array", "string", "integer", "number", "boolean"):
        errs.append(not_supported(f"{path}.type", t,
                                  ["array", "boolean", "integer", "number", "object", "string"]))
    if t == "array" and not isinstance(schema.get("items"), dict):
        errs.append(required(f"{path}.items", "must be specified"))
    if "properties" in schema and "additionalProperties" in schema \
            and schema.get("additionalProperties") is not False:
        errs.append(forbidden(f"{path}.additionalProperties",
                              "additionalProperties and properties are mutual exclusive"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as e:
            errs.append(invalid(f"{path}.pattern", pattern, f"must be a valid regular expression, but isn't: {e}"))
    for k, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            errs += _structural(sub, f"{path}.properties[{k}]")
    if isinstance(schema.get("items"), dict):
        errs += _structural(schema["items"], f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        errs += _structural(schema["additionalProperties"], f"{path}.additionalProperties")
    return errs
