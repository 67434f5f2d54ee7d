"""ReplicationController: the ReplicaSet controller with a map selector and core/v1 kind
(upstream runs pkg/controller/replicaset over converted RCs; events come from
"replication-controller")."""

from __future__ import annotations

import pytest

from kybernetes.client import resource
from kybernetes.controllers.replicationcontroller import ReplicationControllerController
from kybtest import new_namespace, until

PODS = resource("v1", "Pod")
RC = resource("v1", "ReplicationController")


def test_map_selector_matches_superset_labels_only():
    sel = ReplicationControllerController.selector(None, {"spec": {"selector": {"app": "web", "tier": "fe"}}})
    assert sel.matches({"app": "web", "tier": "fe", "extra": "1"})
    assert not sel.matches({"app": "web"})
    assert not ReplicationControllerController.selector(None, {"spec": {}}).matches({"app": "web"})


@pytest.fixture
async def ns(client):
    return await new_namespace(client, "rc")


async def owned(client, ns, name, n):
    items = (await client.list(PODS, ns))["items"]
    pods = [p for p in items if not p["metadata"].get("deletionTimestamp") and any(
        r.get("controller") and r["kind"] == "ReplicationController" and r["name"] == name
        for r in p["metadata"].get("ownerReferences") or [])]
    return pods if len(pods) == n else None


async def test_rc_keeps_replicas_adopts_and_scales(client, ns, apiserver, controller_manager,
                                                   kubectl133):
    controller_manager(apiserver.kubeconfig, "replicationcontroller")
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
