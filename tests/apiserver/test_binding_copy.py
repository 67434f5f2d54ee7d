"""A Binding builds the bound pod from the cached one without copying it whole
(subresources.bound_pod). The result must encode to exactly the bytes the plain way gives
(decode a private copy, set the fields in place) and the cached object must stay as it was."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api import errors
from kybernetes.apiserver.objects import encode
from kybernetes.apiserver.subresources import bound_pod
from kybernetes.apiserver.watchcache import decode

NOW = "2026-01-01T00:00:00Z"


def bound_by_full_copy(current: dict, node: str, annotations: dict | None) -> dict:
    """Binding as a read-modify-write of a full private copy."""
    new = decode(encode(current), 7)
    new.setdefault("spec", {})["nodeName"] = node
    conds = [c for c in (new.setdefault("status", {}).get("conditions") or [])
             if c.get("type") != "PodScheduled"]
    conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                  "lastTransitionTime": NOW})
    new["status"]["conditions"] = conds
    if annotations:
        new["metadata"].setdefault("annotations", {}).update(annotations)
    return new


keys = st.text("abcxyz./-", min_size=1, max_size=8)
condition = st.fixed_dictionaries({"type": st.sampled_from(["PodScheduled", "Ready", "X"]),
                                   "status": st.sampled_from(["True", "False"])})


@st.composite
def pods(draw) -> dict:
    meta: dict = {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7"}
    if draw(st.booleans()):
        meta["annotations"] = draw(st.dictionaries(keys, keys, max_size=3))
    meta["labels"] = draw(st.dictionaries(keys, keys, max_size=2))
    pod: dict = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
    if draw(st.booleans()):
        spec = {"containers": [{"name": "c", "image": "i",
                                "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}
        if draw(st.booleans()):
            spec["nodeName"] = ""
        spec["schedulerName"] = "default-scheduler"
        pod["spec"] = spec
    if draw(st.booleans()):
        status: dict = {"phase": "Pending"}
        if draw(st.booleans()):
            status["conditions"] = draw(st.lists(condition, max_size=3))
        status["qosClass"] = "BestEffort"
        pod["status"] = status
    return pod


@settings(max_examples=200, deadline=None)
@given(pods(), st.none() | st.dictionaries(keys, keys, max_size=3))
def test_bound_pod_encodes_as_a_full_copy_would_and_leaves_the_cached_pod_alone(pod, ann):
    before = copy.deepcopy(pod)
    new = bound_pod(pod, "p", "node-1", ann, NOW)
    assert encode(new) == encode(bound_by_full_copy(pod, "node-1", ann))
    assert pod == before and orjson.dumps(pod) == orjson.dumps(before)  # key order too
    # The write sets the new object's resourceVersion: that must not reach the cached pod.
    new["metadata"]["resourceVersion"] = "8"
    assert pod["metadata"]["resourceVersion"] == "7"


def test_bound_or_deleting_pods_are_refused():
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n0"}}
    with pytest.raises(errors.ApiError) as e:
        bound_pod(pod, "p", "n1", None, NOW)
    assert e.value.code == 409 and 'already assigned to node "n0"' in e.value.message
    pod = {"metadata": {"name": "p", "deletionTimestamp": NOW}, "spec": {}}
    with pytest.raises(errors.ApiError) as e:
        bound_pod(pod, "p", "n1", None, NOW)
    assert e.value.code == 409
