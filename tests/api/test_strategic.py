"""Strategic merge patch, checked against the semantics of apimachinery's strategicpatch
(patch_test.go cases named in each docstring) using the official schemas."""

import copy

import pytest
from hypothesis import given, settings, strategies as st

from kybernetes.api.patch import PatchError
from kybernetes.api.strategic import patch_meta_for, strategic_merge

POD = "io.k8s.api.core.v1.Pod"
DEPLOY = "io.k8s.api.apps.v1.Deployment"


def pod(containers, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers, **spec}}


def names(obj):
    return [c["name"] for c in obj["spec"]["containers"]]


def test_kubectl_apply_patch_keeps_fields_and_orders_by_set_element_order():
    """kubectl client-side apply: `$setElementOrder/containers` + the changed container only."""
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"old": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.24", "imagePullPolicy": "IfNotPresent",
                 "terminationMessagePath": "/dev/termination-log"}]}}}}
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
             "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}],
                                            "containers": [{"image": "nginx:1.25", "name": "web"}]}}}}
    out = strategic_merge(live, patch, DEPLOY)
    [web] = out["spec"]["template"]["spec"]["containers"]
    assert web == {"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                   "terminationMessagePath": "/dev/termination-log"}
    assert out["metadata"]["annotations"] == {"old": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert out["spec"]["replicas"] == 2
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.24"  # input untouched


def test_set_element_order_reorders_and_keeps_server_only_items():
    """'$setElementOrder: reorder and add' — patch items follow the directive; server-only items
    keep their place relative to the live list."""
    live = pod([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "d"}, {"name": "a"}],
                      "containers": [{"name": "d", "image": "4"}]}}
    out = strategic_merge(live, patch, POD)
    # Upstream mergeSortedSlice: server-only "b" goes first because it precedes "c" in the live
    # list; then the directive's items in the directive's order.
    assert names(out) == ["b", "c", "d", "a"]
    assert {c["name"]: c["image"] for c in out["spec"]["containers"]} == {"a": "1", "b": "2", "c": "3", "d": "4"}


def test_set_element_order_rejects_mismatched_patch_order():
    live = pod([{"name": "a"}, {"name": "b"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]}}
    with pytest.raises(PatchError, match="doesn't match \\$setElementOrder list"):
        strategic_merge(live, patch, POD)


def test_merge_list_by_key_adds_and_merges():
    """'Merge lists of maps by merge key': matching names merge, new names are appended."""
    live = pod([{"name": "a", "image": "1", "args": ["x"]}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "b", "image": "3"}]}}, POD)
    assert out["spec"]["containers"] == [{"name": "a", "image": "2", "args": ["x"]}, {"name": "b", "image": "3"}]


def test_merge_list_order_without_directive():
    """Upstream normalizeElementOrder: patch order first for patch items, live order for the rest."""
    live = pod([{"name": "a"}, {"name": "b"}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "c"}, {"name": "a", "image": "i"}]}}, POD)
    assert names(out) == ["c", "a", "b"]


def test_list_without_strategy_is_replaced():
    """Container.args has no patch strategy: the patch list replaces the live one."""
    live = pod([{"name": "a", "args": ["1", "2"]}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}, POD)
    assert out["spec"]["containers"][0]["args"] == ["3"]


def test_delete_element_directive():
    """'Delete one item from a merging list' via `$patch: delete` (all duplicates go)."""
    live = pod([{"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, POD)
    assert names(out) == ["b"]
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        strategic_merge(live, {"spec": {"containers": [{"$patch": "delete"}]}}, POD)


def test_replace_list_directive():
    """'Replace a list of maps' via a `{"$patch": "replace"}` element."""
    live = pod([{"name": "a", "image": "1"}, {"name": "b"}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}, POD)
    assert out["spec"]["containers"] == [{"name": "c"}]


def test_merge_directive_in_list_is_rejected():
    with pytest.raises(PatchError, match="merging lists cannot yet be specified in the patch"):
        strategic_merge(pod([{"name": "a"}]), {"spec": {"containers": [{"$patch": "merge"}]}}, POD)


def test_map_directives():
    """'Replace map with $patch directive' and 'Delete map with $patch directive'."""
    live = pod([{"name": "a"}], securityContext={"runAsUser": 1, "fsGroup": 2})
    out = strategic_merge(live, {"spec": {"securityContext": {"$patch": "replace", "runAsGroup": 3}}}, POD)
    assert out["spec"]["securityContext"] == {"runAsGroup": 3}
    out = strategic_merge(live, {"spec": {"securityContext": {"$patch": "delete"}}}, POD)
    assert out["spec"]["securityContext"] == {}
    with pytest.raises(PatchError, match="unknown patch type: bogus"):
        strategic_merge(live, {"spec": {"securityContext": {"$patch": "bogus"}}}, POD)


def test_top_level_replace():
    out = strategic_merge(pod([{"name": "a"}]), {"$patch": "replace", "kind": "Pod"}, POD)
    assert out == {"kind": "Pod"}


def test_null_deletes_field_and_nulls_in_new_values_are_dropped():
    live = pod([{"name": "a"}], nodeName="n1", hostname="h")
    out = strategic_merge(live, {"spec": {"nodeName": None, "dnsConfig": {"options": None, "searches": ["x"]}}}, POD)
    assert "nodeName" not in out["spec"] and out["spec"]["hostname"] == "h"
    assert out["spec"]["dnsConfig"] == {"searches": ["x"]}
    assert "absent" not in strategic_merge(live, {"absent": None}, POD)


def test_primitive_merge_list_is_unioned_and_deletable():
    """finalizers has strategy merge: items are unioned; `$deleteFromPrimitiveList/finalizers`
    removes ('Delete from primitive list')."""
    live = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    out = strategic_merge(live, {"metadata": {"finalizers": ["c", "a"]}}, POD)
    # patch items in patch order; "b" (server-only) is placed after "a", which precedes it live
    assert out["metadata"]["finalizers"] == ["c", "a", "b"]
    out = strategic_merge(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD)
    assert out["metadata"]["finalizers"] == ["b"]
    out = strategic_merge({"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD)
    assert "finalizers" not in out["metadata"]


def test_retain_keys_clears_unlisted_fields():
    """Deployment.spec.strategy is retainKeys: switching to Recreate drops rollingUpdate."""
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = strategic_merge(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(PatchError, match="invalid patch format of retainKeys"):
        strategic_merge(live, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, DEPLOY)


def test_volume_retain_keys_in_merge_list():
    """Volumes are `merge,retainKeys` by name: changing the source type drops the old source."""
    live = pod([{"name": "a"}], volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}])
    patch = {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}
    out = strategic_merge(live, patch, POD)
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]


def test_integer_merge_key():
    """ContainerPort merges by containerPort (a number)."""
    live = pod([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}])
    out = strategic_merge(live, {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}, POD)
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]


def test_type_change_replaces_and_mixed_lists_error():
    live = pod([{"name": "a"}])
    assert strategic_merge(live, {"spec": {"containers": "x"}}, POD)["spec"]["containers"] == "x"
    live = {"metadata": {"finalizers": ["a"]}}
    with pytest.raises(PatchError, match="list element types are not identical"):
        strategic_merge(live, {"metadata": {"finalizers": [1]}}, POD)


def test_unknown_kind_falls_back_to_merge_patch():
    live = {"spec": {"items": [{"name": "a", "x": 1}], "keep": True}}
    out = strategic_merge(live, {"spec": {"items": [{"name": "a"}]}}, "com.example.v1.Widget")
    assert out == {"spec": {"items": [{"name": "a"}], "keep": True}}
    assert patch_meta_for("com.example.v1.Widget") is None


def test_non_object_patch_is_rejected():
    with pytest.raises(PatchError):
        strategic_merge({}, [], POD)


names_st = st.sampled_from(["a", "b", "c", "d", "e"])
containers_st = st.lists(
    st.fixed_dictionaries({"name": names_st}, optional={"image": st.sampled_from(["x", "y"]),
                                                        "workingDir": st.sampled_from(["/", "/tmp"])}),
    max_size=5, unique_by=lambda c: c["name"])


@settings(max_examples=60)
@given(containers_st)
def test_empty_patch_is_identity(containers):
    live = pod(containers, nodeName="n")
    assert strategic_merge(live, {}, POD) == live


@settings(max_examples=60)
@given(containers_st, containers_st)
def test_merge_key_list_keeps_unmentioned_elements(live_containers, patch_containers):
    live = pod(copy.deepcopy(live_containers))
    out = strategic_merge(live, {"spec": {"containers": patch_containers}}, POD)
    by_name = {c["name"]: c for c in out["spec"]["containers"]}
    assert len(by_name) == len(out["spec"]["containers"])  # no duplicates appear
    for c in live_containers:
        assert c["name"] in by_name
        for k, v in c.items():  # fields the patch does not touch survive
            patched = next((p for p in patch_containers if p["name"] == c["name"]), {})
            assert by_name[c["name"]][k] == patched.get(k, v)
    for p in patch_containers:
        assert all(by_name[p["name"]][k] == v for k, v in p.items())


@settings(max_examples=60)
@given(containers_st, st.permutations(["a", "b", "c", "d", "e"]))
def test_set_element_order_is_respected(live_containers, order):
    live = pod(copy.deepcopy(live_containers))
    present = [n for n in order if any(c["name"] == n for c in live_containers)]
    patch = {"spec": {"$setElementOrder/containers": [{"name": n} for n in present]}}
    out = strategic_merge(live, patch, POD)
    assert names(out) == present
