"""Server-side apply and `metadata.managedFields`, with structured-merge-diff's semantics.

`apply` merges an applied configuration into the live object (maps merge unless atomic, lists of
type map merge by their keys, sets by value, atomic lists/maps are replaced), removes what the
manager applied before but no longer applies unless someone else owns it, and fails with
`ApplyConflict` when it would change a value another manager owns (unless forced, which moves the
ownership). `update_managed_fields` records ordinary writes (POST/PUT/PATCH): the writer, with
operation "Update", owns what it changed and the others lose it. Pure functions, no I/O.

Types come from the official schemas (x-kubernetes-list-type, -list-map-keys, -map-type); an
object without a schema is read as granular maps and atomic lists, like upstream's deduced type.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

from .fieldsets import FieldSet, Path, decode_shared, freeze, path_to_str

SCHEMA_VERSION = "v1.33.0-local"
FIELD_MANAGER_MAX_LENGTH = 128
BEFORE_FIRST_APPLY = "before-first-apply"

# Fields the API server keeps out of every manager's set (upstream's stripMeta).
_STRIPPED = FieldSet.from_paths([
    (("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),),
    *((("f", "metadata"), ("f", name)) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")),
])

# List-map key fields that the upstream OpenAPI gives a default, so an applied item that leaves
# them out still matches the (defaulted) live item.
_KEY_DEFAULTS = {
    "io.k8s.api.core.v1.ContainerPort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.ServicePort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.LocalObjectReference": {"name": ""},
}

# Non-pointer struct fields of the Go types: they exist (empty) in the zero object a create is
# compared against, so creating them does not make them members of the writer's set.
_VALUE_STRUCTS = frozenset({"metadata", "spec", "status", "template", "strategy",
                            "updateStrategy", "resources", "jobTemplate"})
# Slices without omitempty: null in the zero object, so creating them is not "adding" them.
_NULL_IN_ZERO = frozenset({"containers"})

_MISSING = object()


class ApplyConflict(Exception):
    """409 Conflict: the apply would change fields other managers own."""

    def __init__(self, causes: list[dict], message: str):
        super().__init__(message)
        self.causes = causes
        self.message = message


class ApplyInvalid(ValueError):
    """The applied configuration cannot be read against the schema (a 400 upstream)."""


# --------------------------------------------------------------------------------------------
# Schema nodes


@dataclass(eq=False)
class Node:
    kind: str  # "scalar" | "map" | "list" | "any" (deduced from the value)
    fields: dict[str, Node] = field(default_factory=dict)  # named fields of a struct
    elem: Node | None = None  # map values / list items
    atomic: bool = False
    list_type: str = "atomic"  # "atomic" | "set" | "map"
    keys: tuple[str, ...] = ()
    key_defaults: dict[str, Any] = field(default_factory=dict)


SCALAR = Node("scalar")
ANY = Node("any")
_ANY_MAP = Node("map", elem=ANY)
_ANY_LIST = Node("list", elem=ANY, atomic=True)
_ATOMIC_ANY = Node("scalar")  # a schema without a type: the whole value is one leaf


@functools.cache
def _definitions() -> dict:
    try:
        from .schemas import definitions  # the shared loader, when present
        return definitions()
    except Exception:  # noqa: BLE001 - fall back to reading the file ourselves
        from importlib import resources
        root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION
        with (root / "_definitions.json").open("rb") as f:
            return json.load(f)["$defs"]


_compiled: dict[str, Node] = {}


def _ref_node(name: str) -> Node:
    node = _compiled.get(name)
    if node is None:
        schema = _definitions().get(name)
        if schema is None:
            raise KeyError(f"no schema definition {name!r}")
        node = _compiled[name] = Node("any")  # placeholder so recursive schemas terminate
        built = _compile(schema, name)
        node.__dict__.update(built.__dict__)
    return node


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def _compile(schema: dict, def_name: str = "") -> Node:
    if not isinstance(schema, dict):
        return ANY
    ref = schema.get("$ref")
    if ref is None and len(schema.get("allOf") or ()) == 1:
        ref = schema["allOf"][0].get("$ref")
    if ref:
        return _ref_node(ref.rsplit("/", 1)[-1])
    types = _types(schema) - {"null"}
    if schema.get("x-kubernetes-int-or-string"):
        return SCALAR
    if "array" in types:
        list_type = schema.get("x-kubernetes-list-type", "atomic")
        return Node("list", elem=_compile(schema.get("items", {})), list_type=list_type,
                    atomic=list_type == "atomic",
                    keys=tuple(schema.get("x-kubernetes-list-map-keys", ())))
    if "object" in types or "properties" in schema or "additionalProperties" in schema:
        fields = {k: _compile(v) for k, v in (schema.get("properties") or {}).items()}
        extra = schema.get("additionalProperties")
        elem = _compile(extra) if isinstance(extra, dict) else ANY
        return Node("map", fields=fields, elem=elem,
                    atomic=schema.get("x-kubernetes-map-type") == "atomic",
                    key_defaults=_KEY_DEFAULTS.get(def_name, {}))
    if types:
        return SCALAR
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return ANY
    return _ATOMIC_ANY


def root_node(schema_ref: str | dict | None) -> Node:
    """The type of a whole object: a definition name, an inline (CRD) schema, or None."""
    if isinstance(schema_ref, str):
        return _ref_node(schema_ref.rsplit("/", 1)[-1])
    meta = _ref_node("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    base = _compile(schema_ref) if isinstance(schema_ref, dict) else ANY
    if base.kind != "map":
        base = Node("map", elem=ANY)
    fields = dict(base.fields)
    fields.update(apiVersion=SCALAR, kind=SCALAR, metadata=meta)
    return Node("map", fields=fields, elem=base.elem or ANY)


def _shape(node: Node, value: Any) -> Node:
    """The node to walk `value` with; a value of the wrong JSON type is one leaf."""
    if node.kind == "any":
        if isinstance(value, dict):
            return _ANY_MAP
        if isinstance(value, list):
            return _ANY_LIST
        return SCALAR
    if node.kind == "map" and not isinstance(value, (dict, type(None))):
        return SCALAR
    if node.kind == "list" and not isinstance(value, (list, type(None))):
        return SCALAR
    return node


def _is_leaf(node: Node) -> bool:
    return node.kind == "scalar" or node.atomic


def _item_pe(node: Node, index: int, item: Any) -> tuple:
    if node.list_type == "map" and node.keys:
        if not isinstance(item, dict):
            raise ApplyInvalid(f"element {index}: associative list with keys has an element "
                               "that is not a map type")
        defaults = node.elem.key_defaults if node.elem else {}
        key = []
        for name in node.keys:
            if name in item:
                key.append((name, freeze(item[name])))
            elif name in defaults:
                key.append((name, freeze(defaults[name])))
            else:
                raise ApplyInvalid(f"element {index}: associative list with keys has an element "
                                   f"that omits key field {json.dumps(name)} (and doesn't have "
                                   "default value)")
        return ("k", tuple(sorted(key)))
    if node.list_type == "set":
        return ("v", freeze(item))
    return ("i", index)


def _index(node: Node, items: list | None) -> tuple[list, dict]:
    order, seen = [], {}
    for i, item in enumerate(items or ()):
        pe = _item_pe(node, i, item)
        if pe not in seen:  # a repeated item: the first one counts
            seen[pe] = item
            order.append(pe)
    return order, seen


# --------------------------------------------------------------------------------------------
# Walks over values


def fields_of(obj: Any, schema_ref: str | dict | None) -> FieldSet:
    """The fields an (applied) object sets, as apply records them."""
    out = FieldSet()
    _collect(obj, root_node(schema_ref), out)
    return out


def _collect(value: Any, node: Node, out: FieldSet) -> None:
    node = _shape(node, value)
    if _is_leaf(node) or value is None:
        return
    if node.kind == "map":
        for key, child in value.items():
            pe = ("f", key)
            named = key in node.fields
            child_node = _shape(node.fields.get(key) or node.elem or ANY, child)
            if _is_leaf(child_node):
                out.members.add(pe)
                continue
            _collect(child, child_node, out.child(pe))
            if not named:  # map entries are members; struct fields only through their leaves
                out.members.add(pe)
    else:
        for i, item in enumerate(value):
            pe = _item_pe(node, i, item)
            out.members.add(pe)
            item_node = _shape(node.elem or ANY, item)
            if not _is_leaf(item_node):
                _collect(item, item_node, out.child(pe))
    for pe in [pe for pe, c in out.children.items() if c.empty()]:
        del out.children[pe]


def merge(live: Any, applied: Any, node: Node) -> Any:
    """Merge an applied configuration into a live value; the applied side wins on leaves."""
    if applied is _MISSING:
        return live
    if live is _MISSING:
        return applied
    node = _shape(node, applied)
    if _shape(node, live) is not node or _is_leaf(node) or (not live and not applied):
        return applied
    if node.kind == "map":
        out = {}
        for key, lv in (live or {}).items():
            out[key] = merge(lv, (applied or {}).get(key, _MISSING),
                             node.fields.get(key) or node.elem or ANY)
        for key, av in (applied or {}).items():
            if key not in out:
                out[key] = av
        return out
    return _merge_list(live or [], applied or [], node)


def _merge_list(live: list, applied: list, node: Node) -> list:
    # Keep the live order except where the applied list orders the items both have.
    elem = node.elem or ANY
    lorder, lmap = _index(node, live)
    rorder, rmap = _index(node, applied)
    shared = [pe for pe in rorder if pe in lmap]
    next_shared = shared.pop(0) if shared else None
    out, done = [], set()
    li = ri = 0
    while li < len(lorder) or ri < len(rorder):
        if li < len(lorder) and ri < len(rorder):
            pe = lorder[li]
            if pe == rorder[ri]:
                out.append(merge(lmap[pe], rmap[pe], elem))
                done.add(pe)
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rmap and next_shared is not None and pe != next_shared:
                li += 1
                continue
        if li < len(lorder):
            pe = lorder[li]
            if pe not in rmap:
                out.append(lmap[pe])
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < len(rorder):
            pe = rorder[ri]
            done.add(pe)
            out.append(merge(lmap.get(pe, _MISSING), rmap[pe], elem))
            ri += 1
            if next_shared is not None and pe == next_shared:
                next_shared = shared.pop(0) if shared else None
    return out


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=FieldSet)
    modified: FieldSet = field(default_factory=FieldSet)
    removed: FieldSet = field(default_factory=FieldSet)

    def without(self, ignored: FieldSet) -> Comparison:
        if ignored.empty():
            return self
        return Comparison(self.added.recursive_difference(ignored),
                          self.modified.recursive_difference(ignored),
                          self.removed.recursive_difference(ignored))


def compare(old: Any, new: Any, node: Node, *, skip_equal: bool = False) -> Comparison:
    """What changed from old to new. `skip_equal` passes over subtrees that encode to the same
    bytes without walking them: only for an `old` known to read against the schema (its list
    keys were checked when it was written), since walking is also what finds bad list items."""
    out = Comparison()
    (_compare_skipping if skip_equal else _compare)(old, new, node, (), out)
    return out


def _same(lhs: Any, rhs: Any) -> bool:
    # Equal bytes: same keys, order and types (True is not 1, 1 is not 1.0), so nothing differs.
    try:
        return orjson.dumps(lhs) == orjson.dumps(rhs)
    except TypeError:
        return False


def _compare_skipping(lhs: Any, rhs: Any, node: Node, path: Path, c: Comparison) -> None:
    if lhs is not _MISSING and rhs is not _MISSING and isinstance(rhs, (dict, list)) \
            and type(lhs) is type(rhs) and _same(lhs, rhs):
        return
    _compare(lhs, rhs, node, path, c, _compare_skipping)


def _compare(lhs: Any, rhs: Any, node: Node, path: Path, c: Comparison, walk=None) -> None:
    if path and (lhs is _MISSING or rhs is _MISSING):
        # One side only: every path of the other is added (or removed).
        out = c.added if lhs is _MISSING else c.removed
        for pe in path[:-1]:
            out = out.child(pe)
        _all_paths(rhs if lhs is _MISSING else lhs, node, out, path[-1])
        return
    walk = walk or _compare
    present = rhs if rhs is not _MISSING else lhs
    node = _shape(node, present)
    if lhs is not _MISSING and rhs is not _MISSING and _shape(node, lhs) is not node:
        node = SCALAR  # the value changed its JSON type: compare it whole
    empty = (lhs is _MISSING or not lhs) and (rhs is _MISSING or not rhs)
    if _is_leaf(node) or empty:
        if lhs is _MISSING:
            c.added.insert(path)
        elif rhs is _MISSING:
            c.removed.insert(path)
        elif freeze(lhs) != freeze(rhs):
            c.modified.insert(path)
        return
    lv = None if lhs is _MISSING else lhs
    rv = None if rhs is _MISSING else rhs
    if node.kind == "map":
        lv, rv = lv or {}, rv or {}
        for key in {**lv, **rv}:
            walk(lv.get(key, _MISSING), rv.get(key, _MISSING),
                 node.fields.get(key) or node.elem or ANY, path + (("f", key),), c)
    else:
        lorder, lmap = _index(node, lv)
        rorder, rmap = _index(node, rv)
        for pe in dict.fromkeys(lorder + rorder):
            walk(lmap.get(pe, _MISSING), rmap.get(pe, _MISSING), node.elem or ANY,
                 path + (pe,), c)
    if path and lhs is _MISSING:
        c.added.insert(path)
    elif path and rhs is _MISSING:
        c.removed.insert(path)


def _all_paths(value: Any, node: Node, out: FieldSet, pe: tuple) -> None:
    """Put pe and every path below it in value into out (what _compare finds for a value
    against nothing), building the tree as it goes rather than inserting each path whole."""
    out.members.add(pe)
    node = _shape(node, value)
    if _is_leaf(node) or not value:
        return
    sub = out.child(pe)
    if node.kind == "map":
        fields, elem = node.fields, node.elem or ANY
        for key, child in value.items():
            _all_paths(child, fields.get(key) or elem, sub, ("f", key))
    else:
        order, items = _index(node, value)
        elem = node.elem or ANY
        for p in order:
            _all_paths(items[p], elem, sub, p)


def remove_items(value: Any, node: Node, remove: FieldSet) -> Any:
    """`value` without the paths of `remove` (a member removes its whole subtree)."""
    node = _shape(node, value)
    if _is_leaf(node) or not value:
        return value
    if node.kind == "map":
        out = {}
        for key, child in value.items():
            pe = ("f", key)
            if pe in remove.members:
                continue
            sub = remove.children.get(pe)
            if sub is not None:
                child = remove_items(child, node.fields.get(key) or node.elem or ANY, sub)
                if child is None:
                    continue  # emptied by the removal: upstream leaves null, which decodes away
            out[key] = child
        return out or None
    items = []
    for i, item in enumerate(value):
        pe = _item_pe(node, i, item)
        if pe in remove.members:
            continue
        sub = remove.children.get(pe)
        if sub is not None:
            item = remove_items(item, node.elem or ANY, sub)
            if item is None:
                continue
        items.append(item)
    return items or None


def named_fields_as_members(s: FieldSet, node: Node) -> FieldSet:
    """`s` plus, as members, the struct fields it reaches (so pruning can drop a whole struct)."""
    out = FieldSet()
    out.members = set(s.members)
    for pe, child in s.children.items():
        if pe[0] == "f":
            if node.kind == "map" and pe[1] in node.fields:
                out.members.add(pe)
            child_node = (node.fields.get(pe[1]) or node.elem or ANY) if node.kind == "map" else ANY
        else:
            child_node = (node.elem or ANY) if node.kind == "list" else ANY
        out.children[pe] = named_fields_as_members(child, child_node)
    return out


# --------------------------------------------------------------------------------------------
# managedFields


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""
    # The FieldsV1 this entry was read from, while `fields` is still the set read from it and
    # that JSON is exactly what `fields.to_json()` would give: encoding reuses it.
    raw: tuple[FieldSet, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def ident(self) -> tuple:
        # Appliers are one entry whatever version they apply; updaters one per version.
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def encode(self) -> dict:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        raw = self.raw
        out["fieldsV1"] = raw[1] if raw is not None and raw[0] is self.fields \
            else self.fields.to_json()
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode_managed_fields(entries: list | None) -> dict[tuple, Entry]:
    out: dict[tuple, Entry] = {}
    for raw in entries or ():
        if not isinstance(raw, dict):
            raise ApplyInvalid("managedFields entries must be objects")
        if raw.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise ApplyInvalid(f"invalid fieldsType {raw.get('fieldsType')!r}")
        data = raw.get("fieldsV1") or {}
        fields, canonical = decode_shared(data)
        e = Entry(raw.get("manager", ""), raw.get("operation", "Update"),
                  raw.get("apiVersion", ""), fields, raw.get("time"), raw.get("subresource", ""),
                  (fields, data) if canonical else None)
        prev = out.get(e.ident)
        if prev is not None:
            e.fields = prev.fields.union(e.fields)
        out[e.ident] = e
    return out


def _time_key(t: str | None) -> str:
    return (t or "")[:19]  # RFC 3339 to the second compares as text


def encode_managed_fields(managers: dict[tuple, Entry]) -> list[dict]:
    kept = [e for e in managers.values() if not e.fields.empty()]
    kept.sort(key=lambda e: (e.operation, _time_key(e.time), e.manager, e.api_version,
                             e.subresource))
    return [e.encode() for e in kept]


def _set_managed_fields(obj: dict, managers: dict[tuple, Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    encoded = encode_managed_fields(managers)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _without_managed_fields(obj: dict | None) -> dict:
    out = copy.deepcopy(obj) if obj else {}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _view_without_managed_fields(obj: dict | None) -> dict:
    """obj without managedFields, sharing everything else: for reading only."""
    if not obj:
        return {}
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    meta = dict(meta)
    del meta["managedFields"]
    return dict(obj, metadata=meta)


def _minus(fs: FieldSet, *others: FieldSet) -> FieldSet:
    """fs without the paths of others; fs itself (its encoding kept) when none is in it."""
    for other in others:
        if not fs.disjoint(other):
            fs = fs.difference(other)
    return fs


def _strip(managers: dict[tuple, Entry]) -> None:
    for key in list(managers):
        e = managers[key]
        e.fields = _minus(e.fields, _STRIPPED)
        if e.fields.empty():
            del managers[key]


def _paths(ignore: Iterable[str]) -> FieldSet:
    """Dotted paths ("status", "metadata.labels") as a field set."""
    return FieldSet.from_paths(tuple(("f", part) for part in p.split(".")) for p in ignore)


def _print_manager(e: Entry) -> str:
    out = json.dumps(e.manager, ensure_ascii=False)
    if e.subresource:
        out += f" with subresource {json.dumps(e.subresource, ensure_ascii=False)}"
    if e.operation == "Update":
        out += f" using {e.api_version}"
    return out


def _conflict(conflicts: list[tuple[Entry, Path]]) -> ApplyConflict:
    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {_print_manager(e)}",
               "field": path_to_str(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        return ApplyConflict(causes, f"Apply failed with 1 conflict: conflict with "
                                     f"{_print_manager(e)}: {path_to_str(p)}")
    by_manager: dict[str, list[str]] = {}
    for e, p in conflicts:
        by_manager.setdefault(_print_manager(e), []).append(path_to_str(p))
    lines = []
    for name in sorted(by_manager):
        lines.append(f"conflicts with {name}:")
        lines.extend(f"- {p}" for p in by_manager[name])
    return ApplyConflict(causes, f"Apply failed with {len(conflicts)} conflicts: "
                                 + "\n".join(lines))


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def apply(live: dict | None, applied: dict, manager: str, schema_ref: str | dict | None, *,
          force: bool, api_version: str, now: str, subresource: str = "",
          ignore: Iterable[str] = ()) -> dict:
    """The object after `manager` applies `applied` to `live` (None: the object is created).

    `ignore` lists top-level paths this endpoint resets (e.g. "status" on the main resource of a
    kind with a status subresource); nobody gains or loses ownership there. Raises
    `ApplyConflict` (409) or `ApplyInvalid` (400).
    """
    if not isinstance(applied, dict):
        raise ApplyInvalid("the applied configuration must be an object")
    if (applied.get("metadata") or {}).get("managedFields") is not None:
        raise ApplyInvalid("metadata.managedFields must be nil")
    root = root_node(schema_ref)
    applied = _strip_nulls(applied)
    ignored = _paths(ignore)
    base = _without_managed_fields(live)
    managers = decode_managed_fields(((live or {}).get("metadata") or {}).get("managedFields"))
    if live is not None and not managers:
        # An object nobody tracked yet: what it holds so far belongs to a placeholder manager.
        bfa = Entry(BEFORE_FIRST_APPLY, "Update", api_version, fields_of(base, schema_ref))
        managers[bfa.ident] = bfa

    me = Entry(manager, "Apply", api_version, FieldSet(), subresource=subresource)
    last = managers.get(me.ident)
    if last is not None:
        me.time = last.time
    me.fields = fields_of(applied, schema_ref).recursive_difference(ignored)
    managers[me.ident] = me

    result = merge(base, applied, root)
    if last is not None and not last.fields.empty():
        result = _prune(result, root, managers, last.fields)

    diff = compare(base, result, root).without(ignored)
    changed = diff.added.union(diff.modified)
    taken: list[tuple[Entry, FieldSet]] = []
    for key, e in managers.items():
        if key == me.ident:
            continue
        lost = e.fields.intersection(changed)
        if not lost.empty():
            taken.append((e, lost))
    if taken and not force:
        conflicts = [(e, p) for e, lost in sorted(taken, key=lambda t: t[0].ident)
                     for p in lost.paths()]
        raise _conflict(conflicts)
    for e, lost in taken:
        e.fields = e.fields.difference(lost)
    for key, e in managers.items():
        if key != me.ident:
            e.fields = e.fields.difference(diff.removed)
    _strip(managers)

    if live is None or result != base or me.time is None:
        me.time = now
    result = result if isinstance(result, dict) else {}
    _set_managed_fields(result, managers)
    return result


def _prune(merged: dict, root: Node, managers: dict[tuple, Entry], last: FieldSet) -> dict:
    """Drop what the applier set last time and nobody (the applier included) owns now."""
    owned = FieldSet()
    for e in managers.values():
        owned = owned.union(e.fields)
    gone = named_fields_as_members(last, root).difference(named_fields_as_members(owned, root))
    if gone.empty():
        return merged
    return remove_items(merged, root, gone) or {}


def _create_baseline(new: Any, node: Node) -> dict:
    """The zero object a create is compared against: the Go types' non-pointer structs."""
    out: dict = {}
    if not isinstance(new, dict) or node.kind != "map":
        return out
    for key, value in new.items():
        child = node.fields.get(key)
        if key in _VALUE_STRUCTS and child is not None and child.kind == "map" \
                and not child.atomic and isinstance(value, dict):
            out[key] = _create_baseline(value, child)
        elif key in _NULL_IN_ZERO and child is not None and child.kind == "list":
            out[key] = None
    return out


def update_managed_fields(old: dict | None, new: dict, manager: str,
                          schema_ref: str | dict | None, *, api_version: str, now: str,
                          subresource: str = "", ignore: Iterable[str] = ()) -> None:
    """Record an ordinary write of `new` over `old` (None: a create) in new's managedFields."""
    meta = new.get("metadata")
    if not isinstance(meta, dict):
        return
    try:
        root = root_node(schema_ref)
        managers = _managers_for_update(old, new, subresource)
        if old is not None:
            before = _view_without_managed_fields(old)
            # An object that has managedFields had its list keys checked when it was written.
            checked = bool((old.get("metadata") or {}).get("managedFields"))
        else:
            before = _create_baseline(new, root) if isinstance(schema_ref, str) else {}
            checked = False
        diff = compare(before, _view_without_managed_fields(new), root,
                       skip_equal=checked).without(_paths(ignore))
        changed = diff.added if diff.modified.empty() else diff.added.union(diff.modified)
        me = Entry(manager, "Update", api_version, FieldSet(), subresource=subresource)
        prev = managers.get(me.ident)
        owned = prev.fields if prev is not None else None
        for e in managers.values():
            e.fields = _minus(e.fields, changed, diff.removed)
        if not changed.empty():
            if owned is not None and owned.disjoint(diff.removed) and changed.issubset(owned):
                # It changed only what it owns already: the same set, and its encoding.
                me.fields, me.raw = owned, prev.raw
            else:
                me.fields = changed if prev is None else changed.union(prev.fields)
            me.time = now
            managers[me.ident] = me
        _strip(managers)
    except ApplyInvalid:
        # Upstream drops managedFields rather than keep ones it could not compute.
        meta.pop("managedFields", None)
        return
    _set_managed_fields(new, managers)


def _managers_for_update(old: dict | None, new: dict, subresource: str) -> dict[tuple, Entry]:
    old_entries = ((old or {}).get("metadata") or {}).get("managedFields")
    if subresource:
        return decode_managed_fields(old_entries)
    sent = new["metadata"].get("managedFields")
    if sent is not None and (sent == [] or sent == [{}]):
        return {}  # the client asked for a reset
    try:
        managers = decode_managed_fields(sent)
    except (ApplyInvalid, ValueError, AttributeError):
        managers = {}
    return managers or decode_managed_fields(old_entries)


@functools.lru_cache(maxsize=256)  # a few clients send the same header on every request
def manager_from_user_agent(user_agent: str) -> str:
    """The default field manager: the user agent up to its first "/", printable, ≤128 bytes."""
    out, size = [], 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():  # like Go's unicode.IsPrint: ASCII space only
            continue
        n = len(ch.encode())
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)
