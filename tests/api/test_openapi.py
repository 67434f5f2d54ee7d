"""The OpenAPI documents: root, per group-version documents, v2, and what real kubectl makes of them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api.openapi import V2_PROTOBUF, OpenAPI, group_name
from kybernetes.api.registry import Registry, Resource
from kybtest import kubectl_binary_or_skip

SMP = "application/strategic-merge-patch+json"

CRONTAB_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "CronTab spec, as the CRD author wrote it.",
            "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}},
        },
    },
}


def crontab(version: str = "v1") -> Resource:
    return Resource("stable.example.com", version, "CronTab", "crontabs",
                    subresources=("status", "scale"), schema=CRONTAB_SCHEMA)


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry()
    reg.add(crontab())
    return reg


@pytest.fixture(scope="module")
def api(registry) -> OpenAPI:
    return OpenAPI(registry)


def gv_paths(registry: Registry) -> list[str]:
    return [f"apis/{g}/{v}" if g else f"api/{v}" for g, vs in registry.groups() for v in vs]


def split_gv(path: str) -> tuple[str, str]:
    parts = path.split("/")
    return ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])


def doc(api: OpenAPI, path: str) -> dict:
    data = api.v3_group_version(path)
    assert data is not None, path
    return orjson.loads(data)


# --- (1) the root ---------------------------------------------------------------------------------


def test_root_lists_every_group_version_with_its_document_hash(api, registry):
    paths = api.v3_root()["paths"]
    for gv in gv_paths(registry):
        url = paths[gv]["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{gv}?hash=")
    for g, _ in registry.groups():
        if g:
            assert f"apis/{g}" in paths
    assert {"api", "apis", "version"} <= set(paths)
    # every listed document is served
    for path in paths:
        assert api.v3_group_version(path) is not None


def test_unknown_paths_have_no_document(api):
    for path in ("apis/nosuch.example.com/v1", "api/v2", "apis/apps/v9", "apis/nosuch", "x/y/z/w"):
        assert api.v3_group_version(path) is None


def test_hash_changes_when_a_crd_is_added_and_only_for_that_group():
    reg = Registry()
    api = OpenAPI(reg)
    before = dict(api.v3_root()["paths"])
    reg.add(crontab())
    after = api.v3_root()["paths"]
    assert "apis/stable.example.com/v1" not in before
    assert "apis/stable.example.com/v1" in after
    assert after["api/v1"] == before["api/v1"]
    reg.add(crontab("v2"))
    later = api.v3_root()["paths"]
    assert later["apis/stable.example.com/v1"] == after["apis/stable.example.com/v1"]
    assert "apis/stable.example.com/v2" in later
    # changing the CRD's schema changes that document and its hash
    changed = Resource("stable.example.com", "v1", "CronTab", "crontabs",
                       schema={"type": "object", "properties": {"x": {"type": "string"}}})
    reg.add(changed)
    assert api.v3_root()["paths"]["apis/stable.example.com/v1"] != \
        after["apis/stable.example.com/v1"]
    reg.remove("stable.example.com", "crontabs")
    assert "apis/stable.example.com/v1" not in api.v3_root()["paths"]


# --- (2) documents are self-consistent ------------------------------------------------------------


def refs_in(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.append(v)
            elif k == "properties":  # property names are not keywords (JSONSchemaProps has "$ref")
                for prop in v.values():
                    refs_in(prop, found)
            else:
                refs_in(v, found)
    elif isinstance(node, list):
        for x in node:
            refs_in(x, found)
    return found


def operations(d: dict):
    for path, item in d["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield path, method, op


def test_every_ref_resolves_and_every_kind_has_its_gvk(api, registry):
    for gv in gv_paths(registry) + ["api", "apis", "version", "apis/apps"]:
        d = doc(api, gv)
        assert d["openapi"].startswith("3.0")
        schemas = d["components"]["schemas"]
        for ref in refs_in(d, []):
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in schemas, (gv, ref)
        if "/" not in gv or gv == "apis/apps":
            continue
        group, version = split_gv(gv)
        gvks = [(x["group"], x["version"], x["kind"]) for s in schemas.values()
                for x in s.get("x-kubernetes-group-version-kind", ())]
        for r in registry.in_group_version(group, version):
            assert (r.group, r.version, r.kind) in gvks, (gv, r.kind)
            if "list" in r.verbs:
                assert (r.group, r.version, r.list_kind) in gvks, (gv, r.list_kind)


def test_schemas_are_openapi_3_style(api):
    schemas = doc(api, "api/v1")["components"]["schemas"]
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["type"] == "object"
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "enum" not in pod["properties"]["kind"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"]["allOf"][0]["$ref"].endswith("io.k8s.api.core.v1.Container")
    port = schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["containerPort"]
    assert port["type"] == "integer"
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    for name, schema in schemas.items():
        for node in _nodes(schema):
            assert not isinstance(node.get("type"), list), name
            if "$ref" in node:
                assert set(node) == {"$ref"}, name  # 3.0 ignores siblings of $ref


def _nodes(node):
    if isinstance(node, dict):
        yield node
        for k, v in node.items():
            yield from _nodes(v.values() if k == "properties" else v)
    elif isinstance(node, (list, type({}.values()))):
        for x in node:
            yield from _nodes(x)


def test_patch_operations_carry_what_kubectl_checks(api, registry):
    for gv in gv_paths(registry):
        d = doc(api, gv)
        custom = gv.startswith("apis/stable.example.com")
        patches = [op for _, method, op in operations(d) if method == "patch"
                   and op["x-kubernetes-action"] == "patch"]
        patchable = [r for r in registry.in_group_version(*split_gv(gv)) if "patch" in r.verbs]
        assert len(patches) >= len(patchable)
        for op in patches:
            assert "x-kubernetes-group-version-kind" in op
            names = {(p["name"], p["in"]) for p in op["parameters"]}
            assert {("fieldValidation", "query"), ("fieldManager", "query"),
                    ("force", "query"), ("dryRun", "query")} <= names
            content = op["requestBody"]["content"]
            assert "application/merge-patch+json" in content
            assert "application/apply-patch+yaml" in content
            # custom resources have no strategic merge patch upstream
            assert (SMP in content) is not custom, op["operationId"]


def test_resource_paths_and_operation_ids(api):
    d = doc(api, "apis/apps/v1")
    coll = d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    item = d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    scale = d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    ids = {m: op["operationId"] for m, op in {**coll, **item}.items() if m != "parameters"}
    assert coll["get"]["operationId"] == "listAppsV1NamespacedDeployment"
    assert coll["post"]["operationId"] == "createAppsV1NamespacedDeployment"
    assert coll["delete"]["operationId"] == "deleteAppsV1CollectionNamespacedDeployment"
    assert item["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert item["put"]["x-kubernetes-action"] == "put"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    assert {p["name"] for p in coll["get"]["parameters"]} >= {
        "labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch",
        "timeoutSeconds", "allowWatchBookmarks"}
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert ids["get"] == "readAppsV1NamespacedDeployment"
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}
    ok = scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"}
    assert "/apis/apps/v1/deployments" in d["paths"]  # list across namespaces
    core = doc(api, "api/v1")
    nodes = core["paths"]["/api/v1/nodes"]
    assert nodes["get"]["operationId"] == "listCoreV1Node"
    ids = {op["operationId"] for _, _, op in operations(core)}
    assert {"readCoreV1NamespacedPodLog", "connectCoreV1PostNamespacedPodExec",
            "createCoreV1NamespacedPodEviction", "patchCoreV1NamespacedPodStatus",
            "createCoreV1NamespacedServiceAccountToken", "replaceCoreV1NamespaceFinalize",
            "watchCoreV1NamespacedPodList", "listCoreV1PodForAllNamespaces"} <= ids
    # operation ids are unique within a document
    all_ids = [op["operationId"] for _, _, op in operations(core)]
    assert len(all_ids) == len(set(all_ids))
    rbac = doc(api, "apis/rbac.authorization.k8s.io/v1")
    assert "listRbacAuthorizationV1NamespacedRole" in {
        op["operationId"] for _, _, op in operations(rbac)}


def test_create_only_resources_have_only_create(api):
    d = doc(api, "apis/authorization.k8s.io/v1")
    ops = {(p, m) for p, m, _ in operations(d)}
    assert ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "post") in ops
    assert not any(p.startswith("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/")
                   for p, _ in ops)
    assert not any(m in ("patch", "put", "delete") for _, m in ops)


def test_crd_schema_is_published_with_gvk(api):
    d = doc(api, "apis/stable.example.com/v1")
    schemas = d["components"]["schemas"]
    kinds = {tuple(x.values()) for s in schemas.values()
             for x in s.get("x-kubernetes-group-version-kind", ())}
    name = next(n for n, s in schemas.items()
                if {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}
                in s.get("x-kubernetes-group-version-kind", ()))
    assert name == "com.example.stable.v1.CronTab"
    spec = schemas[name]["properties"]["spec"]
    assert spec["description"] == CRONTAB_SCHEMA["properties"]["spec"]["description"]
    assert schemas[name]["properties"]["metadata"]["allOf"][0]["$ref"].endswith("ObjectMeta")
    assert ("stable.example.com", "CronTabList", "v1") in kinds
    item = d["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
    assert item["patch"]["operationId"] == "patchStableExampleComV1NamespacedCronTab"


@given(st.lists(st.sampled_from(["a", "b", "x", "example", "k8s", "io", "my-app"]), min_size=1,
                max_size=4))
@settings(max_examples=50, deadline=None)
def test_group_names_are_identifier_like(parts):
    group = ".".join(parts)
    name = group_name(group)
    assert name.isalnum() and name[0].isupper()
    assert group_name(group + ".k8s.io") == name or group.endswith(".k8s.io")


def test_cached_bytes_are_reused_until_the_registry_changes():
    reg = Registry()
    api = OpenAPI(reg)
    first = api.v3_group_version("api/v1")
    assert api.v3_group_version("api/v1") is first
    reg.add(crontab())
    again = api.v3_group_version("api/v1")
    assert again == first and again is not first


# --- v2 -------------------------------------------------------------------------------------------


def test_v2_is_swagger_with_definitions_refs(api, registry):
    d = orjson.loads(api.v2())
    assert d["swagger"] == "2.0"
    defs = d["definitions"]
    for ref in refs_in(d, []):
        assert ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in defs
    patch = d["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert SMP in patch["consumes"]
    body = next(p for p in patch["parameters"] if p["in"] == "body")
    assert body["schema"] == {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
    assert any(p["name"] == "fieldValidation" and p["type"] == "string"
               for p in patch["parameters"])
    assert patch["responses"]["200"]["schema"]["$ref"] == \
        "#/definitions/io.k8s.api.core.v1.ConfigMap"
    cm = defs["io.k8s.api.core.v1.ConfigMap"]
    assert cm["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert cm["properties"]["metadata"]["$ref"].startswith("#/definitions/")
    for r in registry.all():
        prefix = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        assert any(p.startswith(prefix + "/") and r.plural in p for p in d["paths"]), r.kind


# --- (3) real kubectl -----------------------------------------------------------------------------


def api_resource_list() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": "configmaps", "singularName": "configmap", "namespaced": True,
         "kind": "ConfigMap", "shortNames": ["cm"],
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                   "watch"]}]}


@pytest.fixture
async def fake_apiserver(tmp_path):
    """Legacy discovery + this module's OpenAPI documents; records every request."""
    api = OpenAPI(Registry())
    seen: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs))
        path = request.path
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return web.json_response(api_resource_list())
        if path == "/version":
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if path == "/openapi/v3":
            return web.Response(body=orjson.dumps(api.v3_root()),
                                content_type="application/json")
        if path == "/openapi/v2" and "protobuf" in request.headers.get("Accept", ""):
            return web.Response(body=api.v2_protobuf(), headers={"Content-Type": V2_PROTOBUF})
        if path.startswith("/openapi/v3/"):
            data = api.v3_group_version(path.removeprefix("/openapi/v3/"))
            if data is not None:
                return web.Response(body=data, content_type="application/json")
        if request.method == "POST" and path == "/api/v1/namespaces/default/configmaps":
            obj = orjson.loads(await request.read())
            return web.Response(status=201, body=orjson.dumps(obj),
                                content_type="application/json")
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404, "metadata": {}},
                                 status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: default}}}}]
users: [{{name: u, user: {{}}}}]
current-context: c
""")
    yield kubeconfig, seen
    await runner.cleanup()


async def run_kubectl(binary: str, kubeconfig: Path, tmp_path: Path, *args: str,
                      stdin: bytes = b"") -> tuple[int, str, str]:
    cache = tmp_path / f"cache-{len(list(tmp_path.iterdir()))}"
    proc = await asyncio.create_subprocess_exec(
        binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)})
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


CONFIGMAP = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: demo}
data: {a: b}
"""

KUBECTL_MINORS = [27, 28, 29, 33]  # v2-only validation ends at 1.28


def assert_openapi_v2_use(minor: int, paths: list[str]) -> None:
    """kubectl ≤ 1.28 always reads /openapi/v2 (protobuf) too; later ones need only v3."""
    fetched_v2 = any(p.startswith("/openapi/v2") for p in paths)
    assert fetched_v2 == (minor <= 28)
    assert not any(p.startswith("/swagger") for p in paths)  # v2 was answered, no fallback


@pytest.mark.parametrize("minor", KUBECTL_MINORS)
async def test_kubectl_create_validates_with_openapi_v3(minor, fake_apiserver, tmp_path):
    binary = kubectl_binary_or_skip(f"1.{minor}")
    kubeconfig, seen = fake_apiserver
    rc, out, err = await run_kubectl(binary, kubeconfig, tmp_path, "create", "-f", "-",
                                     "--dry-run=server", stdin=CONFIGMAP)
    assert rc == 0, err
    assert "configmap/demo created" in out
    paths = [p for _, p in seen]
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in paths)
    assert_openapi_v2_use(minor, paths)
    post = [p for m, p in seen if m == "POST"]
    assert len(post) == 1
    assert "dryRun=All" in post[0] and "fieldValidation=Strict" in post[0]


@pytest.mark.parametrize("minor", KUBECTL_MINORS)
async def test_kubectl_leaves_unknown_fields_to_the_server(minor, fake_apiserver, tmp_path):
    """The document says the server validates fields, so kubectl sends `fieldValidation=Strict`
    instead of rejecting `foo` itself (it would only check client-side without that support)."""
    binary = kubectl_binary_or_skip(f"1.{minor}")
    kubeconfig, seen = fake_apiserver
    rc, _, err = await run_kubectl(binary, kubeconfig, tmp_path, "create", "-f", "-",
                                   "--validate=strict", stdin=CONFIGMAP + b"foo: bar\n")
    assert rc == 0, err
    post = [p for m, p in seen if m == "POST"]
    assert len(post) == 1 and "fieldValidation=Strict" in post[0]
    assert_openapi_v2_use(minor, [p for _, p in seen])


@pytest.mark.parametrize("minor", KUBECTL_MINORS)
async def test_kubectl_explain_reads_descriptions(minor, fake_apiserver, tmp_path):
    binary = kubectl_binary_or_skip(f"1.{minor}")
    kubeconfig, seen = fake_apiserver
    rc, out, err = await run_kubectl(binary, kubeconfig, tmp_path, "explain", "configmap.data")
    assert rc == 0, err
    assert "Data contains the configuration data" in out
    assert "map[string]string" in out
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for _, p in seen)
    rc, out, err = await run_kubectl(binary, kubeconfig, tmp_path, "explain",
                                     "configmap.metadata.labels")
    assert rc == 0, err
    assert "Map of string keys and values" in out
