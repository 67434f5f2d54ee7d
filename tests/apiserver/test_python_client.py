"""The official `kubernetes` Python client (and kubernetes-asyncio) against `kyb apiserver`."""

from __future__ import annotations

import copy
import threading
import time
import uuid

import pytest
from kubernetes import client, dynamic, utils, watch
from kubernetes.client.rest import ApiException

from manifests import MANIFESTS


@pytest.fixture
def ns(api_client) -> str:
    name = f"py-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m["kind"])
def test_dynamic_crud_every_kind(api_client, ns, manifest):
    dyn = dynamic.DynamicClient(api_client)
    body = copy.deepcopy(manifest)
    cluster = body.pop("cluster", False)
    name = body.pop("name", None) or f"{body['kind'].lower()}-{uuid.uuid4().hex[:6]}"
    body["metadata"] = {"name": name, "labels": {"suite": "crud"}}
    if body["kind"] == "Event":
        body["involvedObject"]["namespace"] = ns
    res = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    kw = {} if cluster else {"namespace": ns}
    created = res.create(body=body, **kw)
    assert created.metadata.uid and created.metadata.resourceVersion
    got = res.get(name=name, **kw)
    assert got.metadata.uid == created.metadata.uid
    listed = res.get(label_selector="suite=crud", **kw)
    assert name in [i.metadata.name for i in listed.items]
    patched = res.patch(name=name, body={"metadata": {"labels": {"patched": "yes"}}},
                        content_type="application/merge-patch+json", **kw)
    assert patched.metadata.labels["patched"] == "yes"
    assert int(patched.metadata.resourceVersion) > int(created.metadata.resourceVersion)
    res.delete(name=name, **kw)
    if body["kind"] == "Pod":
        return  # unbound pods go at once; bound ones wait for their kubelet
    with pytest.raises(dynamic.exceptions.NotFoundError):
        res.get(name=name, **kw)


def test_typed_clients(api_client, ns):
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    assert cm.data == {"a": "1"}
    dep = apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    assert dep.spec.replicas == 1 and dep.spec.template.spec.containers[0].image_pull_policy == "Always"
    scale = apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 3
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("missing", ns)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    assert e.value.status == 409


def test_create_from_yaml_multi_document(api_client, ns, tmp_path):
    f = tmp_path / "multi.yaml"
    f.write_text("""\
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
data: {a: "1"}
---
apiVersion: v1
kind: Service
metadata: {name: two}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: three}
spec:
  selector: {matchLabels: {app: three}}
  template:
    metadata: {labels: {app: three}}
    spec: {containers: [{name: c, image: busybox}]}
""")
    utils.create_from_yaml(api_client, str(f), namespace=ns)
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_config_map("one", ns).data == {"a": "1"}
    assert core.read_namespaced_service("two", ns).spec.ports[0].target_port == 8080
    assert client.AppsV1Api(api_client).read_namespaced_deployment("three", ns).metadata.generation == 1


def test_watch_stream(api_client, ns):
    core = client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = []

    def produce():
        time.sleep(0.5)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"a": "1"}})
        core.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
        core.delete_namespaced_config_map("w", ns)

    t = threading.Thread(target=produce)
    t.start()
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    t.join()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_label_selector_transitions(api_client, ns):
    """An object leaving the selector is DELETED for the watcher, entering it is ADDED."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "s", "labels": {"on": "no"}}})
    rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def produce():
        time.sleep(0.5)
        core.patch_namespaced_config_map("s", ns, {"metadata": {"labels": {"on": "yes"}}})
        core.patch_namespaced_config_map("s", ns, {"metadata": {"labels": {"on": "no"}}})

    t = threading.Thread(target=produce)
    t.start()
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, label_selector="on=yes",
                       resource_version=rv, timeout_seconds=10):
        seen.append(ev["type"])
        if len(seen) == 2:
            w.stop()
    t.join()
    assert seen == ["ADDED", "DELETED"]




def test_custom_resource_definition(api_client, ns):
    ext = client.ApiextensionsV1Api(api_client)
    crd = {
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                           "shortNames": ["ct"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}, "scale": {
                                   "specReplicasPath": ".spec.replicas",
                                   "statusReplicasPath": ".status.replicas"}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {
                                       "cronSpec": {"type": "string"},
                                       "replicas": {"type": "integer"}}},
                                   "status": {"type": "object", "properties": {
                                       "replicas": {"type": "integer"}}}}}}}]}}
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
    got = ext.read_custom_resource_definition("crontabs.stable.example.com")
    assert any(c.type == "Established" and c.status == "True" for c in got.status.conditions)
    custom = client.CustomObjectsApi(api_client)
    obj = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "ct1"}, "spec": {"cronSpec": "* * * * */5", "replicas": 1}}
    made = custom.create_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", obj)
    assert made["metadata"]["generation"] == 1
    lst = custom.list_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs")
    assert [i["metadata"]["name"] for i in lst["items"]] == ["ct1"]
    custom.patch_namespaced_custom_object_scale("stable.example.com", "v1", ns, "crontabs", "ct1",
                                                {"spec": {"replicas": 4}})
    got = custom.get_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "ct1")
    assert got["spec"]["replicas"] == 4 and got["metadata"]["generation"] == 2
    custom.delete_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "ct1")
    with pytest.raises(ApiException) as e:
        custom.get_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "ct1")
    assert e.value.status == 404


async def test_kubernetes_asyncio_watch(apiserver, ns):
    from kubernetes_asyncio import client as aclient, config as aconfig, watch as awatch
    import asyncio

    api = await aconfig.new_client_from_config(config_file=str(apiserver.kubeconfig))
    try:
        core = aclient.CoreV1Api(api)
        rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version

        async def produce():
            await asyncio.sleep(0.3)
            await core.create_namespaced_config_map(ns, {"metadata": {"name": "aio"}})

        task = asyncio.create_task(produce())
        w = awatch.Watch()
        async for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                 timeout_seconds=10):
            assert ev["type"] == "ADDED" and ev["object"].metadata.name == "aio"
            w.stop()
        await task
    finally:
        await api.close()
