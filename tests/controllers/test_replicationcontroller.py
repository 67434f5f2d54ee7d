"""ReplicationController: the ReplicaSet controller with a map selector and core/v1 kind
(upstream runs pkg/controller/replicaset over converted RCs; events come from
"replication-controller")."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import kybtest as conftest
from kybernetes.client import Client, resource
from kybernetes.controllers.replicationcontroller import ReplicationControllerController

PODS = resource("v1", "Pod")
RC = resource("v1", "ReplicationController")


def test_map_selector_matches_superset_labels_only():
    sel = ReplicationControllerController.selector(None, {"spec": {"selector": {"app": "web", "tier": "fe"}}})
    assert sel.matches({"app": "web", "tier": "fe", "extra": "1"})
    assert not sel.matches({"app": "web"})
    assert not ReplicationControllerController.selector(None, {"spec": {}}).matches({"app": "web"})


@pytest.fixture
async def client(apiserver):
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
async def ns(client):
    name = f"rc-{uuid.uuid4().hex[:8]}"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": name}})
    return name


@pytest.fixture
def kubectl133(apiserver, tmp_path):
    binary = conftest.kubectl_binary("1.33")
    if binary is None:
        pytest.skip("kubectl 1.33 is not installed")
    return conftest.Kubectl(binary, apiserver.kubeconfig, tmp_path / "cache")


async def until(fn, timeout: float = 60.0):
    async with asyncio.timeout(timeout):
        while True:
            out = await fn()
            if out:
                return out
            await asyncio.sleep(0.05)


async def owned(client, ns, name, n):
    items = (await client.list(PODS, ns))["items"]
    pods = [p for p in items if not p["metadata"].get("deletionTimestamp") and any(
        r.get("controller") and r["kind"] == "ReplicationController" and r["name"] == name
        for r in p["metadata"].get("ownerReferences") or [])]
    return pods if len(pods) == n else None


async def test_rc_keeps_replicas_adopts_and_scales(client, ns, apiserver, components, kubectl133):
    components("controller-manager", "--kubeconfig", str(apiserver.kubeconfig),
               "--controllers", "replicationcontroller", "--leader-elect=false")
    await client.create(PODS, {"metadata": {"name": "stray", "labels": {"app": "rc", "x": "y"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}, ns)
    await client.create(RC, {"metadata": {"name": "rc"}, "spec": {
        "replicas": 3, "selector": {"app": "rc"},
        "template": {"metadata": {"labels": {"app": "rc"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, ns)
    pods = await until(lambda: owned(client, ns, "rc", 3))
    names = {p["metadata"]["name"] for p in pods}
    assert "stray" in names  # adopted
    ref = next(p for p in pods if p["metadata"]["name"] == "stray")["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["blockOwnerDeletion"]) == ("v1", "ReplicationController", True)

    await client.delete(PODS, "stray", ns)
    pods = await until(lambda: owned(client, ns, "rc", 3))
    assert "stray" not in {p["metadata"]["name"] for p in pods}

    await client.patch(RC, "rc", {"spec": {"replicas": 1}}, ns)
    await until(lambda: owned(client, ns, "rc", 1))

    async def status():
        s = (await client.get(RC, "rc", ns)).get("status") or {}
        return s.get("replicas") == 1 and s.get("fullyLabeledReplicas") == 1
    await until(status)
    table = kubectl133("get", "rc", "rc", "-n", ns).splitlines()
    assert table[1].split()[:4] == ["rc", "1", "1", "0"]

    async def described():
        out = kubectl133("describe", "rc", "rc", "-n", ns)
        return out if "SuccessfulDelete" in out else None
    out = await until(described)
    assert "Deleted pod: " in out and "replication-controller" in out
