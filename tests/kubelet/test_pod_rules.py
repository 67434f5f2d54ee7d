"""The node agent's pure rules: env and $(VAR) expansion, resources → CRI limits, QoS, phase,
restart back-off, CRI log rendering, CNI config, swap detection. Upstream references:
pkg/kubelet/kubelet_pods.go (makeEnvironmentVariables, getPhase), third_party/forked/golang/expansion,
pkg/apis/core/v1/helper/qos, pkg/kubelet/kuberuntime/logs."""

from __future__ import annotations

import asyncio
import base64
import ipaddress

import pytest
from hypothesis import given, strategies as st

from kybernetes.kubelet import logs, machine, network, podspec, status
from kybernetes.kubelet.imagepull import Backoff, pull_policy
from kybernetes.kubelet.podworkers import crash_backoff

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "default"},
       "status": {"podIP": "10.42.0.7", "hostIP": "192.0.2.2"}}


def _lookup(objects: dict):
    async def lookup(kind, ns, name):
        return objects.get((kind, ns, name))
    return lookup


def _env(container: dict, objects: dict | None = None) -> dict:
    return asyncio.run(podspec.environment(POD, container, _lookup(objects or {}),
                                           {"memory": "1Gi", "cpu": "2"}))


def test_env_sources_and_order():
    objects = {("ConfigMap", "ns", "cm"): {"data": {"a": "1", "b": "2"}},
               ("Secret", "ns", "s"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}}}
    env = _env({"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
                "env": [{"name": "P_a", "value": "override"},
                        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                           "divisor": "1Mi"}}},
                        {"name": "MSG", "value": "$(APP) at $(IP) $$(APP) $(NOPE)"}]}, objects)
    assert env["P_a"] == "override" and env["P_b"] == "2" and env["PW"] == "hunter2"
    assert env["APP"] == "x" and env["IP"] == "10.42.0.7"
    assert env["MEM"] == "1024"  # no limit: the node's allocatable, as upstream
    assert env["MSG"] == "x at 10.42.0.7 $(APP) $(NOPE)"


def test_missing_references():
    with pytest.raises(podspec.ConfigError, match='configmap "gone" not found'):
        _env({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]})
    optional = _env({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "gone", "key": "k", "optional": True}}}],
        "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]})
    assert "X" not in optional


_NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True)
_TOKENS = st.one_of(st.tuples(st.just("lit"), st.text(alphabet="ab ()x", max_size=5)),
                    st.tuples(st.just("ref"), _NAMES), st.tuples(st.just("esc"), _NAMES))


@given(st.dictionaries(_NAMES, st.text(alphabet="xyz$()", max_size=6), min_size=1),
       st.lists(_TOKENS, max_size=8))
def test_expand_matches_token_model(env, tokens):
    """$(KNOWN) → its value, $(UNKNOWN) stays, $$(X) → literal $(X), text without $ unchanged."""
    text, want = "", ""
    for kind, value in tokens:
        if kind == "lit":
            text, want = text + value, want + value
        elif kind == "ref":
            text += f"$({value})"
            want += env.get(value, f"$({value})")
        else:
            text, want = text + f"$$({value})", want + f"$({value})"
    assert podspec.expand(text, env) == want


def test_resources_to_cri_limits():
    r = podspec.linux_resources({"resources": {"requests": {"cpu": "250m"},
                                               "limits": {"cpu": "500m", "memory": "64Mi"}}})
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period) == (256, 50_000, 100_000)
    assert r.memory_limit_in_bytes == 64 * 2 ** 20
    assert podspec.linux_resources({}).cpu_shares == podspec.MIN_SHARES


@pytest.mark.parametrize("resources,qos", [
    ({}, "BestEffort"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "Burstable"),
    ({"limits": {"memory": "1Gi"}}, "Burstable"),
])
def test_qos_class(resources, qos):
    pod = {"spec": {"containers": [{"name": "c", "resources": resources}]}}
    assert podspec.qos_class(pod) == qos


def test_crash_backoff_doubles_to_five_minutes():
    delays = [crash_backoff(n) for n in range(12)]
    assert delays[:4] == [0, 10, 20, 40]
    assert max(delays) == 300 and delays == sorted(delays)


def test_backoff_per_key():
    now = [0.0]
    b = Backoff(clock=lambda: now[0])
    assert b.remaining("a") == 0
    assert [b.next("a") for _ in range(3)] == [10, 20, 40]
    now[0] = 30
    assert b.remaining("a") == 10 and b.remaining("b") == 0


@pytest.mark.parametrize("image,policy", [("busybox", "Always"), ("busybox:latest", "Always"),
                                          ("busybox:1.36", "IfNotPresent"),
                                          ("reg:5000/x", "Always"), ("x@sha256:ab", "IfNotPresent")])
def test_pull_policy_default(image, policy):
    assert pull_policy({"image": image}) == policy


def _run(state, code=0, attempt=0):
    return status.Instance(id=f"id{attempt}", name="c", attempt=attempt, state=state, exit_code=code)


@pytest.mark.parametrize("policy,code,phase", [("Never", 0, "Succeeded"), ("Never", 1, "Failed"),
                                               ("OnFailure", 0, "Succeeded"),
                                               ("OnFailure", 1, "Running"), ("Always", 0, "Running")])
def test_phase_after_exit(policy, code, phase):
    pod = {"spec": {"restartPolicy": policy, "containers": [{"name": "c"}]}}
    obs = status.Observed(runs={"c": [_run(status.EXITED, code)]})
    assert status.phase(pod, obs) == phase


def test_phase_waits_for_init_containers():
    pod = {"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}}
    assert status.phase(pod, status.Observed(runs={"i": [_run(status.RUNNING)]})) == "Pending"
    pod["spec"]["restartPolicy"] = "Never"
    failed = status.Observed(runs={"i": [_run(status.EXITED, 1)]})
    assert status.phase(pod, failed) == "Failed"


def test_status_reports_waiting_reason_and_last_state():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]},
           "status": {}}
    obs = status.Observed(sandbox_ready=True, pod_ip="10.0.0.5", host_ip="192.0.2.2",
                          runs={"c": [_run(status.EXITED, 2, attempt=3)]},
                          waiting={"c": ("CrashLoopBackOff", "back-off 40s")})
    s = status.pod_status(pod, obs, "2024-01-01T00:00:00Z", "BestEffort")
    cs = s["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["restartCount"] == 3
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert s["podIP"] == "10.0.0.5"


def test_cri_log_rendering():
    raw = (b"2024-01-01T00:00:01.000000000Z stdout F one\n"
           b"2024-01-01T00:00:02.000000000Z stderr P tw\n"
           b"2024-01-01T00:00:02.500000000Z stderr F o\n"
           b"2024-01-01T00:00:03.000000000Z stdout F three\n")
    entries = [logs.parse_line(line) for line in raw.splitlines(keepends=True)]
    assert logs.render(entries, logs.LogOptions()) == b"one\ntwo\nthree\n"
    assert logs.render(entries, logs.LogOptions(tail_lines=2)) == b"two\nthree\n"
    assert logs.render(entries, logs.LogOptions(tail_lines=0)) == b""
    stamped = logs.render(entries, logs.LogOptions(tail_lines=1, timestamps=True))
    assert stamped == b"2024-01-01T00:00:03.000000000Z three\n"
    since = logs.render(entries, logs.LogOptions(since_seconds=2), now=1704067203.5)
    assert since == b"two\nthree\n"


def test_cni_conflist_for_pod_cidr():
    conf = network.conflist("10.42.3.0/24", bridge="kyb9")
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "kyb9" and bridge["mtu"] == 1450 and bridge["isGateway"]
    rng = bridge["ipam"]["ranges"][0][0]
    assert ipaddress.ip_address(rng["gateway"]) in ipaddress.ip_network(rng["subnet"])
    assert {p["type"] for p in conf["plugins"]} == {"bridge", "portmap"}


def test_swap_detection():
    header = "Filename\tType\tSize\tUsed\tPriority\n"
    assert not machine.swap_on(header)
    assert machine.swap_on(header + "/swapfile file 1024 0 -2\n")
    assert machine.memory_bytes("MemTotal:       2048 kB\n") == 2048 * 1024
