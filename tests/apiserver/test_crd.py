"""CustomResourceDefinitions against a real `kyb apiserver`: schema validation, pruning,
defaults, status and scale subresources, printer columns, explain, cleanup, restart; and
resources served in several versions (HPA v1/v2, core and events.k8s.io Events, CRD versions)."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from kybtest import (Kubectl, create_namespace, kubectl_binary_or_skip, kubectl_or_skip,
                     start_apiserver)


@pytest.fixture
def kubectl(apiserver, tmp_path) -> Kubectl:
    return kubectl_or_skip(apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def ns(kubectl) -> str:
    return create_namespace(kubectl, "crd")


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object", "description": "What the widget should be.", "required": ["image"],
            "properties": {
                "image": {"type": "string", "description": "The image to run.", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 20, "default": 1},
                "size": {"type": "string", "enum": ["S", "M", "L"], "default": "M"},
                "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                    "phase": {"type": "string"}}},
    },
}


def crd_yaml(group: str, versions: tuple[str, ...] = ("v1",)) -> str:
    """A Widget CRD; the first version is stored."""
    return yaml.safe_dump({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wdg"]},
            "versions": [{
                "name": v, "served": True, "storage": i == 0,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                "schema": {"openAPIV3Schema": SCHEMA},
            } for i, v in enumerate(versions)],
        },
    })


@pytest.fixture
def group(kubectl) -> str:
    g = f"w{uuid.uuid4().hex[:6]}.example.com"
    kubectl("apply", "-f", "-", input=crd_yaml(g))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{g}", "--timeout=20s")
    yield g
    kubectl("delete", "crd", f"widgets.{g}", "--ignore-not-found", check=False)


def widget(group: str, name: str, version: str = "v1", **spec) -> dict:
    return {"apiVersion": f"{group}/{version}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"image": "nginx", **spec}}


def test_schema_violations_are_422_with_causes(api_client, group, ns):
    objs = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object(group, "v1", ns, "widgets",
                                             widget(group, "bad", replicas="three", size="XL",
                                                    tags=["a", "b", "c", "d"]))
    assert e.value.status == 422
    status = json.loads(e.value.body)
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.replicas"]["message"] == (
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"')
    assert causes["spec.size"]["reason"] == "FieldValueNotSupported"
    assert causes["spec.tags"]["reason"] == "FieldValueTooMany"
    assert status["message"].startswith(f'Widget.{group} "bad" is invalid: [')
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object(group, "v1", ns, "widgets",
                                             {**widget(group, "Bad_Name"), "spec": {}})
    causes = {c["field"]: c["reason"] for c in json.loads(e.value.body)["details"]["causes"]}
    assert causes == {"metadata.name": "FieldValueInvalid", "spec.image": "FieldValueRequired"}


def test_unknown_fields_pruned_or_refused_and_defaults(kubectl, api_client, group, ns):
    manifest = yaml.safe_dump({**widget(group, "w1"), "spec": {"image": "nginx", "colour": "red"}})
    refused = kubectl.run("-n", ns, "create", "-f", "-", input=manifest, check=False)
    assert refused.returncode != 0
    assert ('Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
            'unknown field "spec.colour"') in refused.stderr
    kubectl("-n", ns, "create", "--validate=false", "-f", "-", input=manifest)
    obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(group, "v1", ns, "widgets", "w1")
    assert "colour" not in obj["spec"]
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["size"] == "M"  # defaults
    warned = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        group, "v1", ns, "widgets", dict(yaml.safe_load(manifest), metadata={"name": "w2"}),
        field_validation="Warn", _preload_content=False)
    assert warned.status == 201
    assert "unknown field" in warned.headers["Warning"] and "spec.colour" in warned.headers["Warning"]
    assert "colour" not in json.loads(warned.data)["spec"]


def test_status_and_spec_are_written_apart(api_client, group, ns):
    objs = client.CustomObjectsApi(api_client)
    created = objs.create_namespaced_custom_object(
        group, "v1", ns, "widgets", {**widget(group, "s1"), "status": {"phase": "Ignored"}})
    assert "status" not in created  # status comes only through /status
    objs.patch_namespaced_custom_object_status(
        group, "v1", ns, "widgets", "s1", {"spec": {"image": "changed"}, "status": {"phase": "Running"}})
    obj = objs.get_namespaced_custom_object(group, "v1", ns, "widgets", "s1")
    assert obj["status"]["phase"] == "Running" and obj["spec"]["image"] == "nginx"
    assert obj["metadata"]["generation"] == 1
    objs.patch_namespaced_custom_object(
        group, "v1", ns, "widgets", "s1", {"spec": {"image": "httpd"}, "status": {"phase": "Lost"}})
    obj = objs.get_namespaced_custom_object(group, "v1", ns, "widgets", "s1")
    assert obj["status"]["phase"] == "Running" and obj["spec"]["image"] == "httpd"
    assert obj["metadata"]["generation"] == 2


def test_scale_printer_columns_and_explain(kubectl, group, ns):
    kubectl("-n", ns, "create", "-f", "-", input=yaml.safe_dump(widget(group, "sc", replicas=2)))
    kubectl("-n", ns, "scale", f"widgets.{group}/sc", "--replicas=5")
    table = kubectl("-n", ns, "get", f"widgets.{group}").splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "REPLICAS"]  # no AGE unless listed
    assert table[1].split()[:3] == ["sc", "nginx", "5"]
    assert kubectl("-n", ns, "get", "wdg", "sc", "-o", "jsonpath={.spec.replicas}") == "5"
    explained = kubectl("explain", f"widgets.{group}.spec")
    assert "The image to run." in explained and "replicas" in explained


def test_deleting_the_crd_deletes_its_resources(kubectl, api_client, ns):
    g = f"d{uuid.uuid4().hex[:6]}.example.com"
    kubectl("apply", "-f", "-", input=crd_yaml(g))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{g}", "--timeout=20s")
    objs = client.CustomObjectsApi(api_client)
    for i in range(3):
        objs.create_namespaced_custom_object(g, "v1", ns, "widgets", widget(g, f"x{i}"))
    kubectl("delete", "crd", f"widgets.{g}")
    kubectl("apply", "-f", "-", input=crd_yaml(g))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{g}", "--timeout=20s")
    assert objs.list_namespaced_custom_object(g, "v1", ns, "widgets")["items"] == []
    kubectl("delete", "crd", f"widgets.{g}")


def test_bad_crd_is_refused(kubectl):
    body = crd_yaml("bad.example.com").replace("name: widgets.bad.example.com", "name: nope.bad.example.com")
    out = kubectl.run("apply", "-f", "-", input=body, check=False)
    assert out.returncode != 0
    assert 'metadata.name: Invalid value: "nope.bad.example.com"' in out.stderr


def test_crd_with_two_versions(kubectl, api_client, ns):
    g = f"m{uuid.uuid4().hex[:6]}.example.com"
    kubectl("apply", "-f", "-", input=crd_yaml(g, ("v1", "v2beta1")))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{g}", "--timeout=20s")
    try:
        objs = client.CustomObjectsApi(api_client)
        objs.create_namespaced_custom_object(g, "v1", ns, "widgets", widget(g, "a"))
        objs.create_namespaced_custom_object(g, "v2beta1", ns, "widgets", widget(g, "b", "v2beta1"))
        for version in ("v1", "v2beta1"):
            items = objs.list_namespaced_custom_object(g, version, ns, "widgets")["items"]
            assert sorted(i["metadata"]["name"] for i in items) == ["a", "b"]
            assert {i["apiVersion"] for i in items} == {f"{g}/{version}"}
        got = objs.get_namespaced_custom_object(g, "v2beta1", ns, "widgets", "a")
        assert got["apiVersion"] == f"{g}/v2beta1"
        patched = objs.patch_namespaced_custom_object(g, "v2beta1", ns, "widgets", "a",
                                                      {"spec": {"replicas": 7}})
        assert patched["apiVersion"] == f"{g}/v2beta1" and patched["spec"]["replicas"] == 7
        dyn = dynamic.DynamicClient(api_client)
        res = dyn.resources.get(api_version=f"{g}/v2beta1", kind="Widget")
        seen = [ev["object"].apiVersion for ev in dyn.watch(res, namespace=ns, timeout=2)]
        assert seen and set(seen) == {f"{g}/v2beta1"}
    finally:
        kubectl("delete", "crd", f"widgets.{g}", check=False)


HPA_V1 = textwrap.dedent("""\
    apiVersion: autoscaling/v1
    kind: HorizontalPodAutoscaler
    metadata: {name: web}
    spec:
      scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
      minReplicas: 1
      maxReplicas: 4
      targetCPUUtilizationPercentage: 55
    """)


def test_hpa_served_as_v1_and_v2(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=HPA_V1)
    v2 = json.loads(kubectl("-n", ns, "get", "horizontalpodautoscalers.v2.autoscaling", "web", "-o", "json"))
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 55}}}]
    # add a memory metric through v2; v1 keeps it in an annotation and loses nothing
    v2["spec"]["metrics"].append({"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}})
    kubectl("-n", ns, "replace", "-f", "-", input=json.dumps(v2))
    v1 = json.loads(kubectl("-n", ns, "get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json"))
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 55 and "metrics" not in v1["spec"]
    assert "memory" in v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
    kubectl("-n", ns, "label", "horizontalpodautoscalers.v1.autoscaling", "web", "via=v1")
    again = json.loads(kubectl("-n", ns, "get", "horizontalpodautoscalers.v2.autoscaling", "web", "-o", "json"))
    assert again["metadata"]["labels"] == {"via": "v1"}
    assert sorted(m["resource"]["name"] for m in again["spec"]["metrics"]) == ["cpu", "memory"]
    assert "autoscaling.alpha.kubernetes.io/metrics" not in (again["metadata"].get("annotations") or {})
    table = kubectl("-n", ns, "get", "horizontalpodautoscalers.v1.autoscaling").splitlines()
    assert table[1].split()[0] == "web"


def test_events_in_both_groups(api_client, ns):
    core = client.CoreV1Api(api_client)
    events = client.EventsV1Api(api_client)
    core.create_namespaced_event(ns, {
        "metadata": {"name": "old-style"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
        "reason": "Started", "message": "started it", "type": "Normal", "count": 2,
        "source": {"component": "kubelet"}, "firstTimestamp": "2024-01-01T00:00:00Z"})
    events.create_namespaced_event(ns, {
        "metadata": {"name": "new-style"}, "regarding": {"kind": "Pod", "name": "q", "namespace": ns},
        "reason": "Pulled", "note": "pulled it", "type": "Normal", "action": "Pull",
        "reportingController": "kyb.io/kubelet", "reportingInstance": "n1",
        "eventTime": "2024-01-01T00:00:00.000000Z"})
    # (an old-style event has eventTime null, which this client's model refuses: read raw)
    raw = events.list_namespaced_event(ns, _preload_content=False)
    as_new = {e["metadata"]["name"]: e for e in json.loads(raw.data)["items"]}
    assert {e["apiVersion"] for e in as_new.values()} == {"events.k8s.io/v1"}
    old = as_new["old-style"]
    assert old["note"] == "started it" and old["regarding"]["name"] == "p"
    assert old["deprecatedCount"] == 2 and old["deprecatedSource"] == {"component": "kubelet"}
    assert "message" not in old and "involvedObject" not in old
    as_core = {e.metadata.name: e for e in core.list_namespaced_event(ns).items}
    assert as_core["new-style"].message == "pulled it" and as_core["new-style"].involved_object.name == "q"
    assert as_core["new-style"].reporting_component == "kyb.io/kubelet"
    one = events.read_namespaced_event("new-style", ns)
    assert one.note == "pulled it"


def test_custom_resources_survive_a_restart(tmp_path):
    binary = kubectl_binary_or_skip("1.33")
    server = start_apiserver(tmp_path / "data")
    try:
        kc = Kubectl(binary, server.kubeconfig, tmp_path / "cache")
        kc("apply", "-f", "-", input=crd_yaml("keep.example.com"))
        kc("wait", "--for=condition=Established", "crd/widgets.keep.example.com", "--timeout=20s")
        kc("-n", "default", "create", "-f", "-", input=yaml.safe_dump(widget("keep.example.com", "stay")))
    finally:
        server.stop()
    server = start_apiserver(tmp_path / "data", port=server.port)
    try:
        kc = Kubectl(binary, server.kubeconfig, tmp_path / "cache2")
        assert kc("-n", "default", "get", "wdg", "stay", "-o", "jsonpath={.spec.image}") == "nginx"
        kc("-n", "default", "create", "-f", "-", input=yaml.safe_dump(widget("keep.example.com", "more")))
        assert "more" in kc("-n", "default", "get", "widgets.keep.example.com", "-o", "name")
    finally:
        server.stop()
