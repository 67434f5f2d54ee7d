"""Custom resource schemas: pruning, defaulting, validation wording, CRD checks; conversion."""

from __future__ import annotations

import copy

from hypothesis import given, strategies as st

from kybernetes.api import crdschema
from kybernetes.api.registry import BUILTIN
from kybernetes.apiserver import convert

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "size": {"type": "string", "enum": ["S", "M"]},
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "maxItems": 3, "x-kubernetes-list-type": "set",
                         "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["port"],
                          "items": {"type": "object", "properties": {
                              "port": {"type": "integer"}, "proto": {"type": "string", "default": "TCP"}}}},
                "when": {"type": "string", "format": "date-time"},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"n": {"type": "integer"}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-validations": [{"rule": "self.replicas < 100"}],
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def cr(spec: dict) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}, "spec": spec}


def errors_of(spec: dict) -> dict[str, dict]:
    return {e["field"]: e for e in crdschema.validate(SCHEMA, cr(spec))}


def test_type_error_wording():
    e = errors_of({"size": "S", "replicas": "three"})["spec.replicas"]
    assert e["reason"] == "FieldValueTypeInvalid"
    assert e["message"] == ('Invalid value: "string": spec.replicas in body must be of type '
                            'integer: "string"')


def test_bounds_enum_required_and_strings():
    errs = errors_of({"replicas": 11, "name": "toolong", "tags": ["a", "b", "c", "d"]})
    assert errs["spec.size"]["reason"] == "FieldValueRequired"
    assert errs["spec.replicas"]["message"].endswith("should be less than or equal to 10")
    assert errs["spec.name"]["reason"] == "FieldValueTooLong"
    assert errs["spec.tags"]["message"] == "Too many: 4: must have at most 3 items"
    bad_enum = errors_of({"size": "L"})["spec.size"]
    assert bad_enum["message"] == 'Unsupported value: "L": supported values: "S", "M"'
    assert "should match '^[a-z]+$'" in errors_of({"size": "S", "name": "A1"})["spec.name"]["message"]


def test_formats_nullable_int_or_string_and_lists():
    assert errors_of({"size": "S", "when": "2024-01-02T03:04:05Z", "port": "http", "note": None}) == {}
    assert errors_of({"size": "S", "port": 8080}) == {}
    errs = errors_of({"size": "S", "when": "yesterday", "port": 1.5, "replicas": None,
                      "tags": ["a", "a"], "ports": [{"port": 1}, {"port": 1}]})
    assert "must be of type date-time" in errs["spec.when"]["message"]
    assert errs["spec.port"]["reason"] == "FieldValueTypeInvalid"
    assert errs["spec.replicas"]["message"].endswith('must be of type integer: "null"')
    assert errs["spec.tags[1]"]["reason"] == "FieldValueDuplicate"
    assert errs["spec.ports[1]"]["reason"] == "FieldValueDuplicate"


def test_embedded_resource_needs_type_meta():
    errs = errors_of({"size": "S", "template": {"metadata": {"name": "y"}}})
    assert {"spec.template.apiVersion", "spec.template.kind"} <= set(errs)


def test_prune_keeps_known_and_preserved_fields():
    obj = cr({"size": "S", "bogus": 1, "free": {"anything": [1], "n": 2},
              "labels": {"a": "b"}, "ports": [{"port": 1, "x": 2}],
              "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "zzz": 1},
                           "spec": {"whatever": True}}})
    obj["metadata"]["bogus"] = 1
    obj["extra"] = 3
    dropped = crdschema.prune(SCHEMA, obj)
    assert sorted(dropped) == ["extra", "metadata.bogus", "spec.bogus", "spec.ports[0].x",
                               "spec.template.metadata.zzz"]
    assert obj["spec"]["free"] == {"anything": [1], "n": 2}
    assert obj["spec"]["template"]["spec"] == {"whatever": True}
    assert obj["metadata"] == {"name": "x"}


def test_defaults_fill_absent_and_null():
    obj = cr({"size": "S", "ports": [{"port": 80}]})
    crdschema.apply_defaults(SCHEMA, obj)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["ports"] == [{"port": 80, "proto": "TCP"}]
    obj = cr({"size": "S", "replicas": None})
    crdschema.apply_defaults(SCHEMA, obj)
    assert obj["spec"]["replicas"] == 1


@given(st.integers(min_value=-50, max_value=50))
def test_integer_bounds_match_the_schema(n):
    fields = errors_of({"size": "S", "replicas": n})
    assert ("spec.replicas" in fields) == (not 1 <= n <= 10)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=4))
def test_prune_removes_exactly_the_unknown(extra):
    spec = {"size": "S", **{k: v for k, v in extra.items() if k not in SCHEMA["properties"]["spec"]["properties"]}}
    obj = cr(dict(spec))
    dropped = crdschema.prune(SCHEMA, obj)
    assert set(obj["spec"]) == {"size"}
    assert sorted(dropped) == sorted(f"spec.{k}" for k in spec if k != "size")


def crd(**over) -> dict:
    body = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "things", "singular": "thing", "kind": "Thing",
                               "listKind": "ThingList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": SCHEMA}}]}}
    body["spec"].update(over)
    return body


def test_crd_validation():
    assert crdschema.validate_crd(crd()) == []
    bad = crd(scope="Global", group="example.com")
    bad["metadata"]["name"] = "wrong.example.com"
    bad["spec"]["versions"].append({"name": "v2", "served": True, "storage": True,
                                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                        "spec": {"properties": {}}}}}})
    fields = {e["field"]: e["message"] for e in crdschema.validate_crd(bad)}
    assert fields["metadata.name"].endswith('must be spec.names.plural+"."+spec.group')
    assert fields["spec.scope"].startswith('Unsupported value: "Global"')
    assert "exactly one version marked as storage" in fields["spec.versions"]
    assert "spec.versions[1].schema.openAPIV3Schema.properties[spec].type" in fields
    no_schema = crd(versions=[{"name": "v1", "served": True, "storage": True}])
    assert any(e["field"] == "spec.versions[0].schema.openAPIV3Schema"
               for e in crdschema.validate_crd(no_schema))


# --- conversion --------------------------------------------------------------------------------

def _hpa_r(version: str):
    return next(r for r in BUILTIN if r.plural == "horizontalpodautoscalers" and r.version == version)


HPA_V2 = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "h", "namespace": "d", "annotations": {"keep": "me"}},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 1, "maxReplicas": 5,
             "metrics": [
                 {"type": "Resource", "resource": {"name": "memory", "target": {
                     "type": "AverageValue", "averageValue": "100Mi"}}},
                 {"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 60}}}],
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
    "status": {"currentReplicas": 2, "desiredReplicas": 2,
               "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
                   "averageUtilization": 40, "averageValue": "200m"}}}],
               "conditions": [{"type": "AbleToScale", "status": "True"}]},
}


def test_hpa_v2_to_v1_and_back():
    v1 = convert.from_storage(_hpa_r("v1"), HPA_V2)
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 60
    assert "metrics" not in v1["spec"] and "behavior" not in v1["spec"]
    assert v1["status"]["currentCPUUtilizationPercentage"] == 40
    ann = v1["metadata"]["annotations"]
    assert ann["keep"] == "me"
    assert "memory" in ann[convert.METRICS_ANNOTATION]
    back = convert.to_storage(_hpa_r("v1"), v1)
    assert back["spec"]["behavior"] == HPA_V2["spec"]["behavior"]
    assert sorted(m["resource"]["name"] for m in back["spec"]["metrics"]) == ["cpu", "memory"]
    assert back["status"]["currentMetrics"] == HPA_V2["status"]["currentMetrics"]
    assert back["status"]["conditions"] == HPA_V2["status"]["conditions"]
    assert back["metadata"]["annotations"] == {"keep": "me"}
    assert HPA_V2["apiVersion"] == "autoscaling/v2"  # input untouched


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=0, max_value=300))
def test_hpa_v1_round_trip(target, current):
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
          "metadata": {"name": "h"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3,
                   "targetCPUUtilizationPercentage": target},
          "status": {"currentReplicas": 1, "desiredReplicas": 1,
                     "currentCPUUtilizationPercentage": current}}
    stored = convert.to_storage(_hpa_r("v1"), v1)
    assert stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == target
    back = convert.from_storage(_hpa_r("v1"), stored)
    # v1 keeps the raw current metrics in an annotation too (upstream does the same)
    annotations = back["metadata"].pop("annotations")
    assert '"currentAverageUtilization":%d' % current in annotations[convert.CURRENT_METRICS_ANNOTATION]
    assert back == v1
    assert convert.to_storage(_hpa_r("v1"), convert.from_storage(_hpa_r("v1"), stored)) == stored


def _event_r(group: str):
    return next(r for r in BUILTIN if r.plural == "events" and r.group == group)


def test_event_conversion_both_ways():
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Pulled",
            "message": "pulled it", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "count": 3, "type": "Normal", "reportingComponent": "kubelet",
            "reportingInstance": "n1", "eventTime": None}
    ev = convert.from_storage(_event_r("events.k8s.io"), core)
    assert ev["apiVersion"] == "events.k8s.io/v1"
    assert ev["regarding"] == core["involvedObject"] and ev["note"] == "pulled it"
    assert ev["deprecatedSource"] == core["source"] and ev["deprecatedCount"] == 3
    assert ev["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert ev["reportingController"] == "kubelet"
    back = convert.to_storage(_event_r("events.k8s.io"), ev)
    assert back == core
    assert convert.from_storage(_event_r(""), core) is core


def test_custom_resource_strategy_none():
    from kybernetes.apiserver.kinds import crd_resources

    body = crd(versions=[{"name": "v1", "served": True, "storage": True},
                         {"name": "v2", "served": True, "storage": False}])
    v1, v2 = crd_resources(body)
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": {"x": 1}}
    seen = convert.from_storage(v2, obj)
    assert seen["apiVersion"] == "example.com/v2" and seen["spec"] == obj["spec"]
    assert convert.to_storage(v2, copy.deepcopy(seen)) == obj
