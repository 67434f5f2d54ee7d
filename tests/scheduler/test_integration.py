"""The scheduler process against a real API server (nodes created through the API)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from kybernetes.client import Client, resource

PODS, NODES, NS = resource("v1", "Pod"), resource("v1", "Node"), resource("v1", "Namespace")
EVENTS, PCS = resource("v1", "Event"), resource("scheduling.k8s.io/v1", "PriorityClass")


def node(name: str, cpu: str = "1", labels: dict | None = None, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, cpu: str = "100m", **spec) -> dict:
    return {"metadata": {"name": name, "labels": spec.pop("labels", {"app": "x"})},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu}}}], **spec}}


async def poll(fn, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        out = await fn()
        if out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)


@pytest.fixture
def apiserver(tmp_path):
    """A server of each test's own: nodes other suites left in the shared one would take the
    pods these tests expect to stay unschedulable."""
    from kybtest import start_apiserver

    server = start_apiserver(tmp_path / "api")
    yield server
    server.stop()


@pytest.fixture
async def env(apiserver, components):
    prefix = uuid.uuid4().hex[:6]
    client = Client.from_kubeconfig(apiserver.kubeconfig)
    ns = f"sched-{prefix}"
    await client.create(NS, {"metadata": {"name": ns}})
    created: list[str] = []

    async def add_node(name, **kw):
        full = f"{prefix}-{name}"
        obj = node(full, **kw)
        made = await client.create(NODES, obj)
        made["status"] = obj["status"]
        await client.update_status(NODES, made)
        created.append(full)
        return full

    yield client, ns, add_node, prefix
    for n in created:
        try:
            await client.delete(NODES, n)
        except Exception:
            pass
    await client.close()


def start_scheduler(apiserver, components):
    components("scheduler", "--kubeconfig", str(apiserver.kubeconfig), "--leader-elect=false")


async def bound_node(client, ns, name):
    p = await client.get(PODS, name, ns)
    return p["spec"].get("nodeName")


async def test_insufficient_cpu_then_fits_when_node_added(env, apiserver, components):
    """Upstream FitError text: '0/N nodes are available: <count> Insufficient cpu.' plus the
    preemption summary; PodScheduled=False/Unschedulable; fits once a node is added."""
    client, ns, add_node, prefix = env
    # Only this test's nodes are in a fresh namespace, but other tests' nodes may exist: taint-free
    # small nodes make the count predictable only relative to the message's own total.
    await add_node("a", cpu="1")
    start_scheduler(apiserver, components)
    await client.create(PODS, pod("big", cpu="1500m"), ns)

    async def unschedulable():
        p = await client.get(PODS, "big", ns)
        conds = [c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"]
        return conds[0] if conds and conds[0]["status"] == "False" else None
    cond = await poll(unschedulable)
    assert cond["reason"] == "Unschedulable"
    assert "nodes are available:" in cond["message"] and "Insufficient cpu" in cond["message"]
    assert "preemption: " in cond["message"]

    async def event():
        evs = (await client.list(EVENTS, ns))["items"]
        return [e for e in evs if e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "big"]
    evs = await poll(event)
    assert evs[0]["type"] == "Warning" and "Insufficient cpu" in evs[0]["message"]

    big = await add_node("b", cpu="2")
    assert await poll(lambda: bound_node(client, ns, "big")) == big


async def test_taints_and_tolerations(env, apiserver, components):
    """TaintToleration: NoSchedule taints keep untolerating pods off; a toleration lets them on."""
    client, ns, add_node, prefix = env
    tainted = await add_node("t", labels={"only": prefix},
                             taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    start_scheduler(apiserver, components)
    sel = {"only": prefix}
    await client.create(PODS, pod("plain", nodeSelector=sel), ns)
    await client.create(PODS, pod("tol", nodeSelector=sel, tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]), ns)
    assert await poll(lambda: bound_node(client, ns, "tol")) == tainted

    async def msg():
        p = await client.get(PODS, "plain", ns)
        for c in (p.get("status") or {}).get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return c["message"]
    m = await poll(msg)
    assert "1 node(s) had untolerated taint {dedicated: db}" in m
    assert await bound_node(client, ns, "plain") is None


async def test_anti_affinity_one_per_node(env, apiserver, components):
    """Required anti-affinity on kubernetes.io/hostname: at most one pod of the group per node."""
    client, ns, add_node, prefix = env
    names = [await add_node(f"n{i}", labels={"only": prefix}) for i in range(3)]
    start_scheduler(apiserver, components)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(4):
        await client.create(PODS, pod(f"w{i}", labels={"app": "web"}, affinity=anti,
                                      nodeSelector={"only": prefix}), ns)

    async def three_bound():
        got = [await bound_node(client, ns, f"w{i}") for i in range(4)]
        return got if sum(1 for g in got if g) == 3 else None
    got = await poll(three_bound)
    assert sorted(g for g in got if g) == sorted(names)


async def test_topology_spread_across_zones(env, apiserver, components):
    """DoNotSchedule with maxSkew 1 over topology.kubernetes.io/zone: 4 pods → 2 per zone."""
    client, ns, add_node, prefix = env
    zone_of = {}
    for i, z in enumerate(["z1", "z1", "z2"]):
        n = await add_node(f"s{i}", labels={"only": prefix, "topology.kubernetes.io/zone": f"{prefix}-{z}"})
        zone_of[n] = z
    start_scheduler(apiserver, components)
    tsc = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]
    for i in range(4):
        await client.create(PODS, pod(f"s{i}", labels={"app": "s"}, topologySpreadConstraints=tsc,
                                      nodeSelector={"only": prefix}), ns)
        await poll(lambda i=i: bound_node(client, ns, f"s{i}"))
    zones = [zone_of[await bound_node(client, ns, f"s{i}")] for i in range(4)]
    assert zones.count("z1") == 2 and zones.count("z2") == 2


async def test_preemption(env, apiserver, components):
    """DefaultPreemption: a high-priority pod evicts a low-priority one, gets nominatedNodeName,
    and is bound after the victim is gone (this test plays the kubelet confirming deletion)."""
    client, ns, add_node, prefix = env
    target = await add_node("p", cpu="1", labels={"only": prefix})
    for name, value in (("low", 10), ("high", 1000)):
        try:
            await client.create(PCS, {"metadata": {"name": f"{prefix}-{name}"}, "value": value})
        except Exception:
            pass
    start_scheduler(apiserver, components)
    await client.create(PODS, pod("victim", cpu="800m", priorityClassName=f"{prefix}-low",
                                  nodeSelector={"only": prefix}), ns)
    assert await poll(lambda: bound_node(client, ns, "victim")) == target
    await client.create(PODS, pod("vip", cpu="800m", priorityClassName=f"{prefix}-high",
                                  nodeSelector={"only": prefix}), ns)

    async def victim_terminating():
        try:
            p = await client.get(PODS, "victim", ns)
        except Exception:
            return True
        if p["metadata"].get("deletionTimestamp"):
            await client.delete(PODS, "victim", ns, grace_seconds=0)   # the kubelet's confirmation
            return True
    await poll(victim_terminating)

    async def nominated():
        p = await client.get(PODS, "vip", ns)
        return (p.get("status") or {}).get("nominatedNodeName") or p["spec"].get("nodeName")
    assert await poll(nominated) == target
    assert await poll(lambda: bound_node(client, ns, "vip")) == target


async def test_leader_election_one_scheduler_schedules_then_hands_over(env, apiserver, components):
    """kube-scheduler's --leader-elect (on by default): of two schedulers only the holder of
    the kube-system "kube-scheduler" Lease schedules; stopped, it gives the Lease up
    (ReleaseOnCancel) and the other takes over without waiting for it to expire."""
    client, ns, add_node, _ = env
    leases = resource("coordination.k8s.io/v1", "Lease")
    await add_node("n", cpu="4")

    async def holder():
        try:
            lease = await client.get(leases, "kube-scheduler", "kube-system")
        except Exception:
            return None
        return lease["spec"].get("holderIdentity") or None

    first = components("scheduler", "--kubeconfig", str(apiserver.kubeconfig))
    assert (await poll(holder)).endswith(f"_{first.pid}")
    second = components("scheduler", "--kubeconfig", str(apiserver.kubeconfig))
    await client.create(PODS, pod("a"), ns)
    assert await poll(lambda: bound_node(client, ns, "a"))
    await asyncio.sleep(3)      # longer than the retry period: the second has tried by now
    assert (await holder()).endswith(f"_{first.pid}")

    first.terminate()
    await asyncio.to_thread(first.wait, 20)

    async def second_leads():
        h = await holder()
        return h if h and h.endswith(f"_{second.pid}") else None
    await poll(second_leads, timeout=10)    # well inside the 15 s lease it would otherwise wait out
    await client.create(PODS, pod("b"), ns)
    assert await poll(lambda: bound_node(client, ns, "b"))
