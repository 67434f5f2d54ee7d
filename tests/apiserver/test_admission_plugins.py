"""Pod admission as kube-apiserver's Priority, DefaultTolerationSeconds and ServiceAccount plugins."""

import uuid

import pytest

from kybernetes.api.errors import ApiError
from kybernetes.apiserver.admission_plugins import admit_pod
from kybernetes.client import resource
from kybtest import new_namespace

HIGH = {"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}
DEFAULT = {"metadata": {"name": "low-default"}, "value": 5, "globalDefault": True}


def pod(**spec):
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


def test_priority_from_class_and_global_default():
    p = pod(priorityClassName="high")
    admit_pod(p, [HIGH, DEFAULT])
    assert p["spec"]["priority"] == 1000 and p["spec"]["preemptionPolicy"] == "Never"
    q = pod()
    admit_pod(q, [HIGH, DEFAULT])
    assert q["spec"]["priority"] == 5 and q["spec"]["priorityClassName"] == "low-default"
    r = pod()
    admit_pod(r, [])
    assert r["spec"]["priority"] == 0 and r["spec"]["preemptionPolicy"] == "PreemptLowerPriority"


def test_unknown_priority_class_is_forbidden():
    with pytest.raises(ApiError) as e:
        admit_pod(pod(priorityClassName="nope"), [])
    assert e.value.code == 403 and "no PriorityClass with name nope was found" in e.value.message


def test_default_tolerations_added_once():
    p = pod(tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                          "effect": "NoExecute", "tolerationSeconds": 10}])
    admit_pod(p, [])
    tol = p["spec"]["tolerations"]
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300} in tol
    unreachable = [t for t in tol if t["key"] == "node.kubernetes.io/unreachable"]
    assert unreachable == [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                            "effect": "NoExecute", "tolerationSeconds": 10}]


def test_service_account_volume_mounted():
    p = pod()
    admit_pod(p, [])
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default"
    vol = spec["volumes"][0]
    assert vol["name"].startswith("kube-api-access-")
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    off = pod(automountServiceAccountToken=False)
    admit_pod(off, [])
    assert "volumes" not in off["spec"]


def test_mirror_pods_keep_their_spec_and_may_not_name_a_service_account():
    """Upstream's ServiceAccount plugin leaves mirror pods unchanged and refuses ones that
    reference a service account ("a mirror pod may not reference service accounts")."""
    mirror = {"kubernetes.io/config.mirror": "abc"}
    p = pod()
    p["metadata"]["annotations"] = mirror
    admit_pod(p, [])
    assert "serviceAccountName" not in p["spec"] and "volumes" not in p["spec"]
    assert "volumeMounts" not in p["spec"]["containers"][0]
    q = pod(serviceAccountName="builder")
    q["metadata"]["annotations"] = mirror
    with pytest.raises(ApiError) as e:
        admit_pod(q, [])
    assert e.value.code == 403 and "a mirror pod may not reference service accounts" in e.value.message


async def test_pods_see_priority_classes_created_and_deleted_after_earlier_pods(client):
    """The server keeps the PriorityClass list between pod creates: a change must show at once."""
    pods, classes = resource("v1", "Pod"), resource("scheduling.k8s.io/v1", "PriorityClass")
    ns = await new_namespace(client, "prio")
    name = f"prio-{uuid.uuid4().hex[:6]}"

    def body(i: int) -> dict:
        return {"metadata": {"name": f"p{i}"}, "spec": {"priorityClassName": name,
                "containers": [{"name": "c", "image": "busybox"}]}}

    with pytest.raises(ApiError) as e:
        await client.create(pods, body(0), ns)
    assert e.value.code == 403
    await client.create(classes, {"metadata": {"name": name}, "value": 777})
    made = await client.create(pods, body(1), ns)
    assert made["spec"]["priority"] == 777
    await client.delete(classes, name)
    with pytest.raises(ApiError) as e:
        await client.create(pods, body(2), ns)
    assert e.value.code == 403 and f"no PriorityClass with name {name} was found" in e.value.message


def test_null_entries_and_lists_reach_validation_instead_of_crashing_admission():
    """Found by test_bad_input's hypothesis run: `containers: [null]` made admission fail with a
    500. Go decodes null entries as empty structs and null lists as nil: validation answers."""
    p = pod(tolerations=[None], volumes=None)
    p["spec"]["containers"] = [None, {"name": "c", "image": "i", "volumeMounts": None}]
    admit_pod(p, [])
    spec = p["spec"]
    assert spec["containers"][0] is None
    assert [m["mountPath"] for m in spec["containers"][1]["volumeMounts"]] == [
        "/var/run/secrets/kubernetes.io/serviceaccount"]
    assert [v["name"] for v in spec["volumes"]] == [spec["containers"][1]["volumeMounts"][0]["name"]]
    assert [t and t["key"] for t in spec["tolerations"]] == [
        None, "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]


async def test_a_pod_with_a_null_container_is_invalid_not_an_internal_error(client):
    ns = await new_namespace(client, "nullc")
    with pytest.raises(ApiError) as e:
        await client.create(resource("v1", "Pod"),
                            {"metadata": {"name": "p"}, "spec": {"containers": [None]}}, ns)
    assert e.value.code == 422


async def test_a_service_with_a_null_port_is_invalid_not_an_internal_error(client):
    """Found by test_bad_input at a larger fuzz scale: the port allocator read a null port."""
    services = resource("v1", "Service")
    ns = await new_namespace(client, "nullp")
    svc = await client.create(services, {"metadata": {"name": "s"}, "spec": {
        "ports": [{"port": 80}]}}, ns)
    svc["spec"]["ports"] = [None]
    for write in (lambda: client.update(services, svc),
                  lambda: client.create(services, {"metadata": {"name": "t"}, "spec": {
                      "type": "NodePort", "ports": [None]}}, ns)):
        with pytest.raises(ApiError) as e:
            await write()
        assert e.value.code == 422
