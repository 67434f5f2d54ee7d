"""The built-in service load balancer (k3s ServiceLB): LoadBalancer Services get the Ready
nodes' IPs (ExternalIP preferred over InternalIP) as status.loadBalancer.ingress."""

from __future__ import annotations

from kybernetes.proxy.servicelb import ingress_for, node_ip


def node(name, internal, external=None, ready=True, unschedulable=False):
    addrs = [{"type": "InternalIP", "address": internal}, {"type": "Hostname", "address": name}]
    if external:
        addrs.append({"type": "ExternalIP", "address": external})
    return {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
            "status": {"addresses": addrs,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def lb(**spec):
    return {"metadata": {"name": "s", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec}}


def test_ready_nodes_ips_sorted_external_preferred():
    nodes = [node("b", "10.0.0.9"), node("a", "10.0.0.10", external="192.0.2.1"),
             node("c", "10.0.0.2", ready=False), node("d", "10.0.0.3", unschedulable=True)]
    assert node_ip(nodes[1]) == "192.0.2.1"
    assert ingress_for(lb(), nodes) == [{"ip": "10.0.0.9"}, {"ip": "192.0.2.1"}]


def test_other_services_and_other_classes_are_left_alone():
    nodes = [node("a", "10.0.0.1")]
    assert ingress_for(lb(loadBalancerClass="example.com/lb"), nodes) == []
    assert ingress_for({"metadata": {"name": "s"}, "spec": {"type": "NodePort"}}, nodes) == []
    assert ingress_for(lb(), nodes) == [{"ip": "10.0.0.1"}]


async def test_controller_publishes_node_ips(apiserver):
    """In-process against the real API server: a new LoadBalancer Service gets the node's IP."""
    import asyncio
    import uuid

    from kybernetes.client import Client, InformerFactory, resource
    from kybernetes.proxy.servicelb import ServiceLBController

    services, nodes, namespaces = (resource("v1", "Service"), resource("v1", "Node"),
                                   resource("v1", "Namespace"))
    client = Client.from_kubeconfig(apiserver.kubeconfig)
    ns, node_name = f"slb-{uuid.uuid4().hex[:6]}", f"slb-node-{uuid.uuid4().hex[:6]}"
    await client.create(namespaces, {"metadata": {"name": ns}})
    n = await client.create(nodes, {"metadata": {"name": node_name}})
    n["status"] = node(node_name, "10.250.0.7")["status"]
    await client.update_status(nodes, n)
    factory = InformerFactory(client)
    ctrl = ServiceLBController(client, factory)
    factory.start()
    task = asyncio.create_task(ctrl.run())
    try:
        await client.create(services, dict(lb(), metadata={"name": "web", "namespace": ns}))
        deadline = asyncio.get_running_loop().time() + 20
        ingress = []
        while asyncio.get_running_loop().time() < deadline:
            svc = await client.get(services, "web", ns)
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if {"ip": "10.250.0.7"} in ingress:
                break
            await asyncio.sleep(0.1)
        assert {"ip": "10.250.0.7"} in ingress
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await factory.stop()
        await client.delete(nodes, node_name)
        await client.close()
