"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386) on plain dicts.

Strategic merge patch lives in `strategic.py`; all three raise `PatchError` for a bad patch, which
the API server turns into a 4xx Status. Inputs are never mutated.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer


class PatchError(ValueError):
    """A patch that cannot be applied (malformed, or a failed `test` operation)."""


def clone(value: Any) -> Any:
    """Deep copy of JSON data (dicts, lists, scalars); much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


# --- RFC 6902 ------------------------------------------------------------------------------------


def json_patch(document: Any, operations: Any) -> Any:
    """Apply a JSON patch (a list of operations) and return the new document."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations")
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(clone(document), in_place=True)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"test operation failed: {e}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchError(f"invalid json patch: {e}") from None
    except (TypeError, KeyError, IndexError, AttributeError) as e:
        # jsonpatch lets a few malformed operations escape as plain Python errors.
        raise PatchError(f"invalid json patch: {e!r}") from None


# --- RFC 7386 ------------------------------------------------------------------------------------


def merge_patch(document: Any, patch: Any) -> Any:
    """Apply a JSON merge patch: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        raise PatchError("merge patch must be a JSON object")
    return _merge(clone(document), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The smallest merge patch turning `original` into `modified` (kubectl's two-way diff).

    Not representable in RFC 7386: a null value inside `modified` (it would read as a deletion).
    """
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return clone(modified)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = clone(value)
        elif isinstance(value, dict) and isinstance(original[key], dict):
            sub = create_merge_patch(original[key], value)
            if sub:
                patch[key] = sub
        elif not json_equal(original[key], value):
            patch[key] = clone(value)
    return patch


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b
