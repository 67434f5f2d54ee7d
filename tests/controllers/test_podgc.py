"""Pod GC (upstream pkg/controller/podgc/gc_controller.go): terminated pods over the threshold,
pods of vanished nodes after quarantine (with a DisruptionTarget condition), unscheduled
terminating pods. The integration test uses its own API server: pod GC acts cluster-wide."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource
from kybernetes.controllers.podgc import out_of_service, terminated_to_delete
from kybtest import start_apiserver, until

PODS = resource("v1", "Pod")
NODES = resource("v1", "Node")
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def pod(name: str, phase: str, age: int, reason: str | None = None) -> dict:
    created = (T0 - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"phase": phase}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


@given(st.lists(st.tuples(st.sampled_from(["Pending", "Running", "Unknown", "Succeeded", "Failed"]),
                          st.integers(0, 50), st.booleans()), max_size=40),
       st.integers(0, 30))
def test_terminated_over_threshold_evicted_then_oldest_first(specs, threshold):
    pods = [pod(f"p{i}", phase, age, "Evicted" if evicted and phase == "Failed" else None)
            for i, (phase, age, evicted) in enumerate(specs)]
    chosen = terminated_to_delete(pods, threshold)
    terminated = [p for p in pods if p["status"]["phase"] in ("Succeeded", "Failed")]
    expected = max(0, len(terminated) - threshold) if threshold > 0 else 0
    assert len(chosen) == expected
    assert all(p["status"]["phase"] in ("Succeeded", "Failed") for p in chosen)
    keys = [(p["status"].get("reason") != "Evicted", p["metadata"]["creationTimestamp"], p["metadata"]["name"])
            for p in chosen]
    assert keys == sorted(keys)
    kept = [p for p in terminated if p not in chosen]
    if chosen and kept:  # nothing kept ranks before something chosen
        assert max(keys) <= min((p["status"].get("reason") != "Evicted", p["metadata"]["creationTimestamp"],
                                 p["metadata"]["name"]) for p in kept)


def test_out_of_service_needs_taint_and_not_ready():
    taint = {"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert out_of_service(dict(not_ready, spec={"taints": [taint]}))
    assert not out_of_service(dict(ready, spec={"taints": [taint]}))
    assert not out_of_service(dict(not_ready, spec={}))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own: pod GC would collect other tests' pods."""
    s = start_apiserver(tmp_path_factory.mktemp("podgc-api"))
    yield s
    s.stop()


async def exists(client, name, ns="default") -> bool:
    try:
        await client.get(PODS, name, ns)
        return True
    except ApiError as e:
        assert e.code == 404
        return False


async def test_podgc_collects_terminated_orphaned_and_unscheduled(server, controller_manager,
                                                                  monkeypatch):
    monkeypatch.setenv("KYB_PODGC_PERIOD", "0.2")
    monkeypatch.setenv("KYB_PODGC_QUARANTINE", "1")
    client = Client.from_kubeconfig(server.kubeconfig)
    try:
        spec = {"containers": [{"name": "c", "image": "nginx"}]}
        await client.create(NODES, {"metadata": {"name": "alive"}})
        await client.create(NODES, {"metadata": {"name": "doomed"}})
        for i in range(4):  # created in order: done-0 is the oldest (names break same-second ties)
            await client.create(PODS, {"metadata": {"name": f"done-{i}"}, "spec": spec}, "default")
            await client.patch(PODS, f"done-{i}", {"status": {"phase": "Succeeded"}}, "default",
                               subresource="status")
        for name, node in (("on-alive", "alive"), ("on-doomed", "doomed")):
            await client.create(PODS, {"metadata": {"name": name}, "spec": dict(spec, nodeName=node)},
                                "default")
            await client.patch(PODS, name, {"status": {"phase": "Running"}}, "default", subresource="status")
        await client.create(PODS, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]},
                                   "spec": spec}, "default")
        await client.delete(PODS, "held", "default")  # unscheduled, terminating

        controller_manager(server.kubeconfig, "podgc", "--terminated-pod-gc-threshold", "2")

        async def oldest_two_gone():
            return not await exists(client, "done-0") and not await exists(client, "done-1")
        await until(oldest_two_gone)
        assert await exists(client, "done-2") and await exists(client, "done-3")

        async def held_failed():
            p = await client.get(PODS, "held", "default")
            return p["status"].get("phase") == "Failed"
        await until(held_failed)  # marked Failed; the finalizer keeps the object

        await client.delete(NODES, "doomed")

        async def orphan_gone():
            return not await exists(client, "on-doomed")
        await until(orphan_gone)
        assert await exists(client, "on-alive")
        await client.patch(PODS, "held", {"metadata": {"finalizers": None}}, "default")
    finally:
        await client.close()


async def test_podgc_marks_orphans_failed_with_disruption_target(server, controller_manager,
                                                                 monkeypatch):
    """The Failed phase and DisruptionTarget condition (reason DeletionByPodGC) are written
    before the force delete; a finalizer keeps the pod so the status can be read."""
    monkeypatch.setenv("KYB_PODGC_PERIOD", "0.2")
    monkeypatch.setenv("KYB_PODGC_QUARANTINE", "0.5")
    client = Client.from_kubeconfig(server.kubeconfig)
    try:
        await client.create(PODS, {"metadata": {"name": "lost", "finalizers": ["example.com/hold"]},
                                   "spec": {"nodeName": "never-existed",
                                            "containers": [{"name": "c", "image": "nginx"}]}},
                            "default")
        await client.patch(PODS, "lost", {"status": {"phase": "Running"}}, "default", subresource="status")
        controller_manager(server.kubeconfig, "podgc")

        async def marked():
            p = await client.get(PODS, "lost", "default")
            conds = [c for c in p["status"].get("conditions") or [] if c["type"] == "DisruptionTarget"]
            return (p["status"]["phase"], conds[0]) if conds else None
        phase, cond = await until(marked)
        assert phase == "Failed"
        assert (cond["status"], cond["reason"], cond["message"]) == \
            ("True", "DeletionByPodGC", "PodGC: node no longer exists")
        async def deleting():  # the force delete is the next write after the status one
            p = await client.get(PODS, "lost", "default")
            return p["metadata"].get("deletionTimestamp")
        assert await until(deleting)
        await client.patch(PODS, "lost", {"metadata": {"finalizers": None}}, "default")
    finally:
        await client.close()
