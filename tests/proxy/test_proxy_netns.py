"""kube-proxy end to end, both modes: a real `kyb proxy` inside a node network namespace programs
the kernel from Services and EndpointSlices created through the API, and real HTTP requests from
the node, a pod and another namespace reach the backends (topology: proxylab.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kybernetes.client import resource
from proxylab import NODE_EXT_IP, PODS, needs_root

pytestmark = needs_root

SERVICES = resource("v1", "Service")
SLICES = resource("discovery.k8s.io/v1", "EndpointSlice")
NS = "default"


def endpoint(pod: str, node: str = "n1", ready: bool = True) -> dict:
    return {"addresses": [PODS[pod]], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready, "terminating": False}}


async def make_service(api, name: str, endpoints: list[dict], **spec) -> dict:
    body = {"metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}], **spec}}
    svc = await api.create(SERVICES, body)
    await api.create(SLICES, {
        "metadata": {"name": f"{name}-abcde", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        # the named target port "web" resolved to 8080, as the slice controller does
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints})
    return svc


async def set_endpoints(api, name: str, endpoints: list[dict]) -> None:
    sl = await api.get(SLICES, f"{name}-abcde", NS)
    sl["endpoints"] = endpoints
    await api.update(SLICES, sl)


async def answers_until(lab, ns: str, url: str, want, n: int = 30, timeout: float = 60) -> list[str]:
    """Send batches of n requests until the answers satisfy `want`; returns the last batch."""
    deadline = time.monotonic() + timeout
    while True:
        got = lab.get(ns, url, n)
        if want(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


async def test_cluster_ip_reaches_every_ready_endpoint(lab, proxy, api):
    svc = await make_service(api, f"web-{proxy}", [endpoint(p) for p in PODS])
    url = f"http://{svc['spec']['clusterIP']}/"
    got = await answers_until(lab, lab.node, url, lambda g: set(g) == set(PODS), n=50)
    assert set(got) == set(PODS), got
    # from a pod: replies from pods on the same bridge are un-DNATed too
    got = await answers_until(lab, lab.pods["p1"], url, lambda g: set(g) == set(PODS), n=50)
    assert set(got) == set(PODS), got


async def test_node_port_from_another_namespace(lab, proxy, api):
    svc = await make_service(api, f"np-{proxy}", [endpoint("p2"), endpoint("p3")], type="NodePort")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    got = await answers_until(lab, lab.ext, f"http://{NODE_EXT_IP}:{node_port}/",
                              lambda g: set(g) == {"p2", "p3"})
    assert set(got) == {"p2", "p3"}, got


async def test_load_balancer_and_external_ips(lab, proxy, api):
    lb_ip, ext_ip = "10.99.0.1", "10.99.0.2"
    svc = await make_service(api, f"lb-{proxy}", [endpoint("p1")], type="LoadBalancer",
                             externalIPs=[ext_ip])
    await api.patch(SERVICES, svc["metadata"]["name"],
                    {"status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}}, NS,
                    subresource="status")
    for ip in (lb_ip, ext_ip):
        got = await answers_until(lab, lab.ext, f"http://{ip}/", lambda g: set(g) == {"p1"}, n=5)
        assert set(got) == {"p1"}, (ip, got)


async def test_session_affinity_sticks(lab, proxy, api):
    svc = await make_service(api, f"sticky-{proxy}", [endpoint(p) for p in PODS],
                             sessionAffinity="ClientIP")
    got = await answers_until(lab, lab.node, f"http://{svc['spec']['clusterIP']}/",
                              lambda g: all(a in PODS for a in g), n=30)
    assert len(set(got)) == 1 and got[0] in PODS, got


async def test_removed_endpoint_stops_answering(lab, proxy, api):
    name = f"shrink-{proxy}"
    svc = await make_service(api, name, [endpoint("p1"), endpoint("p2")])
    url = f"http://{svc['spec']['clusterIP']}/"
    got = await answers_until(lab, lab.node, url, lambda g: set(g) == {"p1", "p2"})
    assert set(got) == {"p1", "p2"}, got
    await set_endpoints(api, name, [endpoint("p1")])
    got = await answers_until(lab, lab.node, url, lambda g: set(g) == {"p1"})
    assert set(got) == {"p1"}, got


async def test_terminating_endpoints_used_only_as_fallback(lab, proxy, api):
    name = f"term-{proxy}"
    terminating = {"addresses": [PODS["p3"]], "nodeName": "n1",
                   "conditions": {"ready": False, "serving": True, "terminating": True}}
    svc = await make_service(api, name, [endpoint("p2"), terminating])
    url = f"http://{svc['spec']['clusterIP']}/"
    got = await answers_until(lab, lab.node, url, lambda g: set(g) == {"p2"})
    assert set(got) == {"p2"}, got
    await set_endpoints(api, name, [terminating])
    got = await answers_until(lab, lab.node, url, lambda g: set(g) == {"p3"})
    assert set(got) == {"p3"}, got


async def test_hairpin_pod_to_its_own_service(lab, proxy, api):
    svc = await make_service(api, f"self-{proxy}", [endpoint("p1")])
    got = await answers_until(lab, lab.pods["p1"], f"http://{svc['spec']['clusterIP']}/",
                              lambda g: set(g) == {"p1"}, n=5)
    assert set(got) == {"p1"}, got


async def test_internal_traffic_policy_local_uses_this_nodes_endpoints(lab, proxy, api):
    svc = await make_service(api, f"itp-{proxy}", [endpoint("p1"), endpoint("p2", node="n2")],
                             internalTrafficPolicy="Local")
    got = await answers_until(lab, lab.node, f"http://{svc['spec']['clusterIP']}/",
                              lambda g: set(g) == {"p1"})
    assert set(got) == {"p1"}, got


async def test_headless_service_gets_no_rules(lab, proxy, api):
    await make_service(api, f"headless-{proxy}", [endpoint("p1")], clusterIP="None")
    svc = await make_service(api, f"visible-{proxy}", [endpoint("p1")])
    # once the later service is programmed, the headless one has been considered too
    await answers_until(lab, lab.node, f"http://{svc['spec']['clusterIP']}/",
                        lambda g: set(g) == {"p1"}, n=3)
    rules = lab.rules(proxy)
    assert f"{NS}/visible-{proxy}" in rules
    assert f"{NS}/headless-{proxy}" not in rules
