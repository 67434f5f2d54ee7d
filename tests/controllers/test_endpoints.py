"""Endpoints controller: pure subset building, and the controller against a real API server.

Behaviour matched from pkg/controller/endpoint (endpoints_controller.go): ready pods in
`addresses`, others in `notReadyAddresses`, subsets grouped by resolved ports (named targetPort
per pod), hostname only for pods whose subdomain is the service, 1000-address truncation with
`endpoints.kubernetes.io/over-capacity: truncated`, selector-less Services left alone.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from kybernetes.client import resource
from kybernetes.controllers.endpoints import OVER_CAPACITY, desired_subsets, find_port, truncate
from kybtest import new_namespace, until

NS = resource("v1", "Namespace")
POD = resource("v1", "Pod")
SVC = resource("v1", "Service")
EP = resource("v1", "Endpoints")
NODE = resource("v1", "Node")


# ---- pure ----

def make_pod(name: str, ip: str | None, ready: bool, port: int = 8080, *, hostname: str = "",
             subdomain: str = "", labels: dict | None = None, deleting: bool = False) -> dict:
    pod = {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                        "labels": labels or {"app": "web"}},
           "spec": {"nodeName": "n1", "containers": [
               {"name": "c", "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
           "status": {"phase": "Running",
                      "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if ip:
        pod["status"]["podIP"] = ip
    if hostname:
        pod["spec"]["hostname"] = hostname
    if subdomain:
        pod["spec"]["subdomain"] = subdomain
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return pod


def make_svc(ports=None, **spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                     "ports": ports if ports is not None else
                     [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}], **spec}}


pods_strategy = st.lists(
    st.tuples(st.booleans(), st.sampled_from([8080, 9090]), st.booleans(), st.booleans()),
    max_size=30)


@settings(max_examples=60, deadline=None)
@given(pods_strategy, st.booleans())
def test_every_serving_pod_listed_once(specs, publish):
    pods = [make_pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}" if has_ip else None, ready, port,
                     deleting=deleting)
            for i, (ready, port, has_ip, deleting) in enumerate(specs)]
    subsets, truncated = desired_subsets(make_svc(publishNotReadyAddresses=publish), pods)
    assert not truncated
    listed = {}
    for s in subsets:
        (port,) = s["ports"]
        for field in ("addresses", "notReadyAddresses"):
            for a in s.get(field, []):
                assert a["targetRef"]["name"] not in listed
                listed[a["targetRef"]["name"]] = (field, port["port"])
    expected = {}
    for i, (ready, port, has_ip, deleting) in enumerate(specs):
        if not has_ip or (deleting and not publish):
            continue
        expected[f"p{i}"] = ("addresses" if ready or publish else "notReadyAddresses", port)
    assert listed == expected


def test_named_target_port_and_hostname():
    a = make_pod("a", "10.0.0.1", True, 8080, hostname="a", subdomain="web")
    b = make_pod("b", "10.0.0.2", True, 9090, hostname="b", subdomain="other")
    subsets, _ = desired_subsets(make_svc(), [a, b])
    by_port = {s["ports"][0]["port"]: s for s in subsets}
    assert set(by_port) == {8080, 9090}
    assert by_port[8080]["addresses"][0]["hostname"] == "a"
    assert "hostname" not in by_port[9090]["addresses"][0]
    assert by_port[8080]["addresses"][0]["nodeName"] == "n1"
    assert by_port[8080]["ports"][0]["name"] == "http"
    # A pod without the named port serves nothing for that service port.
    assert find_port(make_pod("c", "10.0.0.3", True), {"targetPort": "grpc", "port": 1}) is None


def test_headless_without_ports_lists_bare_addresses():
    svc = make_svc(ports=[], clusterIP="None")
    subsets, _ = desired_subsets(svc, [make_pod("a", "10.0.0.1", True)])
    assert [[a["ip"] for a in s["addresses"]] for s in subsets] == [["10.0.0.1"]]
    assert not subsets[0].get("ports")
    # A service with a ClusterIP and no ports has no endpoints at all.
    assert desired_subsets(make_svc(ports=[]), [make_pod("a", "10.0.0.1", True)])[0] == []


@given(st.integers(0, 1500), st.integers(0, 1500), st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_truncation_keeps_ready_first(ready, not_ready, groups):
    subsets = [{"addresses": [{"ip": f"r{g}-{i}"} for i in range(ready) if i % groups == g],
                "notReadyAddresses": [{"ip": f"n{g}-{i}"} for i in range(not_ready) if i % groups == g]}
               for g in range(groups)]
    truncated = truncate(subsets, 1000)
    kept_ready = sum(len(s.get("addresses", [])) for s in subsets)
    kept_not = sum(len(s.get("notReadyAddresses", [])) for s in subsets)
    assert truncated == (ready + not_ready > 1000)
    assert kept_ready + kept_not == min(1000, ready + not_ready)
    assert kept_ready == min(ready, 1000)


# ---- against the API server ----

@pytest.fixture
async def ns(client):
    return await new_namespace(client, "ep")


async def ensure_node(client, name: str) -> None:
    try:
        await client.create(NODE, {"metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": "zone-a"}}})
    except Exception as e:  # already there from another test
        if getattr(e, "code", None) != 409:
            raise


async def running_pod(client, ns: str, name: str, ip: str, port: int, ready: bool,
                      node: str = "ep-node-1") -> dict:
    """A pod as a kubelet would leave it: bound, with an IP, Ready or not."""
    await client.create(POD, {"metadata": {"name": name, "labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [
                                  {"name": "http", "containerPort": port}]}]}}, ns)
    await client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding",
                         body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                               "target": {"kind": "Node", "name": node}})
    return await set_ready(client, ns, name, ready, ip)


async def set_ready(client, ns: str, name: str, ready: bool, ip: str | None = None) -> dict:
    pod = await client.get(POD, name, ns)
    status = pod.setdefault("status", {})
    status["phase"] = "Running"
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                             "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    return await client.update_status(POD, pod)


async def test_endpoints_follow_readiness(apiserver, controller_manager, client, ns):
    await ensure_node(client, "ep-node-1")
    controller_manager(apiserver.kubeconfig, "endpoints")
    await client.create(SVC, {"metadata": {"name": "web", "labels": {"tier": "front"}},
                              "spec": {"selector": {"app": "web"}, "ports": [
                                  {"name": "http", "port": 80, "targetPort": "http"}]}}, ns)
    await running_pod(client, ns, "a", "10.99.0.1", 8080, True)
    await running_pod(client, ns, "b", "10.99.0.2", 9090, False)

    async def state():
        try:
            ep = await client.get(EP, "web", ns)
        except Exception:
            return None
        ready = {(a["ip"], s["ports"][0]["port"]) for s in ep.get("subsets") or [] for a in s.get("addresses", [])}
        not_ready = {(a["ip"], s["ports"][0]["port"]) for s in ep.get("subsets") or []
                     for a in s.get("notReadyAddresses", [])}
        return ep, ready, not_ready

    async def shows(ready, not_ready):
        out = await state()
        return out if out and out[1] == ready and out[2] == not_ready else None

    ep, _, _ = await until(lambda: shows({("10.99.0.1", 8080)}, {("10.99.0.2", 9090)}))
    assert ep["metadata"]["labels"] == {"tier": "front"}
    addr = ep["subsets"][0].get("addresses") or ep["subsets"][1]["addresses"]
    assert addr[0]["targetRef"]["kind"] == "Pod" and addr[0]["nodeName"] == "ep-node-1"
    await set_ready(client, ns, "b", True)
    await until(lambda: shows({("10.99.0.1", 8080), ("10.99.0.2", 9090)}, set()))
    await set_ready(client, ns, "a", False)
    await until(lambda: shows({("10.99.0.2", 9090)}, {("10.99.0.1", 8080)}))
    await client.delete(POD, "b", ns, grace_seconds=0)
    await until(lambda: shows(set(), {("10.99.0.1", 8080)}))
    # The Service goes, its Endpoints go.
    await client.delete(SVC, "web", ns)

    async def gone():
        try:
            await client.get(EP, "web", ns)
            return False
        except Exception as e:
            return getattr(e, "code", None) == 404
    await until(gone)


async def test_selectorless_service_is_left_alone(apiserver, controller_manager, client, ns):
    controller_manager(apiserver.kubeconfig, "endpoints")
    await client.create(SVC, {"metadata": {"name": "manual"},
                              "spec": {"ports": [{"port": 80}]}}, ns)
    mine = {"metadata": {"name": "manual"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}
    await client.create(EP, mine, ns)
    # Another service with a selector in the same namespace proves the controller is running.
    await client.create(SVC, {"metadata": {"name": "probe"},
                              "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}, ns)
    await until(lambda: _exists(client, EP, "probe", ns))
    ep = await client.get(EP, "manual", ns)
    assert ep["subsets"][0]["addresses"] == [{"ip": "192.0.2.1"}]
    assert OVER_CAPACITY not in (ep["metadata"].get("annotations") or {})


async def _exists(client, r, name, ns):
    try:
        return await client.get(r, name, ns)
    except Exception:
        return None


async def test_kubectl_describe_service_shows_endpoints(apiserver, controller_manager, client, ns,
                                                       kubectl133):
    kubectl = kubectl133
    await ensure_node(client, "ep-node-1")
    controller_manager(apiserver.kubeconfig, "endpoints,endpointslice")
    await client.create(SVC, {"metadata": {"name": "web"},
                              "spec": {"selector": {"app": "web"}, "ports": [
                                  {"name": "http", "port": 80, "targetPort": "http"}]}}, ns)
    await running_pod(client, ns, "a", "10.99.1.1", 8080, True)

    async def described():
        out = await asyncio.to_thread(kubectl, "describe", "svc", "web", "-n", ns)
        return out if "10.99.1.1:8080" in out else None
    out = await until(described)
    line = next(ln for ln in out.splitlines() if ln.startswith("Endpoints:"))
    assert line.split()[1] == "10.99.1.1:8080"
