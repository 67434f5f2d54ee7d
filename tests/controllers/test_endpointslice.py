"""EndpointSlice controller: the slice planner (pure) and the controller with a real API server.

Matched to pkg/controller/endpointslice (reconciler.go, utils.go): labels
`kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io`, generateName `<service>-`, a controller ownerReference to the
Service, ready/serving/terminating conditions, at most 100 endpoints per slice, changes made in
place, one placeholder slice for a Service without endpoints.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from kybernetes.client import resource
from kybernetes.controllers.endpointslice import (CONTROLLER_NAME, MANAGED_BY, SERVICE_NAME,
                                                  endpoint_key, plan, pod_endpoint)
from kybtest import new_namespace, until

NS = resource("v1", "Namespace")
POD = resource("v1", "Pod")
SVC = resource("v1", "Service")
NODE = resource("v1", "Node")
SLICE = resource("discovery.k8s.io/v1", "EndpointSlice")

PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
PK = (("http", 8080, "TCP", ""),)


def ep(i: int, ready: bool = True) -> dict:
    return {"addresses": [f"10.0.{i // 200}.{i % 200}"],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "ns", "name": f"p{i}", "uid": f"u{i}"}}


# ---- pure ----

@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=300, unique=True),
       st.lists(st.lists(st.integers(0, 400), max_size=100, unique=True), max_size=4),
       st.sets(st.integers(0, 400)))
def test_plan_places_each_endpoint_once(want, existing_ids, not_ready):
    seen_existing: set[int] = set()
    existing = []
    for n, ids in enumerate(existing_ids):
        ids = [i for i in ids if i not in seen_existing]
        seen_existing.update(ids)
        existing.append({"metadata": {"name": f"s{n}"}, "ports": PORTS,
                         "endpoints": [ep(i) for i in ids]})
    desired = {PK: (PORTS, {f"u{i}": ep(i, i not in not_ready) for i in want})} if want else {}
    creates, updates, deletes = plan(desired, [dict(s) for s in existing], 100)
    untouched = [s for s in existing
                 if s["metadata"]["name"] not in {x["metadata"]["name"] for x in updates + deletes}]
    result = creates + updates + untouched
    placed = [endpoint_key(e) for s in result for e in s["endpoints"]]
    assert sorted(placed) == sorted(f"u{i}" for i in want)
    assert all(len(s["endpoints"]) <= 100 for s in result)
    # Untouched slices hold exactly what is wanted.
    for s in untouched:
        for e in s["endpoints"]:
            assert e == desired[PK][1][endpoint_key(e)]
    if not want:
        assert len(result) == 1 and result[0]["endpoints"] == []  # the placeholder
    else:
        # No more slices than needed beyond the ones kept in place.
        assert len(creates) <= -(-len(want) // 100)
        # Only a remainder is created short of full, and only when no untouched slice had room.
        partial = [s for s in creates if len(s["endpoints"]) < 100]
        assert len(partial) <= 1
        for p in partial:
            assert all(len(s["endpoints"]) + len(p["endpoints"]) > 100 for s in untouched)


def test_unchanged_endpoints_cause_no_writes():
    existing = [{"metadata": {"name": "s0"}, "ports": PORTS, "endpoints": [ep(1), ep(2)]}]
    desired = {PK: (PORTS, {"u1": ep(1), "u2": ep(2)})}
    assert plan(desired, existing) == ([], [], [])
    # One endpoint turns not ready: the slice is updated in place, nothing created.
    desired = {PK: (PORTS, {"u1": ep(1), "u2": ep(2, False)})}
    creates, updates, deletes = plan(desired, existing)
    assert (creates, deletes) == ([], []) and [u["metadata"]["name"] for u in updates] == ["s0"]


def test_remainder_goes_into_unchanged_slice_after_full_slices():
    # 11 endpoints in place, 109 new: one full new slice, the other 9 join the existing slice
    # (as upstream's reconcileByPortMapping), not 11 + 100 + 9.
    existing = [{"metadata": {"name": "s0"}, "ports": PORTS, "endpoints": [ep(i) for i in range(11)]}]
    desired = {PK: (PORTS, {f"u{i}": ep(i) for i in range(120)})}
    creates, updates, deletes = plan(desired, existing)
    assert [len(s["endpoints"]) for s in creates] == [100] and deletes == []
    assert [(u["metadata"]["name"], len(u["endpoints"])) for u in updates] == [("s0", 20)]
    placed = {endpoint_key(e) for s in creates + updates for e in s["endpoints"]}
    assert placed == set(desired[PK][1])


def test_terminating_pod_is_not_ready_but_serving():
    pod = {"metadata": {"name": "a", "namespace": "ns", "uid": "u",
                        "deletionTimestamp": "2024-01-01T00:00:00Z"},
           "spec": {"nodeName": "n1"},
           "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}
    svc = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {}}
    node = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}
    out = pod_endpoint(svc, pod, "10.0.0.1", node)
    assert out["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert out["zone"] == "z1" and out["nodeName"] == "n1"
    svc["spec"]["publishNotReadyAddresses"] = True
    assert pod_endpoint(svc, pod, "10.0.0.1", node)["conditions"]["ready"] is True


# ---- against the API server ----

@pytest.fixture
async def ns(client):
    return await new_namespace(client, "eps")


async def make_pod(client, ns: str, name: str, ip: str, ready: bool, node: str) -> None:
    await client.create(POD, {"metadata": {"name": name, "labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [
                                  {"name": "http", "containerPort": 8080}]}]}}, ns)
    await client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding",
                         body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                               "target": {"kind": "Node", "name": node}})
    await set_ready(client, ns, name, ready, ip)


async def set_ready(client, ns, name, ready, ip=None):
    pod = await client.get(POD, name, ns)
    st_ = pod.setdefault("status", {})
    st_["phase"] = "Running"
    if ip:
        st_["podIP"], st_["podIPs"] = ip, [{"ip": ip}]
    st_["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                          "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    await client.update_status(POD, pod)


async def slices_of(client, ns, svc="web"):
    out = await client.list(SLICE, ns, label_selector=f"{SERVICE_NAME}={svc}")
    return out["items"]


async def test_slices_follow_pods(apiserver, controller_manager, client, ns):
    node = f"eps-node-{ns}"
    await client.create(NODE, {"metadata": {"name": node, "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
    controller_manager(apiserver.kubeconfig, "endpointslice")
    svc = await client.create(SVC, {"metadata": {"name": "web", "labels": {"tier": "front"}},
                                    "spec": {"selector": {"app": "web"}, "ports": [
                                        {"name": "http", "port": 80, "targetPort": "http"}]}}, ns)

    async def placeholder():
        items = await slices_of(client, ns)
        return items if len(items) == 1 and not items[0].get("endpoints") else None
    (first,) = await until(placeholder)
    meta = first["metadata"]
    assert meta["name"].startswith("web-")
    assert meta["labels"][MANAGED_BY] == CONTROLLER_NAME and meta["labels"]["tier"] == "front"
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Service", svc["metadata"]["uid"], True)

    await asyncio.gather(*(make_pod(client, ns, f"p{i}", f"10.98.0.{i + 1}", i % 2 == 0, node)
                           for i in range(120)))

    async def all_there():
        items = await slices_of(client, ns)
        eps = [e for s in items for e in s.get("endpoints") or []]
        return items if len(eps) == 120 else None
    items = await until(all_there)
    # Exactly two slices however the pods arrive in batches: a short slice is only created when
    # no existing one can take the remainder, so three slices would need pairwise sums over 100.
    assert len(items) == 2 and all(len(s["endpoints"]) <= 100 for s in items)
    for s in items:
        assert s["addressType"] == "IPv4"
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        for e in s["endpoints"]:
            i = int(e["targetRef"]["name"][1:])
            assert e["conditions"]["ready"] == (i % 2 == 0)
            assert e["nodeName"] == node and e["zone"] == "zone-a"
    names = {s["metadata"]["name"] for s in items}

    # Readiness flips are written into the same slices.
    await set_ready(client, ns, "p1", True)

    async def p1_ready():
        items = await slices_of(client, ns)
        for s in items:
            for e in s.get("endpoints") or []:
                if e["targetRef"]["name"] == "p1" and e["conditions"]["ready"]:
                    return items
    items = await until(p1_ready)
    assert {s["metadata"]["name"] for s in items} == names
