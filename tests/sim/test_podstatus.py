"""The simulated kubelet's pod lifecycle as pure functions (kybernetes/sim/podstatus.py) and the
node builders (objects.py). Shapes follow what the kubelet writes (pkg/kubelet/status,
kubelet_pods.go: conditions, container states, phases by restart policy)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from kybernetes.sim import objects
from kybernetes.sim.podstatus import (
    EXIT_AFTER, EXIT_CODE, PodIPs, Timing, exit_codes, normalize_image, parse_duration, plan)

T0 = 1_800_000_000.0
TIMING = Timing(start_delay=1.0, ready_delay=2.0, stop_delay=0.5)


def pod(restart="Always", annotations=None, containers=None, **spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "annotations": annotations or {}},
            "spec": {"nodeName": "n", "restartPolicy": restart,
                     "containers": containers or [{"name": "app", "image": "nginx"}], **spec},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "x"}]}}


def step(p, now, started=T0 + 1, timing=TIMING):
    return plan(p, now=now, seen=T0, started=started, host_ip="198.18.0.1", pod_ip="10.128.0.2",
                timing=timing)


def run_until(p, now, started=T0 + 1):
    """Apply plans (as the API would store them) until nothing more changes at `now`."""
    for _ in range(10):
        s = step(p, now, started)
        if s.status is None:
            return p, s
        p = dict(p, status=s.status)
    raise AssertionError("status never settles")


def cond(p, t):
    return next(c for c in p["status"]["conditions"] if c["type"] == t)


def test_waits_for_start_delay_then_runs_with_ip_and_conditions():
    p = pod(initContainers=[{"name": "init", "image": "busybox:1.36"}])
    early = step(p, T0 + 0.5)
    assert early.status is None and early.wake == pytest.approx(0.5)
    s = step(p, T0 + 1).status
    assert s["phase"] == "Running" and s["podIP"] == "10.128.0.2"
    assert s["podIPs"] == [{"ip": "10.128.0.2"}] and s["hostIP"] == "198.18.0.1"
    assert s["startTime"]
    cs = s["containerStatuses"][0]
    assert cs["state"]["running"]["startedAt"] and cs["started"] and not cs["ready"]
    assert cs["image"] == "docker.io/library/nginx:latest"
    assert cs["containerID"].startswith("sim://") and cs["imageID"].startswith("docker.io/library/nginx@sha256:")
    init = s["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["ready"]
    types = [c["type"] for c in s["conditions"]]
    assert types == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert cond(dict(p, status=s), "Ready")["status"] == "False"
    assert cond(dict(p, status=s), "Ready")["reason"] == "ContainersNotReady"


def test_becomes_ready_after_ready_delay():
    p, _ = run_until(pod(), T0 + 1)
    not_yet = step(p, T0 + 2, started=T0 + 1)
    assert not_yet.status is None and not_yet.wake == pytest.approx(1.0)
    p, _ = run_until(p, T0 + 3)
    assert p["status"]["containerStatuses"][0]["ready"]
    assert cond(p, "Ready")["status"] == cond(p, "ContainersReady")["status"] == "True"


def test_a_late_first_write_reports_what_happened_since_in_one_status():
    """Like the kubelet's status manager, a write that comes late carries the latest state:
    containers started when due (seen + start_delay), Ready once ready_delay has passed."""
    on_time = step(pod(), T0 + 1).status
    assert not on_time["containerStatuses"][0]["ready"]
    late = step(pod(), T0 + 3.5)
    s = late.status
    assert s["phase"] == "Running" and s["containerStatuses"][0]["ready"]
    assert cond(dict(pod(), status=s), "Ready")["status"] == "True"
    assert s["startTime"] == objects.now_time(T0 + 1)
    assert s["containerStatuses"][0]["state"]["running"]["startedAt"] == objects.now_time(T0 + 1)
    settled = step(dict(pod(), status=s), T0 + 4, started=T0 + 1)
    assert settled.status is None  # nothing left to write


def test_readiness_gate_keeps_ready_false_until_its_condition_is_true():
    p, _ = run_until(pod(readinessGates=[{"conditionType": "example.com/lb"}]), T0 + 1)
    p, _ = run_until(p, T0 + 5)
    assert cond(p, "ContainersReady")["status"] == "True"
    assert cond(p, "Ready")["status"] == "False"
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    p, _ = run_until(p, T0 + 6)
    assert cond(p, "Ready")["status"] == "True"


@pytest.mark.parametrize("restart,code,phase", [("Never", 0, "Succeeded"), ("Never", 3, "Failed"),
                                                 ("OnFailure", 0, "Succeeded")])
def test_exit_annotation_ends_the_pod_by_restart_policy(restart, code, phase):
    p = pod(restart, {EXIT_AFTER: "2s", EXIT_CODE: str(code)})
    p, s = run_until(p, T0 + 1)
    assert p["status"]["phase"] == "Running" and s.wake == pytest.approx(2.0)
    p, s = run_until(p, T0 + 3)
    assert p["status"]["phase"] == phase
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == code and term["reason"] == ("Completed" if code == 0 else "Error")
    assert cond(p, "Ready")["status"] == "False" and s.wake is None


def test_on_failure_restarts_a_failed_container_then_backs_off():
    p = pod("OnFailure", {EXIT_AFTER: "1s", EXIT_CODE: "1"})
    p, _ = run_until(p, T0 + 1)
    p, _ = run_until(p, T0 + 2)
    cs = p["status"]["containerStatuses"][0]
    assert p["status"]["phase"] == "Running" and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and "running" in cs["state"]
    p, s = run_until(p, T0 + 3)
    cs = p["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 2 and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert s.wake == pytest.approx(10.0)
    p, _ = run_until(p, T0 + 13)
    assert "running" in p["status"]["containerStatuses"][0]["state"]


def test_sim_exit_in_command_sets_that_containers_code():
    containers = [{"name": "a", "image": "x", "command": ["sh", "-c", "sim-exit=7"]},
                  {"name": "b", "image": "x", "args": ["sim-exit=0"]}]
    codes, after = exit_codes(pod(containers=containers))
    assert codes == {"a": 7, "b": 0} and after == 0
    p, _ = run_until(pod("Never", containers=containers), T0 + 1)
    assert p["status"]["phase"] == "Failed"
    assert [c["state"]["terminated"]["exitCode"] for c in p["status"]["containerStatuses"]] == [7, 0]


def test_containers_without_exit_keep_the_pod_running():
    containers = [{"name": "a", "image": "x", "command": ["sim-exit=0"]}, {"name": "b", "image": "x"}]
    p, _ = run_until(pod("Never", containers=containers), T0 + 5)
    assert p["status"]["phase"] == "Running"


def test_deletion_stops_containers_then_confirms():
    p, _ = run_until(pod(), T0 + 5)
    p["metadata"].update(deletionTimestamp=objects.now_time(T0 + 30), deletionGracePeriodSeconds=30)
    early = step(p, T0 + 0.2)
    assert early.status is None and not early.delete and early.wake == pytest.approx(0.3)
    s = step(p, T0 + 1)
    assert s.delete and s.status["containerStatuses"][0]["state"]["terminated"]
    honor = plan(p, now=T0 + 1, seen=T0, started=T0, host_ip="h", pod_ip=None,
                 timing=Timing(honor_grace=True))
    assert not honor.delete and honor.wake == pytest.approx(29.0)


def test_unstarted_or_finished_pods_are_confirmed_deleted_at_once():
    p = pod()
    p["metadata"]["deletionTimestamp"] = objects.now_time(T0)
    assert step(p, T0).delete


def test_host_network_pod_gets_the_node_address():
    s = step(pod(hostNetwork=True), T0 + 1).status
    assert s["podIP"] == s["hostIP"] == "198.18.0.1"


@given(st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(["h", "m", "s", "ms"])),
                min_size=1, max_size=4))
def test_parse_duration(parts):
    text = "".join(f"{n}{u}" for n, u in parts)
    want = sum(n * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)
    assert parse_duration(text) == pytest.approx(want)


@pytest.mark.parametrize("bad", ["", "2x", "s", "1s2"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("image,want", [
    ("nginx", "docker.io/library/nginx:latest"), ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("me/app", "docker.io/me/app:latest"), ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("localhost:5000/a", "localhost:5000/a:latest"), ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
])
def test_normalize_image(image, want):
    assert normalize_image(image) == want


@given(st.integers(22, 28), st.lists(st.booleans(), max_size=80))
def test_pod_ips_are_unique_inside_the_range_and_reusable(prefix, ops):
    ips = PodIPs(f"10.244.0.0/{prefix}")
    held: list[str] = []
    for take in ops:
        if take or not held:
            ip = ips.allocate()
            if ip is None:
                assert len(held) == ips.net.num_addresses - 3
                continue
            assert ip not in held and ipaddress.ip_address(ip) in ips.net
            assert ip not in (str(ips.net[0]), str(ips.net[1]), str(ips.net[-1]))
            held.append(ip)
        else:
            ips.release(held.pop(0))


def test_node_flags_parse():
    assert objects.parse_labels("a=1, b=") == {"a": "1", "b": ""}
    assert objects.parse_taints("k=v:NoSchedule,x:NoExecute") == [
        {"key": "k", "value": "v", "effect": "NoSchedule"}, {"key": "x", "effect": "NoExecute"}]
    with pytest.raises(ValueError):
        objects.parse_taints("k=v:Sometimes")
    with pytest.raises(ValueError):
        objects.parse_labels("novalue")


def test_node_object_reports_a_healthy_kubelet():
    tpl = objects.NodeTemplate(cpu="4", zones=["a", "b"], taints=objects.parse_taints("t:NoSchedule"))
    n = objects.build_node("s-1", 1, tpl, objects.now_time(T0))
    labels = n["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "s-1" and labels["topology.kubernetes.io/zone"] == "b"
    assert n["status"]["capacity"]["cpu"] == "4" == n["status"]["allocatable"]["cpu"]
    conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
    assert conds == {"NetworkUnavailable": "False", "MemoryPressure": "False", "DiskPressure": "False",
                     "PIDPressure": "False", "Ready": "True"}
    assert n["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.0-kyb-sim"
    addr = n["status"]["addresses"][0]["address"]
    assert ipaddress.ip_address(addr) in ipaddress.ip_network("198.18.0.0/15")
    assert n["spec"]["taints"] == [{"key": "t", "effect": "NoSchedule"}]
