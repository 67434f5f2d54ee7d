"""Creates reuse the field sets of an earlier create of the same shape (patching.track_update).

The reused managedFields must be exactly what computing them afresh gives, for objects that
differ in the fields managedFields never lists (name, uid, timestamps), and a difference that
does show in field sets (an ownerReference's uid is a list key) must not hit the memo.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api import apply as applylib
from kybernetes.api.registry import Registry
from kybernetes.apiserver import patching

PODS = Registry().get("", "v1", "pods")
REQUEST = SimpleNamespace(query={}, headers={"User-Agent": "kubectl/v1.33.0 (linux/amd64)"})


def pod(name: str, uid: str, owner_uid: str, labels: dict[str, str], ports: list[int]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": uid, "generateName": "web-",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "web", "uid": owner_uid,
                                              "controller": True}]},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "ports": [{"containerPort": p, "protocol": "TCP"}
                                               for p in ports]}]}}


def fresh(obj: dict) -> list[dict]:
    obj = copy.deepcopy(obj)
    applylib.update_managed_fields(None, obj, "kubectl", patching.schema_ref(PODS),
                                   api_version="v1", now="T", subresource="",
                                   ignore=patching._ignored(PODS, None))
    return [dict(e, time="T") for e in obj["metadata"].get("managedFields") or []]


def tracked(obj: dict) -> list[dict]:
    obj = copy.deepcopy(obj)
    patching.track_update(PODS, None, obj, REQUEST)
    return [dict(e, time="T") for e in obj["metadata"].get("managedFields") or []]


names = st.text("abcdefghij0123456789-", min_size=1, max_size=12)
labels = st.dictionaries(st.sampled_from(["app", "tier", "x"]), names, max_size=3)
ports = st.lists(st.integers(1, 65535), unique=True, max_size=3)


@settings(max_examples=60, deadline=None)
@given(names, names, names, names, labels, ports)
def test_same_shape_reuses_exactly_what_a_fresh_computation_gives(n1, n2, u1, u2, lab, prt):
    patching._CREATE_MEMO.clear()
    first, second = pod(n1, u1, "owner-1", lab, prt), pod(n2, u2, "owner-1", lab, prt)
    assert tracked(first) == fresh(first)
    assert tracked(second) == fresh(second)  # a memo hit: names and uids differ only


def test_a_created_object_owns_its_entries():
    """Reused entries are the object's own: changing one object's entries (a later write
    stamping its time) changes neither the memo nor another object's."""
    patching._CREATE_MEMO.clear()
    objs = [pod(n, n, "owner-1", {"app": "x"}, [80]) for n in ("a", "b", "c")]
    for obj in objs[:2]:
        patching.track_update(PODS, None, obj, REQUEST)
    entries = objs[1]["metadata"]["managedFields"]
    entries[0]["time"] = "changed"
    entries.append({"manager": "other"})
    assert [e["time"] for e in objs[0]["metadata"]["managedFields"]] != ["changed"]
    assert tracked(objs[2]) == fresh(objs[2])


def test_a_list_key_value_is_part_of_the_shape():
    """ownerReferences are keyed by uid: another owner is another field set, not a memo hit."""
    patching._CREATE_MEMO.clear()
    a, b = pod("a", "1", "owner-1", {"app": "x"}, [80]), pod("b", "2", "owner-2", {"app": "x"}, [80])
    fa, fb = tracked(a), tracked(b)
    assert fa == fresh(a) and fb == fresh(b)
    assert fa[0]["fieldsV1"] != fb[0]["fieldsV1"]


def test_sent_managed_fields_and_updates_bypass_the_memo():
    patching._CREATE_MEMO.clear()
    obj = pod("a", "1", "owner-1", {}, [])
    patching.track_update(PODS, obj, copy.deepcopy(obj), REQUEST)  # an update
    sent = copy.deepcopy(obj)
    sent["metadata"]["managedFields"] = [{"manager": "m", "operation": "Update",
                                          "apiVersion": "v1", "fieldsType": "FieldsV1",
                                          "fieldsV1": {"f:spec": {}}}]
    patching.track_update(PODS, None, sent, REQUEST)
    assert patching._CREATE_MEMO == {}


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text("ab", max_size=2),
                    st.floats(-2, 2, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(scalars, scalars, scalars, scalars), min_size=2, max_size=4))
def test_scalar_values_never_change_a_field_set_beyond_type_and_emptiness(variants):
    """Event-like objects whose leaves vary (types, empty or not, null): every create gets
    what a fresh computation gives, whether it hit the memo or not."""
    patching._CREATE_MEMO.clear()
    for message, count, host, image in variants:
        obj = pod("p", "u", "owner", {"app": "x"}, [80])
        obj["metadata"]["annotations"] = {"note": message if isinstance(message, str) else ""}
        obj["spec"]["containers"][0]["image"] = image
        obj["spec"]["hostname"] = host
        obj["spec"]["priority"] = count
        obj["spec"]["nodeSelector"] = {} if not message else {"k": "v"}
        assert tracked(obj) == fresh(obj)
