"""Namespace controller: the pure parts (conditions, estimates) and `kubectl delete namespace`
end to end with a real API server, `kyb controller-manager --controllers namespace,...` and
kubectl 1.33.

Matched against upstream pkg/controller/namespace/deletion: namespaced_resources_deleter.go
(deleteAllContent, estimateGracefulTerminationForPods, finalizerEstimateSeconds) and
status_condition_utils.go (condition types, reasons and messages).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybtest import Kubectl, controller_manager_running, kubectl_or_skip, wait_for
from kybernetes.api.registry import Resource
from kybernetes.controllers.namespace import (CONDITION_TYPES, CONTENT_FAILURE, CONTENT_REMAINING,
                                              FINALIZER_ESTIMATE_SECONDS, FINALIZERS_REMAINING,
                                              Remaining, desired_conditions, finalized_spec,
                                              merge_conditions, pod_grace_estimate, remaining_for)

CM = Resource("", "v1", "ConfigMap", "configmaps")
DEPLOY = Resource("apps", "v1", "Deployment", "deployments")


# ---- pure parts ----

def _item(finalizers=()):
    return {"metadata": {"name": "x", "finalizers": list(finalizers)}}


def test_conditions_report_what_remains():
    rem = Remaining()
    rem.add(CM, [_item(["a/b"]), _item(["a/b", "c/d"])], FINALIZER_ESTIMATE_SECONDS)
    rem.add(DEPLOY, [_item()], 0)
    want = desired_conditions(rem)
    assert want[CONTENT_REMAINING] == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: configmaps. has 2 resource instances, "
        "deployments.apps has 1 resource instances")
    assert want[FINALIZERS_REMAINING] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: a/b in 2 resource instances, "
        "c/d in 1 resource instances")
    assert want[CONTENT_FAILURE][0] == "False"
    ok = desired_conditions(Remaining())
    assert all(status == "False" for status, _, _ in ok.values())
    assert set(ok) == set(CONDITION_TYPES)


def test_merge_conditions_moves_transition_time_only_on_flips():
    rem = Remaining()
    rem.add(CM, [_item(["a/b"])], 15)
    first, changed = merge_conditions([], desired_conditions(rem), "T1")
    assert changed and {c["type"] for c in first} == set(CONDITION_TYPES)
    same, changed = merge_conditions(first, desired_conditions(rem), "T2")
    assert not changed and same == first
    cleared, changed = merge_conditions(first, desired_conditions(Remaining()), "T3")
    assert changed
    by_type = {c["type"]: c for c in cleared}
    assert by_type[CONTENT_REMAINING]["status"] == "False"
    assert by_type[CONTENT_REMAINING]["lastTransitionTime"] == "T3"
    assert by_type[CONTENT_FAILURE]["lastTransitionTime"] == "T1"  # was False, still False


@given(st.lists(st.tuples(st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]),
                          st.one_of(st.none(), st.integers(0, 120))), max_size=6),
       st.integers(0, 200))
def test_pod_grace_estimate(pods, elapsed):
    deleted = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    objs = [{"status": {"phase": p}, "spec": {} if g is None else {"terminationGracePeriodSeconds": g}}
            for p, g in pods]
    est = pod_grace_estimate(objs, deleted, deleted + dt.timedelta(seconds=elapsed))
    live = [g for p, g in pods if p not in ("Succeeded", "Failed") and g is not None]
    longest = max(live, default=0)
    assert est == (longest if elapsed < longest else 0)


def test_leftovers_verdict():
    assert remaining_for(CM, [], 0, "n") == (0, None)
    assert remaining_for(CM, [_item()], 30, "n") == (30, None)  # pods still within their grace
    assert remaining_for(CM, [_item(["x/y"])], 0, "n") == (FINALIZER_ESTIMATE_SECONDS, None)
    est, err = remaining_for(DEPLOY, [_item()], 0, "n")
    assert est == 0 and err == "unexpected items still remain in namespace: n for gvr: apps/v1, Resource=deployments"


def test_finalized_spec_drops_only_kubernetes():
    assert finalized_spec(["kubernetes"]) == []
    assert finalized_spec(["kubernetes", "example.com/x"]) == ["example.com/x"]


# ---- end to end ----

@pytest.fixture(scope="module")
def manager(apiserver, tmp_path_factory):
    with controller_manager_running(apiserver.kubeconfig, "namespace,garbagecollector",
                                    tmp_path_factory.mktemp("ns") / "controller-manager.log") as proc:
        yield proc


@pytest.fixture
def kubectl(apiserver, tmp_path, manager) -> Kubectl:
    return kubectl_or_skip(apiserver.kubeconfig, tmp_path / "kubectl-cache")


def ns_json(kubectl, name) -> dict | None:
    p = kubectl.run("get", "namespace", name, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def test_delete_namespace_removes_content_then_namespace(kubectl):
    ns = f"nsdel-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    kubectl("-n", ns, "create", "configmap", "cm")
    kubectl("-n", ns, "create", "secret", "generic", "sec", "--from-literal=a=b")
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx")
    kubectl("-n", ns, "create", "serviceaccount", "robot")
    kubectl("-n", ns, "create", "service", "clusterip", "svc", "--tcp=80:80")
    # held by a finalizer, so the namespace stays Terminating until the test lets it go
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": ns, "finalizers": ["example.com/hold"]}}
    kubectl("create", "-f", "-", input=json.dumps(held))
    kubectl("delete", "namespace", ns, "--wait=false")

    out = kubectl("get", "namespace", ns)
    assert "Terminating" in out.splitlines()[1]
    refused = kubectl.run("-n", ns, "create", "configmap", "late", check=False)
    assert refused.returncode != 0
    assert f"unable to create new content in namespace {ns} because it is being terminated" in refused.stderr

    def held_only():
        left = kubectl("-n", ns, "get", "configmaps,secrets,deployments,serviceaccounts,services",
                       "-o", "name").split()
        return left == ["configmap/held"]
    wait_for(held_only, what="everything but the held ConfigMap to be deleted")
    conds = wait_for(lambda: {c["type"]: c for c in (ns_json(kubectl, ns) or {}).get("status", {})
                              .get("conditions") or [] if c["status"] == "True"}
                     .get("NamespaceFinalizersRemaining"), what="the finalizers condition")
    assert conds["reason"] == "SomeFinalizersRemain"
    assert "example.com/hold in 1 resource instances" in conds["message"]
    assert ns_json(kubectl, ns)["status"]["phase"] == "Terminating"

    kubectl("-n", ns, "patch", "configmap", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: ns_json(kubectl, ns) is None, what="the namespace to be deleted")


def test_namespace_waits_for_pods_on_nodes(kubectl, apiserver):
    """A pod bound to a node is deleted gracefully; the namespace goes once its kubelet (here
    the test) confirms the deletion."""
    ns = f"nspod-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
           "spec": {"terminationGracePeriodSeconds": 2, "nodeName": "node-that-never-answers",
                    "containers": [{"name": "c", "image": "nginx"}]}}
    kubectl("create", "-f", "-", input=json.dumps(pod))
    kubectl("-n", ns, "create", "configmap", "cm")
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: json.loads(kubectl("-n", ns, "get", "pod", "p", "-o", "json"))["metadata"]
             .get("deletionTimestamp"), what="the pod to be deleted gracefully")
    wait_for(lambda: not kubectl("-n", ns, "get", "configmaps", "-o", "name").strip(),
             what="the ConfigMap to go")
    assert ns_json(kubectl, ns)["status"]["phase"] == "Terminating"
    # the kubelet's confirmation
    kubectl("-n", ns, "delete", "pod", "p", "--grace-period=0", "--force")
    wait_for(lambda: ns_json(kubectl, ns) is None, what="the namespace to be deleted")
