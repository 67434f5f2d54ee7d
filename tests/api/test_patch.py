"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386)."""

import pytest
from hypothesis import given, strategies as st

from kybernetes.api.patch import PatchError, create_merge_patch, json_equal, json_patch, merge_patch

DOC = {"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [1, 2]}}


def test_json_patch_ops_and_input_untouched():
    out = json_patch(DOC, [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/metadata/labels/x"},
        {"op": "test", "path": "/metadata/name", "value": "a"},
    ])
    assert out["spec"] == {"replicas": 3, "list": [1, 2, 3]}
    assert out["metadata"]["labels"] == {}
    assert DOC["spec"]["replicas"] == 1 and DOC["metadata"]["labels"] == {"x": "1"}


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/name", "value": "b"}],       # failed test
    [{"op": "remove", "path": "/metadata/missing"}],                 # missing target
    [{"op": "replace", "path": "/spec/list/9", "value": 1}],          # index out of range
    [{"op": "frobnicate", "path": "/spec"}],                          # unknown op
    [{"path": "/spec"}],                                              # no op
    {"op": "add", "path": "/x", "value": 1},                          # not a list
])
def test_json_patch_errors(ops):
    with pytest.raises(PatchError):
        json_patch(DOC, ops)


def test_json_patch_failed_test_message():
    with pytest.raises(PatchError, match="test operation failed"):
        json_patch(DOC, [{"op": "test", "path": "/spec/replicas", "value": 2}])


def test_merge_patch_rfc7386_examples():
    """RFC 7386 appendix A cases."""
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_rejects_non_objects():
    with pytest.raises(PatchError):
        merge_patch({}, ["a"])


json_scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_docs = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=3), json_docs, max_size=4)


@given(json_objects, json_objects)
def test_create_then_apply_merge_patch(a, b):
    """Applying create_merge_patch(a, b) to a yields b (for documents without nulls)."""
    assert json_equal(merge_patch(a, create_merge_patch(a, b)), b)


@given(json_objects)
def test_merge_patch_identity(a):
    assert create_merge_patch(a, a) == {}
    assert json_equal(merge_patch(a, {}), a)


def test_json_equal_distinguishes_bools():
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal({"a": 1}, {"a": True})
