"""The whole control plane from `kyb server`, with simulated nodes and real kubectl:
a node that stops renewing its lease is tainted, its pods are evicted and replaced on other
nodes; a second controller-manager takes over when the active one dies."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from kybtest import (create_namespace, free_port, kubectl_or_skip, start_component, start_sim_nodes,
                     stop_process, wait_for)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster")
    port = free_port()
    server = start_component(["server", "--data-dir", str(data), "--https-listen-port", str(port),
                              "--disable-agent",
                              "--kube-controller-manager-arg", "node-monitor-grace-period=4s",
                              "--kube-controller-manager-arg", "node-startup-grace-period=4s"],
                             data / "server.log")
    kubeconfig = data / "kubeconfig.yaml"
    sim = None
    try:
        wait_for(lambda: b"cluster ready" in (data / "server.log").read_bytes(), 90,
                 what="the server to start", every=0.3)
        sim = start_sim_nodes(kubeconfig, data / "sim.log", "--count", "3", "--lease-period", "1",
                              "--status-period", "1")
        kubectl = kubectl_or_skip(kubeconfig, data / "kubectl-cache")
        yield kubectl, data, kubeconfig
    finally:
        if sim:
            stop_process(sim)
        stop_process(server, 30)


def _pods(kubectl, ns, selector):
    out = json.loads(kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "json"))
    return out["items"]


def test_unreachable_node_pods_are_replaced_elsewhere(cluster):
    kubectl, data, _ = cluster
    ns = create_namespace(kubectl, "evict")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "containers": [{"name": "c", "image": "nginx"}],
                        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                         "effect": "NoExecute", "tolerationSeconds": 2}]}}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(dep))
    kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=90s", timeout=120)
    pods = _pods(kubectl, ns, "app=web")
    victim = max({p["spec"]["nodeName"] for p in pods},
                 key=lambda n: sum(p["spec"]["nodeName"] == n for p in pods))
    on_victim = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
    kubectl("label", "node", victim, "sim.kybernetes.io/freeze=true")

    def tainted():
        node = json.loads(kubectl("get", "node", victim, "-o", "json"))
        return any(t["key"] == "node.kubernetes.io/unreachable" for t in node["spec"].get("taints") or [])

    wait_for(tainted, what=f"{victim} tainted unreachable", every=0.3)

    def replaced():
        now = _pods(kubectl, ns, "app=web")
        live = [p for p in now if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if p["spec"].get("nodeName") != victim and
                 any(c["type"] == "Ready" and c["status"] == "True"
                     for c in (p.get("status") or {}).get("conditions") or [])]
        gone = on_victim.isdisjoint({p["metadata"]["name"] for p in live})
        return gone and len(ready) == 6

    wait_for(replaced, 90, what="six ready pods off the frozen node", every=0.3)
    kubectl("label", "node", victim, "sim.kybernetes.io/freeze-")


def test_controller_manager_leader_hands_over(cluster, tmp_path):
    """Two more controller-managers compete for the lease; killing the holder hands over."""
    kubectl, data, kubeconfig = cluster
    ns = create_namespace(kubectl, "ha")

    def holder():
        lease = json.loads(kubectl("-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "json"))
        return lease["spec"].get("holderIdentity")

    first = wait_for(holder, what="a lease holder", every=0.3)
    # The supervisor's controller-manager holds the lease: stop it by killing the supervisor's
    # child through its pid in the identity (host_pid), the supervisor restarts it later.
    pid = int(first.rsplit("_", 1)[1])
    extra = start_component(["controller-manager", "--kubeconfig", str(kubeconfig)], tmp_path / "cm.log")
    try:
        time.sleep(2)
        assert holder() == first  # the standby waits while the leader renews
        os.kill(pid, signal.SIGKILL)
        second = wait_for(lambda: (h := holder()) != first and h, what="a new lease holder", every=0.3)
        assert second.endswith(f"_{extra.pid}") or second != first
        # The new leader works: a ReplicaSet gets its pods.
        kubectl("-n", ns, "create", "deployment", "after", "--image=nginx", "--replicas=2")
        kubectl("-n", ns, "rollout", "status", "deploy/after", "--timeout=90s", timeout=120)
    finally:
        stop_process(extra)
