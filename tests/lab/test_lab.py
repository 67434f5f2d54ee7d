"""`kyb lab`: a two-host cluster of network namespaces, used from this machine with kubectl.

The hosts run real agents (kubelet + containerd), the overlay and kube-proxy; the test checks
the nodes register Ready under their host names, a pod on one host serves HTTP to a pod on the
other over the overlay, `cut`/`heal` take a host off the lab bridge and back, and `down` leaves
no namespace, link or process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kybernetes.lab import hosts as labhosts
from kybernetes.lab.lab import BRIDGE, SUBNET, Lab
from kybtest import kyb, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("kubectl") or not shutil.which("containerd"),
    reason="needs root, kubectl and containerd")

HOSTS = ("kyb-lab-1", "kyb-lab-2")
BUSYBOX = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if labhosts.subnet_in_use(SUBNET) or labhosts.link_exists(BRIDGE) or \
            any(labhosts.netns_exists(h) for h in HOSTS):
        pytest.skip(f"a lab (or something on {SUBNET}) already exists on this machine")
    d = tmp_path_factory.mktemp("lab")
    try:
        kyb("lab", "up", "--nodes", "2", "--data-dir", str(d))
        yield d
    finally:
        kyb("lab", "down", "--data-dir", str(d), check=False)


def kubectl(lab: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    p = subprocess.run(["kubectl", "--kubeconfig", str(lab / "kubeconfig.yaml"), *args],
                       input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
    return p.stdout


def ready_nodes(lab: Path) -> set[str]:
    out = json.loads(kubectl(lab, "get", "nodes", "-o", "json", check=False) or '{"items":[]}')
    return {n["metadata"]["name"] for n in out["items"]
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in (n.get("status") or {}).get("conditions") or [])}


def test_nodes_register_ready_under_their_host_names(lab):
    wait_for(lambda: ready_nodes(lab) >= set(HOSTS), 60, "Ready nodes")
    wide = kubectl(lab, "get", "nodes", "-o", "wide")
    assert "172.31.250.11" in wide and "172.31.250.12" in wide


def pod(name: str, node: str, command: str, restart: str = "Always") -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": node, "restartPolicy": restart, "containers": [
                           {"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", command]}]}})


def pod_status(lab: Path, name: str) -> dict:
    out = kubectl(lab, "get", "pod", name, "-o", "json", check=False)
    return json.loads(out).get("status", {}) if out else {}


def test_pod_to_pod_http_across_nodes(lab):
    wait_for(lambda: ready_nodes(lab) >= set(HOSTS), 60, "Ready nodes")
    serve = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && " \
            "exec httpd -f -p 8080 -h /www"
    kubectl(lab, "apply", "-f", "-", input=pod("web", HOSTS[0], serve))
    web = wait_for(lambda: (s := pod_status(lab, "web")).get("phase") == "Running"
                   and s.get("podIP") and s, 90, "the web pod")
    # busybox wget crashes in this image; nc speaks the HTTP request by hand.
    fetch = ("for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
             f"nc -w 3 {web['podIP']} 8080 && exit 0; sleep 1; done; exit 1")
    kubectl(lab, "apply", "-f", "-", input=pod("client", HOSTS[1], fetch, restart="Never"))
    done = wait_for(lambda: pod_status(lab, "client").get("phase") in ("Succeeded", "Failed")
                    and pod_status(lab, "client"), 90, "the client pod")
    logs = kubectl(lab, "logs", "client", check=False)
    assert done["phase"] == "Succeeded", logs
    assert "200 OK" in logs and "hello-from-web" in logs
    assert done["podIP"].startswith("10.42.") and done["podIP"] != web["podIP"]


def test_exec_cut_and_heal(lab):
    peer = "172.31.250.12"
    ping = ["busybox", "ping", "-A", "-c", "1", "-W", "2", peer]
    assert kyb("lab", "exec", "--data-dir", str(lab), HOSTS[0], "--", *ping,
               check=False).returncode == 0
    kyb("lab", "cut", "--data-dir", str(lab), HOSTS[1])
    try:
        assert kyb("lab", "exec", "--data-dir", str(lab), HOSTS[0], "--", *ping,
                   check=False).returncode != 0
    finally:
        kyb("lab", "heal", "--data-dir", str(lab), HOSTS[1])
    wait_for(lambda: kyb("lab", "exec", "--data-dir", str(lab), HOSTS[0], "--", *ping,
                         check=False).returncode == 0, 60, "the healed link")


def test_down_leaves_nothing(lab):
    pids = [p["pid"] for p in Lab(lab).state["procs"]]
    assert pids
    kyb("lab", "down", "--data-dir", str(lab))
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(h in names for h in HOSTS)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "kyblab" not in links
    assert not any(Lab._alive(p) for p in pids)
    assert not (lab / "lab.json").exists()
