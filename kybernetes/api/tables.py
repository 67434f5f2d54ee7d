"""Server-side Table rendering (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).

Three table convertors, as in kube-apiserver:
- built-in kinds with a printer (printers*.py): their own columns, cells always "wide";
- custom resources (`printer_columns` given, possibly []): NAME plus the CRD's
  additionalPrinterColumns evaluated by JSONPath, or NAME/AGE when the CRD declares none;
- everything else (roles, limitranges, CRDs themselves...): the default NAME / CREATED AT.
"""

from __future__ import annotations

import functools
import math
import os
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

import orjson

from kybernetes.api.duration import human_duration, parse_time
from kybernetes.api.printers import AGE, NAME, Obj, Printer, all_printers
from kybernetes.api.printers_workloads import pod_row_conditions

_SCHEMA_VERSION = "v1.33.0-local"


@functools.lru_cache(maxsize=1)
def _openapi_definitions() -> dict[str, Any]:
    """Official API field descriptions (the text upstream's SwaggerDoc() returns)."""
    try:
        import kubernetes_validate

        path = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                            _SCHEMA_VERSION, "_definitions.json")
        with open(path, "rb") as f:
            return orjson.loads(f.read()).get("$defs", {})
    except (ImportError, OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=None)
def describe(ref: str) -> str:
    """Resolve "@group.version.Kind.field" to its OpenAPI description; plain text passes through."""
    if not ref.startswith("@"):
        return ref
    type_path, _, field = ref[1:].rpartition(".")
    prefix = "io.k8s.apimachinery.pkg.apis." if type_path.startswith("meta.") else "io.k8s.api."
    definition = _openapi_definitions().get(prefix + type_path) or {}
    return ((definition.get("properties") or {}).get(field) or {}).get("description", "")


def _column(spec: tuple) -> dict[str, Any]:
    name, type_, desc, priority = spec[:4]
    fmt = spec[4] if len(spec) > 4 else ("name" if spec is NAME else "")
    return {"name": name, "type": type_, "format": fmt, "description": describe(desc), "priority": priority}


@functools.lru_cache(maxsize=1)
def _printers() -> dict[tuple[str, str], Printer]:
    return all_printers()


def has_printer(group: str, resource: str) -> bool:
    return (group, resource) in _printers()


# --- custom resources: additionalPrinterColumns ----------------------------------------------

_CR_DEFAULT_COLUMNS = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                        "description": "@meta.v1.ObjectMeta.creationTimestamp"}]


def _cr_columns(printer_columns: list[Obj]) -> list[Obj]:
    # the CRD handler serves an Age column when a version declares no columns
    return printer_columns or _CR_DEFAULT_COLUMNS


_STEP = re.compile(r"""
    \.(?P<field>(?:[^.\[\\]|\\.)+)                     # .field, with \. escapes
  | \[(?P<index>-?\d+)\]                               # [0]
  | \[\*\]                                             # [*]
  | \[['"](?P<key>[^'"]*)['"]\]                        # ['key']
  | \[\?\(@\.(?P<fkey>[\w.-]+)\s*(?P<op>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\s*\)\]  # [?(@.a=="b")]
""", re.VERBOSE)


@functools.lru_cache(maxsize=256)
def _compile_path(path: str) -> tuple[tuple[str, Any], ...] | None:
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            return None
        if m.group("field") is not None:
            steps.append(("key", re.sub(r"\\(.)", r"\1", m.group("field"))))
        elif m.group("index") is not None:
            steps.append(("index", int(m.group("index"))))
        elif m.group("key") is not None:
            steps.append(("key", m.group("key")))
        elif m.group("fkey") is not None:
            raw = m.group("fval")
            value: Any = raw[1:-1] if raw[0] in "'\"" else _literal(raw)
            steps.append(("filter", (m.group("fkey").split("."), m.group("op"), value)))
        else:
            steps.append(("all", None))
        pos = m.end()
    return tuple(steps)


def _literal(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _lookup(value: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


_MISSING = object()


def find_first(obj: Any, path: str) -> Any:
    """First JSONPath match in obj (missing keys allowed), or _MISSING."""
    steps = _compile_path(path)
    if steps is None:
        return _MISSING
    current = [obj]
    for kind, arg in steps:
        found: list[Any] = []
        for value in current:
            if kind == "key" and isinstance(value, dict) and arg in value:
                found.append(value[arg])
            elif kind == "index" and isinstance(value, list) and -len(value) <= arg < len(value):
                found.append(value[arg])
            elif kind == "all" and isinstance(value, (list, dict)):
                found.extend(value if isinstance(value, list) else value.values())
            elif kind == "filter" and isinstance(value, list):
                keys, op, wanted = arg
                for item in value:
                    got = _lookup(item, keys)
                    if got is not _MISSING and ((got == wanted) == (op == "==")):
                        found.append(item)
        current = found
    return current[0] if current else _MISSING


def _go_float(value: float) -> str:
    """fmt's %v for a float64: shortest round-trip digits, exponent form when the decimal
    exponent is below -4 or at least 6 ("1e+06", "123456", "1.5e-05")."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # digits[:point] is the integer part
    x = point - 1
    if x < -4 or x >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_json(value: Any) -> str:
    """encoding/json output: sorted keys, compact, HTML-safe escapes."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _string_cell(value: Any) -> str | None:
    if isinstance(value, (dict, list)):
        return _go_json(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """cellForJSONValue: coerce a JSONPath result to the column's declared type, else null."""
    if value is None:
        return None
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        if value in ("", "null"):
            return "<unknown>"
        t = parse_time(value)
        return "<invalid>" if t is None else human_duration(now - t)
    return None


def _cr_cells(obj: Obj, printer_columns: list[Obj], now: datetime) -> list[Any]:
    cells: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
    for col in _cr_columns(printer_columns):
        value = find_first(obj, col.get("jsonPath", ""))
        if value is _MISSING:
            cells.append(None)
        elif col.get("type") == "string":
            cells.append(_string_cell(value))
        else:
            cells.append(_typed_cell(col.get("type", ""), value, now))
    return cells


# --- public API ------------------------------------------------------------------------------


def column_definitions(group: str, resource: str, printer_columns: list[Obj] | None = None) -> list[dict[str, Any]]:
    """TableColumnDefinitions for a resource; printer_columns (CRD additionalPrinterColumns,
    possibly []) selects the custom-resource convertor."""
    if printer_columns is not None:
        cols = [_column(NAME)]
        for col in _cr_columns(printer_columns):
            desc = col.get("description") or f"Custom resource definition column (in JSONPath format): {col.get('jsonPath', '')}"
            cols.append({"name": col.get("name", ""), "type": col.get("type", ""), "format": col.get("format", ""),
                         "description": describe(desc), "priority": col.get("priority", 0)})
        return cols
    printer = _printers().get((group, resource))
    if printer is not None:
        return [_column(c) for c in printer[0]]
    return [_column(NAME), {"name": "Created At", "type": "date", "format": "",
                            "description": describe(AGE[2]), "priority": 0}]


def row_cells(group: str, resource: str, obj: Obj, now: datetime | None = None,
              printer_columns: list[Obj] | None = None) -> list[Any]:
    """One row's cells, wide columns included."""
    now = now or datetime.now(timezone.utc)
    if printer_columns is not None:
        return _cr_cells(obj, printer_columns, now)
    printer = _printers().get((group, resource))
    if printer is not None:
        return printer[1](obj, now)
    meta = obj.get("metadata") or {}
    created = parse_time(meta.get("creationTimestamp"))
    stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if created else "0001-01-01T00:00:00Z"
    return [meta.get("name", ""), stamp]


# (group, resource, apiVersion, namespace, name, uid, resourceVersion) -> (second, cells,
# conditions): lists and every watcher of a Table stream render a stored state once a second.
_ROWS: dict[tuple, tuple] = {}
_ROWS_MAX = 100_000


def _row_key(group: str, resource: str, obj: Obj) -> tuple | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    if not rv:
        return None
    return (group, resource, obj.get("apiVersion"), meta.get("namespace"), meta.get("name"),
            meta.get("uid"), rv)


def _remember(key: tuple, value: tuple) -> None:
    if len(_ROWS) >= _ROWS_MAX:
        # Oldest first (dicts keep insertion order): drop a tenth at a time.
        for k in list(_ROWS)[:_ROWS_MAX // 10]:
            del _ROWS[k]
    _ROWS[key] = value


def partial_object_metadata(obj: Obj, meta_version: str = "v1") -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{meta_version}",
            "metadata": obj.get("metadata") or {}}


def to_table(group: str, resource: str, objects: Iterable[Obj], *, list_resource_version: str = "",
             continue_token: str | None = None, include_object: str = "Metadata", now: datetime | None = None,
             with_column_definitions: bool = True, printer_columns: list[Obj] | None = None,
             remaining_item_count: int | None = None, meta_version: str = "v1",
             kind: str | None = None, api_version: str | None = None,
             cache: bool = False) -> Obj:
    """A meta.k8s.io Table for a list (or one object). `kind`/`api_version` fill in the type of
    embedded objects for includeObject=Object when the stored items lack them. `cache`: the
    objects are stored states (a list, a watch event), so a row may be reused for the same
    object and resourceVersion within the same second (ages are printed in whole seconds)."""
    if include_object not in ("None", "Metadata", "Object", ""):
        raise ValueError(f"unrecognized includeObject value: {include_object!r}")
    now = now or datetime.now(timezone.utc)
    items = list(objects)
    rows: list[Obj] | None = []
    second = int(now.timestamp())
    for obj in items:
        key = _row_key(group, resource, obj) if cache and printer_columns is None else None
        hit = _ROWS.get(key) if key is not None else None
        if hit is not None and hit[0] == second:
            cells, conditions = hit[1], hit[2]
        else:
            cells = row_cells(group, resource, obj, now, printer_columns)
            conditions = pod_row_conditions(obj) \
                if printer_columns is None and (group, resource) == ("", "pods") else None
            if key is not None:
                _remember(key, (second, cells, conditions))
        row: Obj = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        if include_object == "Object":
            full = dict(obj)
            if kind and "kind" not in full:
                full = {"kind": kind, "apiVersion": api_version or "", **full}
            row["object"] = full
        elif include_object == "None":
            row["object"] = None  # RawExtension with nothing marshals as null
        else:
            row["object"] = partial_object_metadata(obj, meta_version)
        rows.append(row)
    if not items and printer_columns is None and not has_printer(group, resource):
        rows = None  # the default convertor never allocates its row slice
    list_meta: Obj = {}
    if list_resource_version:
        list_meta["resourceVersion"] = list_resource_version
    if continue_token:
        list_meta["continue"] = continue_token
    if remaining_item_count is not None:
        list_meta["remainingItemCount"] = remaining_item_count
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{meta_version}",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(group, resource, printer_columns) if with_column_definitions else None,
        "rows": rows,
    }


__all__ = ["column_definitions", "row_cells", "to_table", "partial_object_metadata", "has_printer", "describe",
           "find_first"]
