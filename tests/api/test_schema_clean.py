"""schemas.check skips the path-building walk when schemas.clean says there is nothing to find.
That shortcut must agree with the walk: clean exactly when the walk reports no unknown field,
no decode error and no missing required field, for valid objects and broken ones alike."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api import schemas

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"},
                    "creationTimestamp": "2026-01-01T00:00:00Z"},
       "spec": {"containers": [{"name": "c", "image": "i",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "resources": {"requests": {"cpu": "100m", "memory": 1024}}}],
                "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 300}],
                "terminationGracePeriodSeconds": 30, "hostNetwork": False},
       "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                      "lastProbeTime": None}]}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
          "data": {"k": "aGVsbG8="}, "type": "Opaque"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
                    st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", "aGVsbG8=", "!!"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2)
                      | st.dictionaries(st.sampled_from(["name", "x", "cpu"]), inner, max_size=2),
                      max_leaves=4)


def _paths(value, prefix=()):
    """Every place in value: (path to a container, key or index)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix, k
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield prefix, i
            yield from _paths(v, prefix + (i,))


@st.composite
def broken(draw) -> dict:
    """A valid object with a few places replaced, removed, or given an unknown sibling."""
    obj = copy.deepcopy(draw(st.sampled_from([POD, SECRET])))
    for _ in range(draw(st.integers(0, 3))):
        places = [p for p in _paths(obj) if p not in (((), "apiVersion"), ((), "kind"))]
        where, key = draw(st.sampled_from(places))
        parent = obj
        for p in where:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "delete", "unknown"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent["unknownField"] = draw(values)
    return obj


def walk_finds(obj: dict) -> bool:
    name = schemas.definition_for(obj.get("apiVersion"), obj.get("kind"))
    result = schemas.WalkResult()
    schemas.walk(obj, schemas.node_for(name), result, "", schemas._short(name), "")
    return bool(result.unknown_fields or result.decode_errors or result.required)


@settings(max_examples=400, deadline=None)
@given(broken())
def test_clean_exactly_when_the_walk_finds_nothing(obj):
    node = schemas.node_for(schemas.definition_for(obj["apiVersion"], obj["kind"]))
    assert schemas.clean(obj, node) == (not walk_finds(obj))
    walked = schemas.check(obj["apiVersion"], obj["kind"], obj)
    assert bool(walked.unknown_fields or walked.decode_errors or walked.required) == walk_finds(obj)


def test_the_valid_objects_are_clean_and_a_bad_one_is_reported_with_its_path():
    for obj in (POD, SECRET):
        assert schemas.clean(obj, schemas.node_for(schemas.definition_for("v1", obj["kind"])))
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    walked = schemas.check("v1", "Pod", pod)
    assert [p for p, _, _ in walked.decode_errors] == ["spec.containers[0].ports[0].containerPort"]
