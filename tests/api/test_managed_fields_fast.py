"""The fast managedFields bookkeeping gives byte-for-byte what the plain computation gives.

`update_managed_fields` skips unchanged subtrees, reuses stored FieldsV1 encodings and shares
field-set subtrees; `reference_update` below is the plain algorithm (deep copies, a full walk of
both objects, every set decoded and encoded again), kept here only to hold the fast one to it.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api import apply as A
from kybernetes.api.fieldsets import FieldSet, freeze

POD = "io.k8s.api.core.v1.Pod"
TIMES = [f"2025-01-01T00:00:{i:02d}Z" for i in range(60)]


# ---- the plain computation ----------------------------------------------------------------------


class _Diff:
    def __init__(self):
        self.added, self.modified, self.removed = FieldSet(), FieldSet(), FieldSet()


def _plain_compare(lhs: Any, rhs: Any, node, path: tuple, c: _Diff) -> None:
    present = rhs if rhs is not A._MISSING else lhs
    node = A._shape(node, present)
    if lhs is not A._MISSING and rhs is not A._MISSING and A._shape(node, lhs) is not node:
        node = A.SCALAR
    empty = (lhs is A._MISSING or not lhs) and (rhs is A._MISSING or not rhs)
    if A._is_leaf(node) or empty:
        if lhs is A._MISSING:
            c.added.insert(path)
        elif rhs is A._MISSING:
            c.removed.insert(path)
        elif freeze(lhs) != freeze(rhs):
            c.modified.insert(path)
        return
    lv = None if lhs is A._MISSING else lhs
    rv = None if rhs is A._MISSING else rhs
    if node.kind == "map":
        lv, rv = lv or {}, rv or {}
        for key in {**lv, **rv}:
            _plain_compare(lv.get(key, A._MISSING), rv.get(key, A._MISSING),
                           node.fields.get(key) or node.elem or A.ANY, path + (("f", key),), c)
    else:
        lorder, lmap = A._index(node, lv)
        rorder, rmap = A._index(node, rv)
        for pe in dict.fromkeys(lorder + rorder):
            _plain_compare(lmap.get(pe, A._MISSING), rmap.get(pe, A._MISSING),
                           node.elem or A.ANY, path + (pe,), c)
    if path and lhs is A._MISSING:
        c.added.insert(path)
    elif path and rhs is A._MISSING:
        c.removed.insert(path)


def _plain_decode(entries) -> dict:
    out: dict = {}
    for raw in entries or ():
        if not isinstance(raw, dict):
            raise A.ApplyInvalid("managedFields entries must be objects")
        e = A.Entry(raw.get("manager", ""), raw.get("operation", "Update"),
                    raw.get("apiVersion", ""), FieldSet.from_json(raw.get("fieldsV1") or {}),
                    raw.get("time"), raw.get("subresource", ""))
        prev = out.get(e.ident)
        if prev is not None:
            e.fields = prev.fields.union(e.fields)
        out[e.ident] = e
    return out


def _plain_managers(old, new, subresource):
    old_entries = ((old or {}).get("metadata") or {}).get("managedFields")
    if subresource:
        return _plain_decode(old_entries)
    sent = new["metadata"].get("managedFields")
    if sent is not None and (sent == [] or sent == [{}]):
        return {}
    try:
        managers = _plain_decode(sent)
    except (A.ApplyInvalid, ValueError, AttributeError):
        managers = {}
    return managers or _plain_decode(old_entries)


def reference_update(old, new, manager, schema_ref, *, api_version, now, subresource="",
                     ignore=()) -> None:
    meta = new.get("metadata")
    if not isinstance(meta, dict):
        return
    try:
        root = A.root_node(schema_ref)
        managers = _plain_managers(old, new, subresource)
        before = A._without_managed_fields(old) if old is not None else (
            A._create_baseline(new, root) if isinstance(schema_ref, str) else {})
        c = _Diff()
        _plain_compare(before, A._without_managed_fields(new), root, (), c)
        ignored = A._paths(ignore)
        added, modified, removed = (s.recursive_difference(ignored)
                                    for s in (c.added, c.modified, c.removed))
        changed = added.union(modified)
        for e in managers.values():
            e.fields = e.fields.difference(changed).difference(removed)
        me = A.Entry(manager, "Update", api_version, FieldSet(), subresource=subresource)
        prev = managers.get(me.ident)
        if not changed.empty():
            me.fields = changed if prev is None else changed.union(prev.fields)
            me.time = now
            managers[me.ident] = me
        for key in list(managers):
            managers[key].fields = managers[key].fields.difference(A._STRIPPED)
            if managers[key].fields.empty():
                del managers[key]
    except A.ApplyInvalid:
        meta.pop("managedFields", None)
        return
    kept = [e for e in managers.values() if not e.fields.empty()]
    kept.sort(key=lambda e: (e.operation, A._time_key(e.time), e.manager, e.api_version,
                             e.subresource))
    encoded = []
    for e in kept:
        e.raw = None  # encode from the set itself
        encoded.append(e.encode())
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


# ---- random objects and writes ----------------------------------------------------------------

_word = st.sampled_from(["a", "b", "web", "db", "x"])
_scalar = st.one_of(st.integers(0, 2), st.sampled_from([0.0, 1.0, 1.5]), st.booleans(),
                    _word, st.none())
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_word, inner, max_size=3)), max_leaves=8)


def _container(named: bool):
    base = {"image": _word, "ports": st.lists(st.fixed_dictionaries(
        {"containerPort": st.sampled_from([80, 443, 8080])},
        optional={"protocol": st.sampled_from(["TCP", "UDP"])}), max_size=2),
        "env": st.lists(st.fixed_dictionaries({"name": _word}, optional={"value": _word}),
                        max_size=2)}
    if named:
        return st.fixed_dictionaries({"name": _word, **base})
    return st.fixed_dictionaries({}, optional={"name": _word, **base})


def _pod(named: bool):
    return st.fixed_dictionaries({
        "apiVersion": st.just("v1"), "kind": st.just("Pod"),
        "metadata": st.fixed_dictionaries(
            {"name": st.just("p"), "namespace": st.just("default")},
            optional={"labels": st.dictionaries(_word, _word, max_size=3),
                      "annotations": st.dictionaries(_word, _word, max_size=2),
                      "finalizers": st.lists(_word, max_size=2)}),
        "spec": st.fixed_dictionaries(
            {"containers": st.lists(_container(named), max_size=3)},
            optional={"nodeName": _word, "restartPolicy": st.sampled_from(["Always", "Never"]),
                      "nodeSelector": st.dictionaries(_word, _word, max_size=2)}),
    }, optional={"status": st.fixed_dictionaries({}, optional={
        "phase": st.sampled_from(["Pending", "Running"]), "podIP": _word,
        "conditions": st.lists(st.fixed_dictionaries(
            {"type": _word, "status": st.sampled_from(["True", "False"])}), max_size=3)})})


def _untyped():
    return st.fixed_dictionaries({
        "apiVersion": st.just("example.com/v1"), "kind": st.just("Thing"),
        "metadata": st.fixed_dictionaries({"name": st.just("t")},
                                          optional={"labels": st.dictionaries(_word, _word)}),
    }, optional={"spec": _json, "status": _json, "data": st.dictionaries(_word, _json)})


def _mix(draw, old: Any, other: Any, depth: int = 0) -> Any:
    """A plausible next version: each part kept from old, taken from other, or dropped."""
    if isinstance(old, dict) and isinstance(other, dict) and depth < 6:
        out = {}
        for key in {**old, **other}:
            choice = draw(st.sampled_from(["keep", "keep", "keep", "other", "mix", "drop"]))
            if key in old and (choice == "keep" or key not in other):
                if choice != "drop":
                    out[key] = copy.deepcopy(old[key])
            elif key in other and choice in ("other", "keep"):
                out[key] = copy.deepcopy(other[key])
            elif key in old and key in other and choice == "mix":
                out[key] = _mix(draw, old[key], other[key], depth + 1)
        return out
    if isinstance(old, list) and isinstance(other, list) and depth < 6 and draw(st.booleans()):
        n = max(len(old), len(other))
        return [_mix(draw, old[i], other[i], depth + 1) if i < len(old) and i < len(other)
                else copy.deepcopy(old[i] if i < len(old) else other[i]) for i in range(n)]
    return copy.deepcopy(draw(st.sampled_from([old, other])))


def _reversed(fields: dict) -> dict:
    return {k: _reversed(v) for k, v in reversed(fields.items())}


def _same_write(old, new, manager, ref, **kw) -> dict:
    fast, slow = copy.deepcopy(new), copy.deepcopy(new)
    A.update_managed_fields(copy.deepcopy(old), fast, manager, ref, **kw)
    reference_update(copy.deepcopy(old), slow, manager, ref, **kw)
    assert orjson.dumps(fast) == orjson.dumps(slow)
    return fast


_WRITERS = [("kubectl", "", ("status",)), ("controller", "", ("status",)),
            ("kubelet", "status", ()), ("controller", "status", ())]


@settings(max_examples=80, deadline=None)
@given(st.data(), st.booleans())
def test_pod_writes_match_the_plain_computation(data, named):
    ref = POD
    obj = _same_write(None, data.draw(_pod(named)), "creator", ref, api_version="v1",
                      now=TIMES[0], ignore=("status",))
    for step in range(1, data.draw(st.integers(1, 5)) + 1):
        manager, sub, ignore = data.draw(st.sampled_from(_WRITERS))
        new = _mix(data.draw, obj, data.draw(_pod(named)))
        new.setdefault("metadata", {})
        if "managedFields" in obj.get("metadata", {}):
            sent = data.draw(st.sampled_from(["keep", "keep", "reordered", "none", "reset"]))
            if sent in ("keep", "reordered"):
                entries = copy.deepcopy(obj["metadata"]["managedFields"])
                if sent == "reordered":  # same sets, FieldsV1 keys not in their usual order
                    for e in entries:
                        e["fieldsV1"] = _reversed(e["fieldsV1"])
                new["metadata"]["managedFields"] = entries
            elif sent == "reset":
                new["metadata"]["managedFields"] = []
        obj = _same_write(obj, new, manager, ref, api_version="v1", now=TIMES[step],
                          subresource=sub, ignore=ignore)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_untyped_writes_match_the_plain_computation(data):
    obj = _same_write(None, data.draw(_untyped()), "creator", None, api_version="example.com/v1",
                      now=TIMES[0])
    for step in range(1, data.draw(st.integers(1, 5)) + 1):
        manager, sub, ignore = data.draw(st.sampled_from(_WRITERS))
        new = _mix(data.draw, obj, data.draw(_untyped()))
        new.setdefault("metadata", {})
        obj = _same_write(obj, new, manager, None, api_version="example.com/v1",
                          now=TIMES[step], subresource=sub, ignore=ignore)


def test_a_status_writer_that_owns_what_it_writes_keeps_its_set():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    A.update_managed_fields(None, pod, "creator", POD, api_version="v1", now=TIMES[0],
                            ignore=("status",))
    first = copy.deepcopy(pod)
    first["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
    A.update_managed_fields(pod, first, "kubelet", POD, api_version="v1", now=TIMES[1],
                            subresource="status")
    second = orjson.loads(orjson.dumps(first))  # as stored and read back
    second["status"]["conditions"][0]["status"] = "True"
    A.update_managed_fields(orjson.loads(orjson.dumps(first)), second, "kubelet", POD,
                            api_version="v1", now=TIMES[2], subresource="status")
    kubelet = [e for e in second["metadata"]["managedFields"] if e["manager"] == "kubelet"]
    assert kubelet[0]["time"] == TIMES[2]
    assert kubelet[0]["fieldsV1"] == [e for e in first["metadata"]["managedFields"]
                                      if e["manager"] == "kubelet"][0]["fieldsV1"]


# ---- field-set algebra against plain sets of paths --------------------------------------------

_pe = st.one_of(st.tuples(st.just("f"), st.sampled_from(["a", "b", "c"])),
                st.tuples(st.just("i"), st.integers(0, 2)))
_paths = st.lists(st.lists(_pe, min_size=1, max_size=3).map(tuple), max_size=8).map(set)


def _set(paths) -> FieldSet:
    return FieldSet.from_paths(paths)


@settings(max_examples=100, deadline=None)
@given(_paths, _paths)
def test_field_set_algebra_is_path_set_algebra(a, b):
    fa, fb = _set(a), _set(b)
    assert set(fa.union(fb).paths()) == a | b
    assert set(fa.intersection(fb).paths()) == a & b
    assert set(fa.difference(fb).paths()) == a - b
    assert set(fa.recursive_difference(fb).paths()) == {
        p for p in a if not any(p[:n] in b for n in range(1, len(p) + 1))}
    assert fa.disjoint(fb) == (not (a & b))
    assert fa.issubset(fb) == (a <= b)
    # Sharing subtrees never changes an operand.
    assert set(fa.paths()) == a and set(fb.paths()) == b
