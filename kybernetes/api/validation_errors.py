"""Field errors shaped like apimachinery's field.Error: a Status cause with upstream's wording.

A cause is `{"reason": "FieldValueInvalid", "message": "Invalid value: 0: ...", "field": "x"}`;
the message is upstream's ErrorBody (type words, the bad value the way Go prints it, the detail).
"""

from __future__ import annotations

import json

Cause = dict  # {"reason": str, "message": str, "field": str}


def go_repr(value: object) -> str:
    """How Go's %v/%q/%#v show a bad value in ErrorBody."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        items = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + items + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def label_selector_repr(sel: object) -> str:
    """A LabelSelector as Go's %#v prints it (the value of immutable-selector errors)."""
    if not isinstance(sel, dict):
        return '"null"'
    labels = sel.get("matchLabels")
    ml = go_repr(labels) if isinstance(labels, dict) and labels else "map[string]string(nil)"
    exprs = sel.get("matchExpressions")
    if exprs:
        parts = []
        for e in exprs:
            if not isinstance(e, dict):
                continue
            values = e.get("values")
            vs = go_repr(values) if values else "[]string(nil)"
            parts.append(f'v1.LabelSelectorRequirement{{Key:{json.dumps(e.get("key", ""))}, '
                         f'Operator:{json.dumps(e.get("operator", ""))}, Values:{vs}}}')
        me = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}"


class Raw(str):
    """A bad value already rendered (e.g. a Go struct repr): printed as is."""


def _cause(reason: str, path: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": path}


def _with_detail(s: str, detail: str) -> str:
    return f"{s}: {detail}" if detail else s


def _value(value: object) -> str:
    return str(value) if isinstance(value, Raw) else go_repr(value)


def required(path: str, detail: str = "") -> Cause:
    return _cause("FieldValueRequired", path, _with_detail("Required value", detail))


def invalid(path: str, value: object, detail: str = "") -> Cause:
    return _cause("FieldValueInvalid", path,
                  _with_detail(f"Invalid value: {_value(value)}", detail))


def type_invalid(path: str, value: object, detail: str = "") -> Cause:
    return _cause("FieldValueTypeInvalid", path,
                  _with_detail(f"Invalid value: {_value(value)}", detail))


def not_supported(path: str, value: object, supported: list[str] | tuple[str, ...]) -> Cause:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported \
        else ""
    return _cause("FieldValueNotSupported", path,
                  _with_detail(f"Unsupported value: {_value(value)}", detail))


def duplicate(path: str, value: object) -> Cause:
    return _cause("FieldValueDuplicate", path, f"Duplicate value: {_value(value)}")


def too_long(path: str, max_length: int) -> Cause:
    return _cause("FieldValueTooLong", path, f"Too long: must have at most {max_length} bytes")


def forbidden(path: str, detail: str = "") -> Cause:
    return _cause("FieldValueForbidden", path, _with_detail("Forbidden", detail))


def not_found(path: str, value: object) -> Cause:
    return _cause("FieldValueNotFound", path, f"Not found: {_value(value)}")


def non_negative(path: str, value: object) -> list[Cause]:
    """ValidateNonnegativeField."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def immutable(path: str, new: object, old: object, shown: object = None) -> list[Cause]:
    """ValidateImmutableField: `field is immutable` when the value changed."""
    if new != old:
        return [invalid(path, new if shown is None else shown, "field is immutable")]
    return []
