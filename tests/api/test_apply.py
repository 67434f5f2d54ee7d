"""Server-side apply and managedFields (kybernetes.api.apply, kybernetes.api.fieldsets)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api.apply import (ApplyConflict, ApplyInvalid, apply, fields_of,
                                  manager_from_user_agent, update_managed_fields)
from kybernetes.api.fieldsets import FieldSet, path_to_str, pe_from_str, pe_to_str

DEPLOY = "io.k8s.api.apps.v1.Deployment"
CM = "io.k8s.api.core.v1.ConfigMap"
SVC = "io.k8s.api.core.v1.Service"
T0, T1, T2, T3 = (f"2025-01-01T00:0{i}:00Z" for i in range(4))


def deployment(replicas=2, labels=None, containers=None):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"app": "web"} if labels is None else labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers if containers is not None else [
                    {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def entries(obj):
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def sset(obj_fields: dict) -> FieldSet:
    return FieldSet.from_json(obj_fields)


# -- FieldsV1 encoding ------------------------------------------------------------------------

def test_deployment_fields_use_keys_for_list_maps_and_leaves_for_atomics():
    fs = fields_of(deployment(), DEPLOY).to_json()
    spec = fs["f:spec"]
    assert spec["f:selector"] == {}  # LabelSelector is an atomic map: one leaf
    containers = spec["f:template"]["f:spec"]["f:containers"]
    assert list(containers) == ['k:{"name":"web"}']
    web = containers['k:{"name":"web"}']
    assert list(web)[0] == "."  # the item itself, written before its fields
    # The port key includes the protocol the schema defaults, with keys in sorted order.
    assert list(web["f:ports"]) == ['k:{"containerPort":80,"protocol":"TCP"}']
    assert web["f:ports"]['k:{"containerPort":80,"protocol":"TCP"}'] == {".": {}, "f:containerPort": {}}
    # Struct fields are not members themselves; map entries (labels) are.
    assert "." not in spec and "." not in fs["f:metadata"]["f:labels"]
    assert fs["f:metadata"]["f:labels"] == {"f:app": {}}


def test_fields_are_sorted_fields_then_keys():
    fs = fields_of({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                    "data": {"z": "1", "a": "2", "m": "3"}}, CM).to_json()
    assert list(fs["f:data"]) == ["f:a", "f:m", "f:z"]
    assert list(fs) == sorted(fs)


def test_set_lists_use_values_and_round_trip():
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "finalizers": ["b.io/x", "a.io/y"]}}
    fs = fields_of(obj, CM)
    assert fs.to_json()["f:metadata"]["f:finalizers"] == {'v:"a.io/y"': {}, 'v:"b.io/x"': {}}
    assert FieldSet.from_json(fs.to_json()) == fs


@given(st.one_of(st.text(max_size=8), st.integers(), st.booleans()))
def test_path_elements_round_trip(value):
    for pe in (("f", str(value)), ("v", value if not isinstance(value, bool) else ("\0b", value))):
        assert pe_from_str(pe_to_str(pe)) == pe


def test_path_strings_as_conflicts_print_them():
    pe = pe_from_str('k:{"containerPort":80,"protocol":"TCP"}')
    assert path_to_str((("f", "spec"), ("f", "ports"), pe, ("f", "name"))) == \
        '.spec.ports[containerPort=80,protocol="TCP"].name'
    assert path_to_str((("f", "finalizers"), ("v", "x"))) == '.finalizers[="x"]'


def test_untyped_objects_have_granular_maps_and_atomic_lists():
    cr = {"apiVersion": "ex.io/v1", "kind": "Thing", "metadata": {"name": "t"},
          "spec": {"size": 3, "tags": ["a", "b"], "nested": {"x": 1}}}
    fs = fields_of(cr, None).to_json()
    assert fs["f:spec"]["f:tags"] == {}
    assert fs["f:spec"]["f:nested"] == {".": {}, "f:x": {}}


# -- apply --------------------------------------------------------------------------------------

def test_apply_creates_with_one_apply_entry():
    obj = apply(None, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0)
    assert obj["spec"]["replicas"] == 2
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["apiVersion"] == "apps/v1" and entry["time"] == T0
    assert entry["fieldsType"] == "FieldsV1"
    owned = sset(entry["fieldsV1"])
    assert owned.has((("f", "spec"), ("f", "replicas")))
    # Identity and server-owned metadata are never recorded.
    assert not owned.has((("f", "metadata"), ("f", "name")))
    assert not owned.has((("f", "apiVersion"),))


def test_reapply_without_a_field_removes_it():
    live = apply(None, deployment(labels={"app": "web", "tier": "front"}), "kubectl", DEPLOY,
                 force=False, api_version="apps/v1", now=T0)
    again = apply(live, deployment(labels={"app": "web"}), "kubectl", DEPLOY, force=False,
                  api_version="apps/v1", now=T1)
    assert again["metadata"]["labels"] == {"app": "web"}
    owned = sset(entries(again)[("kubectl", "Apply")]["fieldsV1"])
    assert not owned.has((("f", "metadata"), ("f", "labels"), ("f", "tier")))


def test_reapply_keeps_fields_another_manager_owns():
    live = apply(None, deployment(labels={"app": "web", "tier": "front"}), "kubectl", DEPLOY,
                 force=False, api_version="apps/v1", now=T0)
    live = apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "labels": {"tier": "front"}}},
                 "other", DEPLOY, force=False, api_version="apps/v1", now=T1)
    again = apply(live, deployment(labels={"app": "web"}), "kubectl", DEPLOY, force=False,
                  api_version="apps/v1", now=T2)
    assert again["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_removing_a_container_removes_the_item():
    two = [{"name": "web", "image": "nginx"}, {"name": "side", "image": "busybox"}]
    live = apply(None, deployment(containers=two), "kubectl", DEPLOY, force=False,
                 api_version="apps/v1", now=T0)
    again = apply(live, deployment(containers=two[:1]), "kubectl", DEPLOY, force=False,
                  api_version="apps/v1", now=T1)
    assert [c["name"] for c in again["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_live_defaults_survive_and_keyed_items_merge():
    live = apply(None, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1",
                 now=T0)
    port = live["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    port["protocol"] = "TCP"  # what defaulting adds
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    again = apply(live, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1",
                  now=T1)
    web = again["spec"]["template"]["spec"]["containers"]
    assert len(web) == 1 and web[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert web[0]["imagePullPolicy"] == "IfNotPresent"


def test_conflict_with_an_update_manager():
    live = apply(None, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    update_managed_fields(live, scaled, "kubectl-client-side-apply", DEPLOY,
                          api_version="apps/v1", now=T1)
    with pytest.raises(ApplyConflict) as err:
        apply(scaled, deployment(replicas=3), "kubectl", DEPLOY, force=False,
              api_version="apps/v1", now=T2)
    assert err.value.message == ('Apply failed with 1 conflict: conflict with '
                                 '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert err.value.causes == [{"type": "FieldManagerConflict",
                                 "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                                 "field": ".spec.replicas"}]


def test_same_value_is_shared_not_a_conflict():
    live = apply(None, deployment(), "a", DEPLOY, force=False, api_version="apps/v1", now=T0)
    both = apply(live, deployment(), "b", DEPLOY, force=False, api_version="apps/v1", now=T1)
    for e in both["metadata"]["managedFields"]:
        assert sset(e["fieldsV1"]).has((("f", "spec"), ("f", "replicas")))


def test_conflicts_between_appliers_and_force_moves_ownership():
    live = apply(None, deployment(), "a", DEPLOY, force=False, api_version="apps/v1", now=T0)
    cm_b = deployment(replicas=4, labels={"app": "other"})
    with pytest.raises(ApplyConflict) as err:
        apply(live, cm_b, "b", DEPLOY, force=False, api_version="apps/v1", now=T1)
    assert err.value.message.startswith('Apply failed with 2 conflicts: conflicts with "a":\n')
    assert {c["field"] for c in err.value.causes} == {".metadata.labels.app", ".spec.replicas"}
    forced = apply(live, cm_b, "b", DEPLOY, force=True, api_version="apps/v1", now=T1)
    assert forced["spec"]["replicas"] == 4
    owned_a = sset(entries(forced)[("a", "Apply")]["fieldsV1"])
    owned_b = sset(entries(forced)[("b", "Apply")]["fieldsV1"])
    assert not owned_a.has((("f", "spec"), ("f", "replicas")))
    assert owned_b.has((("f", "spec"), ("f", "replicas")))


def test_status_ignored_on_the_main_resource():
    obj = deployment()
    obj["status"] = {"replicas": 9}
    out = apply(None, obj, "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0,
                ignore=("status",))
    assert "f:status" not in out["metadata"]["managedFields"][0]["fieldsV1"]


def test_configmap_and_service_apply():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {"a": "1", "b": "2"}}
    live = apply(None, cm, "x", CM, force=False, api_version="v1", now=T0)
    cm2 = copy.deepcopy(cm)
    del cm2["data"]["b"]
    assert apply(live, cm2, "x", CM, force=False, api_version="v1", now=T1)["data"] == {"a": "1"}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    out = apply(None, svc, "x", SVC, force=False, api_version="v1", now=T0)
    ports = out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert list(ports) == ['k:{"port":80,"protocol":"TCP"}']


def test_untyped_custom_resource_apply_and_prune():
    cr = {"apiVersion": "ex.io/v1", "kind": "Thing", "metadata": {"name": "t"},
          "spec": {"size": 3, "tags": ["a", "b"], "opts": {"x": 1, "y": 2}}}
    live = apply(None, cr, "op", None, force=False, api_version="ex.io/v1", now=T0)
    cr2 = copy.deepcopy(cr)
    del cr2["spec"]["opts"]["y"]
    cr2["spec"]["tags"] = ["c"]
    out = apply(live, cr2, "op", None, force=False, api_version="ex.io/v1", now=T1)
    assert out["spec"] == {"size": 3, "tags": ["c"], "opts": {"x": 1}}


def test_list_map_item_without_its_key_is_invalid():
    bad = deployment(containers=[{"image": "nginx"}])
    with pytest.raises(ApplyInvalid, match='omits key field "name"'):
        apply(None, bad, "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0)


def test_no_change_keeps_the_apply_time():
    live = apply(None, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0)
    again = apply(live, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T1)
    assert again == live


def test_untracked_live_object_belongs_to_before_first_apply():
    live = deployment(replicas=1)
    with pytest.raises(ApplyConflict, match='"before-first-apply" using apps/v1: .spec.replicas'):
        apply(live, deployment(replicas=3), "kubectl", DEPLOY, force=False,
              api_version="apps/v1", now=T0)


# -- update_managed_fields ------------------------------------------------------------------

def test_create_update_entry_marks_new_items():
    obj = deployment()
    update_managed_fields(None, obj, "kubectl-create", DEPLOY, api_version="apps/v1", now=T0)
    (entry,) = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["time"]) == ("kubectl-create", "Update", T0)
    f = entry["fieldsV1"]
    assert "." in f["f:metadata"]["f:labels"]  # a map created from nothing
    assert "." not in f["f:spec"]  # spec exists (empty) in the zero object
    assert "." not in f["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_update_after_apply_moves_ownership_of_changed_fields():
    live = apply(None, deployment(), "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T0)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 7
    new["metadata"]["labels"]["extra"] = "yes"
    update_managed_fields(live, new, "kubectl-edit", DEPLOY, api_version="apps/v1", now=T1)
    got = entries(new)
    edit = sset(got[("kubectl-edit", "Update")]["fieldsV1"])
    applier = sset(got[("kubectl", "Apply")]["fieldsV1"])
    assert edit.has((("f", "spec"), ("f", "replicas")))
    assert edit.has((("f", "metadata"), ("f", "labels"), ("f", "extra")))
    assert not applier.has((("f", "spec"), ("f", "replicas")))
    assert applier.has((("f", "spec"), ("f", "template"), ("f", "metadata"), ("f", "labels"),
                        ("f", "app")))
    # Apply entries sort before Update entries.
    assert [e["operation"] for e in new["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_update_that_takes_everything_drops_the_empty_entry():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    live = apply(None, cm, "one", CM, force=False, api_version="v1", now=T0)
    new = copy.deepcopy(live)
    new["data"]["a"] = "2"
    update_managed_fields(live, new, "two", CM, api_version="v1", now=T1)
    assert [e["manager"] for e in new["metadata"]["managedFields"]] == ["two"]
    # A created map stays owned (as a member) by its creator when another writer edits inside.
    update_managed_fields(None, cm, "one", CM, api_version="v1", now=T0)
    edited = copy.deepcopy(cm)
    edited["data"]["a"] = "2"
    update_managed_fields(cm, edited, "two", CM, api_version="v1", now=T1)
    one = sset(entries(edited)[("one", "Update")]["fieldsV1"])
    assert one.has((("f", "data"),)) and not one.has((("f", "data"), ("f", "a")))


def test_noop_update_keeps_entry_time_and_reset_clears():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    update_managed_fields(None, cm, "one", CM, api_version="v1", now=T0)
    same = copy.deepcopy(cm)
    update_managed_fields(cm, same, "one", CM, api_version="v1", now=T1)
    assert same["metadata"]["managedFields"][0]["time"] == T0
    reset = copy.deepcopy(cm)
    reset["metadata"]["managedFields"] = []
    update_managed_fields(cm, reset, "one", CM, api_version="v1", now=T2)
    assert "managedFields" not in reset["metadata"]


def test_manager_from_user_agent():
    assert manager_from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abcdef") == "kubectl"
    assert manager_from_user_agent("Go-http-client/1.1") == "Go-http-client"
    assert manager_from_user_agent("OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"
    assert len(manager_from_user_agent("x" * 300)) == 128


# -- properties ---------------------------------------------------------------------------------

_names = st.text(alphabet="abcdefgh", min_size=1, max_size=5)
_labels = st.dictionaries(_names, st.text(alphabet="xyz", max_size=3), max_size=5)
_containers = st.lists(
    st.fixed_dictionaries({"name": _names, "image": st.sampled_from(["a", "b", "c"])}),
    max_size=4, unique_by=lambda c: c["name"])


@settings(max_examples=60, deadline=None)
@given(_labels, _containers, _labels, _containers)
def test_apply_is_idempotent(labels, containers, labels0, containers0):
    start = apply(None, deployment(labels=labels0, containers=containers0), "other", DEPLOY,
                  force=False, api_version="apps/v1", now=T0)
    cfg = deployment(labels=labels, containers=containers)
    once = apply(start, cfg, "kubectl", DEPLOY, force=True, api_version="apps/v1", now=T1)
    twice = apply(once, cfg, "kubectl", DEPLOY, force=False, api_version="apps/v1", now=T2)
    assert twice == once
    # What was applied is in the object.
    assert all(once["metadata"]["labels"][k] == v for k, v in labels.items())
    names = [c["name"] for c in once["spec"]["template"]["spec"]["containers"]]
    assert [n for n in names if n in {c["name"] for c in containers}] == \
        [c["name"] for c in containers]


@settings(max_examples=60, deadline=None)
@given(_labels, _labels)
def test_reapply_of_a_smaller_config_leaves_exactly_it(first, second):
    live = apply(None, deployment(labels=first), "kubectl", DEPLOY, force=False,
                 api_version="apps/v1", now=T0)
    out = apply(live, deployment(labels=second), "kubectl", DEPLOY, force=False,
                api_version="apps/v1", now=T1)
    assert out["metadata"].get("labels", {}) == second
