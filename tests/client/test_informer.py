"""Informers, events and leader election against a real API server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kybernetes.client import EventRecorder, InformerFactory, LeaderElector, resource
from kybtest import new_namespace, until

CM = resource("v1", "ConfigMap")


@pytest.fixture
async def ns(client):
    return await new_namespace(client, "inf")


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
        await until(lambda: ("delete", "after") in seen, every=0.02)
        assert seen == [("add", "before"), ("add", "after"), ("update", "before"), ("delete", "after")]
        assert [o["metadata"]["name"] for o in inf.by_index("k", "1")] == ["before"]
        assert inf.by_index("k", "2") == []
        assert inf.get(f"{ns}/before")["data"] == {"x": "y"}
    finally:
        await factory.stop()


async def test_a_transform_shapes_listed_watched_and_deleted_objects(client, ns):
    """client-go's SetTransform (the scheduler drops pods' managedFields with one)."""
    await client.create(CM, {"metadata": {"name": "before"}, "data": {"a": "1"}}, ns)
    inf = InformerFactory(client).informer(CM, ns)

    def trim(obj):
        obj["metadata"].pop("managedFields", None)
        obj["metadata"].setdefault("annotations", {})["trimmed"] = "yes"
        return obj

    inf.set_transform(trim)
    gone: list[dict] = []
    inf.add_handler(None, None, gone.append)
    inf.start()
    try:
        await asyncio.wait_for(inf.synced.wait(), 10)
        await client.create(CM, {"metadata": {"name": "after"}, "data": {"b": "2"}}, ns)
        await until(lambda: inf.get(f"{ns}/after") is not None, every=0.02)
        await client.delete(CM, "before", ns)
        await until(lambda: gone, every=0.02)
        for obj in [inf.get(f"{ns}/after"), gone[0]]:
            assert "managedFields" not in obj["metadata"]
            assert obj["metadata"]["annotations"] == {"trimmed": "yes"}
        assert (await client.get(CM, "after", ns))["metadata"].get("managedFields")
        with pytest.raises(RuntimeError):
            inf.set_transform(trim)
    finally:
        await inf.stop()


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
    await until(lambda: running == ["a"], every=0.02)
    tb = asyncio.create_task(b.run(work("b")))
    await asyncio.sleep(1.0)
    assert running == ["a"]  # b waits while a renews
    ta.cancel()  # a dies without releasing: b takes over after the lease expires
    await asyncio.gather(ta, return_exceptions=True)
    await until(lambda: running == ["a", "b"], every=0.02)
    lease = await client.get(resource("coordination.k8s.io/v1", "Lease"), name, ns)
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
