"""Pod admission as kube-apiserver's Priority, DefaultTolerationSeconds and ServiceAccount plugins."""

import pytest

from kybernetes.api.errors import ApiError
from kybernetes.apiserver.admission_plugins import admit_pod

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
