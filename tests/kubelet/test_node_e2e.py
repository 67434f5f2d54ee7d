"""A real node end to end: `kyb agent` runs pods through containerd and runc; kubectl 1.33 talks
to them through the API server (logs, exec, port-forward). Behaviour matched: the kubelet's
(pkg/kubelet/kuberuntime: restart back-off 10 s doubling, reasons OOMKilled/Error/Completed,
ErrImagePull → ImagePullBackOff; pkg/kubelet/server for the streaming endpoints)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from kubelet_node import NODE, wait_for  # pytest puts this folder on sys.path


def _ns(node) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    return name


def _apply(node, ns: str, manifest: dict) -> None:
    manifest.setdefault("metadata", {})["namespace"] = ns
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _pod(name: str, command: str, **spec) -> dict:
    container = {"name": "c", "image": "busybox", "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "containers": [container], **spec}}


def _get(node, ns: str, name: str) -> dict:
    return json.loads(node.kubectl("get", "pod", name, "-n", ns, "-o", "json"))


def _state(pod: dict) -> dict:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0]


def test_node_registers_with_capacity_and_lease(node):
    n = json.loads(node.kubectl("get", "node", NODE, "-o", "json"))
    cap = n["status"]["capacity"]
    assert int(cap["cpu"]) >= 1 and cap["pods"] == "110" and cap["memory"].endswith("Ki")
    ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == node.port
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    lease = json.loads(node.kubectl("get", "lease", NODE, "-n", "kube-node-lease", "-o", "json"))
    assert lease["spec"]["holderIdentity"] == NODE


def test_pod_runs_logs_and_follow(node):
    ns = _ns(node)
    _apply(node, ns, _pod("hello", "echo hello from $POD; i=0; while true; do echo tick $i; "
                                   "i=$((i+1)); sleep 0.2; done", container={"env": [
                                       {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}))
    wait_for(lambda: _get(node, ns, "hello")["status"].get("phase") == "Running", what="Running")
    pod = _get(node, ns, "hello")
    assert pod["status"]["podIP"].startswith("10.243.0.")
    assert _state(pod)["containerID"].startswith("containerd://")
    out = wait_for(lambda: "tick 3" in (o := node.kubectl("logs", "hello", "-n", ns)) and o,
                   what="log lines")
    assert out.startswith("hello from hello\n")
    assert node.kubectl("logs", "hello", "-n", ns, "--tail", "1").count("\n") == 1
    stamped = node.kubectl("logs", "hello", "-n", ns, "--tail", "1", "--timestamps")
    assert stamped.split(" ", 1)[0].endswith("Z")
    # -f keeps streaming lines written after the request
    p = subprocess.Popen([str(node.kubectl.binary), "--kubeconfig", str(node.kubectl.kubeconfig),
                          "logs", "-f", "hello", "-n", ns, "--tail", "1"],
                         stdout=subprocess.PIPE, text=True)
    try:
        seen = [p.stdout.readline() for _ in range(4)]
    finally:
        p.kill()
        p.wait()
    ticks = [int(line.split()[1]) for line in seen]
    assert ticks == sorted(ticks) and len(set(ticks)) == 4


def test_exec_output_and_exit_code(node):
    ns = _ns(node)
    _apply(node, ns, _pod("ex", "sleep 3600"))
    wait_for(lambda: _get(node, ns, "ex")["status"].get("phase") == "Running", what="Running")
    r = node.kubectl.run("exec", "ex", "-n", ns, "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                         check=False)
    assert r.returncode == 3 and r.stdout == "out\n" and "err" in r.stderr
    # -it with a terminal: kubectl needs a TTY of its own, given by `script`
    cmd = f"{node.kubectl.binary} --kubeconfig {node.kubectl.kubeconfig} exec -it ex -n {ns} -- sh"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], input="tty; echo $((6*7)); exit 4\n",
                       capture_output=True, text=True, timeout=60)
    assert "/dev/pts/" in r.stdout and "42" in r.stdout
    assert r.returncode == 4


def test_crash_loop_backs_off_growing(node):
    ns = _ns(node)
    _apply(node, ns, _pod("crash", "echo boom; exit 2"))

    def backing_off_twice():
        s = _state(_get(node, ns, "crash"))
        waiting = (s.get("state") or {}).get("waiting") or {}
        return s.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff" and s

    s = wait_for(backing_off_twice, timeout=60, what="second back-off")
    assert "back-off 20s" in s["state"]["waiting"]["message"]
    assert s["lastState"]["terminated"]["exitCode"] == 2
    assert s["lastState"]["terminated"]["reason"] == "Error"
    assert node.kubectl("logs", "crash", "-n", ns, "--previous") == "boom\n"


def test_oom_killed(node):
    ns = _ns(node)
    _apply(node, ns, _pod("oom", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
                          restartPolicy="Never",
                          container={"resources": {"limits": {"memory": "16Mi"}}}))
    pod = wait_for(lambda: (p := _get(node, ns, "oom"))["status"].get("phase") == "Failed" and p,
                   what="Failed")
    term = _state(pod)["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    assert pod["status"]["qosClass"] == "Burstable"


def test_env_from_configmap_secret_and_downward_api(node):
    ns = _ns(node)
    node.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=color=blue",
                 "--from-literal=size=L")
    node.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cr3t")
    _apply(node, ns, _pod("env", "env | sort; sleep 3600", container={
        "env": [
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                "divisor": "1Mi"}}},
            {"name": "GREETING", "value": "in $(MY_NS)"}],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "resources": {"limits": {"memory": "64Mi"}}}))
    pod = wait_for(lambda: (p := _get(node, ns, "env"))["status"].get("phase") == "Running" and p,
                   what="Running")
    out = wait_for(lambda: "PASSWORD" in (o := node.kubectl("logs", "env", "-n", ns)) and o,
                   what="env output")
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["COLOR"] == "blue" and env["PASSWORD"] == "s3cr3t"
    assert env["CFG_size"] == "L" and env["MY_NS"] == ns and env["GREETING"] == f"in {ns}"
    assert env["MY_IP"] == pod["status"]["podIP"] and env["MEM"] == "64"


def test_missing_configmap_is_a_config_error_not_a_crash(node):
    ns = _ns(node)
    _apply(node, ns, _pod("nocfg", "sleep 3600", container={"env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}))
    s = wait_for(lambda: ((_state(_get(node, ns, "nocfg")).get("state") or {}).get("waiting") or {})
                 .get("reason") == "CreateContainerConfigError" and True, what="config error")
    assert s
    node.kubectl("create", "configmap", "absent", "-n", ns, "--from-literal=k=v")
    wait_for(lambda: _get(node, ns, "nocfg")["status"].get("phase") == "Running", what="Running")


def test_bad_image_is_err_image_pull_then_backoff(node):
    ns = _ns(node)
    # Watch from before the pod exists: every status the agent writes is seen.
    p = subprocess.Popen([str(node.kubectl.binary), "--kubeconfig", str(node.kubectl.kubeconfig),
                          "get", "pods", "-n", ns, "--watch", "-o",
                          "jsonpath={.status.containerStatuses[0].state.waiting.reason}{\"\\n\"}"],
                         stdout=subprocess.PIPE, text=True)
    try:
        _apply(node, ns, _pod("bad", "true", container={"image": "registry.invalid/none:1.0"}))
        reasons = []
        while not {"ErrImagePull", "ImagePullBackOff"} <= set(reasons):
            line = p.stdout.readline()
            assert line, f"watch ended; saw {reasons}"
            reasons.append(line.strip())
    finally:
        p.kill()
        p.wait()
    assert reasons.index("ErrImagePull") < reasons.index("ImagePullBackOff")
    assert node.proc.poll() is None
    assert _get(node, ns, "bad")["status"]["phase"] == "Pending"


def test_grace_period_sigterm_then_confirmed_deletion(node):
    ns = _ns(node)
    _apply(node, ns, _pod("graceful", "trap 'echo got TERM; sleep 1; echo cleaned up; exit 0' TERM; "
                                      "echo started; while true; do sleep 0.1; done",
                          terminationGracePeriodSeconds=20))
    pod = wait_for(lambda: (p := _get(node, ns, "graceful"))["status"].get("phase") == "Running"
                   and "started" in node.kubectl("logs", "graceful", "-n", ns) and p, what="Running")
    uid = pod["metadata"]["uid"]
    node.kubectl("delete", "pod", "graceful", "-n", ns, "--wait=true", timeout=60)
    assert "NotFound" in node.kubectl.run("get", "pod", "graceful", "-n", ns, check=False).stderr
    log = (node.data_dir / "pods" / f"{ns}_graceful_{uid}" / "c" / "0.log").read_text()
    assert "got TERM" in log and "cleaned up" in log


def test_port_forward(node):
    ns = _ns(node)
    _apply(node, ns, _pod("web", "mkdir /w; echo forwarded-ok > /w/index.html; "
                                 "httpd -f -p 8080 -h /w"))
    wait_for(lambda: _get(node, ns, "web")["status"].get("phase") == "Running", what="Running")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    p = subprocess.Popen([str(node.kubectl.binary), "--kubeconfig", str(node.kubectl.kubeconfig),
                          "port-forward", "-n", ns, "pod/web", f"{local}:8080",
                          "--address", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    try:
        assert "Forwarding" in p.stdout.readline()

        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        assert wait_for(fetch, timeout=20, what="forwarded response") == "forwarded-ok\n"
    finally:
        p.kill()
        p.wait()


def test_agent_restart_keeps_running_pod(node):
    ns = _ns(node)
    _apply(node, ns, _pod("keep", "sleep 3600"))
    pod = wait_for(lambda: (p := _get(node, ns, "keep"))["status"].get("phase") == "Running" and p,
                   what="Running")
    before = _state(pod)["containerID"]
    node.stop_agent()
    node.start_agent()
    # A change after the restart is picked up, and the container was not replaced.
    node.kubectl("label", "pod", "keep", "-n", ns, "after=restart")
    pod = wait_for(lambda: (p := _get(node, ns, "keep"))["status"].get("phase") == "Running" and p,
                   what="Running")
    assert _state(pod)["containerID"] == before and _state(pod)["restartCount"] == 0
    r = node.kubectl.run("exec", "keep", "-n", ns, "--", "echo", "still-here")
    assert r.stdout == "still-here\n"
