"""Job controller against a real API server, with the scheduler and simulated nodes playing the
pods (exit codes via the sim's annotations). Behaviour matched: upstream
pkg/controller/job/job_controller.go (1.31+: SuccessCriteriaMet/FailureTarget before
Complete/Failed, pod tracking finalizer, events SuccessfulCreate/Completed/BackoffLimitExceeded)."""

from __future__ import annotations

import uuid

import pytest

from kybernetes.client import resource
from kybtest import control_plane, new_namespace, until

PODS = resource("v1", "Pod")
JOBS = resource("batch/v1", "Job")
EVENTS = resource("v1", "Event")
FINALIZER = "batch.kubernetes.io/job-tracking"


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    """controller-manager (job), scheduler and two simulated nodes for this module."""
    with control_plane(apiserver.kubeconfig, tmp_path_factory.mktemp("job"), "job",
                       ["--count", "2", "--name-prefix", f"job-{uuid.uuid4().hex[:4]}-"]) as procs:
        yield procs


@pytest.fixture
async def ns(client):
    return await new_namespace(client, "job")


def job(name: str, *, exit_after: str | None = "1s", exit_code: int = 0, **spec) -> dict:
    ann = {}
    if exit_after is not None:
        ann = {"sim.kybernetes.io/exit-after": exit_after, "sim.kybernetes.io/exit-code": str(exit_code)}
    return {"metadata": {"name": name},
            "spec": {"template": {"metadata": {"annotations": ann},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "busybox"}]}},
                     **spec}}


async def condition(client, ns, name, ctype):
    obj = await client.get(JOBS, name, ns)
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return obj
    return None


async def job_pods(client, ns, name):
    return (await client.list(PODS, ns, label_selector=f"batch.kubernetes.io/job-name={name}"))["items"]


async def events(client, ns, name):
    items = (await client.list(EVENTS, ns))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


async def test_completions_with_parallelism(client, ns, cluster):
    """completions 3 parallelism 2: never more than 2 active, ends Complete with 3 succeeded,
    SuccessCriteriaMet (CompletionsReached) before Complete, every finalizer removed."""
    await client.create(JOBS, job("calc", completions=3, parallelism=2), ns)
    seen_active = []

    async def complete():
        obj = await client.get(JOBS, "calc", ns)
        seen_active.append((obj.get("status") or {}).get("active", 0))
        return await condition(client, ns, "calc", "Complete")
    done = await until(complete)
    st = done["status"]
    assert st["succeeded"] == 3 and st["failed"] == 0 and st["active"] == 0
    assert st["uncountedTerminatedPods"] == {} and st["completionTime"] and st["startTime"]
    assert max(seen_active) <= 2
    types = {c["type"]: c for c in st["conditions"]}
    assert types["SuccessCriteriaMet"]["reason"] == "CompletionsReached"
    assert types["Complete"]["reason"] == "CompletionsReached"
    pods = await job_pods(client, ns, "calc")
    assert len(pods) == 3
    for p in pods:
        assert FINALIZER not in (p["metadata"].get("finalizers") or [])
        assert p["metadata"]["generateName"] == "calc-"
        assert p["metadata"]["labels"]["job-name"] == "calc"
        assert p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == done["metadata"]["uid"]
    reasons = await until(lambda: _reasons(client, ns, "calc", {"SuccessfulCreate", "Completed"}))
    assert reasons.count("SuccessfulCreate") == 3


async def _reasons(client, ns, name, want):
    got = [e["reason"] for e in await events(client, ns, name)]
    return got if want <= set(got) else None


async def test_backoff_limit_exceeded(client, ns, cluster):
    """backoffLimit 1: the first failure is retried after the 10 s backoff, the second fails the
    Job: FailureTarget then Failed, reason BackoffLimitExceeded, a Warning event."""
    await client.create(JOBS, job("fails", exit_code=3, backoffLimit=1), ns)
    failed = await until(lambda: condition(client, ns, "fails", "Failed"))
    st = failed["status"]
    assert st["failed"] == 2 and st.get("succeeded", 0) == 0
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["reason"] == conds["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert conds["Failed"]["message"] == "Job has reached the specified backoff limit"
    assert "completionTime" not in st
    ev = await until(lambda: _reasons(client, ns, "fails", {"BackoffLimitExceeded"}))
    assert ev.count("SuccessfulCreate") == 2


async def test_indexed_pods_carry_their_index(client, ns, cluster):
    """Indexed: one pod per index with annotation+label, JOB_COMPLETION_INDEX and hostname
    `<job>-<index>`; completedIndexes is the compressed "0-2"."""
    await client.create(JOBS, job("idx", completions=3, parallelism=3, completionMode="Indexed"), ns)
    done = await until(lambda: condition(client, ns, "idx", "Complete"))
    assert done["status"]["completedIndexes"] == "0-2" and done["status"]["succeeded"] == 3
    pods = await job_pods(client, ns, "idx")
    indexes = sorted(int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]) for p in pods)
    assert indexes == [0, 1, 2]
    for p in pods:
        ix = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        assert p["spec"]["hostname"] == f"idx-{ix}"
        assert p["metadata"]["name"].startswith(f"idx-{ix}-")
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        assert "job-completion-index" in env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]


async def test_suspend_and_resume(client, ns, cluster):
    """Suspending deletes the active pods (not counted as failures) and sets Suspended; resuming
    recreates them and flips the condition to False/JobResumed."""
    await client.create(JOBS, job("sleepy", exit_after=None, parallelism=2, completions=2), ns)
    await until(lambda: _active(client, ns, "sleepy", 2))
    await client.patch(JOBS, "sleepy", {"spec": {"suspend": True}}, ns)
    suspended = await until(lambda: condition(client, ns, "sleepy", "Suspended"))
    assert suspended["status"]["conditions"][0]["reason"] == "JobSuspended"
    await until(lambda: _no_pods(client, ns, "sleepy"))
    obj = await until(lambda: _active(client, ns, "sleepy", 0))
    assert obj["status"].get("failed", 0) == 0
    await client.patch(JOBS, "sleepy", {"spec": {"suspend": False}}, ns)
    obj = await until(lambda: _active(client, ns, "sleepy", 2))
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == "Suspended")
    assert (cond["status"], cond["reason"]) == ("False", "JobResumed")


async def _active(client, ns, name, n):
    obj = await client.get(JOBS, name, ns)
    return obj if (obj.get("status") or {}).get("active", 0) == n and "status" in obj else None


async def _no_pods(client, ns, name):
    return not await job_pods(client, ns, name)


async def test_active_deadline(client, ns, cluster):
    """activeDeadlineSeconds: running pods are deleted and the Job fails with DeadlineExceeded."""
    await client.create(JOBS, job("late", exit_after=None, activeDeadlineSeconds=2), ns)
    failed = await until(lambda: condition(client, ns, "late", "Failed"))
    cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert (cond["reason"], cond["message"]) == ("DeadlineExceeded", "Job was active longer than specified deadline")
    assert failed["status"]["active"] == 0
    await until(lambda: _no_live_pods(client, ns, "late"))


async def _no_live_pods(client, ns, name):
    return all(p["metadata"].get("deletionTimestamp") or p["status"].get("phase") in ("Failed", "Succeeded")
               for p in await job_pods(client, ns, name))


async def test_pod_failure_policy_fail_job(client, ns, cluster):
    """A FailJob rule on exit code 42 fails the Job at once, with upstream's message."""
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    await client.create(JOBS, job("pfp", exit_code=42, backoffLimit=6, podFailurePolicy=policy), ns)
    failed = await until(lambda: condition(client, ns, "pfp", "Failed"))
    cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    pod = (await job_pods(client, ns, "pfp"))[0]["metadata"]["name"]
    assert cond["reason"] == "PodFailurePolicy"
    assert cond["message"] == f"Container main for pod {ns}/{pod} failed with exit code 42 matching FailJob rule at index 0"


async def test_ttl_after_finished_deletes_the_job(client, ns, cluster):
    await client.create(JOBS, job("short", ttlSecondsAfterFinished=0), ns)

    async def gone_or_deleting():
        try:
            obj = await client.get(JOBS, "short", ns)
        except Exception:
            return True
        return bool(obj["metadata"].get("deletionTimestamp"))
    await until(gone_or_deleting)


async def test_kubectl_create_job_from_cronjob(client, ns, cluster, kubectl133):
    """`kubectl create job --from=cronjob/x` builds the Job client-side; the controller runs it."""
    kubectl = kubectl133
    cj = {"metadata": {"name": "nightly"},
          "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": job("x")["spec"]}}}
    await client.create(resource("batch/v1", "CronJob"), cj, ns)
    kubectl.run("-n", ns, "create", "job", "manual", "--from=cronjob/nightly")
    done = await until(lambda: condition(client, ns, "manual", "Complete"))
    assert done["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    out = kubectl.run("-n", ns, "get", "jobs").stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("manual"))
    assert "1/1" in row
