"""Validation of built-in kinds: structure from the official schema, metadata, per-kind rules.

Expected wording is upstream's (apimachinery field.Error ErrorBody, util/validation messages,
pkg/apis/{core,apps,batch}/validation) because kubectl users read these messages verbatim.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybernetes.api import defaults, names, schemas
from kybernetes.api.validation import status_message, validate
from kybtest import json_paths


def deployment(**spec_overrides) -> dict:
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}},
        },
    }
    obj["spec"].update(spec_overrides)
    defaults.apply("apps/v1", "Deployment", obj)
    return obj


def pod(*containers: dict, **spec) -> dict:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": list(containers) or [{"name": "c", "image": "busybox"}],
                    **spec}}
    defaults.apply("v1", "Pod", obj)
    return obj


def service(**spec) -> dict:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}
    defaults.apply("v1", "Service", obj)
    return obj


def fields(result, reason: str | None = None) -> list[str]:
    return [e["field"] for e in result.errors if reason is None or e["reason"] == reason]


def messages(result) -> dict[str, str]:
    return {e["field"]: e["message"] for e in result.errors}


# --- schema loading ----------------------------------------------------------------------------

def test_definition_for_maps_group_version_kind():
    """x-kubernetes-group-version-kind names each kind's definition; unknown kinds map to None."""
    assert schemas.definition_for("apps/v1", "Deployment") == "io.k8s.api.apps.v1.Deployment"
    assert schemas.definition_for("v1", "Pod") == "io.k8s.api.core.v1.Pod"
    assert schemas.definition_for("example.com/v1", "Widget") is None
    assert "io.k8s.api.core.v1.PodSpec" in schemas.definitions()


# --- structural: unknown fields, types, required ---------------------------------------------

def test_valid_defaulted_deployment_has_no_findings():
    result = validate("apps/v1", "Deployment", deployment())
    assert result.ok and result.unknown_fields == []


def test_unknown_fields_are_reported_with_full_paths():
    """Strict field validation reports `unknown field "spec.template.spec.containers[0].imagee"`."""
    obj = deployment()
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    obj["metadata"]["labelz"] = {}
    result = validate("apps/v1", "Deployment", obj)
    assert sorted(result.unknown_fields) == [
        "metadata.labelz", "spec.foo", "spec.template.spec.containers[0].imagee"]
    assert validate("apps/v1", "Deployment", obj, strict=False).unknown_fields == []


def test_maps_and_free_form_fields_accept_any_key():
    """additionalProperties maps (labels, data) and RawExtension-like fields have no unknowns."""
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
           "data": {"anything": "x", "other.key": "y"}}
    assert validate("v1", "ConfigMap", obj).unknown_fields == []


def test_type_mismatch_is_a_decode_error_like_encoding_json():
    """Upstream refuses these at decode time (400) with encoding/json's unmarshal message."""
    obj = deployment()
    obj["spec"]["replicas"] = "three"
    result = validate("apps/v1", "Deployment", obj)
    assert result.decode_errors == [{
        "reason": "FieldValueTypeInvalid", "field": "spec.replicas",
        "message": "json: cannot unmarshal string into Go struct field DeploymentSpec"
                   ".spec.replicas of type int32"}]
    assert not result.ok


@pytest.mark.parametrize("path,value", [
    (("spec", "paused"), "yes"),
    (("spec", "template", "spec", "containers"), {"name": "x"}),
    (("spec", "template", "spec", "containers", 0, "args"), "not-a-list"),
    (("spec", "replicas"), 2**40),  # int32 overflow
    (("spec", "strategy", "rollingUpdate", "maxSurge"), [1]),  # IntOrString
])
def test_wrong_json_types_are_decode_errors(path, value):
    obj = deployment()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert validate("apps/v1", "Deployment", obj).decode_errors


def test_int_or_string_and_quantity_accept_both_forms():
    obj = deployment(strategy={"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}})
    c = obj["spec"]["template"]["spec"]["containers"][0]
    c["resources"] = {"limits": {"cpu": 1, "memory": "128Mi"}}
    assert validate("apps/v1", "Deployment", obj).ok


def test_schema_required_fields():
    """`required` lists of the schema: Container.name, DeploymentSpec.selector/template."""
    obj = deployment()
    del obj["spec"]["selector"]
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    result = validate("apps/v1", "Deployment", obj)
    assert "spec.selector" in fields(result, "FieldValueRequired")
    assert "spec.template.spec.containers[0].name" in fields(result, "FieldValueRequired")
    # one cause per field even when schema and semantic checks both notice
    assert len(fields(result)) == len(set(fields(result)))


def test_secret_data_must_be_base64():
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
           "data": {"k": "not base64!"}}
    assert validate("v1", "Secret", obj).decode_errors


# --- names and metadata ----------------------------------------------------------------------

def test_name_required_unless_generate_name():
    """ValidateObjectMeta: `metadata.name: Required value: name or generateName is required`."""
    obj = deployment()
    del obj["metadata"]["name"]
    assert messages(validate("apps/v1", "Deployment", obj))["metadata.name"] == \
        "Required value: name or generateName is required"
    obj["metadata"]["generateName"] = "web-"
    assert validate("apps/v1", "Deployment", obj).ok


def test_subdomain_name_message_is_upstreams():
    obj = deployment()
    obj["metadata"]["name"] = "Foo"
    assert messages(validate("apps/v1", "Deployment", obj))["metadata.name"] == (
        'Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.mark.parametrize("kind,api,name,ok", [
    ("Service", "v1", "1web", False),         # DNS-1035: must start with a letter
    ("Service", "v1", "web.a", False),
    ("Namespace", "v1", "a.b", False),        # DNS-1123 label
    ("Pod", "v1", "a.b", True),               # subdomain
    ("ConfigMap", "v1", "a" * 254, False),    # > 253
    ("ClusterRole", "rbac.authorization.k8s.io/v1", "system:controller:x", True),
    ("ClusterRole", "rbac.authorization.k8s.io/v1", "a/b", False),
])
def test_per_kind_name_rules(kind, api, name, ok):
    obj = {"apiVersion": api, "kind": kind, "metadata": {"name": name}}
    if kind == "Service":
        obj["spec"] = {"clusterIP": "None"}
    defaults.apply(api, kind, obj)
    assert ("metadata.name" not in fields(validate(api, kind, obj))) == ok


def test_generate_name_may_end_with_dash():
    """maskTrailingDash: the random suffix follows, so `web-` is a valid prefix."""
    assert names.name_is_dns_subdomain("web-", True) == []
    assert names.name_is_dns_subdomain("web-", False) != []


def test_labels_and_annotations():
    obj = deployment()
    obj["metadata"]["labels"] = {"bad key": "v", "ok": "-bad", "example.com/x": "x" * 64}
    obj["metadata"]["annotations"] = {"a/b/c": "v"}
    result = validate("apps/v1", "Deployment", obj)
    msgs = [e["message"] for e in result.errors if e["field"] == "metadata.labels"]
    assert any(m.startswith('Invalid value: "bad key": name part must consist of') for m in msgs)
    assert any(m.startswith('Invalid value: "-bad": a valid label must be an empty string')
               for m in msgs)
    assert any("must be no more than 63 characters" in m for m in msgs)
    assert messages(result)["metadata.annotations"].startswith(
        'Invalid value: "a/b/c": a qualified name must consist of')


def test_annotations_total_size_limit():
    """ValidateAnnotations: keys + values over 256 KiB → `Too long: must have at most 262144 bytes`."""
    obj = deployment()
    obj["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert messages(validate("apps/v1", "Deployment", obj))["metadata.annotations"] == \
        "Too long: must have at most 262144 bytes"
    obj["metadata"]["annotations"] = {"big": "x" * 1000}
    assert validate("apps/v1", "Deployment", obj).ok


def test_qualified_name_rules():
    assert names.is_qualified_name("app.kubernetes.io/name") == []
    assert names.is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert names.is_qualified_name("x/") == ["name part must be non-empty"]
    assert names.is_qualified_name("Foo_Bar.1") == []
    assert names.is_label_value("") == []


# --- pods ---------------------------------------------------------------------------------------

def test_pod_containers_required():
    obj = pod()
    obj["spec"]["containers"] = []
    assert messages(validate("v1", "Pod", obj))["spec.containers"] == "Required value"


def test_container_names_unique_and_dns_labels():
    obj = pod({"name": "a", "image": "x"}, {"name": "a", "image": "x"}, {"name": "B", "image": "x"})
    result = validate("v1", "Pod", obj)
    assert messages(result)["spec.containers[1].name"] == 'Duplicate value: "a"'
    assert messages(result)["spec.containers[2].name"].startswith(
        'Invalid value: "B": a lowercase RFC 1123 label must consist of')


def test_container_image_required():
    obj = pod({"name": "a"})
    assert messages(validate("v1", "Pod", obj))["spec.containers[0].image"] == "Required value"


def test_container_ports():
    obj = pod({"name": "a", "image": "x", "ports": [
        {"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}]})
    m = messages(validate("v1", "Pod", obj))
    assert m["spec.containers[0].ports[0].containerPort"] == \
        "Invalid value: 70000: must be between 1 and 65535, inclusive"
    assert m["spec.containers[0].ports[1].protocol"] == \
        'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'


def test_restart_policy_enum():
    obj = pod(restartPolicy="Sometimes")
    assert messages(validate("v1", "Pod", obj))["spec.restartPolicy"] == \
        'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'


def test_volumes_unique_and_mounts_must_exist():
    obj = pod({"name": "a", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
              volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}])
    m = messages(validate("v1", "Pod", obj))
    assert m["spec.volumes[1].name"] == 'Duplicate value: "v"'
    assert m["spec.containers[0].volumeMounts[0].name"] == 'Not found: "nope"'


def test_requests_must_not_exceed_limits():
    obj = pod({"name": "a", "image": "x", "resources": {
        "requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}}})
    m = messages(validate("v1", "Pod", obj))
    assert m["spec.containers[0].resources.requests[cpu]"] == \
        'Invalid value: "2": must be less than or equal to cpu limit of 1500m'
    assert "spec.containers[0].resources.requests[memory]" not in m


def test_env_var_names():
    """1.33 (RelaxedEnvironmentVariableValidation on): printable ASCII except '='."""
    obj = pod({"name": "a", "image": "x", "env": [{"name": "1OK-too"}, {"name": "A=B"}]})
    assert list(messages(validate("v1", "Pod", obj))) == ["spec.containers[0].env[1].name"]


def test_pod_update_only_images_may_change():
    old = pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "busybox:2"
    new["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    assert validate("v1", "Pod", new, old=old).ok
    new["spec"]["restartPolicy"] = "Never"
    m = messages(validate("v1", "Pod", new, old=old))
    assert m["spec"].startswith("Forbidden: pod updates may not change fields other than "
                                "`spec.containers[*].image`,`spec.initContainers[*].image`,")


# --- workloads ---------------------------------------------------------------------------------

def test_selector_must_match_template_labels():
    obj = deployment(selector={"matchLabels": {"app": "other"}})
    assert messages(validate("apps/v1", "Deployment", obj))["spec.template.metadata.labels"] == \
        'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`'


def test_empty_selector_is_invalid():
    obj = deployment(selector={})
    assert "empty selector is invalid for deployment" in \
        messages(validate("apps/v1", "Deployment", obj))["spec.selector"]


def test_apps_kinds_require_restart_policy_always():
    obj = deployment()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert messages(validate("apps/v1", "Deployment", obj))[
        "spec.template.spec.restartPolicy"] == 'Unsupported value: "Never": supported values: "Always"'


def test_replicas_non_negative():
    obj = deployment(replicas=-1)
    assert messages(validate("apps/v1", "Deployment", obj))["spec.replicas"] == \
        "Invalid value: -1: must be greater than or equal to 0"


def test_max_surge_and_unavailable_not_both_zero():
    obj = deployment(strategy={"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    assert messages(validate("apps/v1", "Deployment", obj))[
        "spec.strategy.rollingUpdate.maxUnavailable"] == \
        'Invalid value: "0%": may not be 0 when `maxSurge` is 0'


def test_deployment_selector_is_immutable():
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "tier": "x"}})
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    m = messages(validate("apps/v1", "Deployment", new, old=old))
    assert m["spec.selector"].endswith(": field is immutable")
    assert m["spec.selector"].startswith("Invalid value: v1.LabelSelector{MatchLabels:")


# --- services ------------------------------------------------------------------------------------

def test_service_ports_required_unless_headless_or_external_name():
    obj = service(ports=[])
    assert messages(validate("v1", "Service", obj))["spec.ports"] == "Required value"
    assert validate("v1", "Service", service(ports=[], clusterIP="None")).ok
    assert validate("v1", "Service", service(ports=[], type="ExternalName",
                                              externalName="example.com")).ok


def test_service_port_names_required_and_unique_when_many():
    obj = service(ports=[{"port": 80}, {"port": 81, "name": "b"}, {"port": 82, "name": "b"}])
    m = messages(validate("v1", "Service", obj))
    assert m["spec.ports[0].name"] == "Required value"
    assert m["spec.ports[2].name"] == 'Duplicate value: "b"'


def test_service_type_and_node_port():
    m = messages(validate("v1", "Service", service(type="Weird")))
    assert m["spec.type"] == ('Unsupported value: "Weird": supported values: "ClusterIP", '
                              '"ExternalName", "LoadBalancer", "NodePort"')
    m = messages(validate("v1", "Service", service(type="NodePort",
                                                    ports=[{"port": 80, "nodePort": 80}])))
    assert "provided port is not in the valid range" in m["spec.ports[0].nodePort"]
    m = messages(validate("v1", "Service", service(ports=[{"port": 80, "nodePort": 30080}])))
    assert m["spec.ports[0].nodePort"] == "Forbidden: may not be used when `type` is 'ClusterIP'"


def test_service_cluster_ip_valid_and_immutable():
    m = messages(validate("v1", "Service", service(clusterIP="10.0.0.300")))
    assert m["spec.clusterIPs[0]"].startswith('Invalid value: "10.0.0.300": must be a valid IP')
    old = service(clusterIP="10.96.0.10")
    new = service(clusterIP="10.96.0.11")
    assert messages(validate("v1", "Service", new, old=old))["spec.clusterIPs[0]"] == \
        'Invalid value: "10.96.0.11": may not change once set'


# --- config, batch ----------------------------------------------------------------------------

def test_configmap_keys_and_size():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
           "data": {"bad key": "x", "..x": "y", "ok.key": "z"}}
    m = messages(validate("v1", "ConfigMap", obj))
    assert m["data[bad key]"].startswith('Invalid value: "bad key": a valid config key must')
    assert m["data[..x]"] == "Invalid value: \"..x\": must not start with '..'"
    obj["data"] = {"big": "x" * (1024 * 1024 + 1)}
    assert validate("v1", "ConfigMap", obj).errors[0]["reason"] == "FieldValueTooLong"


def test_job_restart_policy_and_counts():
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": -1, "template": {"spec": {
               "containers": [{"name": "c", "image": "x"}]}}}}
    defaults.apply("batch/v1", "Job", obj)
    m = messages(validate("batch/v1", "Job", obj))
    assert m["spec.template.spec.restartPolicy"] == \
        'Unsupported value: "Always": supported values: "OnFailure", "Never"'
    assert m["spec.parallelism"] == "Invalid value: -1: must be greater than or equal to 0"


def test_job_template_immutable():
    old = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "x"}]}}}}
    defaults.apply("batch/v1", "Job", old)
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "y"
    assert messages(validate("batch/v1", "Job", new, old=old))["spec.template"].endswith(
        "field is immutable")


@pytest.mark.parametrize("schedule,ok", [
    ("*/5 * * * *", True), ("@hourly", True), ("0 0 * *", False), ("61 * * * *", False),
    ("TZ=UTC 0 * * * *", False)])
def test_cronjob_schedule(schedule, ok):
    obj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
           "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
               "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}}}}
    defaults.apply("batch/v1", "CronJob", obj)
    assert ("spec.schedule" not in fields(validate("batch/v1", "CronJob", obj))) == ok


# --- the 422 message ---------------------------------------------------------------------------

def test_status_message_single_and_many():
    """NewInvalid: `Kind.group "name" is invalid: ` + one error, or `[a, b]` for several."""
    one = [{"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.template.spec.containers[0].image"}]
    assert status_message("Deployment", "web", one, group="apps") == \
        'Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required value'
    two = one + [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                  "message": "Invalid value: -1: must be greater than or equal to 0"}]
    assert status_message("Pod", "p", two) == (
        'Pod "p" is invalid: [spec.template.spec.containers[0].image: Required value, '
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0]")


# --- robustness ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "spec", "metadata", "containers", "image", "ports", "selector",
                         "template", "labels", "replicas", "type", "data", "x", "volumes"]),
        inner, max_size=4),
    max_leaves=25)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(kind=st.sampled_from([("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "Service"),
                             ("v1", "ConfigMap"), ("batch/v1", "CronJob"), ("v1", "Secret")]),
       body=st.dictionaries(st.sampled_from(["metadata", "spec", "data", "x"]), json_values,
                            max_size=3),
       old=st.none() | json_values)
def test_validate_and_defaults_never_raise(kind, body, old):
    api_version, k = kind
    defaults.apply(api_version, k, body)
    result = validate(api_version, k, body, old=old if isinstance(old, dict) else None)
    for cause in result.errors + result.decode_errors:
        assert set(cause) == {"reason", "message", "field"}


_BASES = {
    "Deployment": deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": 1}}),
    "Pod": pod({"name": "a", "image": "x", "ports": [{"containerPort": 80}],
                "env": [{"name": "A", "value": "b"}],
                "resources": {"limits": {"cpu": "1"}},
                "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
               volumes=[{"name": "v", "configMap": {"name": "c"}}]),
    "Service": service(type="NodePort", ports=[{"port": 80, "name": "http"}]),
}
_API = {"Deployment": "apps/v1", "Pod": "v1", "Service": "v1"}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(_BASES)), replacement=json_values)
def test_validate_never_raises_on_mutated_objects(data, kind, replacement):
    """Valid objects with one subtree replaced by arbitrary JSON: causes, never exceptions."""
    obj = copy.deepcopy(_BASES[kind])
    path = data.draw(st.sampled_from([p for p in json_paths(obj) if p]))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    old = copy.deepcopy(_BASES[kind]) if data.draw(st.booleans()) else None
    result = validate(_API[kind], kind, obj, old=old)
    assert isinstance(result.errors, list) and isinstance(result.unknown_fields, list)
