"""Validation of built-in kinds as kube-apiserver does it, with upstream's field errors.

`validate()` runs after defaulting. It reports three things apart, because the server answers them
differently: decode errors (wrong JSON types: 400 BadRequest), unknown fields (per fieldValidation:
Strict → 400, Warn → warning header, Ignore → nothing) and field errors (422 Invalid, whose
message `status_message()` builds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kybernetes.api import names, schemas
from kybernetes.api import validation_core as core
from kybernetes.api import validation_kinds as kinds
from kybernetes.api.validation_errors import (Cause, forbidden, invalid, required, too_long)

TOTAL_ANNOTATION_SIZE = 256 * 1024

# (group, kind) -> semantic checker(obj, old)
VALIDATORS = {
    ("", "Pod"): kinds.validate_pod,
    ("", "ReplicationController"): kinds.validate_replication_controller,
    ("apps", "Deployment"): kinds.validate_deployment,
    ("apps", "ReplicaSet"): kinds.validate_replicaset,
    ("apps", "StatefulSet"): kinds.validate_statefulset,
    ("apps", "DaemonSet"): kinds.validate_daemonset,
    ("", "Service"): core.validate_service,
    ("", "ConfigMap"): core.validate_configmap,
    ("", "Secret"): core.validate_secret,
    ("", "Namespace"): core.validate_namespace,
    ("", "Node"): core.validate_node,
    ("batch", "Job"): core.validate_job,
    ("batch", "CronJob"): core.validate_cronjob,
}


@dataclass(slots=True)
class ValidationResult:
    errors: list[Cause] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)
    decode_errors: list[Cause] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.decode_errors


def validate(api_version: str, kind: str, obj: dict, *, old: dict | None = None,
             strict: bool = True, types_checked: bool = False) -> ValidationResult:
    """Validate `obj` (and, on update, its change from `old`). Never raises on bad input.

    `strict=False` skips collecting unknown fields (fieldValidation=Ignore); `types_checked`
    skips the type walk (the caller walked the object, or what it grew from, already).
    """
    result = ValidationResult()
    if not isinstance(obj, dict):
        result.decode_errors.append(
            {"reason": "FieldValueTypeInvalid", "field": "",
             "message": "json: cannot unmarshal non-object into Go value of type struct"})
        return result
    walked = None if types_checked else schemas.check(api_version, kind, obj)
    if walked is not None:
        if strict:
            result.unknown_fields = walked.unknown_fields
        for path, message, _value in walked.decode_errors:
            result.decode_errors.append(
                {"reason": "FieldValueTypeInvalid", "message": message, "field": path})
        if result.decode_errors:
            return result  # upstream stops at decode: nothing else is looked at
        errors = [required(p) for p in walked.required]
    else:
        errors = []
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    errors += validate_object_meta(kind, meta)
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    if isinstance(old_meta, dict):
        errors += validate_object_meta_update(meta, old_meta)
    check = VALIDATORS.get((api_version.split("/")[0] if "/" in api_version else "", kind))
    if check is not None:
        try:
            errors += check(obj, old if isinstance(old, dict) else None)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError):
            # Shapes the structural walk let through (e.g. nulls inside lists) must not crash a
            # write; what the semantic checks could read has been reported already.
            pass
    result.errors = _dedupe(errors) if errors else errors
    return result


def _dedupe(errors: list[Cause]) -> list[Cause]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        k = (e["field"], e["reason"])
        if e["reason"] == "FieldValueRequired" and k in seen:
            continue
        seen.add(k)
        out.append(e)
    return out


# --- metadata ------------------------------------------------------------------------------------

def name_validator(kind: str):
    """Upstream's per-kind ValidateXName."""
    if kind == "Namespace":
        return names.name_is_dns_label
    if kind == "Service":
        return names.name_is_dns1035_label
    if kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        return names.path_segment_name
    return names.name_is_dns_subdomain


def validate_object_meta(kind: str, meta: dict, path: str = "metadata") -> list[Cause]:
    errs: list[Cause] = []
    name = meta.get("name")
    generate = meta.get("generateName")
    check = name_validator(kind)
    if isinstance(generate, str) and generate:
        for msg in check(generate, True):
            errs.append(invalid(f"{path}.generateName", generate, msg))
    if not name:
        if not generate:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    elif isinstance(name, str):
        for msg in check(name, False):
            errs.append(invalid(f"{path}.name", name, msg))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errs.append(invalid(f"{path}.generation", generation,
                            "must be greater than or equal to 0"))
    # Empty or absent maps and lists have nothing to report: skip building their paths.
    labels, annotations, refs = (meta.get("labels"), meta.get("annotations"),
                                 meta.get("ownerReferences"))
    if labels:
        errs += validate_labels(labels, f"{path}.labels")
    if annotations:
        errs += validate_annotations(annotations, f"{path}.annotations")
    if refs:
        errs += _owner_references(refs, f"{path}.ownerReferences")
    for i, fin in enumerate(meta.get("finalizers") or ()):
        if isinstance(fin, str):
            for msg in names.is_qualified_name(fin):
                errs.append(invalid(f"{path}.finalizers[{i}]", fin, msg))
    return errs


def validate_labels(labels: object, path: str) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(labels, dict):
        return errs
    for key, value in labels.items():
        for msg in names.is_qualified_name(key):
            errs.append(invalid(path, key, msg))
        if isinstance(value, str):
            for msg in names.is_label_value(value):
                errs.append(invalid(path, value, msg))
    return errs


def validate_annotations(annotations: object, path: str) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(annotations, dict):
        return errs
    total = 0
    for key, value in annotations.items():
        for msg in names.is_qualified_name(key.lower()):
            errs.append(invalid(path, key, msg))
        total += len(key.encode()) + len(str(value or "").encode())
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def _owner_references(refs: object, path: str) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(refs, list):
        return errs
    controllers = []
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"),
                          ("uid", "uid")):
            if not ref.get(key):
                errs.append(invalid(path, ref.get(key) or "", f"{what} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        errs.append(invalid(path, refs, "Only one reference can have Controller set to true. "
                            f"Found \"true\" in references for {' and '.join(controllers)}"))
    return errs


def validate_object_meta_update(meta: dict, old: dict, path: str = "metadata") -> list[Cause]:
    errs: list[Cause] = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        new_value, old_value = meta.get(key), old.get(key)
        if key in ("uid", "creationTimestamp") and not new_value:
            continue  # the server copies these from the stored object
        if (new_value or "") != (old_value or ""):
            errs.append(invalid(f"{path}.{key}", new_value or "", "field is immutable"))
    return errs


# --- the 422 message -----------------------------------------------------------------------------

def _qualified_kind(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind


def status_message(kind: str, name: str, causes: list[Cause], group: str = "") -> str:
    """Upstream NewInvalid: `Kind.group "name" is invalid: <aggregate>`.

    The aggregate is one error alone, or `[a, b]`; identical messages are listed once. `kind` may
    already be qualified ("Deployment.apps"); `group` qualifies a bare kind.
    """
    qualified = _qualified_kind(kind, group) if "." not in kind else kind
    messages: list[str] = []
    for c in causes:
        text = f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        aggregate = messages[0]
    else:
        aggregate = "[" + ", ".join(messages) + "]"
    return f"{qualified} {json.dumps(name, ensure_ascii=False)} is invalid: {aggregate}"


__all__ = ["Cause", "ValidationResult", "validate", "status_message", "validate_object_meta",
           "validate_labels", "validate_annotations", "forbidden"]
