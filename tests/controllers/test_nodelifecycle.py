"""Node lifecycle: taint and toleration rules (pure) and lease expiry → eviction end to end.

Matched to pkg/controller/nodelifecycle (conditions set Unknown with reason NodeStatusUnknown and
"Kubelet stopped posting node status.", `node.kubernetes.io/unreachable` NoSchedule + NoExecute
taints, MarkPodsNotReady, NodeNotReady event) and pkg/controller/tainteviction (pods not
tolerating a NoExecute taint deleted at once, tolerationSeconds honoured, events
`TaintManagerEviction`, DisruptionTarget condition).
"""

from __future__ import annotations

import asyncio
import datetime as dt

from hypothesis import given, settings, strategies as st

from kybernetes.client import Client, resource
from kybernetes.controllers.nodelifecycle import (UNREACHABLE, desired_taints,
                                                  min_toleration_seconds, reconcile_taints,
                                                  tolerates, unknown_conditions)
from kybtest import get_or_none, start_apiserver, start_controller_manager, stop_process, until

NODE = resource("v1", "Node")
POD = resource("v1", "Pod")
LEASE = resource("coordination.k8s.io/v1", "Lease")
EVENT = resource("v1", "Event")
NS = "default"


# ---- pure ----

def node_with(ready: str | None, **conds) -> dict:
    c = [{"type": "Ready", "status": ready}] if ready else []
    c += [{"type": t, "status": s} for t, s in conds.items()]
    return {"metadata": {"name": "n"}, "spec": {}, "status": {"conditions": c}}


def test_taints_follow_conditions():
    assert desired_taints(node_with("True")) == set()
    assert desired_taints(node_with("Unknown")) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert desired_taints(node_with("False", DiskPressure="True")) == {
        ("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule")}
    user = {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}
    stale = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"}
    assert reconcile_taints([user, stale], set(), "now") == [user]
    out = reconcile_taints([user], {(UNREACHABLE, "NoExecute")}, "T")
    assert out == [user, {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "T"}]
    assert reconcile_taints(out, {(UNREACHABLE, "NoExecute")}, "later") == out


def test_unknown_conditions():
    node = node_with("True", MemoryPressure="False")
    node["metadata"]["creationTimestamp"] = "C"
    conds = {c["type"]: c for c in unknown_conditions(node, "T")}
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    assert conds["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert all(c["status"] == "Unknown" and c["lastTransitionTime"] == "T" for c in conds.values())


taint_st = st.fixed_dictionaries({"key": st.sampled_from(["a", "b", UNREACHABLE]),
                                  "value": st.sampled_from(["", "x"]), "effect": st.just("NoExecute")})
toleration_st = st.fixed_dictionaries(
    {"operator": st.sampled_from(["Exists", "Equal"])},
    optional={"key": st.sampled_from(["a", "b", UNREACHABLE]), "value": st.sampled_from(["", "x"]),
              "effect": st.sampled_from(["NoExecute", "NoSchedule"]),
              "tolerationSeconds": st.integers(-5, 600)})


@settings(max_examples=200, deadline=None)
@given(st.lists(toleration_st, max_size=4), st.lists(taint_st, min_size=1, max_size=3))
def test_min_toleration_seconds(tolerations, taints):
    out = min_toleration_seconds(tolerations, taints)
    untolerated = [t for t in taints if not any(tolerates(x, t) for x in tolerations)]
    if untolerated:
        assert out == 0
        return
    firsts = [next(x for x in tolerations if tolerates(x, t)) for t in taints]
    finite = [max(x["tolerationSeconds"], 0) for x in firsts if "tolerationSeconds" in x]
    assert out == (min(finite) if finite else None)


def test_toleration_matching():
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert tolerates({"operator": "Exists"}, taint)
    assert tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)


# ---- end to end ----

def now_micro() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_time() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def post_ready(c, name: str, status: str = "True") -> None:
    node = await c.get(NODE, name)
    node.setdefault("status", {})["conditions"] = [
        {"type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
         "lastHeartbeatTime": now_time(), "lastTransitionTime": now_time()}]
    await c.update_status(NODE, node)


class FakeKubelet:
    """Renews the node's Lease until paused, as a kubelet does every few seconds."""

    def __init__(self, c: Client, name: str):
        self.c, self.name, self.alive = c, name, True
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.c.create(LEASE, {"metadata": {"name": self.name},
                                    "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                                             "renewTime": now_micro()}}, "kube-node-lease")
        self.task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(0.3)
            if self.alive:
                await self.c.patch(LEASE, self.name, {"spec": {"renewTime": now_micro()}}, "kube-node-lease")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def bound_pod(c, name: str, node: str, tolerations: list[dict]) -> None:
    await c.create(POD, {"metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, "tolerations": tolerations,
        "containers": [{"name": "c", "image": "nginx"}]}}, NS)
    await c.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/binding",
                    body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                          "target": {"kind": "Node", "name": node}})
    pod = await c.get(POD, name, NS)
    pod["status"] = {"phase": "Running", "podIP": "10.42.0.9", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now_time()}]}
    await c.update_status(POD, pod)


def unreachable_for(seconds: int | None) -> list[dict]:
    t = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return [t]


async def test_lease_expiry_taints_evicts_and_recovers(tmp_path):
    server = start_apiserver(tmp_path / "api")
    proc = start_controller_manager(server.kubeconfig, "nodelifecycle", tmp_path / "cm.log",
                                    flags=("--node-monitor-grace-period", "2s",
                                           "--node-startup-grace-period", "2s"))
    c = Client.from_kubeconfig(server.kubeconfig)
    kubelet = FakeKubelet(c, "n1")
    try:
        await c.create(NODE, {"metadata": {"name": "n1"}})
        await post_ready(c, "n1")
        await kubelet.start()
        await bound_pod(c, "zero", "n1", unreachable_for(0))
        await bound_pod(c, "patient", "n1", unreachable_for(3))
        await bound_pod(c, "forever", "n1", unreachable_for(None))

        # Seen and alive: no taints.
        await until(lambda: _event(c, "RegisteredNode", "Node n1 event: Registered Node n1 in Controller"))
        node = await c.get(NODE, "n1")
        assert not (node.get("spec") or {}).get("taints")

        kubelet.alive = False

        async def unknown():
            n = await c.get(NODE, "n1")
            ready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
            keys = {(t["key"], t["effect"]) for t in (n.get("spec") or {}).get("taints") or []}
            return n if ready["status"] == "Unknown" and (UNREACHABLE, "NoExecute") in keys else None
        n = await until(unknown)
        ready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."
        assert {(t["key"], t["effect"]) for t in n["spec"]["taints"]} == {
            (UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}

        async def deleting(name):
            p = await get_or_none(c, POD, name, NS)
            return p is None or bool(p["metadata"].get("deletionTimestamp"))
        await until(lambda: deleting("zero"))
        # Tolerating for 3 s: not yet.
        assert not await deleting("patient")
        await until(lambda: deleting("patient"))
        # A dead kubelet never confirms: the pods are force-deleted after their grace period.
        await until(lambda: _gone(c, "zero"))
        await until(lambda: _gone(c, "patient"))

        forever = await c.get(POD, "forever", NS)
        assert not forever["metadata"].get("deletionTimestamp")
        assert any(x["type"] == "Ready" and x["status"] == "False"
                   for x in forever["status"]["conditions"])
        assert await until(lambda: _event(c, "NodeNotReady", "Node n1 status is now: NodeNotReady"))
        assert await until(lambda: _event(c, "TaintManagerEviction", "Marking for deletion Pod default/zero"))

        # The kubelet comes back: taints go away.
        kubelet.alive = True
        await post_ready(c, "n1")

        async def clean():
            n = await c.get(NODE, "n1")
            return n if not (n.get("spec") or {}).get("taints") else None
        await until(clean)
        assert not (await c.get(POD, "forever", NS))["metadata"].get("deletionTimestamp")
    finally:
        await kubelet.stop()
        await c.close()
        stop_process(proc)
        server.stop()


async def _gone(c, name):
    return await get_or_none(c, POD, name, NS) is None


async def _event(c, reason, message=None):
    out = await c.list(EVENT, NS)
    return [e for e in out["items"] if e["reason"] == reason
            and (message is None or e["message"] == message)]
