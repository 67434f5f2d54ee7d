"""PATCH bodies (json, merge, strategic, apply) and managedFields bookkeeping."""

from __future__ import annotations

import copy

import orjson
from aiohttp import web

from kybernetes.api import apply as applylib, errors, patch as patchlib, schemas
from kybernetes.api.clock import now_rfc3339
from kybernetes.api.strategic import strategic_merge
from kybernetes.api.registry import Resource

from . import convert
from .request import (APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, _go_type, _json, _yaml,
                      bool_param, dry_run, require_object, MAX_BODY)

APPLY = APPLY_PATCH


def decode_patch(raw: bytes, ctype: str):
    if len(raw) > MAX_BODY:
        raise errors.too_large()
    if ctype not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
        raise errors.unsupported_media_type(ctype)
    value = _json(raw)
    if ctype == JSON_PATCH:
        if not isinstance(value, list):
            raise errors.bad_request(
                f"json: cannot unmarshal {_go_type(value)} into Go value of type jsonpatch.Patch")
        for op in value:
            if not isinstance(op, dict):
                raise errors.bad_request(
                    f"json: cannot unmarshal {_go_type(op)} into Go value of type jsonpatch.Operation")
    else:
        require_object(value, "the patch")
    return value


def schema_ref(r: Resource) -> str | dict | None:
    """What the patch and apply machinery reads merge keys from: a definition name for built-in
    kinds, the CRD's own schema for custom resources."""
    if r.schema is not None:
        return r.schema
    return schemas.definition_for(r.api_version, r.kind)


def _ignored(r: Resource, subresource: str | None) -> tuple[str, ...]:
    """Main-resource writes never own status when status is its own subresource."""
    return ("status",) if not subresource and "status" in r.subresources else ()


def apply_patch(r: Resource, current: dict, patch, ctype: str) -> dict:
    try:
        if ctype == JSON_PATCH:
            out = patchlib.json_patch(current, patch)
        elif ctype == MERGE_PATCH or (ctype == STRATEGIC_PATCH and r.schema is not None):
            if ctype == STRATEGIC_PATCH:
                raise errors.ApiError(415, "UnsupportedMediaType",
                                      "strategic merge patch is not supported for custom resources; use a merge patch or a JSON patch")
            out = patchlib.merge_patch(current, patch)
        else:
            ref = schema_ref(r)
            out = strategic_merge(current, patch, ref) if isinstance(ref, str) else patchlib.merge_patch(current, patch)
    except (patchlib.PatchError, RecursionError) as e:
        # kube: a JSON patch that decodes but does not apply is 422; other patch errors 400.
        if ctype == JSON_PATCH:
            raise errors.ApiError(422, "Invalid", str(e)) from None
        raise errors.bad_request(str(e)) from None
    if not isinstance(out, dict):
        raise errors.bad_request("the patch did not produce an object")
    return out


_now = now_rfc3339


def manager_name(request: web.Request) -> str:
    """?fieldManager, else the user agent's program name, as kube-apiserver does."""
    fm = request.query.get("fieldManager")
    if fm:
        if len(fm) > 128:
            raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
        return fm
    agent = request.headers.get("User-Agent", "")
    name = _agent_managers.get(agent)
    if name is None:  # a client sends the same agent on every request: derive it once
        name = applylib.manager_from_user_agent(agent)
        if len(_agent_managers) >= _MEMO_SIZE:
            _agent_managers.clear()
        _agent_managers[agent] = name
    return name


_agent_managers: dict[str, str] = {}


def track_update(r: Resource, old: dict | None, new: dict, request: web.Request,
                 subresource: str | None = None) -> None:
    """Record an Update by this request's field manager in managedFields."""
    manager, ref, ignore = manager_name(request), schema_ref(r), _ignored(r, subresource)
    memo_key = _create_memo_key(r, old, new, manager, ref, subresource, ignore)
    if memo_key is not None:
        hit = _CREATE_MEMO.get(memo_key)
        if hit is not None:
            _reuse_managed_fields(new, hit)
            return
    applylib.update_managed_fields(old, new, manager, ref, api_version=r.api_version, now=_now(),
                                   subresource=subresource or "", ignore=ignore)
    if memo_key is not None:
        if len(_CREATE_MEMO) >= _MEMO_SIZE:
            del _CREATE_MEMO[next(iter(_CREATE_MEMO))]
        # A private copy: the entries' fieldsV1 are then shared by every create of the shape,
        # read-only like every stored object's parts.
        entries = new["metadata"].get("managedFields")
        _CREATE_MEMO[memo_key] = orjson.loads(orjson.dumps(entries)) or []


# Creates of one shape (a ReplicaSet's pods, the scheduler's events) get the same field sets:
# computing them once per shape is what makes bulk creates cheap. The shape keeps what a field
# set depends on: map keys, list contents (their items can be list keys) and, of each scalar,
# its JSON type and whether it is empty; other scalar values never show in a field set.
_CREATE_MEMO: dict[tuple, list] = {}
_MEMO_SIZE = 512


# A scalar's shape by its type: (when empty/false/zero, otherwise).
_SCALAR_SHAPES = {t: (f"\0{t.__name__}0", f"\0{t.__name__}1") for t in (str, int, float, bool)}
_SCALAR_SHAPES[type(None)] = (None, None)


def _shape_of(value):
    if isinstance(value, list):
        return ["\0list", *value]  # kept whole; the marker keeps it apart from any scalar
    if not isinstance(value, dict):
        marks = _SCALAR_SHAPES.get(type(value))
        return marks[1 if value else 0] if marks else f"\0{type(value).__name__}{1 if value else 0}"
    out = {}
    scalars = _SCALAR_SHAPES
    for k, v in value.items():
        marks = scalars.get(type(v))  # scalars inline: they are most of an object's leaves
        out[k] = marks[1 if v else 0] if marks is not None else _shape_of(v)
    return out


def _create_memo_key(r: Resource, old: dict | None, new: dict, manager: str, ref,
                     subresource: str | None, ignore: tuple) -> tuple | None:
    meta = new.get("metadata")
    if old is not None or not isinstance(ref, str) or not isinstance(meta, dict) \
            or "managedFields" in meta:
        return None
    try:
        body = orjson.dumps(_shape_of(new))
    except TypeError:
        return None
    return (r.group, r.plural, r.api_version, manager, subresource or "", ignore, body)


def _reuse_managed_fields(new: dict, entries: list) -> None:
    if not entries:
        new["metadata"].pop("managedFields", None)
        return
    now = _now()  # a create's entries are all this write's own
    new["metadata"]["managedFields"] = [dict(e, time=now) for e in entries]


async def server_side_apply(rest, request: web.Request, r: Resource, ns: str | None, name: str,
                            raw: bytes, accept) -> web.Response:
    from . import admission

    q = request.query
    if "fieldManager" not in q:
        raise errors.bad_request("PATCH requests of type apply must set fieldManager")
    manager = manager_name(request)
    force = bool_param(q, "force")
    applied = require_object(_yaml(raw) if raw.lstrip()[:1] != b"{" else _json(raw), "the apply patch")
    if not applied.get("kind"):
        raise errors.bad_request(f"Object 'Kind' is missing in '{raw[:200].decode(errors='replace')}'")
    if applied.get("apiVersion") != r.api_version:
        raise errors.bad_request(
            "Incorrect version specified in apply patch. Specified patch version: "
            f"{applied.get('apiVersion') or ''}, expected: {r.api_version}")
    admission.check_type(r, applied)
    meta = applied.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise errors.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    warnings = admission.field_check(r, applied, q.get("fieldValidation", "Strict"))
    ref = schema_ref(r)

    def run(live: dict | None) -> dict:
        try:
            return applylib.apply(live, copy.deepcopy(applied), manager, ref, force=force,
                                  api_version=r.api_version, now=_now(),
                                  ignore=_ignored(r, None))
        except applylib.ApplyConflict as e:
            raise errors.ApiError(409, "Conflict", e.message, causes=e.causes) from None
        except applylib.ApplyInvalid as e:
            raise errors.bad_request(str(e)) from None

    existing = await rest.objects.get_from_store(r, ns, name)
    if existing is None:
        obj = run(None)
        obj.setdefault("metadata", {})["name"] = name
        if r.namespaced:
            await rest._namespace_open(ns)
        admission.apply_defaults(r, obj)
        admission.prepare_create(r, obj, ns)
        hooks = rest.hooks(r)
        if hooks:
            await hooks.admit(obj)
        admission.validate(r, obj, None)
        if hooks:
            await hooks.before_create(obj)
        out = await rest.objects.create(r, obj, dry_run=dry_run(q))
        if hooks and not dry_run(q):
            await hooks.after_create(out)
        return rest.output(r, out, accept, 201, warnings)

    async def mutate(current: dict) -> dict:
        current = convert.from_storage(r, current)
        new = run(current)
        admission.apply_defaults(r, new)
        admission.prepare_update(r, new, current, None)
        hooks = rest.hooks(r)
        if hooks:
            await hooks.before_update(new, current)
        admission.validate(r, new, current)
        return new

    _, out = await rest.objects.update(r, ns, name, mutate, dry_run=dry_run(q))
    return rest.output(r, out, accept, 200, warnings)


def to_json(obj) -> bytes:
    return orjson.dumps(obj)
