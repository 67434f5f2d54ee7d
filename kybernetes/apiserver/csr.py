"""CertificateSigningRequest semantics in the API server (upstream's registry strategies):

- create records who asked (spec.username/uid/groups/extra) and starts with an empty status;
- /approval changes status.conditions only (Approved/Denied; `kubectl certificate approve`);
- /status (the signer's write) may set the certificate and other conditions but may not add,
  remove or change Approved/Denied.
"""

from __future__ import annotations

import contextvars
import copy

from aiohttp import web

from kybernetes.api import certificates, errors
from kybernetes.api.registry import Resource

from . import patching
from .authn import User
from .kinds import Hooks
from .objects import now_rfc3339
from .request import decode_body, dry_run, media_type, parse_accept, require_object

# The authenticated user of the request being served (set by the API server's middleware).
REQUEST_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("request_user",
                                                                           default=None)
_GROUP, _KIND = "certificates.k8s.io", "CertificateSigningRequest"
_DECISIONS = ("Approved", "Denied")


def _invalid(name: str, field: str, value, message: str, reason: str = "FieldValueInvalid") -> errors.ApiError:
    text = f"Invalid value: {value!r}: {message}" if reason == "FieldValueInvalid" else message
    return errors.invalid(_KIND, name, [{"reason": reason, "field": field, "message": text}], _GROUP)


class CsrHooks(Hooks):
    async def admit(self, obj: dict) -> None:
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
        spec = obj.setdefault("spec", {})
        user = REQUEST_USER.get()
        for k in ("username", "uid", "groups", "extra"):
            spec.pop(k, None)
        if user is not None:
            spec["username"] = user.name
            if user.uid:
                spec["uid"] = user.uid
            spec["groups"] = list(user.groups)
            if user.extra:
                spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        obj.pop("status", None)
        try:
            certificates.parse_request(obj)
        except certificates.CSRError as e:
            raise _invalid(name, "spec.request", "<request>", str(e)) from None
        exp = spec.get("expirationSeconds")
        if exp is not None and (not isinstance(exp, int) or exp < certificates.MIN_EXPIRATION_SECONDS):
            raise _invalid(name, "spec.expirationSeconds", exp, "may not specify a duration less "
                           "than 600 seconds (10 minutes)")


def _check_conditions(name: str, conds: list, old: list) -> None:
    seen: set[str] = set()
    for i, c in enumerate(conds):
        if not isinstance(c, dict) or not c.get("type"):
            raise _invalid(name, f"status.conditions[{i}].type", "", "Required value",
                           "FieldValueRequired")
        t = c["type"]
        if t in seen:
            raise _invalid(name, f"status.conditions[{i}].type", t, "", "FieldValueDuplicate")
        seen.add(t)
        if c.setdefault("status", "True") not in ("True", "False", "Unknown"):
            raise _invalid(name, f"status.conditions[{i}].status", c["status"],
                           'supported values: "True", "False", "Unknown"')
        if t in _DECISIONS and c["status"] != "True":
            raise _invalid(name, f"status.conditions[{i}].status", c["status"],
                           'supported values: "True"')
    if {"Approved", "Denied"} <= seen:
        i = next(i for i, c in enumerate(conds) if c["type"] == "Denied")
        raise _invalid(name, f"status.conditions[{i}].type", "Denied",
                       "Approved and Denied conditions are mutually exclusive")
    for t in _DECISIONS:
        if any(o.get("type") == t for o in old) and t not in seen:
            raise errors.invalid(_KIND, name, [{
                "reason": "FieldValueForbidden", "field": "status.conditions",
                "message": f"Forbidden: updates may not remove the {t} condition"}], _GROUP)


def approval_update(name: str, current: dict, wanted: dict) -> dict:
    """The object after an /approval write: the current one with the wanted conditions."""
    old = (current.get("status") or {}).get("conditions") or []
    conds = copy.deepcopy((wanted.get("status") or {}).get("conditions") or [])
    if not isinstance(conds, list):
        raise _invalid(name, "status.conditions", conds, "must be a list")
    _check_conditions(name, conds, old)
    certificates.populate_timestamps(conds, old, now_rfc3339())
    new = copy.deepcopy(current)
    new.setdefault("status", {})["conditions"] = conds
    return new


def status_update(name: str, current: dict, wanted: dict) -> dict:
    """The object after a /status write: Approved/Denied stay as they were."""
    old = (current.get("status") or {}).get("conditions") or []
    status = copy.deepcopy(wanted.get("status") or {})
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)
             and c.get("type") not in _DECISIONS]
    conds += [copy.deepcopy(c) for c in old if c.get("type") in _DECISIONS]
    _check_conditions(name, conds, old)
    certificates.populate_timestamps(conds, old, now_rfc3339())
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)
    cert = status.get("certificate")
    if cert:
        import base64
        from cryptography import x509
        try:
            x509.load_pem_x509_certificates(base64.b64decode(cert))
        except ValueError:
            raise _invalid(name, "status.certificate", "<certificate data>",
                           "must contain at least one CERTIFICATE PEM block") from None
        if certificates.is_denied(current) or certificates.is_failed(current):
            raise errors.invalid(_KIND, name, [{
                "reason": "FieldValueForbidden", "field": "status.certificate",
                "message": "Forbidden: certificate cannot be set on a denied or failed request"}],
                _GROUP)
    old_cert = (current.get("status") or {}).get("certificate")
    if old_cert and cert != old_cert:
        raise errors.invalid(_KIND, name, [{
            "reason": "FieldValueForbidden", "field": "status.certificate",
            "message": "Forbidden: updates may not modify existing certificate content"}], _GROUP)
    new = copy.deepcopy(current)
    new["status"] = status
    return new


async def write_subresource(rest, request: web.Request, r: Resource, name: str, sub: str,
                            method: str) -> web.Response:
    """PUT/PATCH of certificatesigningrequests/NAME/{approval,status}."""
    raw = await request.read()
    ctype = media_type(request.headers.get("Content-Type"))
    body = None if method == "PATCH" else \
        require_object(decode_body(raw, request.headers.get("Content-Type")))
    patch = patching.decode_patch(raw, ctype) if method == "PATCH" else None
    if body is not None:
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.bad_request(f"the name of the object ({body_name}) does not match the "
                                     f"name on the URL ({name})")
    update = approval_update if sub == "approval" else status_update

    async def mutate(current: dict) -> dict:
        wanted = body if body is not None else patching.apply_patch(r, current, patch, ctype)
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(r.plural, name, r.group)
        new = update(name, current, wanted)
        await rest.prepare_write(r, new, current, "status", request)
        return new

    _, out = await rest.objects.update(r, None, name, mutate, dry_run=dry_run(request.query))
    return rest.output(r, out, parse_accept(request.headers.get("Accept")))
