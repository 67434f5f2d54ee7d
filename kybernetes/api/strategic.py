"""Strategic merge patch, as apimachinery's `strategicpatch` applies it on the server.

Lists whose schema says `x-kubernetes-patch-strategy: merge` merge element by element (by
`x-kubernetes-patch-merge-key`, or as a set for primitives); other lists are replaced. Directives:
`$patch: replace|delete` (maps and list elements), `$retainKeys`, `$setElementOrder/<list>`,
`$deleteFromPrimitiveList/<list>`; a null value deletes a field. Patch metadata comes from the
official JSON schemas shipped by the `kubernetes-validate` package.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Iterable

import orjson

from kybernetes.api.patch import PatchError, clone, merge_patch

SCHEMA_VERSION = "v1.33.0-local"

DIRECTIVE = "$patch"
REPLACE, DELETE, MERGE = "replace", "delete", "merge"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

# upstream mergepatch error texts
BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
NO_LIST_OF_LISTS = "lists of lists are not supported"


# --- schema --------------------------------------------------------------------------------------


@functools.cache
def _definitions() -> dict[str, Any]:
    """The `$defs` of the official schema, read once on first use."""
    import kubernetes_validate

    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    path = os.path.join(base, SCHEMA_VERSION, "_definitions.json")
    if not os.path.exists(path):  # another package version: take the newest non-strict set
        versions = sorted(v for v in os.listdir(base) if v.endswith("-local"))
        path = os.path.join(base, versions[-1], "_definitions.json")
    with open(path, "rb") as f:
        return orjson.loads(f.read())["$defs"]


class PatchMeta:
    """Patch metadata of one schema node; an empty node means "no metadata" (plain merge)."""

    __slots__ = ("node",)

    def __init__(self, node: dict[str, Any] | None):
        self.node = _resolve(node or {})

    def field(self, key: str) -> tuple["PatchMeta", list[str], str]:
        """(schema of the value, patch strategies, merge key) for a field of this object."""
        props = self.node.get("properties")
        if props and key in props:
            prop = props[key]
            strategies = [s for s in prop.get("x-kubernetes-patch-strategy", "").split(",") if s]
            return _meta(prop), strategies, prop.get("x-kubernetes-patch-merge-key", "")
        extra = self.node.get("additionalProperties")
        if isinstance(extra, dict):
            return _meta(extra), [], ""
        return _EMPTY, [], ""

    def items(self) -> "PatchMeta":
        items = self.node.get("items")
        return _meta(items) if isinstance(items, dict) else _EMPTY


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 64:
        node = _definitions().get(node["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return node


_cache: dict[int, PatchMeta] = {}


def _meta(node: dict[str, Any]) -> PatchMeta:
    # Schema nodes live as long as the loaded definitions, so their id() is a stable key.
    found = _cache.get(id(node))
    if found is None:
        found = _cache[id(node)] = PatchMeta(node)
    return found


_EMPTY = PatchMeta(None)


def patch_meta_for(schema_ref: str) -> PatchMeta | None:
    """Metadata for a definition name like "io.k8s.api.apps.v1.Deployment", or None if unknown."""
    node = _definitions().get(schema_ref)
    return _meta(node) if node is not None else None


def _split_strategies(strategies: list[str]) -> str:
    """Upstream extractRetainKeysPatchStrategy: the strategy besides retainKeys."""
    if len(strategies) > 2 or (len(strategies) == 2 and "retainKeys" not in strategies):
        raise PatchError(f"unexpected patch strategy: {strategies}")
    rest = [s for s in strategies if s != "retainKeys"]
    return rest[0] if rest else ""


# --- Go-like value helpers -------------------------------------------------------------------


def _kind(value: Any) -> str:
    """The JSON type as Go's decoder sees it (all numbers are one type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "map"


def _same(a: Any, b: Any) -> bool:
    """Go interface equality for scalars (merge key values, primitive list items)."""
    return _kind(a) == _kind(b) and a == b


def _scalar_key(v: Any) -> tuple[str, Any]:
    return (_kind(v), v)


def _go(value: Any) -> str:
    """Roughly Go's %v, for error messages."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_merge_key(m: dict[str, Any], key: str) -> PatchError:
    return PatchError(f"map: {_go(m)} does not contain declared merge key: {key}")


def _bad_patch_type(t: Any, m: dict[str, Any]) -> PatchError:
    return PatchError(f"unknown patch type: {_go(t)} in map: {_go(m)}")


def _bad_arg(expected: str, actual: Any) -> PatchError:
    go_types = {"list": "[]interface {}", "map": "map[string]interface {}", "string": "string",
                "number": "float64", "bool": "bool", "null": "<nil>"}
    return PatchError(f"expected a {expected}, but received a {go_types[_kind(actual)]}")


# --- merging -----------------------------------------------------------------------------------


def strategic_merge(original: dict[str, Any], patch: dict[str, Any], schema_ref: str) -> dict[str, Any]:
    """Apply a strategic merge patch to `original` (neither is mutated) and return the result.

    Unknown schema refs (custom resources) get JSON merge patch semantics.
    """
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    meta = patch_meta_for(schema_ref)
    if meta is None:
        return merge_patch(original, patch)
    return strategic_merge_with(original, patch, meta)


def strategic_merge_with(original: Any, patch: dict[str, Any], meta: PatchMeta) -> dict[str, Any]:
    base = clone(original) if isinstance(original, dict) else {}
    return _merge_map(base, clone(patch), meta)


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], meta: PatchMeta) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == REPLACE:
            del patch[DIRECTIVE]
            return patch
        if directive == DELETE:
            return {}
        raise _bad_patch_type(directive, patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, meta)

    for key, value in list(patch.items()):
        is_delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _strip_prefix(key, DELETE_FROM_PRIMITIVE_LIST, BAD_PRIMITIVE_LIST)
            is_delete_list = True
        if value is None:
            original.pop(key, None)
            continue
        if key not in original or _kind(original[key]) != _kind(value):
            if not is_delete_list:
                _discard_nulls(value)
                original[key] = value
            continue
        kind = _kind(value)
        if kind == "map":
            sub, strategies, _ = meta.field(key)
            if _split_strategies(strategies) == REPLACE:
                original[key] = value
            else:
                original[key] = _merge_map(original[key], value, sub)
        elif kind == "list":
            sub, strategies, merge_key = meta.field(key)
            original[key] = _merge_list_field(
                original[key], value, sub.items(), _split_strategies(strategies), merge_key, is_delete_list)
        else:
            original[key] = value
    return original


def _strip_prefix(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise PatchError(error)
    return rest


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            _discard_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _discard_nulls(v)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """`$retainKeys`: drop original fields not listed; every patched field must be listed."""
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list):
        raise PatchError(BAD_RETAIN_KEYS)
    allowed = {k for k in keep if isinstance(k, str)}
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE_LIST) or k.startswith(SET_ELEMENT_ORDER):
            continue
        if k not in allowed:
            raise PatchError(BAD_RETAIN_KEYS)
    for k in [k for k in original if k not in allowed]:
        del original[k]


def _merge_list_field(original: list[Any], patch: list[Any], items: PatchMeta, strategy: str,
                      merge_key: str, is_delete_list: bool) -> list[Any]:
    if strategy == MERGE:
        return _merge_list(original, patch, items, merge_key, is_delete_list)
    return patch


def _element_kind(*lists: list[Any]) -> str:
    kind = None
    for lst in lists:
        for v in lst:
            k = _kind(v)
            if kind is None:
                if k == "list":
                    raise PatchError(NO_LIST_OF_LISTS)
                kind = k
            elif k != kind:
                raise PatchError(f"list element types are not identical: {_go(list(lists))}")
    if kind is None:
        raise PatchError("no elements in any of the given slices")
    return kind


def _merge_list(original: list[Any], patch: list[Any], items: PatchMeta, merge_key: str,
                is_delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            drop = {_scalar_key(v) for v in patch}
            return [v for v in original if _scalar_key(v) not in drop]
        merged = _dedupe(original + patch)
        patch_items, server_only = _partition_scalars(merged, patch)
        return _normalize_order(patch_items, server_only, patch, original, "", kind)
    if not merge_key:
        raise PatchError("cannot merge lists without merge key for type map")
    original, patch = _special_elements(original, patch, merge_key)
    merged = _merge_by_key(original, patch, merge_key, items)
    patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_order(patch_items, server_only, patch, original, merge_key, kind)


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for v in values:
        k = _scalar_key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _special_elements(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Elements carrying `$patch`: delete removes matching originals; replace drops the original."""
    plain: list[Any] = []
    replace = False
    for element in patch:
        if DIRECTIVE not in element:
            plain.append(element)
            continue
        directive = element[DIRECTIVE]
        if directive == DELETE:
            if merge_key not in element:
                raise _no_merge_key(element, merge_key)
            value = element[merge_key]
            original = [o for o in original if not (merge_key in o and _same(o[merge_key], value))]
        elif directive == REPLACE:
            replace = True
        elif directive == MERGE:
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, element)
    if replace:
        return plain, []
    return original, plain


def _find(lst: list[Any], merge_key: str, value: Any) -> int:
    for i, element in enumerate(lst):
        if not isinstance(element, dict):
            raise PatchError(f"value for key {i} is not a map.")
        if merge_key in element and _same(element[merge_key], value):
            return i
    return -1


def _merge_by_key(original: list[Any], patch: list[Any], merge_key: str, items: PatchMeta) -> list[Any]:
    merged = list(original)
    for element in patch:
        if merge_key not in element:
            raise _no_merge_key(element, merge_key)
        i = _find(merged, merge_key, element[merge_key])
        if i >= 0:
            merged[i] = _merge_map(merged[i], element, items)
        else:
            merged.append(element)
    return merged


def _partition_scalars(values: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    wanted = {_scalar_key(v) for v in by}
    return ([v for v in values if _scalar_key(v) in wanted],
            [v for v in values if _scalar_key(v) not in wanted])


def _partition_maps(values: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside, outside = [], []
    for v in values:
        if not isinstance(v, dict):
            raise _bad_arg("map[string]interface {}", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        (inside if _find(by, merge_key, v[merge_key]) >= 0 else outside).append(v)
    return inside, outside


def _index(order: list[Any], item: Any, merge_key: str, kind: str) -> int:
    if kind == "map":
        for i, o in enumerate(order):
            if isinstance(o, dict) and merge_key in o and _same(o[merge_key], item.get(merge_key)):
                return i
        return -1
    for i, o in enumerate(order):
        if _same(o, item):
            return i
    return -1


def _sort_by(items: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """Stable sort by position in `order`; `$patch: delete` elements go last (upstream)."""
    deleted: list[Any] = []
    if kind == "map":
        for v in items + order:
            if isinstance(v, dict) and merge_key not in v:
                raise _no_merge_key(v, merge_key)
        deleted = [v for v in items if v.get(DIRECTIVE) == DELETE]
        items = [v for v in items if v.get(DIRECTIVE) != DELETE]
    known = [(i, v) for i, v in enumerate(items)]
    known.sort(key=lambda p: (_index(order, p[1], merge_key, kind), p[0]))
    return [v for _, v in known] + deleted


def _normalize_order(patch_items: list[Any], server_only: list[Any], patch_order: list[Any],
                     server_order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """Patch items in patch order, server-only items in server order, then interleaved."""
    left = _sort_by(server_only, server_order, merge_key, kind)
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j]); j += 1
        elif j >= len(right):
            out.append(left[i]); i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i]); i += 1
            else:
                out.append(right[j]); j += 1
    return out


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], meta: PatchMeta) -> None:
    """`$setElementOrder/<list>`: merge that list now and order it as the directive says."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg("[]interface {}", order)
        field = _strip_prefix(key, SET_ELEMENT_ORDER, BAD_SET_ELEMENT_ORDER)
        found_original, found_patch = field in original, field in patch
        original_list = original.get(field) if found_original else []
        patch_list = patch.get(field) if found_patch else []
        if found_original and not isinstance(original_list, list):
            raise _bad_arg("[]interface {}", original_list)
        if found_patch and not isinstance(patch_list, list):
            raise _bad_arg("[]interface {}", patch_list)
        sub, strategies, merge_key = meta.field(field)
        strategy = _split_strategies(strategies)
        _validate_order(patch_list, order, merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged = [v for v in patch_list if not (isinstance(v, dict) and DIRECTIVE in v)]
        elif found_patch and found_original:
            merged = _merge_list_field(original_list, patch_list, sub.items(), strategy, merge_key, False)
        else:
            continue
        if not original_list and not patch_list:
            # upstream errors here ("no elements in any of the given slices"); nothing to order
            original[field] = merged
            patch.pop(field, None)
            continue
        if merge_key:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        else:
            patch_items, server_only = _partition_scalars(merged, order)
        kind = _element_kind(original_list, patch_list)
        original[field] = _normalize_order(patch_items, server_only, order, original_list, merge_key, kind)
        patch.pop(field, None)


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """Patch elements must appear in the `$setElementOrder` list, in the same relative order."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        items = [v for v in patch_list if not (isinstance(v, dict) and v.get(DIRECTIVE) == DELETE)]
    p = s = 0
    while p < len(items) and s < len(order):
        if isinstance(items[p], dict) and DIRECTIVE in items[p]:
            p += 1
            continue
        if _key_equal(items[p], order[s], merge_key):
            p += 1
        s += 1
    if p < len(items) and s >= len(order):
        raise PatchError(
            f"The order in patch list:\n{_go(patch_list)}\n doesn't match {SET_ELEMENT_ORDER} list:\n{_go(order)}\n")


def _key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for side in (left, right):
        if not isinstance(side, dict):
            raise _bad_arg("map[string]interface {}", side)
        if merge_key not in side:
            raise _no_merge_key(side, merge_key)
    return _same(left[merge_key], right[merge_key])


def known_schema_refs() -> Iterable[str]:
    return _definitions().keys()
