"""EventRecorder's correlator, as client-go's tools/record/events_cache.go behaves: identical
events counted, similar ones combined from the 10th distinct message, 25 writes per object then
one per 5 minutes."""

from __future__ import annotations

from kybernetes.api.errors import ApiError
from kybernetes.client import EventRecorder


class FakeApi:
    def __init__(self):
        self.events: dict[str, dict] = {}
        self.writes: list[tuple[str, str]] = []

    async def create(self, r, body, namespace=None, **kw):
        name = body["metadata"]["name"]
        if name in self.events:
            raise ApiError(409, "AlreadyExists", name)
        self.events[name] = dict(body)
        self.writes.append(("create", name))
        return body

    async def patch(self, r, name, patch, namespace=None, **kw):
        if name not in self.events:
            raise ApiError(404, "NotFound", name)
        self.events[name].update(patch)
        self.writes.append(("patch", name))
        return self.events[name]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rs(name="web", uid="u1"):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "ns", "uid": uid}}


async def test_identical_events_are_counted():
    api = FakeApi()
    rec = EventRecorder(api, "c", "h")
    for _ in range(3):
        rec.event(_rs(), "Normal", "Tested", "hello")
    await rec.flush()
    assert [w[0] for w in api.writes] == ["create", "patch", "patch"]
    (ev,) = api.events.values()
    assert ev["count"] == 3 and ev["message"] == "hello"


async def test_similar_events_are_combined_from_the_tenth():
    api = FakeApi()
    rec = EventRecorder(api, "c", "h")
    for i in range(12):
        rec.event(_rs(), "Normal", "SuccessfulCreate", f"Created pod: web-{i}")
    await rec.flush()
    plain = [e for e in api.events.values() if not e["message"].startswith("(combined")]
    combined = [e for e in api.events.values() if e["message"].startswith("(combined")]
    assert sorted(e["message"] for e in plain) == sorted(f"Created pod: web-{i}" for i in range(9))
    assert len(combined) == 1
    assert combined[0]["message"] == "(combined from similar events): Created pod: web-11"
    assert combined[0]["count"] == 3
    # another object's events are not combined with these
    rec.event(_rs("db", "u2"), "Normal", "SuccessfulCreate", "Created pod: db-0")
    await rec.flush()
    assert any(e["message"] == "Created pod: db-0" for e in api.events.values())


async def test_a_source_writes_25_events_per_object_then_one_per_5_minutes():
    api, clock = FakeApi(), Clock()
    rec = EventRecorder(api, "c", "h", clock=clock)
    for i in range(40):
        rec.event(_rs(), "Warning", f"Reason{i}", "boom")
    await rec.flush()
    assert len(api.writes) == 25
    rec.event(_rs("other", "u9"), "Warning", "Reason0", "boom")  # another object: own budget
    await rec.flush()
    assert len(api.writes) == 26
    clock.now += 301  # one token back
    rec.event(_rs(), "Warning", "Reason0", "boom")
    rec.event(_rs(), "Warning", "Reason0", "boom")
    await rec.flush()
    assert api.writes[-1][0] == "patch" and len(api.writes) == 27
    ev = next(e for e in api.events.values() if e["reason"] == "Reason0"
              and e["involvedObject"]["uid"] == "u1")
    assert ev["count"] == 2


async def test_a_repeat_of_a_dropped_event_is_created():
    api, clock = FakeApi(), Clock()
    rec = EventRecorder(api, "c", "h", clock=clock)
    for i in range(25):
        rec.event(_rs(), "Normal", f"R{i}", "x")
    rec.event(_rs(), "Normal", "Late", "x")  # dropped: no token left
    await rec.flush()
    clock.now += 301
    rec.event(_rs(), "Normal", "Late", "x")
    await rec.flush()
    late = [e for e in api.events.values() if e["reason"] == "Late"]
    assert len(late) == 1 and late[0]["count"] == 2


async def test_with_too_many_writes_pending_new_events_are_dropped_uncounted():
    """client-go's broadcaster drops an event its full queue (maxQueuedEvents) cannot take before
    the correlator sees it: the repeat written later starts counting afresh."""
    import asyncio

    from kybernetes.client import events

    class SlowApi(FakeApi):
        def __init__(self):
            super().__init__()
            self.gate = asyncio.Event()

        async def create(self, r, body, namespace=None, **kw):
            await self.gate.wait()
            return await super().create(r, body, namespace, **kw)

    api = SlowApi()
    rec = EventRecorder(api, "c", "h")
    for i in range(events.MAX_PENDING):
        rec.event(_rs(f"rs-{i}", f"u{i}"), "Normal", "Tested", "filler")
    rec.event(_rs(), "Normal", "Tested", "hello")         # the queue is full: dropped
    assert len(rec._pending) == events.MAX_PENDING
    api.gate.set()
    await rec.flush()
    rec.event(_rs(), "Normal", "Tested", "hello")
    await rec.flush()
    (ev,) = [e for e in api.events.values() if e["involvedObject"]["name"] == "web"]
    assert ev["count"] == 1 and len(api.writes) == events.MAX_PENDING + 1
