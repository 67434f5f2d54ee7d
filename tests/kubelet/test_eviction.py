"""Node-pressure eviction on a real agent. The node is put under memory pressure without using
memory: its hard threshold (memory.available<1Pi) is above any machine's memory."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from kubelet_node import NODE, Node, _skip_reason, apply, events, get_pod, new_namespace, wait_for

BRIDGE = "kybe0"
THRESHOLD = "1Pi"


@pytest.fixture(scope="module")
def pressured(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    n = Node(tmp_path_factory.mktemp("evict"), bridge=BRIDGE, pod_cidr="10.243.9.0/24",
             agent_args=("--eviction-hard", f"memory.available<{THRESHOLD}",
                         "--eviction-monitoring-period", "2s"),
             controllers="serviceaccount,root-ca-cert-publisher,nodelifecycle")
    try:
        n.start_agent()
        yield n
    finally:
        try:
            n.stop_agent()
            from kybernetes.kubelet.agent import teardown
            asyncio.run(teardown(n.data_dir, BRIDGE))
        finally:
            n.stop_controllers()
            n.api.stop()
        subprocess.run(["umount", "-R", str(n.data_dir / "containerd")],
                       stderr=subprocess.DEVNULL)


def node_obj(n) -> dict:
    return json.loads(n.kubectl("get", "node", NODE, "-o", "json"))


def condition(node: dict, type_: str) -> dict:
    return next(c for c in node["status"]["conditions"] if c["type"] == type_)


def sleeper(name: str, **resources) -> dict:
    c = {"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 3600"]}
    if resources:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 30, "containers": [c]}}


def test_memory_pressure_condition_and_taint(pressured):
    node = wait_for(lambda: (n := node_obj(pressured)) and
                    condition(n, "MemoryPressure")["status"] == "True" and n,
                    what="MemoryPressure=True")
    c = condition(node, "MemoryPressure")
    assert c["reason"] == "KubeletHasInsufficientMemory"
    assert c["message"] == "kubelet has insufficient memory available"
    assert condition(node, "Ready")["status"] == "True"
    # The node lifecycle controller taints the node by its condition (as upstream).
    wait_for(lambda: {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"} in
             (node_obj(pressured)["spec"].get("taints") or []), what="memory-pressure taint")
    # The kubelet also says it is reclaiming, on the Node.
    wait_for(lambda: any(e["reason"] == "EvictionThresholdMet" and
                         e["message"] == "Attempting to reclaim memory"
                         for e in events(pressured, "default", NODE)),
             what="EvictionThresholdMet event")


def test_best_effort_pod_is_rejected(pressured):
    ns = new_namespace(pressured)
    wait_for(lambda: condition(node_obj(pressured), "MemoryPressure")["status"] == "True",
             what="MemoryPressure=True")
    apply(pressured, ns, sleeper("besteffort"))
    pod = wait_for(lambda: (p := get_pod(pressured, ns, "besteffort"))["status"].get("phase")
                   == "Failed" and p, what="rejected")
    assert pod["status"]["reason"] == "Evicted"
    assert pod["status"]["message"] == \
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    assert not pod["status"].get("containerStatuses", [{}])[0].get("state", {}).get("running")
    assert any(e["reason"] == "Evicted" and e["type"] == "Warning"
               for e in events(pressured, ns, "besteffort"))
    # A rejected pod is deleted at once (a terminal pod needs no kubelet confirmation).
    pressured.kubectl("delete", "pod", "besteffort", "-n", ns, "--wait=true", timeout=60)


def test_pod_over_its_request_is_evicted(pressured):
    ns = new_namespace(pressured)
    apply(pressured, ns, sleeper("burstable", requests={"memory": "1Ki"}))
    pod = wait_for(lambda: (p := get_pod(pressured, ns, "burstable"))["status"].get("phase")
                   == "Failed" and p, timeout=90, what="evicted")
    assert pod["status"]["containerStatuses"][0]["containerID"]  # it ran before its eviction
    st = pod["status"]
    assert st["reason"] == "Evicted"
    prefix = f"The node was low on resource: memory. Threshold quantity: {THRESHOLD}, available: "
    assert st["message"].startswith(prefix), st["message"]
    target = next(c for c in st["conditions"] if c["type"] == "DisruptionTarget")
    assert target["status"] == "True" and target["reason"] == "TerminationByKubelet"
    assert target["message"] == st["message"]
    evicted = [e for e in events(pressured, ns, "burstable") if e["reason"] == "Evicted"]
    assert evicted and evicted[0]["type"] == "Warning"
    assert evicted[0]["message"].startswith(prefix)
    # The containers are killed (1 s grace, not the pod's 30 s) and stay down.
    done = wait_for(lambda: (p := get_pod(pressured, ns, "burstable")) and all(
        "terminated" in s["state"] for s in p["status"].get("containerStatuses") or [{"state": {}}])
        and p, timeout=60, what="containers terminated")
    assert done["status"]["phase"] == "Failed"
    assert done["status"]["containerStatuses"][0]["restartCount"] == 0
