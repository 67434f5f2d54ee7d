"""What happens to an object between decoding and the store: defaults, per-kind strategy
(status handling, generation), validation. Mirrors kube-apiserver's registry strategies."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from kybernetes.api import crdschema, defaults, errors, schemas, validation
from kybernetes.api.registry import Resource

from . import convert
from .objects import new_uid, now_rfc3339

# Kinds whose metadata.generation tracks spec changes (their strategies set it upstream).
_GENERATION = {
    ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
    ("apps", "daemonsets"), ("", "replicationcontrollers"), ("batch", "jobs"),
    ("batch", "cronjobs"), ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"), ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "ingresses"), ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("", "pods"),
}

# Metadata a client may not set or change.
_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                 "selfLink", "generation")
_DROPPED_ON_CREATE = _SERVER_OWNED + ("resourceVersion",)


@dataclass(slots=True)
class Fields:
    """Field validation outcome: warnings to send, or an error already raised."""

    warnings: list[str]


def tracks_generation(r: Resource) -> bool:
    return (r.group, r.plural) in _GENERATION or r.schema is not None


# Kinds whose creator reports status in the same write (the kubelet registers its Node so).
_KEEP_STATUS_ON_CREATE = {("", "nodes")}
# Status writes of these kinds may change metadata other than labels (upstream's apps status
# strategies reset only spec and labels; the deployment controller writes annotations so).
_STATUS_KEEPS_META = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
                      ("apps", "daemonsets")}


def has_status(r: Resource) -> bool:
    return "status" in r.subresources


def check_type(r: Resource, obj: dict) -> None:
    """apiVersion/kind in the body must name this resource (empty is filled in)."""
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if kind is not None and kind != r.kind:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({r.api_version})"
            if api_version and api_version != r.api_version else
            f'{kind} in version "{r.version}" cannot be handled as a {r.kind}: '
            f'no kind "{kind}" is registered for version "{r.api_version}"')
    if api_version is not None and api_version != r.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({r.api_version})")
    obj["apiVersion"] = r.api_version
    obj["kind"] = r.kind


def field_check(r: Resource, obj: dict, mode: str) -> list[str]:
    """Decoding as kube does it: type mismatches → 400; unknown fields: Strict → 400,
    Warn → warnings, Ignore → nothing."""
    return field_check_walked(r, obj, mode)[0]


def field_check_walked(r: Resource, obj: dict, mode: str) -> tuple[list[str], bool]:
    """field_check, and whether the walk found the body complete (no required field missing):
    then the server's own additions (defaults, admission) cannot make it incomplete, and
    validate() need not walk the types again."""
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got "{mode}"')
    if r.schema is not None:
        return _prune(r, obj, mode), False
    walked = schemas.check(r.api_version, r.kind, obj)
    if walked is None:
        return [], False
    return _walk_outcome(r, obj, mode, walked), not walked.required


def _walk_outcome(r: Resource, obj: dict, mode: str, walked) -> list[str]:
    if walked.decode_errors:
        _, message, _ = walked.decode_errors[0]
        raise errors.bad_request(
            f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: {message}')
    if not walked.unknown_fields:
        return []
    msgs = [f'unknown field "{f}"' for f in walked.unknown_fields]
    if mode == "Strict":
        raise _strict_error(r, msgs)
    for path in walked.unknown_fields:  # the decoder drops what it does not know
        _drop_path(obj, path)
    return [] if mode == "Ignore" else msgs


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _drop_path(obj, path: str) -> None:
    """Remove `spec.template.spec.containers[0].imagee` from obj, if it is there."""
    parts = [int(i) if i else k for k, i in _PATH_PART.findall(path)]
    cur = obj
    for part in parts[:-1]:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def _prune(r: Resource, obj: dict, mode: str) -> list[str]:
    """Custom resources: unknown fields are dropped (Strict: refused, Warn: reported)."""
    dropped = crdschema.prune(r.schema, obj)
    if mode == "Ignore" or not dropped:
        return []
    msgs = [f'unknown field "{f}"' for f in dropped]
    if mode == "Strict":
        raise _strict_error(r, msgs)
    return msgs


def _strict_error(r: Resource, msgs: list[str]) -> errors.ApiError:
    # kube's decoder wording, e.g. `Widget in version "v1" cannot be handled as a Widget: ...`
    return errors.bad_request(f'{r.kind} in version "{r.version}" cannot be handled as a '
                              f'{r.kind}: strict decoding error: ' + ", ".join(msgs))


def apply_defaults(r: Resource, obj: dict) -> None:
    if r.schema is None:
        defaults.apply(r.api_version, r.kind, obj)
        if (r.group, r.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            crdschema.crd_defaults(obj)
    else:
        crdschema.apply_defaults(r.schema, obj)


def validate(r: Resource, obj: dict, old: dict | None, *, types_checked: bool = False) -> None:
    """Validate in the request's version, then turn `obj` (in place) into the stored version:
    this is the last step before every write. `types_checked`: field_check_walked found the
    request's body complete, so the type walk is not repeated."""
    meta = obj["metadata"]
    if r.schema is not None:
        causes = validation.validate_object_meta(r.kind, meta)
        if old is not None and isinstance(old.get("metadata"), dict):
            causes += validation.validate_object_meta_update(meta, old["metadata"])
        causes += crdschema.validate(r.schema, obj)
    else:
        causes = validation.validate(r.api_version, r.kind, obj, old=old, strict=False,
                                     types_checked=types_checked).errors
        if (r.group, r.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            causes += crdschema.validate_crd(obj, old)
    if causes:
        raise errors.invalid(r.kind, meta.get("name") or meta.get("generateName", ""),
                             _dedupe(causes), r.group)
    stored = convert.to_storage(r, obj)
    if stored is not obj:
        obj.clear()
        obj.update(stored)


def _dedupe(causes: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in causes:
        k = (c.get("field"), c.get("message"))
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's: no vowels, no confusable digits


def generate_name(prefix: str) -> str:
    import random

    prefix = prefix[: 63 - 5]
    return prefix + "".join(random.choices(_SUFFIX_ALPHABET, k=5))


def prepare_create(r: Resource, obj: dict, namespace: str | None) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    for k in _DROPPED_ON_CREATE:
        meta.pop(k, None)
    if r.namespaced:
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace or meta.get("namespace")
    else:
        meta.pop("namespace", None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now_rfc3339()
    if tracks_generation(r):
        meta["generation"] = 1
    if has_status(r) and (r.group, r.plural) not in _KEEP_STATUS_ON_CREATE:
        obj.pop("status", None)
    _KIND_CREATE.get((r.group, r.plural), _noop)(obj)


def prepare_update(r: Resource, obj: dict, old: dict, subresource: str | None) -> None:
    """Carry over what this write may not change; bump generation on spec changes."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    old_meta = old["metadata"]
    for k in _SERVER_OWNED:
        if k in old_meta:
            meta[k] = copy.deepcopy(old_meta[k])
        else:
            meta.pop(k, None)
    meta["name"], meta["namespace"] = old_meta["name"], old_meta.get("namespace")
    if not r.namespaced:
        meta.pop("namespace", None)
    if subresource == "status":
        # Status writes change status only (metav1.ResetObjectMetaForStatus keeps the rest).
        new_status = obj.get("status")
        new_meta = obj.get("metadata")
        obj.clear()
        obj.update(copy.deepcopy(old))
        if (r.group, r.plural) in _STATUS_KEEPS_META:
            obj["metadata"] = dict(new_meta, labels=copy.deepcopy(old_meta.get("labels")))
            if obj["metadata"]["labels"] is None:
                del obj["metadata"]["labels"]
        if new_status is None:
            obj.pop("status", None)
        else:
            obj["status"] = new_status
        return
    if has_status(r):
        if "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        else:
            obj.pop("status", None)
    if tracks_generation(r) and _spec(obj) != _spec(old):
        meta["generation"] = old_meta.get("generation", 0) + 1
    _KIND_UPDATE.get((r.group, r.plural), _noop2)(obj, old)


def _spec(obj: dict):
    # Everything but metadata and status counts as spec (ConfigMap data, RBAC rules, ...).
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _noop(obj: dict) -> None:
    pass


def _noop2(obj: dict, old: dict) -> None:
    pass


def _pod_create(obj: dict) -> None:
    obj["status"] = {"phase": "Pending", "qosClass": defaults.qos_class(obj)}


def _job_create(obj: dict) -> None:
    defaults.generate_job_selector(obj)


def _namespace_create(obj: dict) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def _namespace_update(obj: dict, old: dict) -> None:
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    # spec.finalizers change only through /finalize
    if "spec" in old:
        obj["spec"] = copy.deepcopy(old["spec"])


def _volume_create(obj: dict) -> None:
    obj["status"] = {"phase": "Pending"}


_KIND_CREATE = {("", "pods"): _pod_create, ("", "persistentvolumes"): _volume_create,
                ("", "persistentvolumeclaims"): _volume_create, ("", "namespaces"): _namespace_create,
                ("batch", "jobs"): _job_create}
_KIND_UPDATE = {("", "namespaces"): _namespace_update}
