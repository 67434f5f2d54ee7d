"""Garbage collector: the pure decisions (gc_graph) and cascading deletion end to end with a real
API server, `kyb controller-manager --controllers garbagecollector` and kubectl 1.33.

Matched against upstream pkg/controller/garbagecollector: attemptToDeleteItem's classification
of owners into solid / dangling / waitingForDependentsDeletion, processDeletingDependentsItem
(blockOwnerDeletion), orphanDependents, and the e2e "garbage collector" cases.
"""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybtest import Kubectl, controller_manager_running, create_namespace, kubectl_or_skip, wait_for
from kybernetes.api.registry import Resource
from kybernetes.controllers.gc_graph import (DANGLING, FOREGROUND, ORPHAN, SOLID, WAITING, Graph,
                                             finalizer_patch, needs_attention, node_from_meta,
                                             owner_refs_patch, owner_state, plan_dependent,
                                             unblocked, without_owners)

CM = Resource("", "v1", "ConfigMap", "configmaps")


# ---- pure decisions ----

def _ref(uid: str, block: bool = False, name: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name or f"o-{uid}", "uid": uid,
            "blockOwnerDeletion": block}


def test_owner_state_from_live_read():
    ref = _ref("u1")
    assert owner_state(ref, None) == DANGLING
    assert owner_state(ref, {"uid": "other"}) == DANGLING  # same name, another object
    assert owner_state(ref, {"uid": "u1"}) == SOLID
    assert owner_state(ref, {"uid": "u1", "deletionTimestamp": "t", "finalizers": [ORPHAN]}) == SOLID
    assert owner_state(ref, {"uid": "u1", "deletionTimestamp": "t",
                             "finalizers": [FOREGROUND]}) == WAITING


states_st = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                            st.sampled_from([SOLID, DANGLING, WAITING]), min_size=1)
finalizers_st = st.lists(st.sampled_from([ORPHAN, FOREGROUND, "example.com/x"]), unique=True)


@given(states_st, st.booleans(), finalizers_st, st.booleans())
def test_plan_dependent(states, has_deps, finalizers, cycle):
    refs = [_ref(u) for u in states]
    plan = plan_dependent(refs, states, has_deps, finalizers, dependent_deleting_dependents=cycle)
    solid = {u for u, s in states.items() if s == SOLID}
    waiting = {u for u, s in states.items() if s == WAITING}
    if solid:
        # an object with a live owner is never deleted; only the other references go
        assert plan.action in ("none", "remove-owners")
        assert set(plan.owners) == set(states) - solid
        assert (plan.action == "none") == (set(states) == solid)
        return
    assert plan.action == "delete"
    if waiting and has_deps:
        assert plan.policy == "Foreground"
        assert set(plan.owners) == (waiting if cycle else set())
    elif ORPHAN in finalizers:
        assert plan.policy == "Orphan"
    elif FOREGROUND in finalizers:
        assert plan.policy == "Foreground"
    else:
        assert plan.policy == "Background"


def test_reference_edits():
    refs = [_ref("a", True), _ref("b", True), _ref("c")]
    assert [r["uid"] for r in without_owners(refs, {"b"})] == ["a", "c"]
    out = unblocked(refs, {"a"})
    assert [r["blockOwnerDeletion"] for r in out] == [False, True, False]
    meta = {"uid": "x", "resourceVersion": "7", "finalizers": [FOREGROUND, "keep"]}
    ops = finalizer_patch(meta, FOREGROUND)
    assert {"op": "test", "path": "/metadata/resourceVersion", "value": "7"} in ops
    assert ops[-1] == {"op": "replace", "path": "/metadata/finalizers", "value": ["keep"]}
    assert finalizer_patch(meta, ORPHAN) is None
    assert owner_refs_patch(meta, [])[-1] == {"op": "remove", "path": "/metadata/ownerReferences"}


def _meta(uid, owners=(), ns="ns", deleting=False, finalizers=()):
    m = {"uid": uid, "name": f"o-{uid}", "namespace": ns,
         "ownerReferences": [_ref(o, block=True) for o in owners], "finalizers": list(finalizers)}
    if deleting:
        m["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return m


graph_ops = st.lists(st.tuples(st.booleans(), st.sampled_from("abcdef"),
                               st.lists(st.sampled_from("abcdefxy"), unique=True, max_size=3)),
                     max_size=30)


@settings(max_examples=60)
@given(graph_ops)
def test_graph_dependents_index_matches_nodes(ops):
    g = Graph()
    for insert, uid, owners in ops:
        if insert:
            g.upsert(node_from_meta(CM, _meta(uid, owners)))
        else:
            g.remove(uid)
    for owner in "abcdefxy":
        expected = {n.uid for n in g.nodes.values() if owner in n.owner_uids()}
        assert {d.uid for d in g.dependents(owner)} == expected
        assert {d.uid for d in g.blocking_dependents(owner)} == expected


def test_needs_attention():
    g = Graph()
    g.upsert(node_from_meta(CM, _meta("own")))
    dep = node_from_meta(CM, _meta("dep", ["own"]))
    g.upsert(dep)
    assert not needs_attention(dep, g)  # owner observed, alive
    ghost = node_from_meta(CM, _meta("g", ["missing"]))
    assert needs_attention(ghost, g)  # owner never observed: verify with a GET
    g.upsert(node_from_meta(CM, _meta("own", deleting=True, finalizers=[FOREGROUND])))
    assert needs_attention(dep, g)  # owner waits for its dependents
    other_ns = node_from_meta(CM, _meta("dep2", ["own"], ns="elsewhere"))
    g.upsert(node_from_meta(CM, _meta("own")))
    assert needs_attention(other_ns, g)  # a namespaced owner only counts in its own namespace


# ---- end to end ----

@pytest.fixture(scope="module")
def gc_manager(apiserver, tmp_path_factory):
    with controller_manager_running(apiserver.kubeconfig, "garbagecollector",
                                    tmp_path_factory.mktemp("gc") / "controller-manager.log") as proc:
        yield proc


@pytest.fixture
def kubectl(apiserver, tmp_path, gc_manager) -> Kubectl:
    return kubectl_or_skip(apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def ns(kubectl) -> str:
    return create_namespace(kubectl, "gc")


def uid_of(kubectl, ns, kind, name) -> str:
    return kubectl("-n", ns, "get", kind, name, "-o", "jsonpath={.metadata.uid}")


def make_dependent(kubectl, ns, name, owners: list[dict], finalizers=()) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": owners,
                         "finalizers": list(finalizers)}}
    kubectl("create", "-f", "-", input=json.dumps(body))


def owner_ref(kubectl, ns, name, block=True, kind="ConfigMap", api_version="v1",
              resource="configmap") -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name,
            "uid": uid_of(kubectl, ns, resource, name), "blockOwnerDeletion": block}


def exists(kubectl, ns, kind, name) -> bool:
    return kubectl.run("-n", ns, "get", kind, name, check=False).returncode == 0


def get_json(kubectl, ns, kind, name) -> dict:
    return json.loads(kubectl("-n", ns, "get", kind, name, "-o", "json"))


def test_background_deletes_dependents_after_owner(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "owner")
    ref = owner_ref(kubectl, ns, "owner")
    for name in ("dep-1", "dep-2"):
        make_dependent(kubectl, ns, name, [ref])
    kubectl("-n", ns, "create", "configmap", "bystander")
    kubectl("-n", ns, "delete", "configmap", "owner")
    wait_for(lambda: not exists(kubectl, ns, "cm", "dep-1") and not exists(kubectl, ns, "cm", "dep-2"),
             what="dependents to be collected")
    assert exists(kubectl, ns, "cm", "bystander")


def test_foreground_waits_for_blocking_dependents(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "owner")
    ref = owner_ref(kubectl, ns, "owner")
    # a finalizer keeps the blocking dependent around, so the owner has to wait for it
    make_dependent(kubectl, ns, "blocker", [ref], finalizers=["example.com/hold"])
    make_dependent(kubectl, ns, "loose", [dict(ref, blockOwnerDeletion=False)])
    kubectl("-n", ns, "delete", "configmap", "owner", "--cascade=foreground", "--wait=false")
    wait_for(lambda: not exists(kubectl, ns, "cm", "loose"), what="non-blocking dependent deletion")
    blocker = wait_for(lambda: get_json(kubectl, ns, "cm", "blocker")["metadata"].get("deletionTimestamp"),
                       what="blocking dependent to be deleted")
    assert blocker
    owner = get_json(kubectl, ns, "cm", "owner")
    assert owner["metadata"]["deletionTimestamp"]
    assert FOREGROUND in owner["metadata"]["finalizers"]
    kubectl("-n", ns, "patch", "configmap", "blocker", "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: not exists(kubectl, ns, "cm", "owner"), what="owner to go once its dependents are gone")
    assert not exists(kubectl, ns, "cm", "blocker")


def test_foreground_kubectl_waits_until_all_gone(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "owner")
    ref = owner_ref(kubectl, ns, "owner")
    make_dependent(kubectl, ns, "child", [ref])
    kubectl("-n", ns, "create", "configmap", "bystander")
    # a chain: owner → child → grandchild, all blocking
    make_dependent(kubectl, ns, "grandchild", [owner_ref(kubectl, ns, "child")])
    kubectl("-n", ns, "delete", "configmap", "owner", "--cascade=foreground", "--timeout=60s")
    for name in ("owner", "child", "grandchild"):
        wait_for(lambda: not exists(kubectl, ns, "cm", name), what=f"{name} to be deleted")
    assert exists(kubectl, ns, "cm", "bystander")


def test_orphan_keeps_dependents_without_the_reference(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "owner")
    kubectl("-n", ns, "create", "configmap", "other-owner")
    ref = owner_ref(kubectl, ns, "owner")
    other = owner_ref(kubectl, ns, "other-owner")
    make_dependent(kubectl, ns, "dep-1", [ref])
    make_dependent(kubectl, ns, "dep-2", [ref, other])
    kubectl("-n", ns, "delete", "configmap", "owner", "--cascade=orphan", "--timeout=60s")
    assert not exists(kubectl, ns, "cm", "owner")
    dep1 = get_json(kubectl, ns, "cm", "dep-1")
    assert not dep1["metadata"].get("ownerReferences")
    dep2 = get_json(kubectl, ns, "cm", "dep-2")
    assert [r["uid"] for r in dep2["metadata"]["ownerReferences"]] == [other["uid"]]


def test_dangling_owner_uid_is_collected(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "alive")
    alive = owner_ref(kubectl, ns, "alive")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "alive", "uid": str(uuid.uuid4())}
    missing = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": str(uuid.uuid4())}
    make_dependent(kubectl, ns, "orphaned", [ghost])       # name exists, uid differs
    make_dependent(kubectl, ns, "lost", [missing])         # owner never existed
    make_dependent(kubectl, ns, "half", [alive, missing])  # one owner left: kept
    wait_for(lambda: not exists(kubectl, ns, "cm", "orphaned") and not exists(kubectl, ns, "cm", "lost"),
             what="dependents of missing owners to be collected")
    half = wait_for(lambda: (lambda refs: refs if len(refs) == 1 else None)(
        get_json(kubectl, ns, "cm", "half")["metadata"].get("ownerReferences") or []),
        what="the dangling reference to be removed")
    assert half[0]["uid"] == alive["uid"]


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.gc.example.com
spec:
  group: gc.example.com
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""


def test_custom_resource_owner_and_dependent(kubectl, ns):
    tag = uuid.uuid4().hex[:6]
    kind, plural = f"Widget{tag}", f"widgets{tag}"
    kubectl("apply", "-f", "-", input=CRD.format(plural=plural, singular=f"widget{tag}", kind=kind))
    try:
        wait_for(lambda: kubectl.run("get", plural, "-A", check=False).returncode == 0, what="CRD served")
        body = {"apiVersion": "gc.example.com/v1", "kind": kind, "metadata": {"name": "w", "namespace": ns}}
        kubectl("create", "-f", "-", input=json.dumps(body))
        ref = owner_ref(kubectl, ns, "w", kind=kind, api_version="gc.example.com/v1", resource=plural)
        make_dependent(kubectl, ns, "cm-of-widget", [ref])
        # a custom resource as the dependent of a ConfigMap
        kubectl("-n", ns, "create", "configmap", "cm-owner")
        dep = dict(body, metadata={"name": "w-dep", "namespace": ns,
                                   "ownerReferences": [owner_ref(kubectl, ns, "cm-owner")]})
        kubectl("create", "-f", "-", input=json.dumps(dep))
        kubectl("-n", ns, "delete", plural, "w")
        wait_for(lambda: not exists(kubectl, ns, "cm", "cm-of-widget"), what="ConfigMap owned by a CR to go")
        kubectl("-n", ns, "delete", "configmap", "cm-owner")
        wait_for(lambda: not exists(kubectl, ns, plural, "w-dep"), what="CR owned by a ConfigMap to go")
    finally:
        kubectl.run("delete", "crd", f"{plural}.gc.example.com", check=False)
