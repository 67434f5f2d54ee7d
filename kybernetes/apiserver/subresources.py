"""Subresources served by the API server itself: status, scale, binding, eviction, finalize,
and the review APIs (SelfSubjectAccessReview, SelfSubjectReview, TokenReview)."""

from __future__ import annotations

import copy

from aiohttp import web

from kybernetes.api import errors
from kybernetes.api.registry import Resource

from . import admission, csr, patching
from .authn import User
from .objects import now_rfc3339
from .request import (check_kind, decode_kind, dry_run, media_type, parse_accept, read_body,
                      require_object)
from .rest import Rest, json_response

_SCALE_KIND = ("Scale", ("autoscaling/v1",))
_EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")

# Where replicas and the selector live, for kinds with a scale subresource.
_SCALE = {"spec": "spec.replicas", "status": "status.replicas", "selector": "spec.selector"}


def _get_path(obj: dict, path: str):
    cur = obj
    for p in path.lstrip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _set_path(obj: dict, path: str, value) -> None:
    parts = path.lstrip(".").split(".")
    cur = obj
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def _selector_string(sel) -> str:
    from kybernetes.api.selectors import label_selector_from_object, selector_from_set

    if isinstance(sel, str):
        return sel
    if not isinstance(sel, dict):
        return ""
    if "matchLabels" in sel or "matchExpressions" in sel:
        return str(label_selector_from_object(sel))
    return str(selector_from_set(sel))  # ReplicationController: a plain map


def to_scale(r: Resource, obj: dict) -> dict:
    spec_path, status_path, sel_path = r.scale_paths or (
        _SCALE["spec"], _SCALE["status"], _SCALE["selector"])
    meta = obj["metadata"]
    status: dict = {"replicas": _get_path(obj, status_path) or 0}
    if r.scale_paths:
        sel = _get_path(obj, sel_path) if sel_path else None
        if sel:
            status["selector"] = sel
    else:
        sel = _get_path(obj, sel_path)
        if sel:
            status["selector"] = _selector_string(sel)
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": _get_path(obj, spec_path) or 0}, "status": status}


def bound_pod(current: dict, name: str, node: str, annotations: dict | None, now: str) -> dict:
    """The pod after a Binding to `node`: a new object sharing every part of `current` that
    the binding leaves alone (current, the cached object, is never changed: a full copy of
    the pod on every binding showed in profiles)."""
    meta = current["metadata"]
    if meta.get("deletionTimestamp"):
        raise errors.conflict("pods", name, "", "pod is being deleted, cannot be assigned to a host")
    spec = current.get("spec") or {}
    assigned = spec.get("nodeName")
    if assigned:
        raise errors.conflict("pods", name, "",
                              f"pod {name} is already assigned to node \"{assigned}\"")
    new = dict(current)
    new["metadata"] = meta = dict(meta)  # the write sets its resourceVersion
    new["spec"] = dict(spec, nodeName=node)
    status = new["status"] = dict(current.get("status") or {})
    conds = [c for c in (status.get("conditions") or []) if c.get("type") != "PodScheduled"]
    conds.append({"type": "PodScheduled", "status": "True",
                  "lastProbeTime": None, "lastTransitionTime": now})
    status["conditions"] = conds
    if annotations:
        meta["annotations"] = dict(meta.get("annotations") or {}, **annotations)
    return new


class Subresources:
    def __init__(self, rest: Rest):
        self.rest = rest

    async def get(self, request: web.Request, r: Resource, ns, name, sub) -> web.Response:
        obj = await self.rest.objects.get(r, ns, name)
        if sub == "scale":
            return json_response(to_scale(r, obj))
        if sub in ("status", "ephemeralcontainers", "resize", "approval"):
            return self.rest.output(r, obj, parse_accept(request.headers.get("Accept")))
        raise errors.method_not_allowed()

    async def write(self, request: web.Request, r: Resource, ns, name, sub, method: str) -> web.Response:
        if sub == "scale":
            return await self._scale(request, r, ns, name, method)
        if sub == "finalize" and r.plural == "namespaces" and method == "PUT":
            return await self._finalize(request, r, name)
        if r.plural == "certificatesigningrequests" and sub in ("status", "approval"):
            return await csr.write_subresource(self.rest, request, r, name, sub, method)
        if sub in ("status", "approval", "ephemeralcontainers", "resize"):
            target = "status" if sub in ("status", "approval") else None
            if method == "PUT":
                return await self.rest.update(request, r, ns, name, subresource=target)
            return await self.rest.patch(request, r, ns, name, subresource=target)
        raise errors.method_not_allowed()

    async def _scale(self, request: web.Request, r: Resource, ns, name, method: str) -> web.Response:
        raw = await read_body(request)
        ctype = media_type(request.headers.get("Content-Type"))
        spec_path = r.scale_paths[0] if r.scale_paths else _SCALE["spec"]

        async def mutate(current: dict) -> dict:
            scale = to_scale(r, current)
            if method == "PUT":
                new_scale = decode_kind(raw, request.headers.get("Content-Type"), *_SCALE_KIND)
                want_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
                if want_rv and want_rv != current["metadata"]["resourceVersion"]:
                    raise errors.conflict(r.plural, name, r.group)
            else:
                p = patching.decode_patch(raw, ctype)
                # A Scale has no merge keys: a strategic patch is a merge patch here.
                from kybernetes.api import patch as patchlib

                try:
                    new_scale = (patchlib.json_patch(scale, p) if ctype == patching.JSON_PATCH
                                 else patchlib.merge_patch(scale, p))
                except patchlib.PatchError as e:
                    if ctype == patching.JSON_PATCH:
                        raise errors.ApiError(422, "Invalid", str(e)) from None
                    raise errors.bad_request(str(e)) from None
                check_kind(require_object(new_scale, "the patched Scale"), *_SCALE_KIND)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("Scale", name, [{
                    "reason": "FieldValueInvalid", "field": "spec.replicas",
                    "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}],
                    "autoscaling")
            new = copy.deepcopy(current)
            _set_path(new, spec_path, replicas)
            await self.rest.prepare_write(r, new, current, None, request)
            return new

        _, out = await self.rest.objects.update(r, ns, name, mutate, dry_run=dry_run(request.query))
        return json_response(to_scale(r, out))

    async def _finalize(self, request: web.Request, r: Resource, name: str) -> web.Response:
        body = decode_kind(await read_body(request), request.headers.get("Content-Type"),
                           "Namespace", ("v1",))
        finalizers = (body.get("spec") or {}).get("finalizers") or []

        async def mutate(current: dict) -> dict:
            new = copy.deepcopy(current)
            new.setdefault("spec", {})["finalizers"] = finalizers
            if not finalizers:
                new["spec"].pop("finalizers")
            return new

        _, out = await self.rest.objects.update(r, None, name, mutate)
        if out["metadata"].get("deletionTimestamp") and not finalizers \
                and not out["metadata"].get("finalizers"):
            await self.rest.objects.delete(r, None, name)
        return json_response(out)

    async def binding(self, request: web.Request, ns: str, pod_name: str | None) -> web.Response:
        """pods/NAME/binding or bindings: set spec.nodeName once (the scheduler's write)."""
        body = decode_kind(await read_body(request), request.headers.get("Content-Type"),
                           "Binding", ("v1",))
        name = pod_name or (body.get("metadata") or {}).get("name")
        target = (body.get("target") or {}).get("name")
        if not name or not target:
            raise errors.invalid("Binding", name or "", [{"reason": "FieldValueRequired",
                                 "field": "target.name", "message": "Required value"}])
        pods = self.rest.registry.get("", "v1", "pods")
        annotations = (body.get("metadata") or {}).get("annotations")

        async def mutate(current: dict) -> dict:
            return bound_pod(current, name, target, annotations, now_rfc3339())

        await self.rest.objects.update(pods, ns, name, mutate, dry_run=dry_run(request.query),
                                       shared=True)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)

    async def eviction(self, request: web.Request, ns: str, name: str) -> web.Response:
        body = decode_kind(await read_body(request), request.headers.get("Content-Type"),
                           "Eviction", _EVICTION_VERSIONS)
        pods = self.rest.registry.get("", "v1", "pods")
        opts = dict(body.get("deleteOptions") or {})
        if dry_run(request.query):
            opts["dryRun"] = ["All"]
        await self.rest.delete_one(pods, ns, name, opts)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)

    async def token(self, request: web.Request, r: Resource, ns: str, name: str) -> web.Response:
        """serviceaccounts/NAME/token: a TokenRequest answered with a signed JWT."""
        body = decode_kind(await read_body(request), request.headers.get("Content-Type"),
                           "TokenRequest", ("authentication.k8s.io/v1",))
        sa = await self.rest.objects.get(r, ns, name)
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise errors.invalid("TokenRequest", name, [{
                "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                "message": f"Invalid value: {seconds}: may not specify a duration less than 10 minutes"}],
                "authentication.k8s.io")
        token, exp = self.signer.issue(ns, name, sa["metadata"]["uid"], seconds=seconds,
                                       audiences=spec.get("audiences") or None,
                                       bound=spec.get("boundObjectRef"))
        import datetime as dt

        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
               "spec": dict(spec, expirationSeconds=seconds,
                            audiences=spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]),
               "status": {"token": token, "expirationTimestamp": dt.datetime.fromtimestamp(
                   exp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        return json_response(out, 201)

    async def review(self, request: web.Request, r: Resource, user: User, authz) -> web.Response:
        body = decode_kind(await read_body(request), request.headers.get("Content-Type"),
                           r.kind, (r.api_version,))
        admission.check_type(r, body)
        out = copy.deepcopy(body)
        out.setdefault("metadata", {})["creationTimestamp"] = None
        spec = out.get("spec") or {}
        if r.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
            who = user if r.kind == "SelfSubjectAccessReview" else User(
                spec.get("user", ""), tuple(spec.get("groups") or []), spec.get("uid", ""))
            attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
            allowed, reason = authz(who, attrs)
            out["status"] = {"allowed": allowed}
            if reason:
                out["status"]["reason"] = reason
        elif r.kind == "SelfSubjectReview":
            out["status"] = {"userInfo": user.info()}
        elif r.kind == "SelfSubjectRulesReview":
            out["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                                "resources": ["*"]}],
                             "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                             "incomplete": False}
        elif r.kind == "TokenReview":
            token = spec.get("token", "")
            found = self.rest.token_lookup(token) if hasattr(self.rest, "token_lookup") else None
            out["status"] = ({"authenticated": True, "user": found.info()} if found
                             else {"authenticated": False, "error": "invalid bearer token"})
        else:
            raise errors.method_not_allowed()
        return json_response(out, 201)
