"""`kyb sim nodes` against a real API server: nodes register Ready, Leases renew, bound pods run
and become Ready, Job-style pods exit, deleted pods go away, a frozen node goes quiet, and kubectl
shows the nodes as it shows kubelet-registered ones."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import kybtest
from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource
from kybernetes.sim.podstatus import EXIT_AFTER, EXIT_CODE

NODES, PODS = resource("v1", "Node"), resource("v1", "Pod")
LEASES = resource("coordination.k8s.io/v1", "Lease")
COUNT = 3


@pytest.fixture(scope="module")
def sim(apiserver, tmp_path_factory):
    """One simulator process for the module, with short periods so renewals show quickly."""
    prefix = f"sim-{uuid.uuid4().hex[:5]}-"
    proc = kybtest.start_sim_nodes(
        apiserver.kubeconfig, tmp_path_factory.mktemp("sim") / "sim.log", "--count", str(COUNT),
        "--name-prefix", prefix, "--zones", "z1,z2", "--lease-period", "0.5",
        "--status-period", "0.5", "--start-delay", "0.1", "--ready-delay", "0.3",
        "--stop-delay", "0.1")
    yield [f"{prefix}{i}" for i in range(COUNT)]
    kybtest.stop_process(proc)
    assert proc.returncode == 0  # SIGTERM ends it cleanly


@pytest.fixture
async def ns(client):
    return await kybtest.new_namespace(client, "sim")


async def until(fn, timeout: float = kybtest.PATIENCE):
    """kybtest.until, reading a 404 (not there yet) as "not yet"."""
    async def tolerant():
        try:
            return await fn()
        except ApiError as e:
            if e.code != 404:
                raise
            return None
    return await kybtest.until(tolerant, timeout, every=0.05)


async def ready_nodes(client, names):
    async def check():
        nodes = [await client.get(NODES, n) for n in names]
        ok = all(any(c["type"] == "Ready" and c["status"] == "True"
                     for c in (n.get("status") or {}).get("conditions") or []) for n in nodes)
        return nodes if ok else None
    return await until(check)


async def bind(client, ns, name, node):
    await client.request("POST", Client.path(PODS, ns, name, "binding"), body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


async def make_pod(client, ns, name, node, restart="Always", annotations=None):
    await client.create(PODS, {"metadata": {"name": name, "annotations": annotations or {}},
                               "spec": {"restartPolicy": restart, "containers": [
                                   {"name": "app", "image": "nginx:1.27"}]}}, ns)
    await bind(client, ns, name, node)


async def test_nodes_register_ready_with_capacity(sim, client):
    nodes = await ready_nodes(client, sim)
    for n in nodes:
        st = n["status"]
        assert st["capacity"]["cpu"] == "8" and st["allocatable"]["pods"] == "110"
        assert st["nodeInfo"]["kubeletVersion"] == "v1.33.0-kyb-sim"
        assert {a["type"] for a in st["addresses"]} == {"InternalIP", "Hostname"}
        assert n["metadata"]["labels"]["kubernetes.io/hostname"] == n["metadata"]["name"]
    assert [n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes] == ["z1", "z2", "z1"]


async def test_leases_and_heartbeats_advance(sim, client):
    await ready_nodes(client, sim)
    first = await client.get(LEASES, sim[0], "kube-node-lease")
    assert first["spec"]["holderIdentity"] == sim[0] and first["spec"]["leaseDurationSeconds"] == 40
    node = await client.get(NODES, sim[0])
    beat = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")

    async def renewed():
        lease = await client.get(LEASES, sim[0], "kube-node-lease")
        return lease["spec"]["renewTime"] > first["spec"]["renewTime"]
    await until(renewed)

    async def heartbeat():
        n = await client.get(NODES, sim[0])
        now = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        return now["lastHeartbeatTime"] > beat["lastHeartbeatTime"] and \
            now["lastTransitionTime"] == beat["lastTransitionTime"]
    await until(heartbeat)


async def test_bound_pod_runs_and_becomes_ready(sim, client, ns):
    await ready_nodes(client, sim)
    await make_pod(client, ns, "web", sim[1])

    async def ready():
        p = await client.get(PODS, "web", ns)
        conds = {c["type"]: c["status"] for c in p["status"].get("conditions") or []}
        return p if conds.get("Ready") == "True" else None
    p = await until(ready)
    st = p["status"]
    assert st["phase"] == "Running" and st["podIP"] and st["hostIP"]
    node = await client.get(NODES, sim[1])
    assert st["hostIP"] == next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("sim://") and "running" in cs["state"]
    assert {"PodReadyToStartContainers", "Initialized", "ContainersReady", "PodScheduled"} <= \
        {c["type"] for c in st["conditions"] if c["status"] == "True"}


@pytest.mark.parametrize("code,phase", [(0, "Succeeded"), (3, "Failed")])
async def test_job_style_pod_exits_with_its_code(sim, client, ns, code, phase):
    await ready_nodes(client, sim)
    await make_pod(client, ns, "job", sim[0], restart="Never",
                   annotations={EXIT_AFTER: "300ms", EXIT_CODE: str(code)})

    async def done():
        p = await client.get(PODS, "job", ns)
        return p if p["status"].get("phase") in ("Succeeded", "Failed") else None
    p = await until(done)
    assert p["status"]["phase"] == phase
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == code


async def test_deleted_pod_is_confirmed_and_disappears(sim, client, ns):
    await ready_nodes(client, sim)
    await make_pod(client, ns, "gone", sim[2])

    async def running():
        return (await client.get(PODS, "gone", ns))["status"].get("phase") == "Running"
    await until(running)
    # Graceful (30 s): the API server only marks it; the sim stops it sooner and confirms.
    marked = await client.delete(PODS, "gone", ns)
    assert marked["metadata"].get("deletionTimestamp")

    async def absent():
        try:
            await client.get(PODS, "gone", ns)
        except ApiError as e:
            return e.code == 404
        return False
    await until(absent)


async def test_frozen_node_stops_renewing_until_thawed(sim, client):
    await ready_nodes(client, sim)
    frozen, other = sim[2], sim[0]
    label = "sim.kybernetes.io/freeze"
    await client.patch(NODES, frozen, {"metadata": {"labels": {label: "true"}}})

    async def lease_time(name):
        return (await client.get(LEASES, name, "kube-node-lease"))["spec"]["renewTime"]

    async def renewals_of(name, n):
        """Wait for `n` more renewals of `name` (a clock that ticks while `frozen` is quiet)."""
        for _ in range(n):
            before = await lease_time(name)
            await until(lambda: _later(client, name, before))

    try:
        await renewals_of(other, 1)  # a renewal already in flight may still land
        still = await lease_time(frozen)
        await renewals_of(other, 4)
        assert await lease_time(frozen) == still
    finally:
        await client.patch(NODES, frozen, {"metadata": {"labels": {label: None}}})
    await until(lambda: _later(client, frozen, still))


async def _later(client, name, before):
    return (await client.get(LEASES, name, "kube-node-lease"))["spec"]["renewTime"] > before


def test_kubectl_shows_ready_nodes_with_roles_and_version(sim, apiserver, kubectl133):
    kubectl = kubectl133
    asyncio.run(_wait_ready(apiserver, sim))
    out = kubectl("get", "nodes", *sim)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(sim)
    for row in rows.values():
        assert row[1] == "Ready" and row[2] == "<none>" and row[4] == "v1.33.0-kyb-sim"


async def _wait_ready(apiserver, names):
    async with Client.from_kubeconfig(apiserver.kubeconfig) as c:
        await ready_nodes(c, names)


async def test_in_process_api_registers_and_stops_cleanly(apiserver, client):
    """SimNodes is usable from tests and benchmarks without a process."""
    from kybernetes.sim import NodeTemplate, SimNodes

    prefix = f"inproc-{uuid.uuid4().hex[:5]}-"
    sim = SimNodes(client, count=2, name_prefix=prefix, template=NodeTemplate(cpu="2"),
                   lease_period=0.3)
    async with sim:
        nodes = await ready_nodes(client, [f"{prefix}0", f"{prefix}1"])
        assert [n["status"]["capacity"]["cpu"] for n in nodes] == ["2", "2"]
        await until(lambda: _renewed(sim))
    assert not sim._tasks  # every background task was cancelled and awaited


async def _renewed(sim):
    return sim.renewals > 0
