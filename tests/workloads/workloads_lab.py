"""A lab cluster for the workload tests, driven with kubectl like a user would.

The lab has its own name and subnet (kyb-wl-N on 172.31.249.0/24), so it can run while the
default lab (`kyb lab up`, tests/lab) exists on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from kybernetes.lab import hosts as labhosts
from kybernetes.lab.lab import Lab
from kybtest import kyb, wait_for

NAME = "kyb-wl"
SUBNET = "172.31.249.0/24"
BRIDGE = f"{labhosts.link_prefix(NAME)}0"


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("kubectl", "containerd", "runc", "nsenter"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if labhosts.subnet_in_use(SUBNET) or labhosts.link_exists(BRIDGE) or \
            any(labhosts.netns_exists(f"{NAME}-{i}") for i in range(1, 4)):
        return f"a lab named {NAME} (or something on {SUBNET}) already exists here"
    return None


class Cluster:
    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.kubeconfig = data_dir / "kubeconfig.yaml"

    def up(self, nodes: int) -> None:
        kyb("lab", "up", "--nodes", str(nodes), "--name", NAME, "--subnet", SUBNET,
            "--data-dir", str(self.dir))

    def add(self) -> str:
        kyb("lab", "add", "--data-dir", str(self.dir))
        return Lab(self.dir).hosts[-1].name

    def down(self) -> None:
        kyb("lab", "down", "--data-dir", str(self.dir), check=False)

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in Lab(self.dir).hosts]

    def pids(self) -> list[int]:
        return [p["pid"] for p in Lab(self.dir).state["procs"]]

    # ---- kubectl ----

    def run(self, *args: str, input: str | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig),
                               "--cache-dir", str(self.dir / "kubectl-cache"), *args],
                              input=input, capture_output=True, text=True, timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        p = self.run(*args, input=input)
        assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
        return p.stdout

    def apply(self, ns: str, *manifests: dict) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(items))

    @contextlib.contextmanager
    def watch(self, kind: str, ns: str, selector: str):
        """`kubectl get -w` in the background; yields a function returning the (type, object)
        events seen so far, in order."""
        out = self.dir / f"watch-{uuid.uuid4().hex[:6]}.json"
        with open(out, "w") as f:
            p = subprocess.Popen(["kubectl", "--kubeconfig", str(self.kubeconfig), "get", kind,
                                  "-n", ns, "-l", selector, "-w", "--output-watch-events",
                                  "-o", "json"], stdout=f, stderr=subprocess.DEVNULL)
        try:
            # The watch starts with the current objects (ADDED): wait for them before acting.
            wait_for(lambda: out.stat().st_size > 0, 60, f"a watch on {kind}")
            yield lambda: list(_json_stream(out.read_text()))
        finally:
            p.terminate()
            p.wait(10)

    def get(self, kind: str, name: str = "", ns: str | None = None, *args: str) -> dict:
        where = ["-n", ns] if ns else []
        return json.loads(self.kubectl("get", kind, *([name] if name else []), *where, *args,
                                       "-o", "json"))

    def pods(self, ns: str, selector: str) -> list[dict]:
        return self.get("pods", "", ns, "-l", selector)["items"]

    def ready_nodes(self) -> set[str]:
        p = self.run("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return set()
        return {n["metadata"]["name"] for n in json.loads(p.stdout)["items"]
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (n.get("status") or {}).get("conditions") or [])}

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name


def _json_stream(text: str):
    decoder, i = json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        try:
            event, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:   # an event still being written
            return
        yield event["type"], event["object"]


def running(pod: dict) -> bool:
    status = pod.get("status") or {}
    return (not pod["metadata"].get("deletionTimestamp") and status.get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions") or []))


def condition(obj: dict, kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def busybox(command: str, **container) -> dict:
    return {"name": "c", "image": "busybox", "command": ["sh", "-c", command], **container}
