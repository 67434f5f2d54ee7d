"""The whole control plane from `kyb server`, with simulated nodes and real kubectl:
a node that stops renewing its lease is tainted, its pods are evicted and replaced on other
nodes; a second controller-manager takes over when the active one dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from kybtest import Kubectl, free_port, kubectl_binary, stop_process


def _until(fn, timeout=60.0, every=0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = dict(os.environ, KYB_NODE_MONITOR_GRACE="4", KYB_NODE_STARTUP_GRACE="4")
    log = open(data / "server.log", "ab")
    server = subprocess.Popen([sys.executable, "-m", "kybernetes", "server", "--data-dir", str(data),
                               "--https-listen-port", str(port), "--disable-agent"],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    kubeconfig = data / "kubeconfig.yaml"
    sim = None
    try:
        _until(lambda: b"cluster ready" in (data / "server.log").read_bytes(), 60)
        sim = subprocess.Popen([sys.executable, "-m", "kybernetes", "sim", "nodes", "--kubeconfig",
                                str(kubeconfig), "--count", "3", "--lease-period", "1",
                                "--status-period", "1"],
                               stdout=open(data / "sim.log", "ab"), stderr=subprocess.STDOUT)
        binary = kubectl_binary("1.33")
        if binary is None:
            pytest.skip("kubectl 1.33 is not installed")
        yield Kubectl(binary, kubeconfig, data / "kubectl-cache"), data, kubeconfig
    finally:
        if sim:
            stop_process(sim)
        stop_process(server, 30)


def _pods(kubectl, ns, selector):
    out = json.loads(kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "json"))
    return out["items"]


def test_unreachable_node_pods_are_replaced_elsewhere(cluster):
    kubectl, data, _ = cluster
    ns = f"evict-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "containers": [{"name": "c", "image": "nginx"}],
                        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                         "effect": "NoExecute", "tolerationSeconds": 2}]}}}}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(dep))
    kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
    pods = _pods(kubectl, ns, "app=web")
    victim = max({p["spec"]["nodeName"] for p in pods},
                 key=lambda n: sum(p["spec"]["nodeName"] == n for p in pods))
    on_victim = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
    kubectl("label", "node", victim, "sim.kybernetes.io/freeze=true")

    def tainted():
        node = json.loads(kubectl("get", "node", victim, "-o", "json"))
        return any(t["key"] == "node.kubernetes.io/unreachable" for t in node["spec"].get("taints") or [])

    _until(tainted, 60)

    def replaced():
        now = _pods(kubectl, ns, "app=web")
        live = [p for p in now if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if p["spec"].get("nodeName") != victim and
                 any(c["type"] == "Ready" and c["status"] == "True"
                     for c in (p.get("status") or {}).get("conditions") or [])]
        gone = on_victim.isdisjoint({p["metadata"]["name"] for p in live})
        return gone and len(ready) == 6

    _until(replaced, 90)
    kubectl("label", "node", victim, "sim.kybernetes.io/freeze-")


def test_controller_manager_leader_hands_over(cluster, tmp_path):
    """Two more controller-managers compete for the lease; killing the holder hands over."""
    kubectl, data, kubeconfig = cluster
    ns = f"ha-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)

    def holder():
        lease = json.loads(kubectl("-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "json"))
        return lease["spec"].get("holderIdentity")

    first = _until(holder, 30)
    # The supervisor's controller-manager holds the lease: stop it by killing the supervisor's
    # child through its pid in the identity (host_pid), the supervisor restarts it later.
    pid = int(first.rsplit("_", 1)[1])
    extra = subprocess.Popen([sys.executable, "-m", "kybernetes", "controller-manager", "--kubeconfig",
                              str(kubeconfig)], stdout=open(tmp_path / "cm.log", "ab"),
                             stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        assert holder() == first  # the standby waits while the leader renews
        os.kill(pid, signal.SIGKILL)
        second = _until(lambda: (h := holder()) != first and h, 60)
        assert second.endswith(f"_{extra.pid}") or second != first
        # The new leader works: a ReplicaSet gets its pods.
        kubectl("-n", ns, "create", "deployment", "after", "--image=nginx", "--replicas=2")
        kubectl("-n", ns, "rollout", "status", "deploy/after", "--timeout=90s")
    finally:
        stop_process(extra)
