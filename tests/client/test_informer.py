"""Informers, events and leader election against a real API server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kybernetes.client import Client, EventRecorder, InformerFactory, LeaderElector, resource

CM = resource("v1", "ConfigMap")


@pytest.fixture
async def client(apiserver):
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
async def ns(client):
    name = f"inf-{uuid.uuid4().hex[:8]}"
    await client.create(resource("v1", "Namespace"), {"metadata": {"name": name}})
    return name


async def _until(cond, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_informer_lists_watches_and_indexes(client, ns):
    await client.create(CM, {"metadata": {"name": "before", "labels": {"k": "1"}}}, ns)
    factory = InformerFactory(client)
    inf = factory.informer(CM, ns)
    inf.add_index("k", lambda o: [o["metadata"].get("labels", {}).get("k", "")])
    seen: list[tuple[str, str]] = []
    inf.add_handler(lambda o: seen.append(("add", o["metadata"]["name"])),
                    lambda old, new: seen.append(("update", new["metadata"]["name"])),
                    lambda o: seen.append(("delete", o["metadata"]["name"])))
    factory.start()
    try:
        await factory.wait_for_sync(10)
        assert inf.get(f"{ns}/before") is not None
        await client.create(CM, {"metadata": {"name": "after", "labels": {"k": "2"}}}, ns)
        await client.patch(CM, "before", {"data": {"x": "y"}}, ns)
        await client.delete(CM, "after", ns)
        await _until(lambda: ("delete", "after") in seen)
        assert seen == [("add", "before"), ("add", "after"), ("update", "before"), ("delete", "after")]
        assert [o["metadata"]["name"] for o in inf.by_index("k", "1")] == ["before"]
        assert inf.by_index("k", "2") == []
        assert inf.get(f"{ns}/before")["data"] == {"x": "y"}
    finally:
        await factory.stop()


async def test_event_recorder_aggregates(client, ns):
    cm = await client.create(CM, {"metadata": {"name": "ev"}}, ns)
    rec = EventRecorder(client, "test-component")
    rec.event(cm, "Normal", "Tested", "hello")
    await rec.flush()
    rec.event(cm, "Normal", "Tested", "hello")
    await rec.flush()
    events = (await client.list(resource("v1", "Event"), ns))["items"]
    assert len(events) == 1
    ev = events[0]
    assert ev["count"] == 2 and ev["reason"] == "Tested"
    assert ev["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert ev["source"]["component"] == "test-component"


async def test_leader_election_hands_over(client, ns):
    name = f"lock-{uuid.uuid4().hex[:6]}"
    a = LeaderElector(client, name, "a", namespace=ns, lease_duration=2, renew_deadline=1.5,
                      retry_period=0.2)
    b = LeaderElector(client, name, "b", namespace=ns, lease_duration=2, renew_deadline=1.5,
                      retry_period=0.2)
    running: list[str] = []

    def work(who):
        async def run():
            running.append(who)
            await asyncio.Event().wait()
        return run

    ta = asyncio.create_task(a.run(work("a")))
    await _until(lambda: running == ["a"])
    tb = asyncio.create_task(b.run(work("b")))
    await asyncio.sleep(1.0)
    assert running == ["a"]  # b waits while a renews
    ta.cancel()  # a dies without releasing: b takes over after the lease expires
    await asyncio.gather(ta, return_exceptions=True)
    await _until(lambda: running == ["a", "b"], timeout=10)
    lease = await client.get(resource("coordination.k8s.io/v1", "Lease"), name, ns)
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
