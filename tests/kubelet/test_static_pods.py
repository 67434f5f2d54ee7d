"""Static pods: manifests in the agent's folder run without the API server deciding anything,
and show up as mirror pods (as kubelet's --pod-manifest-path)."""

from __future__ import annotations

import json
import subprocess

import pytest

from kubelet_node import NODE, new_namespace, wait_for

MIRROR = "kubernetes.io/config.mirror"


def manifest(ns: str, name: str, command: str, **meta) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": ns, **meta},
                       "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                           {"name": "c", "image": "busybox", "command": ["sh", "-c", command]}]}})


def find(node, ns: str, name: str) -> dict | None:
    r = node.kubectl.run("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def running_mirror(node, ns: str, name: str, *, not_uid: str | None = None,
                   hash_: str | None = None, timeout: float = 90) -> dict:
    def ok():
        p = find(node, ns, name)
        if not p or p["metadata"].get("deletionTimestamp") or p["metadata"]["uid"] == not_uid:
            return None
        if hash_ is not None and p["metadata"]["annotations"].get(MIRROR) == hash_:
            return None
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        return p if p["status"].get("phase") == "Running" and statuses and \
            "running" in statuses[0]["state"] else None
    return wait_for(ok, timeout=timeout, what=f"mirror pod {name} Running")


def containers(node) -> set[str]:
    out = subprocess.run(["ctr", "--address", str(node.data_dir / "containerd" / "containerd.sock"),
                          "-n", "k8s.io", "containers", "ls", "-q"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.fixture
def manifests(node):
    folder = node.data_dir / "manifests"
    written: list = []
    yield folder, written
    for p in written:
        p.unlink(missing_ok=True)


def test_static_pod_runs_and_is_mirrored(node, manifests):
    folder, written = manifests
    assert folder.is_dir()  # the agent created its default folder
    ns = new_namespace(node)
    path = folder / "web.json"
    written.append(path)
    path.write_text(manifest(ns, "web", "echo static-hello; sleep 3600", labels={"app": "web"}))
    name = f"web-{NODE}"
    pod = running_mirror(node, ns, name)
    meta = pod["metadata"]
    ann = meta["annotations"]
    assert ann["kubernetes.io/config.source"] == "file"
    assert ann[MIRROR] == ann["kubernetes.io/config.hash"]
    assert ann["kubernetes.io/config.seen"]
    assert meta["labels"] == {"app": "web"}
    node_uid = json.loads(node.kubectl("get", "node", NODE, "-o", "json"))["metadata"]["uid"]
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": NODE,
                                        "uid": node_uid, "controller": True}]
    assert pod["spec"]["nodeName"] == NODE
    assert wait_for(lambda: "static-hello" in node.kubectl("logs", name, "-n", ns),
                    what="logs of the static pod")
    # A hidden file is not a manifest.
    hidden = folder / ".draft.json"
    written.append(hidden)
    hidden.write_text(manifest(ns, "draft", "sleep 3600"))

    # Deleting the mirror pod through the API: it comes back; the static pod kept running.
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    node.kubectl("delete", "pod", name, "-n", ns, "--wait=false")
    again = running_mirror(node, ns, name, not_uid=meta["uid"])
    assert again["status"]["containerStatuses"][0]["containerID"] == cid
    assert again["status"]["containerStatuses"][0]["restartCount"] == 0
    assert again["metadata"]["annotations"][MIRROR] == ann[MIRROR]
    assert find(node, ns, f"draft-{NODE}") is None

    # Editing the manifest: a new pod (new hash) replaces the old one.
    path.write_text(manifest(ns, "web", "echo edited-hello; sleep 3600", labels={"app": "web2"}))
    edited = running_mirror(node, ns, name, hash_=ann[MIRROR])
    assert edited["metadata"]["labels"] == {"app": "web2"}
    assert edited["metadata"]["annotations"][MIRROR] == \
        edited["metadata"]["annotations"]["kubernetes.io/config.hash"]
    new_cid = edited["status"]["containerStatuses"][0]["containerID"]
    assert new_cid != cid
    assert wait_for(lambda: "edited-hello" in node.kubectl("logs", name, "-n", ns),
                    what="logs of the edited pod")
    wait_for(lambda: cid.split("//")[1] not in containers(node), what="old container removed")

    # Removing the manifest: the pod stops and its mirror pod goes.
    path.unlink()
    wait_for(lambda: find(node, ns, name) is None, what="mirror pod deleted")
    wait_for(lambda: new_cid.split("//")[1] not in containers(node), what="container removed")


def test_static_pod_survives_agent_restart_and_orphan_mirror_goes(node, manifests):
    folder, written = manifests
    ns = new_namespace(node)
    keep, gone = folder / "keep.yaml", folder / "gone.yaml"
    written += [keep, gone]
    keep.write_text(manifest(ns, "keep", "sleep 3600"))
    gone.write_text(manifest(ns, "gone", "sleep 3600"))
    before = running_mirror(node, ns, f"keep-{NODE}")
    running_mirror(node, ns, f"gone-{NODE}")
    node.stop_agent()
    gone.unlink()  # removed while the agent is down: its mirror pod is an orphan
    node.start_agent()
    wait_for(lambda: find(node, ns, f"gone-{NODE}") is None, what="orphaned mirror pod deleted")
    after = running_mirror(node, ns, f"keep-{NODE}")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["containerID"] == \
        before["status"]["containerStatuses"][0]["containerID"]
