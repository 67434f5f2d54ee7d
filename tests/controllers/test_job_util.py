"""Pure parts of the Job and CronJob controllers, with cases modelled on upstream's
indexed_job_utils_test.go, pod_failure_policy_test.go, success_policy_test.go,
backoff_utils_test.go and cronjob/utils_test.go."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybernetes.controllers.cronjob import (Schedule, ScheduleError, job_from_template, job_name,
                                            jobs_to_prune, most_recent_schedule_time,
                                            next_schedule_delay)
from kybernetes.controllers.job_util import (BackoffRecord, backoff_delay, backoff_remaining,
                                             ensure_condition, first_pending_indexes, format_indexes,
                                             match_pod_failure_policy, match_success_policy,
                                             parse_indexes, pod_from_job, ttl_remaining)

T0 = datetime(2025, 3, 10, 10, 0, tzinfo=timezone.utc)


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- completion indexes ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,completions,want", [
    ("", 5, []),
    ("0", 5, [0]),
    ("1,3-5,7", 6, [1, 3, 4, 5]),         # beyond completions dropped
    ("0-2,x,4", 5, [0, 1, 2, 4]),         # unreadable part skipped
    ("3-1", 5, []),
])
def test_parse_indexes(text, completions, want):
    assert parse_indexes(text, completions) == want


@pytest.mark.parametrize("indexes,want", [([], ""), ([0], "0"), ([1, 3, 4, 5], "1,3-5"),
                                          ([0, 1, 2, 4, 6, 7], "0-2,4,6-7")])
def test_format_indexes(indexes, want):
    assert format_indexes(indexes) == want


@given(st.sets(st.integers(0, 200)))
def test_indexes_round_trip(indexes):
    assert parse_indexes(format_indexes(indexes), 201) == sorted(indexes)
    text = format_indexes(indexes)
    assert "--" not in text and not text.startswith(",")


def test_first_pending_indexes_skips_taken():
    assert first_pending_indexes(3, 6, {0, 2}) == [1, 3, 4]
    assert first_pending_indexes(5, 3, {1}) == [0, 2]


def test_indexed_pod_from_template():
    job = {"metadata": {"name": "work", "uid": "u1"},
           "spec": {"template": {"metadata": {"labels": {"job-name": "work"}},
                                 "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}}}
    pod = pod_from_job(job, 4)
    assert pod["metadata"]["generateName"] == "work-4-"
    assert pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "4"
    assert pod["metadata"]["labels"] == {"job-name": "work", "batch.kubernetes.io/job-completion-index": "4"}
    assert pod["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert pod["spec"]["hostname"] == "work-4"
    assert [e["name"] for e in pod["spec"]["containers"][0]["env"]] == ["A", "JOB_COMPLETION_INDEX"]
    assert "env" not in job["spec"]["template"]["spec"]["containers"][0] or \
        len(job["spec"]["template"]["spec"]["containers"][0]["env"]) == 1  # template untouched
    plain = pod_from_job(job, None)
    assert plain["metadata"]["generateName"] == "work-" and "hostname" not in plain["spec"]


# ---- pod failure policy --------------------------------------------------------------------------

def failed_pod(codes: dict[str, int], init: dict[str, int] | None = None, conditions=()) -> dict:
    def statuses(d):
        return [{"name": n, "state": {"terminated": {"exitCode": c}}} for n, c in d.items()]
    return {"metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": statuses(codes),
                       "initContainerStatuses": statuses(init or {}),
                       "conditions": [{"type": t, "status": "True"} for t in conditions]}}


def rule(action, **on):
    return dict(action=action, **on)


@pytest.mark.parametrize("policy,pod,want", [
    # no rule matches: the failure counts
    ({"rules": [rule("FailJob", onExitCodes={"operator": "In", "values": [5]})]},
     failed_pod({"main": 1}), (None, True, None)),
    ({"rules": [rule("Ignore", onExitCodes={"operator": "In", "values": [1, 2]})]},
     failed_pod({"main": 2}), (None, False, "Ignore")),
    ({"rules": [rule("Count", onExitCodes={"operator": "NotIn", "values": [1]})]},
     failed_pod({"main": 3}), (None, True, "Count")),
    # exit code 0 never matches, even NotIn
    ({"rules": [rule("FailJob", onExitCodes={"operator": "NotIn", "values": [1]})]},
     failed_pod({"main": 0}), (None, True, None)),
    # first matching rule wins; message names the rule's index
    ({"rules": [rule("Ignore", onExitCodes={"operator": "In", "values": [7]}),
                rule("FailJob", onExitCodes={"operator": "In", "values": [42]})]},
     failed_pod({"main": 42}),
     ("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1", True, "FailJob")),
    # containerName restricts the match
    ({"rules": [rule("FailJob", onExitCodes={"containerName": "side", "operator": "In", "values": [42]})]},
     failed_pod({"main": 42}), (None, True, None)),
    # init containers are looked at too
    ({"rules": [rule("FailJob", onExitCodes={"operator": "In", "values": [9]})]},
     failed_pod({}, init={"setup": 9}),
     ("Container setup for pod ns/p failed with exit code 9 matching FailJob rule at index 0", True, "FailJob")),
    ({"rules": [rule("Ignore", onPodConditions=[{"type": "DisruptionTarget", "status": "True"}])]},
     failed_pod({"main": 137}, conditions=["DisruptionTarget"]), (None, False, "Ignore")),
    ({"rules": [rule("FailJob", onPodConditions=[{"type": "DisruptionTarget", "status": "True"}])]},
     failed_pod({"main": 137}, conditions=["DisruptionTarget"]),
     ("Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0", True, "FailJob")),
    (None, failed_pod({"main": 1}), (None, True, None)),
])
def test_match_pod_failure_policy(policy, pod, want):
    assert match_pod_failure_policy(policy, pod) == want


# ---- success policy ------------------------------------------------------------------------------

@pytest.mark.parametrize("rules,succeeded,want", [
    ([{"succeededIndexes": "0-2"}], [0, 1], None),
    ([{"succeededIndexes": "0-2"}], [0, 1, 2, 5], "Matched rules at index 0"),
    ([{"succeededIndexes": "0-4", "succeededCount": 2}], [3, 9], None),
    ([{"succeededIndexes": "0-4", "succeededCount": 2}], [3, 4], "Matched rules at index 0"),
    ([{"succeededIndexes": "8"}, {"succeededCount": 3}], [0, 1, 2], "Matched rules at index 1"),
    ([{"succeededCount": 3}], [], None),
])
def test_match_success_policy(rules, succeeded, want):
    assert match_success_policy({"rules": rules}, 10, succeeded) == want


# ---- backoff --------------------------------------------------------------------------------------

@pytest.mark.parametrize("failures,want", [(0, 0), (1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (60, 600)])
def test_backoff_delay_doubles_and_caps(failures, want):
    assert backoff_delay(failures) == want


def test_backoff_remaining_counts_from_the_last_failure():
    assert backoff_remaining(2, T0, T0 + timedelta(seconds=5)) == 15
    assert backoff_remaining(2, T0, T0 + timedelta(seconds=25)) == 0
    assert backoff_remaining(0, None, T0) == 0


def finished(phase: str, at: datetime) -> dict:
    return {"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": [
        {"name": "c", "state": {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                               "finishedAt": ts(at)}}}]}}


def test_backoff_record_resets_on_success():
    """upstream newBackoffRecord: failures pile up; a success resets; only failures after the
    latest new success count."""
    r = BackoffRecord().updated([], [finished("Failed", T0), finished("Failed", T0 + timedelta(seconds=3))])
    assert (r.failures, r.last_failure) == (2, T0 + timedelta(seconds=3))
    r = r.updated([], [finished("Failed", T0 + timedelta(seconds=9))])
    assert r.failures == 3
    r2 = r.updated([finished("Succeeded", T0 + timedelta(seconds=20))], [])
    assert (r2.failures, r2.last_failure) == (0, None)
    r3 = r.updated([finished("Succeeded", T0 + timedelta(seconds=20))],
                   [finished("Failed", T0 + timedelta(seconds=10)), finished("Failed", T0 + timedelta(seconds=30))])
    assert (r3.failures, r3.last_failure) == (1, T0 + timedelta(seconds=30))
    assert r.updated([], []) == r


# ---- conditions and TTL ---------------------------------------------------------------------------

def test_ensure_condition_does_not_add_a_false_one():
    conds: list[dict] = []
    assert not ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", T0)
    assert ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", T0)
    assert not ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", T0)
    later = T0 + timedelta(seconds=5)
    assert ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", later)
    assert conds == [{"type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed",
                      "lastProbeTime": ts(later), "lastTransitionTime": ts(later)}]


def test_ttl_remaining():
    job = {"spec": {"ttlSecondsAfterFinished": 30},
           "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": ts(T0)}]}}
    assert ttl_remaining(job, T0 + timedelta(seconds=10)) == 20
    assert ttl_remaining(job, T0 + timedelta(seconds=40)) == -10
    assert ttl_remaining({"spec": {"ttlSecondsAfterFinished": 30}, "status": {}}, T0) is None
    assert ttl_remaining({"spec": {}, "status": job["status"]}, T0) is None


# ---- cron schedules ------------------------------------------------------------------------------

def cronjob(schedule: str = "0 * * * *", created: datetime = T0, last: datetime | None = None,
            deadline: int | None = None) -> dict:
    spec: dict = {"schedule": schedule}
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    status = {"lastScheduleTime": ts(last)} if last else {}
    return {"metadata": {"name": "cj", "uid": "cj-uid", "creationTimestamp": ts(created)},
            "spec": spec, "status": status}


UTC = timezone.utc


@pytest.mark.parametrize("cj,now,want,missed", [
    # hourly, created 10:00: nothing due before 11:00
    (cronjob(), T0 + timedelta(minutes=30), None, "none"),
    (cronjob(), T0 + timedelta(hours=1), T0 + timedelta(hours=1), "none"),
    # three starts missed: the latest one is returned
    (cronjob(), T0 + timedelta(hours=3, minutes=30), T0 + timedelta(hours=3), "few"),
    # lastScheduleTime wins over creation
    (cronjob(last=T0 + timedelta(hours=3)), T0 + timedelta(hours=3, minutes=30), None, "none"),
    # the deadline moves the earliest time: 13:20 → next 14:00 is in the future
    (cronjob(deadline=600), T0 + timedelta(hours=3, minutes=30), None, "none"),
    # over 100 missed starts
    (cronjob("* * * * *"), T0 + timedelta(minutes=150, seconds=5), T0 + timedelta(minutes=150), "many"),
    # irregular schedule: 30 6-16/4 * * 1-5 (T0 is a Monday)
    (cronjob("30 6-16/4 * * 1-5"), T0 + timedelta(days=1, hours=5), T0 + timedelta(days=1, hours=4, minutes=30), "few"),
])
def test_most_recent_schedule_time(cj, now, want, missed):
    _, got, how = most_recent_schedule_time(cj, now, Schedule(cj["spec"]["schedule"], UTC), True)
    assert (got, how) == (want, missed)


def test_impossible_schedule_is_an_error():
    with pytest.raises(ScheduleError):
        most_recent_schedule_time(cronjob("59 23 31 2 *"), T0 + timedelta(days=400),
                                  Schedule("59 23 31 2 *", UTC), True)


@pytest.mark.parametrize("text", ["* * * *", "61 * * * *", "@fortnightly", "@every xyz", "TZ=Nowhere/None * * * * *"])
def test_bad_schedules(text):
    with pytest.raises(ScheduleError):
        Schedule(text, UTC)


def test_descriptors_every_and_time_zones():
    assert Schedule("@hourly", UTC).next(T0) == T0 + timedelta(hours=1)
    assert Schedule("@daily", UTC).next(T0) == datetime(2025, 3, 11, tzinfo=UTC)
    assert Schedule("@every 90s", UTC).next(T0) == T0 + timedelta(seconds=90)
    from zoneinfo import ZoneInfo
    tokyo = Schedule("0 9 * * *", ZoneInfo("Asia/Tokyo"))
    assert tokyo.next(T0) == datetime(2025, 3, 11, 0, 0, tzinfo=UTC)  # 09:00 JST
    assert Schedule("TZ=Asia/Tokyo 0 9 * * *", UTC).next(T0) == tokyo.next(T0)


_FIELDS = st.tuples(st.sampled_from(["*", "0", "*/5", "15,45", "10-20"]),
                    st.sampled_from(["*", "3", "*/2", "9-17"]),
                    st.sampled_from(["*", "1", "15"]), st.sampled_from(["*", "*/3"]),
                    st.sampled_from(["*", "1-5", "0"]))


@given(_FIELDS, st.integers(0, 60 * 24 * 40))
def test_most_recent_is_the_latest_due_time(fields, minutes):
    text = " ".join(fields)
    sched = Schedule(text, UTC)
    now = T0 + timedelta(minutes=minutes, seconds=7)
    cj = cronjob(text)
    _, recent, missed = most_recent_schedule_time(cj, now, sched, False)
    if recent is None:
        # Like upstream, after a long gap an irregular schedule is judged from about one
        # interval back (so a weekday schedule seen at the weekend has nothing due).
        assert sched.next(T0) > now or (missed != "none" and sched.next(now - timedelta(minutes=1)) > now)
        return
    assert T0 < recent <= now < sched.next(recent)
    assert 0 < next_schedule_delay(cj, now, sched) <= (sched.next(now) - now).total_seconds() + 0.1 + 1e-6


def test_job_name_and_template():
    scheduled = datetime(2025, 3, 10, 10, 5, tzinfo=UTC)
    assert job_name("cj", scheduled) == f"cj-{int(scheduled.timestamp()) // 60}"
    cj = cronjob()
    cj["metadata"]["namespace"] = "ns"
    cj["spec"]["jobTemplate"] = {"metadata": {"labels": {"a": "b"}}, "spec": {"backoffLimit": 2}}
    from zoneinfo import ZoneInfo
    job = job_from_template(cj, scheduled, ZoneInfo("Europe/Berlin"))
    assert job["metadata"]["annotations"] == {"batch.kubernetes.io/cronjob-scheduled-timestamp": "2025-03-10T11:05:00+01:00"}
    assert job["metadata"]["labels"] == {"a": "b"} and job["spec"] == {"backoffLimit": 2}
    assert job["metadata"]["ownerReferences"][0]["uid"] == "cj-uid"
    assert job_from_template(cj, scheduled, UTC)["metadata"]["annotations"][
        "batch.kubernetes.io/cronjob-scheduled-timestamp"] == "2025-03-10T10:05:00Z"


def test_jobs_to_prune_oldest_first():
    def j(name, kind, start=None):
        return {"metadata": {"name": name},
                "status": {"conditions": [{"type": kind, "status": "True"}], **({"startTime": ts(start)} if start else {})}}
    jobs = [j("c", "Complete", T0 + timedelta(minutes=2)), j("a", "Complete", T0), j("never", "Complete"),
            j("b", "Complete", T0 + timedelta(minutes=1)), j("f", "Failed", T0)]
    assert [x["metadata"]["name"] for x in jobs_to_prune(jobs, "Complete", 2)] == ["a", "b"]
    assert jobs_to_prune(jobs, "Failed", 1) == []
    assert [x["metadata"]["name"] for x in jobs_to_prune(jobs, "Failed", 0)] == ["f"]
