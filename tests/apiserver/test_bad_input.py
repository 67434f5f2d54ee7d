"""Bad input never breaks the API server: every rejection is a `Status` with kube's reason and
code, never a 5xx, and the server and its store stay whole afterwards.

Raw HTTPS requests (urllib3, the admin client certificate) against a real server process, so
what is tested is exactly what a client sees on the wire.
"""

from __future__ import annotations

import json
import os

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybtest import json_paths, start_apiserver

NS = "bad-input"
PODS = f"/api/v1/namespaces/{NS}/pods"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
SVCS = f"/api/v1/namespaces/{NS}/services"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
JSON = "application/json"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


class Api:
    """A tiny HTTPS client with the admin certificate; answers are (status, headers, body)."""

    def __init__(self, server):
        tls = server.data_dir / "tls"
        self.pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1", server.port, cert_file=str(tls / "admin.crt"),
            key_file=str(tls / "admin.key"), ca_certs=str(tls / "ca.crt"),
            cert_reqs="CERT_REQUIRED", assert_hostname=False, maxsize=4,
            timeout=urllib3.Timeout(connect=5, read=30), retries=False)

    def call(self, method: str, path: str, body=None, ctype: str | None = JSON,
             headers: dict | None = None) -> urllib3.BaseHTTPResponse:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        hdrs = dict(headers or {})
        if ctype and body is not None:
            hdrs["Content-Type"] = ctype
        return self.pool.request(method, path, body=body, headers=hdrs, redirect=False)

    def create(self, path: str, obj: dict) -> dict:
        resp = self.call("POST", path, obj)
        assert resp.status == 201, resp.data
        return json.loads(resp.data)


def status_of(resp, code: int, reason: str) -> dict:
    """The answer is a Failure Status with this code and reason and some message."""
    assert resp.status == code, (resp.status, resp.data[:500])
    assert resp.headers.get("Content-Type", "").startswith(JSON)
    st = json.loads(resp.data)
    assert st["kind"] == "Status" and st["apiVersion"] == "v1", st
    assert st["status"] == "Failure", st
    assert (st["code"], st["reason"]) == (code, reason), st
    assert st["message"], st
    return st


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_apiserver(tmp_path_factory.mktemp("bad-input"))
    yield srv
    srv.stop()
    log = srv.log.read_text()
    assert "Traceback" not in log, log[-5000:]


@pytest.fixture(scope="module")
def api(server) -> Api:
    a = Api(server)
    a.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": NS}})
    a.create(CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                   "data": {"a": "1"}})
    a.create(PODS, _pod("pod"))
    a.create(DEPLOYS, _deployment("web"))
    return a


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _deployment(name: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


# ---- bodies that do not decode ----------------------------------------------------------------

@pytest.mark.parametrize("body,ctype", [
    (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {', JSON),
    (b"{not json at all}", JSON),
    (b"\xff\xfe\x00garbage", JSON),
    (b"", JSON),
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n", "application/yaml"),
    (b"\tkey: : : value\n- mixed", "application/yaml"),
    (b"k8s\x00\xff\xff\xff\xff\x0f\x01\x02garbage", "application/vnd.kubernetes.protobuf"),
    (b"k8s\x00", "application/vnd.kubernetes.protobuf"),
    (b"not protobuf at all", "application/vnd.kubernetes.protobuf"),
])
def test_malformed_bodies_are_400(api, body, ctype):
    status_of(api.call("POST", CMS, body, ctype), 400, "BadRequest")


@pytest.mark.parametrize("body", ["[1, 2]", '"a string"', "null", "42", "true", "[]"])
@pytest.mark.parametrize("method,path", [("POST", CMS), ("PUT", CMS + "/cm")])
def test_json_that_is_not_an_object_is_400(api, body, method, path):
    status_of(api.call(method, path, body), 400, "BadRequest")


def test_yaml_that_is_not_a_mapping_is_400(api):
    status_of(api.call("POST", CMS, b"- a\n- b\n", "application/yaml"), 400, "BadRequest")
    status_of(api.call("POST", CMS, b"just text", "application/yaml"), 400, "BadRequest")


def test_wrong_kind_or_version_for_the_url_is_400(api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    st = status_of(api.call("POST", CMS, dict(cm, apiVersion="apps/v1")), 400, "BadRequest")
    assert "apps/v1" in st["message"]
    status_of(api.call("POST", CMS, dict(cm, kind="Secret")), 400, "BadRequest")
    status_of(api.call("POST", CMS, dict(cm, kind="NoSuchKind")), 400, "BadRequest")
    status_of(api.call("POST", DEPLOYS, dict(_deployment("d"), apiVersion="v1")), 400, "BadRequest")
    status_of(api.call("PUT", CMS + "/cm", dict(cm, metadata={"name": "cm"}, kind="Pod")),
              400, "BadRequest")


def test_unknown_kinds_and_paths_are_404(api):
    status_of(api.call("GET", f"/api/v1/namespaces/{NS}/widgets"), 404, "NotFound")
    status_of(api.call("POST", "/apis/example.com/v1/namespaces/x/widgets", {}), 404, "NotFound")
    status_of(api.call("GET", "/apis/apps/v9/deployments"), 404, "NotFound")
    status_of(api.call("GET", "/no/such/path"), 404, "NotFound")
    status_of(api.call("GET", f"{PODS}/pod/nosuchsub"), 404, "NotFound")
    status_of(api.call("GET", f"{CMS}/absent"), 404, "NotFound")
    status_of(api.call("GET", "/api/v1/nodes/n1/a/b/c"), 404, "NotFound")
    status_of(api.call("POST", "/api/v1/bindings", {"target": {"name": "n"}}), 404, "NotFound")


def test_oversize_bodies_are_413(api):
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
           "data": {"x": "y" * (3 * 1024 * 1024 + 10)}}
    status_of(api.call("POST", CMS, big), 413, "RequestEntityTooLarge")
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    status_of(api.call("POST", CMS, huge), 413, "RequestEntityTooLarge")
    status_of(api.call("PATCH", CMS + "/cm", huge, "application/merge-patch+json"),
              413, "RequestEntityTooLarge")
    # Objects past the store's limit but within the body limit: also 413, nothing stored.
    status_of(api.call("GET", CMS + "/big"), 404, "NotFound")


@pytest.mark.parametrize("name", ["UPPER", "a" * 254, "with/slash", "under_score", "-lead",
                                  "trail-", "sp ace", "dot..dot", ".", ".."])
def test_invalid_names_are_422(api, name):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    st = status_of(api.call("POST", CMS, body), 422, "Invalid")
    assert any(c.get("field") == "metadata.name" for c in st["details"]["causes"]), st


def test_missing_name_is_422(api):
    for meta in ({}, {"name": ""}):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        st = status_of(api.call("POST", CMS, body), 422, "Invalid")
        assert "name" in st["message"]


def test_metadata_of_the_wrong_shape_is_400(api):
    for meta in ("x", [1], 3):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        status_of(api.call("POST", CMS, body), 400, "BadRequest")


def test_unknown_fields_follow_field_validation(api):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv-strict"},
            "bogus": 1, "data": {"a": "b"}}
    st = status_of(api.call("POST", CMS + "?fieldValidation=Strict", body), 400, "BadRequest")
    assert 'unknown field "bogus"' in st["message"]
    resp = api.call("POST", CMS + "?fieldValidation=Warn", dict(body, metadata={"name": "fv-warn"}))
    assert resp.status == 201 and 'unknown field \\"bogus\\"' in resp.headers.get("Warning", "") \
        or 'unknown field "bogus"' in resp.headers.get("Warning", ""), resp.headers
    resp = api.call("POST", CMS + "?fieldValidation=Ignore",
                    dict(body, metadata={"name": "fv-ignore"}))
    assert resp.status == 201 and "Warning" not in resp.headers
    status_of(api.call("POST", CMS + "?fieldValidation=Sometimes", body), 400, "BadRequest")


@pytest.mark.parametrize("path,body", [
    (DEPLOYS, {**_deployment("typed"), "spec": {**_deployment("typed")["spec"], "replicas": "two"}}),
    (CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"a": 1}}),
    (CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": ["a"]}),
    (CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}}),
    (CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t", "labels": "x"}}),
    (PODS, {**_pod("t"), "spec": {"containers": "nginx"}}),
    (PODS, {**_pod("t"), "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": "http"}]}]}}),
    (SVCS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"},
            "spec": {"ports": [{"port": "eighty"}]}}),
])
def test_wrong_types_are_400(api, path, body):
    status_of(api.call("POST", path, body), 400, "BadRequest")


# ---- query parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "labelSelector=a%20in%20(", "labelSelector=!!", "labelSelector=a=b=c", "labelSelector=a%3D%3D%3D",
    "labelSelector=" + "k" * 70 + "=v", "fieldSelector=nosuchfield=x", "fieldSelector=metadata.name",
    "fieldSelector=spec.nodeName%3D%3Dx%2Cnope%3Dy", "limit=abc", "limit=1.5",
    "resourceVersion=abc", "resourceVersion=-1", "resourceVersionMatch=Exact&resourceVersion=x",
    "continue=not-a-token", "continue=%%%", "continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6IngifQ",
    "timeoutSeconds=soon&watch=true",
])
def test_bad_list_parameters_are_400(api, query):
    status_of(api.call("GET", f"{PODS}?{query}"), 400, "BadRequest")


def test_continue_token_for_another_list_is_400(api):
    resp = api.call("GET", f"/api/v1/pods?limit=1")
    assert resp.status == 200
    # A token made for the pods of all namespaces does not continue the config maps of one.
    for i in range(2):
        api.call("POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": f"page{i}"}})
    token = json.loads(api.call("GET", f"{CMS}?limit=1").data)["metadata"]["continue"]
    status_of(api.call("GET", f"{SVCS}?limit=1&continue={token}"), 400, "BadRequest")


@pytest.mark.parametrize("rv", ["abc", "-5", "1.5", "0x10"])
def test_bad_resource_version_on_get_and_watch_is_400(api, rv):
    status_of(api.call("GET", f"{CMS}/cm?resourceVersion={rv}"), 400, "BadRequest")
    status_of(api.call("GET", f"{CMS}?watch=true&resourceVersion={rv}"), 400, "BadRequest")


def test_stale_resource_version_in_body_is_409(api):
    cm = json.loads(api.call("GET", f"{CMS}/cm").data)
    cm["metadata"]["resourceVersion"] = "1"
    status_of(api.call("PUT", f"{CMS}/cm", cm), 409, "Conflict")
    cm["metadata"]["resourceVersion"] = "not-a-number"
    resp = api.call("PUT", f"{CMS}/cm", cm)
    assert resp.status in (400, 409, 422), resp.data
    status_of(resp, resp.status, json.loads(resp.data)["reason"])


@pytest.mark.parametrize("method,query,code,reason", [
    ("DELETE", "dryRun=Some", 400, "BadRequest"),
    ("DELETE", "gracePeriodSeconds=x", 400, "BadRequest"),
    ("DELETE", "propagationPolicy=Sideways", 422, "Invalid"),
    ("PATCH", "fieldManager=" + "m" * 200, 400, "BadRequest"),
    ("PATCH", "dryRun=Some", 400, "BadRequest"),
    ("PATCH", "fieldValidation=Loose", 400, "BadRequest"),
])
def test_bad_write_parameters_are_rejected(api, method, query, code, reason):
    body = b'{"data": {"a": "2"}}' if method == "PATCH" else None
    status_of(api.call(method, f"{CMS}/cm?{query}", body, "application/merge-patch+json"),
              code, reason)
    assert json.loads(api.call("GET", f"{CMS}/cm").data)["data"] == {"a": "1"}


# ---- patches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ctype,body,code,reason", [
    ("application/json-patch+json", b"{not json", 400, "BadRequest"),
    ("application/json-patch+json", b'{"op": "add"}', 400, "BadRequest"),
    ("application/json-patch+json", b'[{"op": "jump", "path": "/a"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "add"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "add", "path": 5, "value": 1}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "add", "path": "/metadata/name", "value": "x"}]', 400, "BadRequest"),
    ("application/json-patch+json", b'[{"op": "remove", "path": "/data/nope"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "replace", "path": "/x/y/z", "value": 1}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "test", "path": "/data/a", "value": "2"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[1, 2]', 400, "BadRequest"),
    ("application/json-patch+json", b'[{"op": "replace", "path": "", "value": 3}]', 400, "BadRequest"),
    ("application/merge-patch+json", b"{bad", 400, "BadRequest"),
    ("application/merge-patch+json", b"[1]", 400, "BadRequest"),
    ("application/merge-patch+json", b"null", 400, "BadRequest"),
    ("application/merge-patch+json", b'{"data": {"a": 5}}', 400, "BadRequest"),
    ("application/merge-patch+json", b'{"kind": "Secret"}', 400, "BadRequest"),
    ("application/merge-patch+json", b'{"metadata": "x"}', 400, "BadRequest"),
    ("application/merge-patch+json", b'{"metadata": {"name": "other"}}', 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b"{bad", 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b'"str"', 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b'{"$patch": "explode"}', 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b'{"data": {"$patch": "replace", "a": 3}}', 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b'{"$setElementOrder/data": 7}', 400, "BadRequest"),
    ("application/apply-patch+yaml", b"a: [unclosed", 400, "BadRequest"),
    ("application/apply-patch+yaml", b"- 1\n- 2", 400, "BadRequest"),
    ("application/apply-patch+yaml", b'{"apiVersion": "v1", "kind": "Secret"}', 400, "BadRequest"),
    ("application/apply-patch+yaml", b'{"apiVersion": "v1", "kind": "ConfigMap", "data": 5}', 400, "BadRequest"),
    ("application/apply-patch+yaml", b'{"kind": "ConfigMap"}', 400, "BadRequest"),
    ("text/plain", b"{}", 415, "UnsupportedMediaType"),
    ("application/json", b"{}", 415, "UnsupportedMediaType"),
    ("application/apply-patch+cbor", b"\xa0", 415, "UnsupportedMediaType"),
    ("", b"{}", 415, "UnsupportedMediaType"),
])
def test_bad_patches(api, ctype, body, code, reason):
    query = "?fieldManager=test" if "apply" in ctype else ""
    status_of(api.call("PATCH", f"{CMS}/cm{query}", body, ctype or None), code, reason)
    assert json.loads(api.call("GET", f"{CMS}/cm").data)["data"] == {"a": "1"}


@pytest.mark.parametrize("ctype", PATCH_TYPES)
def test_patch_of_a_missing_object(api, ctype):
    query = "?fieldManager=test" if "apply" in ctype else ""
    body = b"[]" if "json-patch" in ctype else b"{}"
    resp = api.call("PATCH", f"{CMS}/absent{query}", body, ctype)
    if "apply" in ctype:
        assert resp.status in (201, 400, 422), resp.data  # apply creates (if the body allows)
    else:
        status_of(resp, 404, "NotFound")


def test_deployment_patch_to_wrong_type_is_400(api):
    status_of(api.call("PATCH", f"{DEPLOYS}/web", b'{"spec": {"replicas": "two"}}',
                       "application/strategic-merge-patch+json"), 400, "BadRequest")
    status_of(api.call("PATCH", f"{DEPLOYS}/web", b'{"spec": {"template": {"spec": {"containers": {"x": 1}}}}}',
                       "application/strategic-merge-patch+json"), 400, "BadRequest")
    status_of(api.call("PATCH", f"{DEPLOYS}/web", b'{"spec": {"replicas": -1}}',
                       "application/merge-patch+json"), 422, "Invalid")


# ---- media types, methods ------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "image/png",
                                   "application/json-patch+json"])
def test_unsupported_media_types_are_415(api, ctype):
    resp = api.call("POST", CMS, b'{"metadata": {"name": "m"}}', ctype)
    status_of(resp, 415, "UnsupportedMediaType")


def test_unacceptable_accept_is_406(api):
    status_of(api.call("GET", f"{CMS}/cm", headers={"Accept": "application/vnd.kubernetes.protobuf"}),
              406, "NotAcceptable")


@pytest.mark.parametrize("method,path", [
    ("PUT", CMS), ("PATCH", CMS), ("POST", f"{CMS}/cm"),
    ("DELETE", f"{PODS}/pod/binding"), ("PUT", f"{PODS}/pod/eviction"), ("POST", f"{PODS}/pod/status"),
    ("POST", f"/api/v1/pods"), ("PUT", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
    ("POST", f"/api/v1/watch/namespaces/{NS}/pods"), ("DELETE", f"/api/v1/watch/namespaces/{NS}/pods"),
])
def test_unsupported_verbs_are_405(api, method, path):
    status_of(api.call(method, path, b"{}"), 405, "MethodNotAllowed")


# ---- delete options ------------------------------------------------------------------------------

@pytest.mark.parametrize("body,code,reason", [
    (b"{bad json", 400, "BadRequest"),
    (b"[1]", 400, "BadRequest"),
    (b'"x"', 400, "BadRequest"),
    (b'{"gracePeriodSeconds": "soon"}', 400, "BadRequest"),
    (b'{"gracePeriodSeconds": 1.5}', 400, "BadRequest"),
    (b'{"preconditions": "x"}', 400, "BadRequest"),
    (b'{"preconditions": {"uid": 5}}', 400, "BadRequest"),
    (b'{"propagationPolicy": "Sideways"}', 422, "Invalid"),
    (b'{"propagationPolicy": 5}', 400, "BadRequest"),
    (b'{"dryRun": "All"}', 400, "BadRequest"),
    (b'{"dryRun": ["Some"]}', 400, "BadRequest"),
    (b'{"orphanDependents": true, "propagationPolicy": "Foreground"}', 422, "Invalid"),
    (b'{"kind": "Pod"}', 400, "BadRequest"),
    (b'{"preconditions": {"uid": "not-the-uid"}}', 409, "Conflict"),
    (b'{"preconditions": {"resourceVersion": "1"}}', 409, "Conflict"),
])
def test_delete_with_bad_options(api, body, code, reason):
    status_of(api.call("DELETE", f"{CMS}/cm", body), code, reason)
    assert api.call("GET", f"{CMS}/cm").status == 200


def test_delete_collection_with_bad_options(api):
    status_of(api.call("DELETE", f"{CMS}?labelSelector=!!"), 400, "BadRequest")
    status_of(api.call("DELETE", CMS, b"{bad"), 400, "BadRequest")
    assert api.call("GET", f"{CMS}/cm").status == 200


# ---- binding, eviction, scale ----------------------------------------------------------------------

@pytest.mark.parametrize("body,code,reason", [
    (b"{bad", 400, "BadRequest"),
    (b"[]", 400, "BadRequest"),
    (b"{}", 422, "Invalid"),
    (b'{"target": "node1"}', 400, "BadRequest"),
    (b'{"target": {"name": 5}}', 400, "BadRequest"),
    (b'{"metadata": "x", "target": {"name": "n"}}', 400, "BadRequest"),
    (b'{"apiVersion": "v1", "kind": "Pod", "target": {"name": "n"}}', 400, "BadRequest"),
])
def test_binding_with_bad_bodies(api, body, code, reason):
    status_of(api.call("POST", f"{PODS}/pod/binding", body), code, reason)
    pod = json.loads(api.call("GET", f"{PODS}/pod").data)
    assert "nodeName" not in pod["spec"]


def test_binding_of_missing_pod_is_404(api):
    status_of(api.call("POST", f"{PODS}/absent/binding", {"target": {"name": "n"}}), 404, "NotFound")
    status_of(api.call("POST", f"/api/v1/namespaces/{NS}/bindings",
                       {"metadata": {"name": "absent"}, "target": {"name": "n"}}), 404, "NotFound")


@pytest.mark.parametrize("body,code,reason", [
    (b"{bad", 400, "BadRequest"),
    (b"null", 400, "BadRequest"),
    (b'{"deleteOptions": "x"}', 400, "BadRequest"),
    (b'{"deleteOptions": {"gracePeriodSeconds": "x"}}', 400, "BadRequest"),
    (b'{"deleteOptions": {"propagationPolicy": "Sideways"}}', 422, "Invalid"),
    (b'{"apiVersion": "policy/v1", "kind": "Pod"}', 400, "BadRequest"),
    (b'{"deleteOptions": {"preconditions": {"uid": "other"}}}', 409, "Conflict"),
])
def test_eviction_with_bad_bodies(api, body, code, reason):
    status_of(api.call("POST", f"{PODS}/pod/eviction", body), code, reason)
    assert api.call("GET", f"{PODS}/pod").status == 200


def test_eviction_of_missing_pod_is_404(api):
    status_of(api.call("POST", f"{PODS}/absent/eviction", {}), 404, "NotFound")


@pytest.mark.parametrize("method,ctype,body,code,reason", [
    ("PUT", JSON, b"{bad", 400, "BadRequest"),
    ("PUT", JSON, b"[]", 400, "BadRequest"),
    ("PUT", JSON, b'{"spec": {"replicas": "two"}}', 400, "BadRequest"),
    ("PUT", JSON, b'{"spec": {"replicas": -1}}', 422, "Invalid"),
    ("PUT", JSON, b'{"spec": "x"}', 400, "BadRequest"),
    ("PUT", JSON, b'{"kind": "Deployment", "apiVersion": "apps/v1", "spec": {"replicas": 1}}', 400, "BadRequest"),
    ("PUT", JSON, b'{"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}', 409, "Conflict"),
    ("PUT", "text/plain", b"{}", 415, "UnsupportedMediaType"),
    ("PATCH", "application/merge-patch+json", b'{"spec": {"replicas": "x"}}', 400, "BadRequest"),
    ("PATCH", "application/merge-patch+json", b'{"spec": 1}', 400, "BadRequest"),
    ("PATCH", "application/merge-patch+json", b"[]", 400, "BadRequest"),
    ("PATCH", "application/json-patch+json", b'[{"op": "replace", "path": "/spec/replicas", "value": -3}]', 422, "Invalid"),
    ("PATCH", "application/json-patch+json", b'[{"op": "bad"}]', 422, "Invalid"),
    ("PATCH", "application/json-patch+json", b'{"op": "add"}', 400, "BadRequest"),
    ("PATCH", "application/json-patch+json", b'[{"op": "remove", "path": "/nope"}]', 422, "Invalid"),
    ("PATCH", "text/plain", b"{}", 415, "UnsupportedMediaType"),
])
def test_scale_with_bad_bodies(api, method, ctype, body, code, reason):
    path = f"{DEPLOYS}/web/scale"
    status_of(api.call(method, path, body, ctype), code, reason)
    scale = json.loads(api.call("GET", path).data)
    assert scale["spec"]["replicas"] == 1


def test_scale_of_missing_object_is_404(api):
    status_of(api.call("GET", f"{DEPLOYS}/absent/scale"), 404, "NotFound")
    status_of(api.call("PUT", f"{DEPLOYS}/absent/scale", {"spec": {"replicas": 1}}), 404, "NotFound")


def test_status_subresource_with_bad_bodies(api):
    status_of(api.call("PUT", f"{PODS}/pod/status", b"{bad"), 400, "BadRequest")
    status_of(api.call("PUT", f"{PODS}/pod/status", {"status": {"phase": 5}}), 400, "BadRequest")
    status_of(api.call("PATCH", f"{PODS}/pod/status", b'{"status": {"conditions": "x"}}',
                       "application/merge-patch+json"), 400, "BadRequest")


def test_reviews_with_bad_bodies(api):
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    status_of(api.call("POST", path, b"{bad"), 400, "BadRequest")
    status_of(api.call("POST", path, b"[]"), 400, "BadRequest")
    status_of(api.call("POST", path, {"kind": "Pod"}), 400, "BadRequest")
    status_of(api.call("POST", path, {"spec": "x"}), 400, "BadRequest")
    status_of(api.call("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/default/token",
                       {"spec": "x"}), 400, "BadRequest")


def test_unauthenticated_is_401(server):
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port, cert_reqs="CERT_REQUIRED",
                                       ca_certs=str(server.data_dir / "tls" / "ca.crt"),
                                       assert_hostname=False, retries=False)
    status_of(pool.request("GET", "/api/v1/pods"), 401, "Unauthorized")
    status_of(pool.request("GET", "/api/v1/pods", headers={"Authorization": "Bearer nope"}),
              401, "Unauthorized")
    status_of(pool.request("GET", "/api/v1/pods", headers={"Authorization": "Basic \xff"}),
              401, "Unauthorized")


# ---- random bodies -------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) \
    | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
# Objects shaped like Kubernetes ones, so the fuzz reaches past decoding into admission.
_keys = st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "data", "name",
                         "labels", "annotations", "replicas", "selector", "template", "containers",
                         "ports", "port", "image", "matchLabels", "finalizers", "ownerReferences",
                         "generateName", "namespace", "resourceVersion", "type", "clusterIP",
                         "targetPort", "env", "resources", "limits", "$patch", "binaryData",
                         "managedFields", "deletionTimestamp", "uid", "strategy"])
_kubish = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_keys | st.text(max_size=6), inner, max_size=5),
                       max_leaves=25)
# KYB_FUZZ_SCALE=20 for a long hunt; the default keeps the module to seconds.
_SCALE = float(os.environ.get("KYB_FUZZ_SCALE", "1"))
_TARGETS = [(CMS, "ConfigMap", "v1"), (PODS, "Pod", "v1"), (SVCS, "Service", "v1"),
            (DEPLOYS, "Deployment", "apps/v1")]


def _check_answer(resp) -> None:
    assert resp.status < 500, (resp.status, resp.data[:1000])
    if resp.status >= 400:
        st = json.loads(resp.data)
        assert st["kind"] == "Status" and st["code"] == resp.status and st["reason"], st


@settings(max_examples=int(150 * _SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(_TARGETS), body=_kubish, name=st.sampled_from(["fz", "fz2"]),
       typed=st.booleans(), meta=_kubish)
def test_random_create_and_update(api, target, body, name, typed, meta):
    path, kind, api_version = target
    if typed and isinstance(body, dict):
        body = {**body, "apiVersion": api_version, "kind": kind,
                "metadata": meta if isinstance(meta, dict) and meta else {"name": name}}
    _check_answer(api.call("POST", path, body))
    _check_answer(api.call("PUT", f"{path}/{name}", body))


@settings(max_examples=int(150 * _SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(_TARGETS), patch=_kubish | _json,
       ctype=st.sampled_from(PATCH_TYPES))
def test_random_patches(api, target, patch, ctype):
    path, kind, api_version = target
    name = {"ConfigMap": "cm", "Pod": "pod", "Deployment": "web"}.get(kind, "svc")
    query = "?fieldManager=fuzz&force=true" if "apply" in ctype else ""
    _check_answer(api.call("PATCH", f"{path}/{name}{query}", patch, ctype))


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}}


_VALID = {CMS: lambda n: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n},
                          "data": {"a": "1"}},
          PODS: _pod, SVCS: _service, DEPLOYS: _deployment}


def _set(doc, path, value):
    if not path:
        return value
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return doc


@settings(max_examples=int(200 * _SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(list(_VALID)), data=st.data(), value=_kubish,
       method=st.sampled_from(["POST", "PUT", "PATCH"]))
def test_valid_objects_with_one_field_replaced(api, path, data, value, method):
    """One field of a valid object swapped for anything: admission, defaults and validation see
    it, not just the decoder."""
    name = "mut"
    doc = _VALID[path](name)
    where = data.draw(st.sampled_from([p for p in json_paths(doc) if p[:2] != ("metadata", "name")]))
    doc = _set(doc, where, value)
    if method == "POST":
        resp = api.call("POST", path, doc)
        _check_answer(resp)
        if resp.status == 201:
            api.call("DELETE", f"{path}/{name}", b'{"gracePeriodSeconds": 0}')
    elif method == "PUT":
        api.call("POST", path, _VALID[path](name))
        _check_answer(api.call("PUT", f"{path}/{name}", doc))
    else:
        api.call("POST", path, _VALID[path](name))
        _check_answer(api.call("PATCH", f"{path}/{name}", doc,
                               "application/strategic-merge-patch+json"))


@settings(max_examples=int(60 * _SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200), ctype=st.sampled_from(
    [JSON, "application/yaml", "application/vnd.kubernetes.protobuf"]),
    method=st.sampled_from(["POST", "PUT", "DELETE"]))
def test_random_bytes(api, raw, ctype, method):
    path = CMS if method == "POST" else f"{CMS}/cm"
    resp = api.call(method, path, raw, ctype)
    _check_answer(resp)
    if method == "DELETE" and resp.status == 200:  # an empty body deletes: put it back
        api.create(CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                         "data": {"a": "1"}})


@settings(max_examples=int(100 * _SCALE), deadline=None, suppress_health_check=list(HealthCheck))
@given(query=st.dictionaries(
    st.sampled_from(["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                     "resourceVersionMatch", "timeoutSeconds", "watch", "allowWatchBookmarks"]),
    st.text(max_size=12), max_size=4))
def test_random_list_queries(api, query):
    from urllib.parse import urlencode

    query = dict(query, timeoutSeconds="1") if "watch" in query else query
    _check_answer(api.call("GET", f"{PODS}?{urlencode(query)}"))


def test_server_still_whole_after_all_that(api, server):
    """Runs last in this module: every collection still lists and decodes."""
    for path in (CMS, PODS, SVCS, DEPLOYS, "/api/v1/namespaces"):
        resp = api.call("GET", path)
        assert resp.status == 200, resp.data
        body = json.loads(resp.data)
        assert isinstance(body["items"], list)
        for item in body["items"]:
            assert item["metadata"]["name"] and item["metadata"]["resourceVersion"]
    assert json.loads(api.call("GET", f"{CMS}/cm").data)["data"] == {"a": "1"}
    assert server.proc.poll() is None
