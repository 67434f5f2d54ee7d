"""Helpers for the node tests: an API server, `kyb agent` with its own containerd, kubectl 1.33."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kybtest as root  # noqa: E402  (the shared helpers: start_apiserver, Kubectl, ...)


NODE = "kyb-test-node"
BRIDGE = "kybt0"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("containerd", "runc", "ctr", "busybox"):
        if not shutil.which(tool) and not Path(f"/bin/{tool}").exists():
            return f"{tool} is not installed"
    if not Path("/usr/lib/cni/bridge").exists():
        return "containernetworking-plugins is not installed"
    if root.kubectl_binary("1.33") is None:
        return "kubectl 1.33 is not installed"
    return None


class Node:
    def __init__(self, base: Path, *, bridge: str = BRIDGE, pod_cidr: str = "10.243.0.0/24",
                 agent_args: tuple[str, ...] = (),
                 controllers: str = "serviceaccount,root-ca-cert-publisher"):
        self.base = base
        self.bridge, self.pod_cidr, self.agent_args = bridge, pod_cidr, tuple(agent_args)
        self.api = root.start_apiserver(base / "api")
        self.data_dir = base / "agent"
        self.port = root.free_port()
        self.proc: subprocess.Popen | None = None
        self.kubectl = root.Kubectl(root.kubectl_binary("1.33"), self.api.kubeconfig,
                                    base / "kubectl-cache")
        # Like a cluster: every namespace gets its `default` ServiceAccount and kube-root-ca.crt,
        # which the kube-api-access volume the API server adds to pods needs.
        self.controllers = root.start_component(
            ["controller-manager", "--kubeconfig", str(self.api.kubeconfig), "--controllers",
             controllers, "--leader-elect=false"],
            base / "controller-manager.log")

    def start_agent(self) -> None:
        readies = self.log().count("agent ready")
        self.proc = root.start_component(
            ["agent", "--kubeconfig", str(self.api.kubeconfig), "--data-dir", str(self.data_dir),
             "--kubelet-port", str(self.port), "--node-name", NODE, "--node-ip", "127.0.0.1",
             "--cni-bridge", self.bridge, "--pod-cidr", self.pod_cidr, *self._eviction_args(),
             *self.agent_args],
            self.base / "agent.log")
        # Patient: a first start imports the images into the agent's registry mirror, which
        # takes minutes on a busy 2-core machine.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            if self.log().count("agent ready") > readies:
                return
            time.sleep(0.2)
        raise AssertionError("agent not ready:\n" + self.log())

    def _eviction_args(self) -> tuple[str, ...]:
        """Memory only, unless a test says otherwise: the disk thresholds would refuse every
        pod on a machine whose disk happens to be nearly full."""
        if any(a.startswith("--eviction-hard") for a in self.agent_args):
            return ()
        return ("--eviction-hard", "memory.available<100Mi")

    def stop_controllers(self) -> None:
        root.stop_process(self.controllers)

    def stop_agent(self) -> None:
        if self.proc:
            root.stop_process(self.proc, timeout=30)
            self.proc = None

    def log(self) -> str:
        p = self.base / "agent.log"
        return p.read_text() if p.exists() else ""


def wait_for(fn, timeout: float = 60, interval: float = 0.3, what: str = "condition",
             explain=None):
    """fn() until it is truthy; on timeout, the message adds explain() (what the node saw)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    detail = f"\n{explain()}" if explain else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}{detail}")


def pod_story(node, ns: str, name: str, log_lines: int = 60) -> str:
    """A pod's status, its events and the agent log's tail: for failure messages."""
    import json
    status = node.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    try:
        status = json.dumps(json.loads(status).get("status"), indent=1)
    except ValueError:
        pass
    evs = "\n".join(f"{e.get('lastTimestamp')} {e['reason']} x{e.get('count')}: {e['message']}"
                    for e in events(node, ns, name))
    tail = "\n".join(node.log().splitlines()[-log_lines:])
    return f"status: {status}\nevents:\n{evs}\nagent log:\n{tail}"


# ---- small helpers shared by the node tests ----

def new_namespace(node) -> str:
    import uuid
    name = f"t-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    return name


def apply(node, ns: str, manifest: dict) -> None:
    import json
    manifest.setdefault("metadata", {})["namespace"] = ns
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def busybox_pod(name: str, command: str, **spec) -> dict:
    container = {"name": "c", "image": "busybox", "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "containers": [container], **spec}}


def get_pod(node, ns: str, name: str) -> dict:
    import json
    return json.loads(node.kubectl("get", "pod", name, "-n", ns, "-o", "json"))


def running(node, ns: str, name: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (p := get_pod(node, ns, name))["status"].get("phase") == "Running"
                    and p, timeout=timeout, what=f"{name} Running")


def events(node, ns: str, name: str) -> list[dict]:
    import json
    out = json.loads(node.kubectl("get", "events", "-n", ns, "-o", "json"))
    return [e for e in out["items"] if e["involvedObject"].get("name") == name]
