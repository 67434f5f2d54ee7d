"""CronJob controller against a real API server. Most tests run the controller in-process with
its clock (`now`) moved by the test and call `reconcile` directly; one waits for a real
minute through the controller-manager. Matched: upstream cronjob_controllerv2.go (job names
`<cronjob>-<minutes>`, events SuccessfulCreate/JobAlreadyActive/SawCompletedJob/
SuccessfulDelete/MissSchedule, history limits, Forbid/Replace)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from kybernetes.api.duration import parse_time
from kybernetes.client import InformerFactory, resource
from kybernetes.controllers.cronjob import CronJobController
from kybtest import new_namespace, until

CRONJOBS = resource("batch/v1", "CronJob")
JOBS = resource("batch/v1", "Job")
EVENTS = resource("v1", "Event")


@pytest.fixture
async def ns(client):
    return await new_namespace(client, "cj")


class Clock:
    def __init__(self):
        self.t = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
async def ctl(client):
    """The controller with informers running but no workers: tests call reconcile."""
    factory = InformerFactory(client)
    c = CronJobController(client, factory)
    c.now = Clock()
    factory.start()
    await factory.wait_for_sync(10)
    yield c
    await c.recorder.flush()
    await factory.stop()


def cronjob(name: str, schedule: str = "*/5 * * * *", **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}, **spec}}


async def create(client, ctl, ns, obj) -> dict:
    out = await client.create(CRONJOBS, obj, ns)
    key = f"{ns}/{obj['metadata']['name']}"
    await until(lambda: _cached(ctl.cronjobs, key))
    # Start the clock at the creation time (seconds) so schedules are counted from there.
    ctl.now.t = parse_time(out["metadata"]["creationTimestamp"])
    return out


async def _cached(informer, key, pred=lambda o: True):
    obj = informer.get(key)
    return obj if obj is not None and pred(obj) else None


async def step(client, ctl, ns, name, advance: timedelta) -> dict:
    """Move the clock, reconcile, and wait until the informers show the result."""
    ctl.now.t += advance
    await ctl.reconcile(f"{ns}/{name}")
    cj = await client.get(CRONJOBS, name, ns)
    rv = cj["metadata"]["resourceVersion"]
    await until(lambda: _cached(ctl.cronjobs, f"{ns}/{name}", lambda o: o["metadata"]["resourceVersion"] == rv))
    jobs = (await client.list(JOBS, ns))["items"]
    await until(lambda: _jobs_cached(ctl, ns, jobs))
    return cj


async def _jobs_cached(ctl, ns, jobs):
    return all(ctl.jobs.get(f"{ns}/{j['metadata']['name']}") is not None and
               ctl.jobs.get(f"{ns}/{j['metadata']['name']}")["metadata"]["resourceVersion"] == j["metadata"]["resourceVersion"]
               for j in jobs) and len([j for j in ctl.jobs.list(ns)]) == len(jobs)


async def live_jobs(client, ns) -> list[str]:
    items = (await client.list(JOBS, ns))["items"]
    return sorted(j["metadata"]["name"] for j in items if not j["metadata"].get("deletionTimestamp"))


async def finish(client, ns, name, ctype="Complete"):
    job = await client.get(JOBS, name, ns)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    conds = [{"type": "SuccessCriteriaMet" if ctype == "Complete" else "FailureTarget", "status": "True",
              "lastTransitionTime": now}, {"type": ctype, "status": "True", "lastTransitionTime": now}]
    status = {"conditions": conds, "startTime": now}
    if ctype == "Complete":
        status.update(completionTime=now, succeeded=1)
    else:
        status["failed"] = 1
    job["status"] = status
    await client.update_status(JOBS, job)


async def reasons(client, ns, name) -> list[str]:
    await asyncio.sleep(0)
    items = (await client.list(EVENTS, ns))["items"]
    return [e["reason"] for e in items if e["involvedObject"]["name"] == name]


def minute_after(t: datetime, minutes: int) -> datetime:
    return t.replace(second=0, microsecond=0) + timedelta(minutes=minutes)


async def test_creates_jobs_on_schedule_and_forbid_skips(client, ns, ctl):
    cj = await create(client, ctl, ns, cronjob("tick", "* * * * *", concurrencyPolicy="Forbid"))
    created = ctl.now.t
    # Before the first minute boundary: nothing.
    await step(client, ctl, ns, "tick", timedelta(0))
    assert await live_jobs(client, ns) == []
    first = minute_after(created, 1)
    cj = await step(client, ctl, ns, "tick", first - created + timedelta(seconds=2))
    name = f"tick-{int(first.timestamp()) // 60}"
    assert await live_jobs(client, ns) == [name]
    job = await client.get(JOBS, name, ns)
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert job["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    assert [r["name"] for r in cj["status"]["active"]] == [name]
    assert parse_time(cj["status"]["lastScheduleTime"]) == first
    # Forbid: the next minute is skipped while the first job runs.
    await step(client, ctl, ns, "tick", timedelta(minutes=1))
    assert await live_jobs(client, ns) == [name]
    await ctl.recorder.flush()
    assert "JobAlreadyActive" in await reasons(client, ns, "tick")
    # Once it completes, the cronjob sees it and the following minute runs.
    await finish(client, ns, name)
    await until(lambda: _cached(ctl.jobs, f"{ns}/{name}", lambda j: "conditions" in (j.get("status") or {})))
    # The slot skipped under Forbid is still unmet (no startingDeadlineSeconds): it runs now.
    cj = await step(client, ctl, ns, "tick", timedelta(0))
    second = f"tick-{int(first.timestamp()) // 60 + 1}"
    assert [r["name"] for r in cj["status"]["active"]] == [second]
    assert cj["status"]["lastSuccessfulTime"]
    assert await live_jobs(client, ns) == sorted([name, second])
    await ctl.recorder.flush()
    got = await reasons(client, ns, "tick")
    assert got.count("SuccessfulCreate") == 2 and "SawCompletedJob" in got


async def test_replace_deletes_the_running_job(client, ns, ctl):
    await create(client, ctl, ns, cronjob("rep", "* * * * *", concurrencyPolicy="Replace"))
    start = ctl.now.t
    await step(client, ctl, ns, "rep", minute_after(start, 1) - start + timedelta(seconds=1))
    [old] = await live_jobs(client, ns)
    cj = await step(client, ctl, ns, "rep", timedelta(minutes=1))
    [new] = await live_jobs(client, ns)
    assert new != old and [r["name"] for r in cj["status"]["active"]] == [new]
    await ctl.recorder.flush()
    assert "SuccessfulDelete" in await reasons(client, ns, "rep")


async def test_history_limits_prune_oldest(client, ns, ctl):
    await create(client, ctl, ns, cronjob("hist", "* * * * *", successfulJobsHistoryLimit=1,
                                          failedJobsHistoryLimit=1))
    start = ctl.now.t
    names = []
    for i, kind in enumerate(["Complete", "Complete", "Failed", "Failed"]):
        advance = (minute_after(start, 1) - start + timedelta(seconds=1)) if i == 0 else timedelta(minutes=1)
        cj = await step(client, ctl, ns, "hist", advance)
        [ref] = cj["status"]["active"]
        names.append(ref["name"])
        await finish(client, ns, ref["name"], kind)
        await until(lambda: _cached(ctl.jobs, f"{ns}/{ref['name']}", lambda j: "conditions" in (j.get("status") or {})))
    await step(client, ctl, ns, "hist", timedelta(seconds=1))
    assert await live_jobs(client, ns) == sorted([names[1], names[3]])


async def test_starting_deadline_misses_late_starts(client, ns, ctl):
    await create(client, ctl, ns, cronjob("late", "*/5 * * * *", startingDeadlineSeconds=10))
    start = ctl.now.t
    slot = start.replace(second=0, microsecond=0) + timedelta(minutes=5 - start.minute % 5)
    await step(client, ctl, ns, "late", slot - start + timedelta(seconds=30))
    assert await live_jobs(client, ns) == []
    # Within the deadline of the following slot: it runs.
    await step(client, ctl, ns, "late", timedelta(minutes=4, seconds=35))
    assert len(await live_jobs(client, ns)) == 1


async def test_suspend_creates_nothing(client, ns, ctl):
    await create(client, ctl, ns, cronjob("off", "* * * * *", suspend=True))
    await step(client, ctl, ns, "off", timedelta(minutes=3))
    assert await live_jobs(client, ns) == []


async def test_real_minute_through_the_controller_manager(client, ns, apiserver, components):
    """`* * * * *` with the real clock: a Job appears within about a minute."""
    components("controller-manager", "--kubeconfig", str(apiserver.kubeconfig),
               "--controllers", "cronjob", "--leader-elect=false")
    await client.create(CRONJOBS, cronjob("every", "* * * * *"), ns)
    names = await until(lambda: live_jobs(client, ns), 75)
    cj = await until(lambda: _with_active(client, ns))
    assert [r["name"] for r in cj["status"]["active"]] == names


async def _with_active(client, ns):
    cj = await client.get(CRONJOBS, "every", ns)
    return cj if (cj.get("status") or {}).get("active") else None
