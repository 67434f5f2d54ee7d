"""Defaulting as upstream's SetDefaults_* (core/v1, apps/v1, batch/v1, ... defaults.go).

The target is what a real cluster shows for `kubectl get -o yaml`; each test names the upstream
rule it checks.
"""

from __future__ import annotations

import copy

import pytest

from kybernetes.api import defaults
from kybernetes.api.validation import validate


def applied(api_version: str, kind: str, obj: dict) -> dict:
    obj = {"apiVersion": api_version, "kind": kind, **copy.deepcopy(obj)}
    defaults.apply(api_version, kind, obj)
    return obj


POD_SPEC = {"containers": [{"name": "web", "image": "nginx"}]}
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}


def test_kubectl_create_deployment_looks_like_a_real_cluster():
    """`kubectl create deployment web --image=nginx` read back: apps/v1 SetDefaults_Deployment +
    SetDefaults_PodSpec/Container on the template, and nothing Pod-only (enableServiceLinks)."""
    obj = applied("apps/v1", "Deployment", {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": TEMPLATE}})
    assert obj["spec"] == {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "web", "image": "nginx", "imagePullPolicy": "Always",
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "resources": {}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "securityContext": {},
            "schedulerName": "default-scheduler"}},
    }
    assert validate("apps/v1", "Deployment", obj).ok


def test_recreate_strategy_gets_no_rolling_update():
    obj = applied("apps/v1", "Deployment", {"spec": {"strategy": {"type": "Recreate"}}})
    assert obj["spec"]["strategy"] == {"type": "Recreate"}


def test_client_values_win():
    obj = applied("apps/v1", "Deployment", {"spec": {
        "replicas": 0, "revisionHistoryLimit": 0,
        "strategy": {"rollingUpdate": {"maxSurge": 1}}, "template": TEMPLATE}})
    assert obj["spec"]["replicas"] == 0
    assert obj["spec"]["revisionHistoryLimit"] == 0
    assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "25%"}


def test_pod_only_defaults():
    """SetDefaults_Pod: enableServiceLinks and requests copied from limits (Pods, not templates);
    preemptionPolicy is what the Priority admission adds."""
    obj = applied("v1", "Pod", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]}})
    spec = obj["spec"]
    assert spec["enableServiceLinks"] is True
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["containers"][0]["resources"] == {"limits": {"cpu": "1"},
                                                  "requests": {"cpu": "1"}}
    assert defaults.qos_class(obj) == "Burstable"


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent")])
def test_image_pull_policy(image, policy):
    """SetDefaults_Container: Always for :latest or no tag, else IfNotPresent."""
    obj = applied("v1", "Pod", {"spec": {"containers": [{"name": "a", "image": image}]}})
    assert obj["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_container_nested_defaults():
    """Ports protocol TCP, probe timings and httpGet scheme/path, fieldRef apiVersion v1."""
    probe = {"httpGet": {"port": 80}}
    obj = applied("v1", "Pod", {"spec": {"containers": [{
        "name": "a", "image": "x", "ports": [{"containerPort": 80}],
        "livenessProbe": probe, "readinessProbe": {"exec": {"command": ["true"]},
                                                   "periodSeconds": 3},
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}})
    c = obj["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 3
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"


def test_host_network_copies_container_port_to_host_port():
    obj = applied("v1", "Pod", {"spec": {"hostNetwork": True, "containers": [
        {"name": "a", "image": "x", "ports": [{"containerPort": 8080}]}]}})
    assert obj["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


def test_volume_defaults():
    """SetDefaults_Volume: no source → emptyDir; configMap/secret defaultMode 420; hostPath type."""
    obj = applied("v1", "Pod", {"spec": {"containers": [{"name": "a", "image": "x"}], "volumes": [
        {"name": "a"}, {"name": "b", "configMap": {"name": "c"}},
        {"name": "c", "secret": {"secretName": "s", "defaultMode": 256}},
        {"name": "d", "hostPath": {"path": "/tmp"}}]}})
    v = obj["spec"]["volumes"]
    assert v[0]["emptyDir"] == {}
    assert v[1]["configMap"]["defaultMode"] == 420
    assert v[2]["secret"]["defaultMode"] == 256
    assert v[3]["hostPath"] == {"path": "/tmp", "type": ""}


def test_service_defaults():
    """SetDefaults_Service + the registry's single-stack IPv4 family choice."""
    obj = applied("v1", "Service", {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https",
                                                             "name": "b"}]}})
    spec = obj["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "https"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ipFamilies"] == ["IPv4"]
    assert "externalTrafficPolicy" not in spec


def test_node_port_service_defaults():
    obj = applied("v1", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    assert obj["spec"]["externalTrafficPolicy"] == "Cluster"
    assert obj["spec"]["allocateLoadBalancerNodePorts"] is True


def test_external_name_service_gets_no_ip_fields():
    obj = applied("v1", "Service", {"spec": {"type": "ExternalName",
                                             "externalName": "example.com"}})
    assert "ipFamilies" not in obj["spec"] and "internalTrafficPolicy" not in obj["spec"]


def test_headless_without_selector_requires_dual_stack():
    obj = applied("v1", "Service", {"spec": {"clusterIP": "None"}})
    assert obj["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert obj["spec"]["clusterIPs"] == ["None"]


def test_statefulset_defaults():
    obj = applied("apps/v1", "StatefulSet", {"spec": {"template": TEMPLATE, "volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    spec = obj["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"] == {"phase": "Pending"}


def test_daemonset_defaults():
    obj = applied("apps/v1", "DaemonSet", {"spec": {"template": TEMPLATE}})
    assert obj["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert obj["spec"]["revisionHistoryLimit"] == 10


def test_replication_controller_selector_from_template():
    obj = applied("v1", "ReplicationController", {"spec": {"template": TEMPLATE}})
    assert obj["spec"]["selector"] == {"app": "web"}
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["replicas"] == 1


@pytest.mark.parametrize("given,completions,parallelism", [
    ({}, 1, 1), ({"completions": 5}, 5, 1), ({"parallelism": 3}, None, 3)])
def test_job_completions_and_parallelism(given, completions, parallelism):
    """SetDefaults_Job: both 1 when both unset, else parallelism 1."""
    obj = applied("batch/v1", "Job", {"spec": {**given, "template": TEMPLATE}})
    assert obj["spec"].get("completions") == completions
    assert obj["spec"]["parallelism"] == parallelism
    assert obj["spec"]["backoffLimit"] == 6
    assert obj["spec"]["completionMode"] == "NonIndexed"
    assert obj["spec"]["suspend"] is False
    assert obj["spec"]["podReplacementPolicy"] == "TerminatingOrFailed"


def test_cronjob_defaults_and_job_template_pod_defaults():
    obj = applied("batch/v1", "CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                       "containers": [{"name": "a", "image": "x"}]}}}}}})
    spec = obj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "OnFailure" and pod_spec["dnsPolicy"] == "ClusterFirst"
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]  # SetDefaults_Job is Job-only


def test_namespace_secret_volume_kinds():
    ns = applied("v1", "Namespace", {"metadata": {"name": "team-a"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    assert applied("v1", "Secret", {})["type"] == "Opaque"
    assert applied("v1", "Secret", {"type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    pv = applied("v1", "PersistentVolume", {"spec": {"hostPath": {"path": "/d"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert applied("v1", "PersistentVolumeClaim", {})["spec"]["volumeMode"] == "Filesystem"


def test_network_policy_types():
    """SetDefaults_NetworkPolicy: Ingress always, Egress when egress rules exist."""
    assert applied("networking.k8s.io/v1", "NetworkPolicy", {"spec": {}})["spec"][
        "policyTypes"] == ["Ingress"]
    assert applied("networking.k8s.io/v1", "NetworkPolicy", {"spec": {"egress": [{}]}})["spec"][
        "policyTypes"] == ["Ingress", "Egress"]


def test_hpa_v2_defaults():
    obj = applied("autoscaling/v2", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})
    assert obj["spec"]["minReplicas"] == 1
    assert obj["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                               "averageUtilization": 80}
    assert "behavior" not in obj["spec"]


def test_defaulting_is_idempotent():
    obj = applied("apps/v1", "Deployment", {"spec": {"template": TEMPLATE}})
    again = copy.deepcopy(obj)
    defaults.apply("apps/v1", "Deployment", again)
    assert again == obj


def test_unknown_kinds_and_malformed_objects_are_left_alone():
    obj = {"spec": {"x": 1}}
    defaults.apply("example.com/v1", "Widget", obj)
    assert obj == {"spec": {"x": 1}}
    odd = {"spec": ["not", "a", "dict"]}
    defaults.apply("apps/v1", "Deployment", odd)
    assert odd == {"spec": ["not", "a", "dict"]}


def test_job_selector_generated_from_uid():
    """Job strategy generateSelector: select by controller-uid, label the template with uid and
    job name (both the batch.kubernetes.io/ and the legacy keys); manualSelector opts out."""
    obj = applied("batch/v1", "Job", {"metadata": {"name": "pi", "uid": "u-1"},
                                      "spec": {"template": {"spec": POD_SPEC}}})
    defaults.generate_job_selector(obj)
    assert obj["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
    manual = applied("batch/v1", "Job", {"metadata": {"name": "m", "uid": "u-2"}, "spec": {
        "manualSelector": True, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": POD_SPEC}}})
    defaults.generate_job_selector(manual)
    assert manual["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert manual["spec"]["template"]["metadata"]["labels"] == {"a": "b"}
