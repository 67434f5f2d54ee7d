"""Workloads end to end with real containers, on a two-host lab (`kyb lab`, one more host joins).

- StatefulSet (upstream pkg/controller/statefulset): stable names `<set>-<ordinal>`, one claim per
  ordinal from volumeClaimTemplates provisioned by local-path (WaitForFirstConsumer); a deleted
  pod comes back with the same name, the same DNS name `<pod>.<service>.<ns>.svc.cluster.local`
  (headless Service) and the same data; scale-down removes the highest ordinal first and waits
  for it to be gone before the next (OrderedReady).
- DaemonSet: one pod per node, and one on a node that joins afterwards.
- Job: completions 3, parallelism 2, each pod computes 200 digits of π; the Job is Complete.
- CronJob `*/1 * * * *`: its first Job is named `<cronjob>-<scheduled time in minutes>` (upstream
  getJobName) and its pod runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import datetime
from decimal import Decimal, getcontext

import pytest

from kybernetes.lab.lab import Lab
from kybtest import wait_for
from workloads_lab import NAME, Cluster, busybox, condition, running, skip_reason

NODES = 2


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("workloads-lab"))
    try:
        c.up(NODES)
        wait_for(lambda: len(c.ready_nodes()) == NODES, 180, "the lab's nodes Ready")
        yield c
    finally:
        _teardown(c)


def _teardown(c: Cluster) -> None:
    """Namespaces (so their pods) deleted, then the lab down; nothing of it may be left."""
    pids = c.pids() if (c.dir / "lab.json").exists() else []
    hosts = c.hosts if pids else []
    try:
        if pids:
            c.run("delete", "namespaces", "-l", "kyb-test=workloads", "--wait=false")
            wait_for(lambda: not [p for p in c.get("pods", "", None, "-A")["items"]
                                  if p["metadata"]["namespace"].startswith("wl-")],
                     90, "the test pods deleted")
    finally:
        c.down()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(h in netns for h in hosts), netns
    assert not any(Lab._alive(pid) for pid in pids)
    leftover = subprocess.run(["pgrep", "-f", str(c.dir)], capture_output=True, text=True)
    assert not leftover.stdout.strip(), f"processes of the lab left: {leftover.stdout}"


@pytest.fixture
def ns(lab):
    name = f"wl-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    lab.kubectl("label", "namespace", name, "kyb-test=workloads")
    return name


# ---- StatefulSet ----

def web_set(replicas: int) -> list[dict]:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"clusterIP": "None", "selector": {"app": "web"},
                        "ports": [{"name": "web", "port": 80}]}}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
           "spec": {"serviceName": "web", "replicas": replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [busybox("echo $(hostname) >> /data/log; sleep 3600",
                                               volumeMounts=[{"name": "data",
                                                              "mountPath": "/data"}])]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "16Mi"}}}}]}}
    return [service, sts]


def web_pods(lab: Cluster, ns: str) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in lab.pods(ns, "app=web")}


def resolve(lab: Cluster, ns: str, from_pod: str, fqdn: str) -> str:
    p = lab.run("exec", "-n", ns, from_pod, "--", "nslookup", fqdn)
    out = p.stdout.split(fqdn, 1)[-1] if p.returncode == 0 else ""
    return " ".join(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Address"))


def test_statefulset_identity_storage_and_ordered_scale_down(lab, ns):
    lab.apply(ns, *web_set(3))
    pods = wait_for(lambda: len(p := web_pods(lab, ns)) == 3
                    and all(running(x) for x in p.values()) and p, 150, "3 web pods Running")
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    # OrderedReady: each pod is created once the one before it is Ready (RFC 3339 seconds
    # compare as strings).
    for before, after in (("web-0", "web-1"), ("web-1", "web-2")):
        ready = next(c["lastTransitionTime"] for c in pods[before]["status"]["conditions"]
                     if c["type"] == "Ready")
        assert pods[after]["metadata"]["creationTimestamp"] >= ready
    claims = {c["metadata"]["name"]: c for c in lab.get("pvc", "", ns)["items"]}
    assert sorted(claims) == ["data-web-0", "data-web-1", "data-web-2"]
    assert all(c["status"]["phase"] == "Bound" and c["spec"]["storageClassName"] == "local-path"
               for c in claims.values())
    for name in pods:
        assert lab.kubectl("exec", "-n", ns, name, "--", "cat", "/data/log") == f"{name}\n"

    # A deleted pod comes back as itself: name, claim (so data), DNS name.
    old = pods["web-0"]
    lab.kubectl("delete", "pod", "-n", ns, "web-0", "--wait=false")
    new = wait_for(lambda: (p := web_pods(lab, ns).get("web-0")) and running(p)
                   and p["metadata"]["uid"] != old["metadata"]["uid"] and p, 120,
                   "web-0 recreated")
    assert new["spec"]["hostname"] == "web-0" and new["spec"]["subdomain"] == "web"
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in new["spec"]["volumes"]
                 if v["name"] == "data")
    assert claim == "data-web-0"
    assert lab.get("pvc", "data-web-0", ns)["metadata"]["uid"] == \
        claims["data-web-0"]["metadata"]["uid"]
    # The earlier line is still there, the new container appended its own.
    assert lab.kubectl("exec", "-n", ns, "web-0", "--", "cat", "/data/log") == "web-0\nweb-0\n"
    fqdn = f"web-0.web.{ns}.svc.cluster.local"
    wait_for(lambda: resolve(lab, ns, "web-1", fqdn) == new["status"]["podIP"], 60,
             f"{fqdn} → {new['status']['podIP']} from web-1")

    # Scale 3 → 1, watched: web-2 starts terminating first and is gone before web-1 starts.
    with lab.watch("pods", ns, "app=web") as events:
        lab.kubectl("scale", "statefulset", "-n", ns, "web", "--replicas=1")
        wait_for(lambda: set(web_pods(lab, ns)) == {"web-0"}, 120, "web-1 and web-2 removed")
    order = []
    for kind, pod in events():
        name = pod["metadata"]["name"]
        step = "gone" if kind == "DELETED" else \
            "terminating" if pod["metadata"].get("deletionTimestamp") else None
        if step and (name, step) not in order:
            order.append((name, step))
    assert [o for o in order if o[0] != "web-0"] == [
        ("web-2", "terminating"), ("web-2", "gone"), ("web-1", "terminating"), ("web-1", "gone")]
    assert running(web_pods(lab, ns)["web-0"])
    # Claims are kept on scale-down (persistentVolumeClaimRetentionPolicy whenScaled: Retain).
    assert {c["metadata"]["name"] for c in lab.get("pvc", "", ns)["items"]} == set(claims)


# ---- DaemonSet ----

def test_daemonset_runs_on_every_node_including_one_that_joins_later(lab, ns):
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                       "terminationGracePeriodSeconds": 1,
                       "containers": [busybox("echo on $NODE; sleep 3600", env=[
                           {"name": "NODE",
                            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])]}}}}
    lab.apply(ns, ds)

    def placed() -> dict[str, str]:
        return {p["spec"].get("nodeName"): p["metadata"]["name"]
                for p in lab.pods(ns, "app=agent") if running(p)}

    nodes = set(lab.hosts)
    first = wait_for(lambda: set(p := placed()) == nodes and p, 90, "a daemon pod per node")
    assert len(lab.pods(ns, "app=agent")) == len(nodes)

    joined = lab.add()
    assert joined not in nodes and joined.startswith(NAME)
    wait_for(lambda: joined in lab.ready_nodes(), 180, f"{joined} Ready")
    after = wait_for(lambda: set(p := placed()) == nodes | {joined} and p, 90,
                     f"a daemon pod on {joined}")
    # The pods already running stay; exactly one more pod, on the new node.
    assert {n: after[n] for n in nodes} == first
    assert len(lab.pods(ns, "app=agent")) == len(nodes) + 1
    assert lab.kubectl("logs", "-n", ns, after[joined]).strip() == f"on {joined}"
    status = wait_for(lambda: (s := lab.get("daemonset", "agent", ns)["status"])
                      .get("numberReady") == len(nodes) + 1 and s, 60, "DaemonSet status")
    assert status["desiredNumberScheduled"] == status["currentNumberScheduled"] == len(nodes) + 1


# ---- Job ----

# Machin's formula in integer arithmetic: π = 16·atan(1/5) − 4·atan(1/239), 10 guard digits.
PI_PROGRAM = """
def atan_inv(x, one):
    total = term = one // x
    n, sign = 1, 1
    while term:
        term //= x * x
        n += 2
        sign = -sign
        total += sign * (term // n)
    return total
one = 10 ** 210
digits = str((16 * atan_inv(5, one) - 4 * atan_inv(239, one)) // 10 ** 10)
print(digits[0] + "." + digits[1:201])
"""


def pi_digits(places: int) -> str:
    """π by Gauss–Legendre in decimal arithmetic, truncated to `places` decimals."""
    getcontext().prec = places + 30
    a, b, t, p = Decimal(1), 1 / Decimal(2).sqrt(), Decimal("0.25"), Decimal(1)
    while abs(a - b) > Decimal(10) ** -(places + 20):
        a, b, t, p = (a + b) / 2, (a * b).sqrt(), t - p * ((a - b) / 2) ** 2, 2 * p
    return str((a + b) ** 2 / (4 * t))[:places + 2]


def test_job_computes_pi_with_parallelism(lab, ns):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
           "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 2,
                    "template": {"spec": {"restartPolicy": "Never", "containers": [
                        {"name": "pi", "image": "python:3.11",
                         "command": ["python3", "-c", PI_PROGRAM]}]}}}}
    lab.apply(ns, job)
    most_active = 0

    def complete() -> dict | None:
        nonlocal most_active
        j = lab.get("job", "pi", ns)
        most_active = max(most_active, (j.get("status") or {}).get("active", 0))
        assert not condition(j, "Failed"), j["status"]
        return j if condition(j, "Complete") else None

    done = wait_for(complete, 150, "the pi Job Complete")
    assert done["status"]["succeeded"] == 3 and not done["status"].get("failed")
    assert most_active <= 2
    pods = lab.pods(ns, "job-name=pi")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    expected = pi_digits(200)
    for p in pods:
        assert lab.kubectl("logs", "-n", ns, p["metadata"]["name"]).strip() == expected


# ---- CronJob ----

def test_cronjob_fires_every_minute(lab, ns):
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [busybox("echo tick from $JOB", env=[{"name": "JOB", "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['job-name']"}}}])]}}}}}}
    lab.apply(ns, cron)
    jobs = wait_for(lambda: lab.get("jobs", "", ns)["items"], 75, "the CronJob's first Job")
    first = jobs[0]
    owner = first["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("CronJob", "tick", True)
    name = first["metadata"]["name"]
    done = wait_for(lambda: condition(j := lab.get("job", name, ns), "Complete") and j, 60,
                    f"Job {name} Complete")
    assert done["status"]["succeeded"] == 1
    # The Job's name carries its scheduled time in minutes since the epoch (upstream
    # getJobName), and the CronJob records that time as its last schedule.
    status = wait_for(lambda: (s := lab.get("cronjob", "tick", ns).get("status") or {})
                      .get("lastSuccessfulTime") and s, 60, "the CronJob's status")
    scheduled = datetime.fromisoformat(status["lastScheduleTime"].replace("Z", "+00:00"))
    assert name == f"tick-{int(scheduled.timestamp()) // 60}"
    pod = lab.pods(ns, f"job-name={name}")[0]
    assert lab.kubectl("logs", "-n", ns, pod["metadata"]["name"]).strip() == f"tick from {name}"


def test_claim_template_mount_is_valid(apiserver, tmp_path):
    """A container mounting a volumeClaimTemplate by name (no pod volume of that name) is the
    usual StatefulSet; upstream validates only the template's labels and annotations
    (ValidatePodTemplateSpecForStatefulSet), so the API server must accept it."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    sts = web_set(1)[1]
    p = subprocess.run(["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "--cache-dir",
                        str(tmp_path), "create", "-n", "default", "--dry-run=server", "-f", "-"],
                       input=json.dumps(sts), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
