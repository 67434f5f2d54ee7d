"""Probes, lifecycle hooks and /stats/summary on a real node. Behaviour matched: the kubelet's
prober (pkg/kubelet/prober: thresholds, "Liveness probe failed: ..." Unhealthy events, Killing
"Container c failed liveness probe, will be restarted", readiness → ContainersReady/Ready),
lifecycle handlers (postStart before the container counts as started; preStop inside the grace
period) and the summary API (k8s.io/kubelet/pkg/apis/stats/v1alpha1)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kybernetes.kubelet import probes
from kubelet_node import (NODE, apply, busybox_pod, events, get_pod, new_namespace, pod_story,
                          running, wait_for)


def _cond(pod: dict, type_: str) -> str | None:
    return next((c["status"] for c in pod["status"].get("conditions") or ()
                 if c["type"] == type_), None)


# ---- pure parts ----

def test_probe_ports_resolve_by_number_or_name():
    c = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert probes.resolve_port(81, c) == 81 and probes.resolve_port("82", c) == 82
    assert probes.resolve_port("http", c) == 8080
    with pytest.raises(ValueError):
        probes.resolve_port("nope", c)


def test_http_and_tcp_actions_against_a_local_server():
    async def main():
        seen = {}

        async def handle(reader, writer):
            data = await reader.read(4096)
            if data:
                seen.setdefault("request", data.decode())
            code = b"200 OK" if b"GET /ok" in data else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            ok = await probes.run_action(None, {"httpGet": {"path": "/ok", "port": port,
                                         "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}},
                                         {}, "", "127.0.0.1", 2)
            bad = await probes.run_action(None, {"httpGet": {"path": "/bad", "port": port}},
                                          {}, "", "127.0.0.1", 2)
            tcp = await probes.run_action(None, {"tcpSocket": {"port": port}}, {}, "", "127.0.0.1", 2)
        closed = await probes.run_action(None, {"tcpSocket": {"port": port}}, {}, "", "127.0.0.1", 2)
        return seen, ok, bad, tcp, closed

    seen, ok, bad, tcp, closed = asyncio.run(main())
    assert ok.ok and "x-probe: yes" in seen["request"].lower()
    assert "kube-probe/" in seen["request"]
    assert not bad.ok and bad.message == "HTTP probe failed with statuscode: 503"
    assert tcp.ok and not closed.ok and "connection refused" in closed.message


# ---- on a real node ----

def test_failing_liveness_probe_restarts_the_container(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod("live", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600",
                                terminationGracePeriodSeconds=1, container={"livenessProbe": {
                                    "exec": {"command": ["cat", "/tmp/healthy"]},
                                    "periodSeconds": 1, "failureThreshold": 2}}))
    pod = wait_for(lambda: (p := get_pod(node, ns, "live"))["status"].get("containerStatuses", [{}])[0]
                   .get("restartCount", 0) >= 1 and p, timeout=60, what="a restart")
    s = pod["status"]["containerStatuses"][0]
    assert "terminated" in s["lastState"]
    evs = events(node, ns, "live")
    unhealthy = [e for e in evs if e["reason"] == "Unhealthy"]
    assert unhealthy and unhealthy[0]["type"] == "Warning"
    assert unhealthy[0]["message"].startswith("Liveness probe failed: ")
    assert "No such file or directory" in unhealthy[0]["message"]
    assert any(e["reason"] == "Killing" and
               e["message"] == "Container c failed liveness probe, will be restarted" for e in evs)


def test_readiness_probe_gates_ready_condition(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod("ready", "mkdir /w; httpd -f -p 8080 -h /w", container={
        "ports": [{"name": "web", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ok.txt", "port": "web"}, "periodSeconds": 1,
                           "failureThreshold": 1}}))
    pod = running(node, ns, "ready")
    assert _cond(pod, "Ready") == "False" and _cond(pod, "ContainersReady") == "False"
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    node.kubectl("exec", "ready", "-n", ns, "--", "sh", "-c", "echo ok > /w/ok.txt")
    pod = wait_for(lambda: _cond(p := get_pod(node, ns, "ready"), "Ready") == "True" and p,
                   what="Ready", explain=lambda: pod_story(node, ns, "ready"))
    assert _cond(pod, "ContainersReady") == "True"
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    node.kubectl("exec", "ready", "-n", ns, "--", "rm", "/w/ok.txt")
    wait_for(lambda: _cond(get_pod(node, ns, "ready"), "Ready") == "False", what="not Ready",
             explain=lambda: pod_story(node, ns, "ready"))
    assert any(e["reason"] == "Unhealthy" and e["message"].startswith("Readiness probe failed: ")
               for e in events(node, ns, "ready"))
    assert get_pod(node, ns, "ready")["status"].get("containerStatuses", [{}])[0]["restartCount"] == 0


def test_startup_probe_holds_back_started_and_ready(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod("slow", "sleep 3; touch /tmp/up; sleep 3600", container={
        "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 1,
                         "failureThreshold": 30}}))
    pod = running(node, ns, "slow")
    s = pod["status"]["containerStatuses"][0]
    if not (s["started"] or s["ready"]):  # seen before the probe passed
        assert _cond(pod, "Ready") == "False"
    pod = wait_for(lambda: (p := get_pod(node, ns, "slow"))["status"].get("containerStatuses", [{}])[0]
                   ["started"] and p, what="started")
    assert pod["status"]["containerStatuses"][0]["ready"] is True and _cond(pod, "Ready") == "True"


def test_post_start_and_pre_stop_hooks(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod(
        "hooks", "until [ -f /tmp/poststart ]; do sleep 0.1; done; cat /tmp/poststart; "
                 "while true; do sleep 0.1; done",
        terminationGracePeriodSeconds=3,
        container={"lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo from-post-start > /tmp/poststart"]}},
            "preStop": {"exec": {"command": ["sh", "-c",
                                             "echo pre-stop-ran > /proc/1/fd/1; sleep 1"]}}}}))
    pod = running(node, ns, "hooks")
    wait_for(lambda: "from-post-start" in node.kubectl("logs", "hooks", "-n", ns), what="hook output")
    uid = pod["metadata"]["uid"]
    node.kubectl("delete", "pod", "hooks", "-n", ns, "--wait=true", timeout=60)
    log = (node.data_dir / "pods" / f"{ns}_hooks_{uid}" / "c" / "0.log").read_text()
    assert "pre-stop-ran" in log


def test_failed_post_start_hook_kills_the_container(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod("badhook", "sleep 3600", terminationGracePeriodSeconds=1,
                                container={"lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}}))
    ev = wait_for(lambda: [e for e in events(node, ns, "badhook")
                           if e["reason"] == "FailedPostStartHook"], what="FailedPostStartHook")
    assert ev[0]["type"] == "Warning"
    wait_for(lambda: get_pod(node, ns, "badhook")["status"].get("containerStatuses", [{}])[0]
             .get("restartCount", 0) >= 1, what="restart after the failed hook")


def test_stats_summary_has_the_pod(node):
    ns = new_namespace(node)
    apply(node, ns, busybox_pod("busy", "x=$(head -c 2000000 /dev/zero | tr '\\0' a); "
                                        "while true; do :; done"))
    pod = running(node, ns, "busy")

    def pod_stats():
        raw = node.kubectl.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary",
                               check=False)
        if raw.returncode:
            return None
        summary = json.loads(raw.stdout)
        mine = [p for p in summary["pods"] if p["podRef"]["uid"] == pod["metadata"]["uid"]]
        return mine and mine[0]["cpu"]["usageNanoCores"] > 0 and (summary, mine[0])

    summary, mine = wait_for(pod_stats, timeout=30, what="pod in the summary")
    assert summary["node"]["nodeName"] == NODE
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    assert summary["node"]["cpu"]["usageCoreNanoSeconds"] > 0
    assert mine["podRef"] == {"name": "busy", "namespace": ns, "uid": pod["metadata"]["uid"]}
    c = mine["containers"][0]
    assert c["name"] == "c" and c["memory"]["workingSetBytes"] > 0
    assert c["cpu"]["usageCoreNanoSeconds"] > 0
    assert mine["memory"]["workingSetBytes"] >= c["memory"]["workingSetBytes"]
    node.kubectl("delete", "pod", "busy", "-n", ns, "--grace-period=1", "--wait=false")
