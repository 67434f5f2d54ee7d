"""The CronJob controller: create Jobs on a cron schedule.

Like upstream pkg/controller/cronjob (cronjob_controllerv2.go, utils.go): each sync finds the
most recent unmet schedule time since status.lastScheduleTime (or creation), skips it when past
startingDeadlineSeconds (MissSchedule), honours concurrencyPolicy Forbid/Replace, creates the
Job `<cronjob>-<minutes since epoch>` and records it in status.active, then prunes finished Jobs
beyond the history limits and requeues itself for the next schedule time. Schedules are
standard 5-field cron (croniter), @hourly-style descriptors, @every <duration>, evaluated in
spec.timeZone (UTC when unset). The clock is `now()`, so tests can move time.
"""

from __future__ import annotations

import copy
import logging
import re
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter

from kybernetes.api.duration import parse_time
from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, EventRecorder, controller_of, resource

log = logging.getLogger(__name__)

CRONJOBS = resource("batch/v1", "CronJob")
JOBS = resource("batch/v1", "Job")
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
OWNER_INDEX = "cronjob-owner"
NEXT_SCHEDULE_DELTA = 0.1  # upstream nextScheduleDelta: wake just after the schedule time
MANY_MISSED = 100

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class ScheduleError(ValueError):
    pass


# ---- schedules --------------------------------------------------------------------------------

class Schedule:
    """A parsed schedule; `next(t)` is the first activation strictly after t."""

    def __init__(self, text: str, tz: tzinfo):
        self.tz = tz
        self.every: float | None = None
        text = text.strip()
        for prefix in ("CRON_TZ=", "TZ="):  # robfig/cron accepts a zone prefix
            if text.startswith(prefix):
                zone, _, text = text[len(prefix):].partition(" ")
                try:
                    self.tz = ZoneInfo(zone)
                except Exception as e:
                    raise ScheduleError(f"provided bad location {zone}: {e}") from None
                text = text.strip()
        if text.startswith("@every "):
            self.every = max(float(int(_parse_go_duration(text[len("@every "):]))), 1.0)
            return
        expr = _DESCRIPTORS.get(text, text)
        if expr.startswith("@"):
            raise ScheduleError(f"unrecognized descriptor: {text}")
        if len(expr.split()) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(expr.split())}: {text}")
        if not croniter.is_valid(expr):
            raise ScheduleError(f"failed to parse {text!r}")
        self.expr = expr

    def next(self, t: datetime) -> datetime:
        if self.every is not None:
            return t.replace(microsecond=0) + timedelta(seconds=self.every)
        local = t.astimezone(self.tz)
        try:
            out = croniter(self.expr, local).get_next(datetime)
        except Exception:  # e.g. "0 0 31 2 *" never happens (robfig gives the zero time)
            raise ScheduleError("time difference between two schedules is less than 1 second") from None
        return out.astimezone(timezone.utc)


def _parse_go_duration(text: str) -> float:
    text = text.strip()
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(a + u for a, u in parts) != text:
        raise ScheduleError(f"failed to parse duration @every {text}: invalid duration")
    return sum(float(a) * _GO_UNITS[u] for a, u in parts)


def time_zone(cj: dict) -> tzinfo:
    name = (cj.get("spec") or {}).get("timeZone")
    if name is None:
        return timezone.utc
    return ZoneInfo(name)


def most_recent_schedule_time(cj: dict, now: datetime, sched: Schedule, with_deadline: bool
                              ) -> tuple[datetime, datetime | None, str]:
    """(earliest time considered, the latest schedule time ≤ now after it or None, how many
    were missed: "none" | "few" | "many"), as upstream mostRecentScheduleTime. Raises
    ScheduleError for schedules whose two next times are under a second apart."""
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if with_deadline and deadline is not None:
        earliest = max(earliest, now - timedelta(seconds=deadline))
    t1 = sched.next(earliest)
    t2 = sched.next(t1)
    if now < t1:
        return earliest, None, "none"
    if now < t2:
        return earliest, t1, "none"
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    # Jump close to now by whole intervals, then walk: exact for irregular schedules too.
    t = sched.next(t1 + timedelta(seconds=(missed - 2) * between))
    recent = None
    while t <= now:
        recent = t
        t = sched.next(t)
    return earliest, recent, ("many" if missed > MANY_MISSED else "few")


def next_schedule_delay(cj: dict, now: datetime, sched: Schedule) -> float:
    """Seconds until the sync after the next schedule time (upstream nextScheduleTimeDuration)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cj, now, sched, False)
        if recent is None:
            recent = earliest if missed == "none" else now
    except ScheduleError:
        recent = now
    try:
        return (sched.next(recent) - now).total_seconds() + NEXT_SCHEDULE_DELTA
    except ScheduleError:
        return 3600.0  # never fires; look again now and then


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: dict, scheduled: datetime, tz: tzinfo) -> dict:
    template = cj["spec"].get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_ANNOTATION] = _rfc3339(scheduled.astimezone(tz))
    meta = cj["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(meta["name"], scheduled),
                         "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                              "name": meta["name"], "uid": meta["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy(template.get("spec") or {})}


def _rfc3339(t: datetime) -> str:
    """Go's time.RFC3339: Z for UTC, else ±hh:mm."""
    if t.utcoffset() == timedelta(0):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.isoformat(timespec="seconds")


def _rfc1123z(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


def finished_type(job: dict) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def jobs_to_prune(jobs: list[dict], kind: str, limit: int) -> list[dict]:
    """The oldest finished jobs of `kind` (Complete/Failed) beyond `limit`, by startTime then
    name; never-started ones count as newest (upstream byJobStartTime)."""
    done = [j for j in jobs if finished_type(j) == kind]
    if len(done) <= limit:
        return []
    far = datetime.max.replace(tzinfo=timezone.utc)
    done.sort(key=lambda j: (parse_time((j.get("status") or {}).get("startTime")) or far,
                             j["metadata"]["name"]))
    return done[:len(done) - limit]


def _cronjob_owner_index(job: dict) -> list[str]:
    ref = controller_of(job)
    if ref and ref.get("kind") == "CronJob":
        return [f"{job['metadata'].get('namespace')}/{ref['name']}"]
    return []


# ---- the controller ---------------------------------------------------------------------------

class CronJobController(Controller):
    name = "cronjob"
    workers = 5

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, "cronjob-controller")
        self.cronjobs = self.factory.informer(CRONJOBS)
        self.jobs = self.factory.informer(JOBS)
        self.jobs.add_index(OWNER_INDEX, _cronjob_owner_index)
        self.cronjobs.add_handler(self.enqueue, lambda old, new: self.enqueue(new))
        self.jobs.add_handler(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def now(self) -> datetime:
        """The controller's clock; tests replace it."""
        return datetime.now(timezone.utc)

    def _job_changed(self, job: dict) -> None:
        for key in _cronjob_owner_index(job):
            self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        cj = copy.deepcopy(cached)
        cj.setdefault("apiVersion", "batch/v1")
        cj.setdefault("kind", "CronJob")
        cj.setdefault("status", {})
        before = copy.deepcopy(cj["status"])
        jobs = [j for j in self.jobs.by_index(OWNER_INDEX, key)]
        now = self.now()
        try:
            requeue = await self._sync(cj, jobs, now)
        finally:
            await self._cleanup(cj, jobs)
            if cj["status"] != before:
                await self.client.update_status(CRONJOBS, cj)
        return requeue

    async def _sync(self, cj: dict, jobs: list[dict], now: datetime) -> float | None:
        spec, status = cj["spec"], cj["status"]
        ns = cj["metadata"]["namespace"]
        active_uids = {r.get("uid") for r in status.get("active") or []}
        for j in jobs:
            uid, done = j["metadata"].get("uid"), finished_type(j)
            if uid not in active_uids and not done:
                self.recorder.event(cj, "Warning", "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}")
            elif uid in active_uids and done:
                _remove_active(cj, uid)
                self.recorder.event(cj, "Normal", "SawCompletedJob",
                                    f"Saw completed job: {j['metadata']['name']}, condition: {done}")
            if done == "Complete":
                completed = (j.get("status") or {}).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                if completed and (last is None or parse_time(completed) > last):
                    status["lastSuccessfulTime"] = completed
        present = {j["metadata"].get("uid") for j in jobs}
        for ref in list(status.get("active") or []):
            if ref.get("uid") in present:
                continue
            try:  # the informer may be behind: ask the API before forgetting it
                await self.client.get(JOBS, ref["name"], ns)
            except ApiError as e:
                if e.code != 404:
                    raise
                self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref['name']}")
                _remove_active(cj, ref.get("uid"))

        if cj["metadata"].get("deletionTimestamp"):
            return None
        try:
            tz = time_zone(cj)
        except Exception as e:
            self.recorder.event(cj, "Warning", "UnknownTimeZone",
                                f'invalid timeZone: "{spec.get("timeZone")}": {e}')
            return None
        if spec.get("suspend"):
            return None
        schedule = spec.get("schedule") or ""
        if "TZ" in schedule and spec.get("timeZone") is None:
            self.recorder.event(cj, "Warning", "UnsupportedSchedule",
                                f'CRON_TZ or TZ used in schedule "{schedule}" is not officially supported, '
                                "see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details")
        try:
            sched = Schedule(schedule, tz)
        except (ScheduleError, ValueError) as e:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f'unparseable schedule: "{schedule}" : {e}')
            return None
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, sched, True)
        except ScheduleError as e:
            self.recorder.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {schedule} : {e}")
            return None
        delay = next_schedule_delay(cj, now, sched)
        if scheduled is None:
            return delay
        if missed == "many":
            self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")

        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=deadline) < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}")
            return delay
        name = job_name(cj["metadata"]["name"], scheduled)
        if (any(r.get("name") == name for r in status.get("active") or [])
                or parse_time(status.get("lastScheduleTime")) == scheduled):
            return delay
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            return delay
        if policy == "Replace":
            for ref in list(status.get("active") or []):
                job = await self.client.get(JOBS, ref["name"], ns)
                await self._delete_job(cj, job)

        try:
            job = await self.client.create(JOBS, job_from_template(cj, scheduled, tz), ns)
            self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
        except ApiError as e:
            if e.code != 409:
                if not any(c.get("reason") == "NamespaceTerminating" for c in e.details.get("causes") or []):
                    self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {e}")
                raise
            # Created earlier (the status update was lost) or by someone else.
            job = await self.client.get(JOBS, name, ns)
            ref = controller_of(job)
            if not ref or ref.get("uid") != cj["metadata"]["uid"]:
                return None
            if any(r.get("uid") == job["metadata"]["uid"] for r in status.get("active") or []):
                return None
        status.setdefault("active", []).append({
            "apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"], "resourceVersion": job["metadata"].get("resourceVersion")})
        status["lastScheduleTime"] = _rfc3339(scheduled.astimezone(timezone.utc))
        return next_schedule_delay(cj, now, sched)

    async def _delete_job(self, cj: dict, job: dict) -> bool:
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta["namespace"], propagation="Background")
        except ApiError as e:
            if e.code != 404:
                self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {e}")
                return False
        _remove_active(cj, meta.get("uid"))
        self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")
        return True

    async def _cleanup(self, cj: dict, jobs: list[dict]) -> None:
        spec = cj["spec"]
        for kind, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(field)
            if limit is None:
                continue
            for job in jobs_to_prune(jobs, kind, limit):
                if not job["metadata"].get("deletionTimestamp"):
                    await self._delete_job(cj, job)


def _remove_active(cj: dict, uid: str | None) -> None:
    status = cj["status"]
    status["active"] = [r for r in status.get("active") or [] if r.get("uid") != uid]
    if not status["active"]:
        status.pop("active")
