"""Pod volumes on a real node, and their pure rules. Behaviour matched: the kubelet's volume
plugins (pkg/volume/emptydir, hostpath type checks, configmap/secret/projected/downwardapi with
pkg/volume/util/atomic_writer.go's ..data swap; serviceaccount tokens from the TokenRequest API
bound to the pod; FailedMount "MountVolume.SetUp failed for volume ..." events)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat

import pytest
from hypothesis import given, settings, strategies as st

from kybernetes.kubelet import volumes as vol
from kubelet_node import (apply, busybox_pod, events, get_pod, new_namespace, running,
                          wait_for)

# ---- pure rules ----

_names = st.text("abcdefghij_-", min_size=1, max_size=6).filter(lambda s: not s.startswith("."))


@settings(max_examples=30, deadline=None)
@given(first=st.dictionaries(_names, st.binary(max_size=20), max_size=4),
       second=st.dictionaries(_names, st.binary(max_size=20), max_size=4))
def test_atomic_writer_shows_exactly_the_latest_payload(tmp_path_factory, first, second):
    target = tmp_path_factory.mktemp("aw") / "vol"
    for payload in (first, second):
        vol.write_atomic(target, {k: (v, 0o644) for k, v in payload.items()})
        visible = {p.name: p.read_bytes() for p in target.iterdir() if not p.name.startswith("..")}
        assert visible == payload
        assert all((target / k).is_symlink() for k in payload)
        # one timestamped directory: the old one went away with the swap
        hidden = [p for p in target.iterdir() if p.name.startswith("..") and not p.is_symlink()]
        assert len(hidden) == 1 and os.readlink(target / "..data") == hidden[0].name
    assert vol.write_atomic(target, {k: (v, 0o644) for k, v in second.items()}) is False


def test_object_payload_items_modes_and_optional():
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}
    every = vol.object_payload("ConfigMap", cm, {"name": "cm"}, 0o644, "configmap")
    assert every == {"a": (b"1", 0o644), "b": (b"2", 0o644), "bin": (b"\x00\x01", 0o644)}
    some = vol.object_payload("ConfigMap", cm, {"name": "cm", "items": [
        {"key": "a", "path": "dir/x.txt", "mode": 0o400}]}, 0o644, "configmap")
    assert some == {"dir/x.txt": (b"1", 0o400)}
    secret = {"data": {"pw": base64.b64encode(b"s3").decode()}}
    assert vol.object_payload("Secret", secret, {"name": "s"}, 0o600, "secret") == {"pw": (b"s3", 0o600)}
    with pytest.raises(LookupError, match='configmap "gone" not found'):
        vol.object_payload("ConfigMap", None, {"name": "gone"}, 0o644, "configmap")
    assert vol.object_payload("ConfigMap", None, {"name": "gone", "optional": True}, 0o644, "configmap") == {}
    with pytest.raises(LookupError, match="non-existent config key: nope"):
        vol.object_payload("ConfigMap", cm, {"name": "cm", "items": [{"key": "nope", "path": "n"}]},
                           0o644, "configmap")


def test_downward_payload():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"b": "2", "a": "1"}},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}}
    out = vol.downward_payload(pod, [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                             "divisor": "1Mi"}}], 0o644)
    assert out["labels"][0] == b'a="1"\nb="2"' and out["name"][0] == b"p" and out["mem"][0] == b"64"


def test_host_path_types(tmp_path):
    d = tmp_path / "made" / "deep"
    vol.check_host_path(str(d), "DirectoryOrCreate")
    assert d.is_dir()
    f = tmp_path / "f" / "file"
    vol.check_host_path(str(f), "FileOrCreate")
    assert f.is_file() and stat.S_IMODE(f.stat().st_mode) & 0o777 in (0o644, 0o644 & ~os.umask(0))
    vol.check_host_path(str(d), "Directory")
    vol.check_host_path(str(f), "File")
    with pytest.raises(LookupError, match="is not a directory"):
        vol.check_host_path(str(f), "Directory")
    with pytest.raises(LookupError, match="is not a file"):
        vol.check_host_path(str(d), "File")
    with pytest.raises(LookupError, match="is not a socket file"):
        vol.check_host_path(str(f), "Socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        vol.check_host_path(str(tmp_path / "sock"), "Socket")
    vol.check_host_path(str(tmp_path / "absent"), "")  # no type: no check


# ---- on a real node ----

def _logs(node, ns, name, container="c"):
    return node.kubectl.run("logs", name, "-n", ns, "-c", container, check=False).stdout


def test_two_containers_share_an_empty_dir_and_memory_medium_is_tmpfs(node):
    ns = new_namespace(node)
    pod = busybox_pod("share", "echo hello-from-writer > /data/msg; sleep 3600", container={
        "volumeMounts": [{"name": "d", "mountPath": "/data"}, {"name": "m", "mountPath": "/mem"}]})
    pod["spec"]["containers"].append({
        "name": "reader", "image": "busybox", "command": ["sh", "-c",
        "until [ -f /shared/msg ]; do sleep 0.1; done; cat /shared/msg; grep ' /mem ' /proc/mounts;"
        " sleep 3600"],
        "volumeMounts": [{"name": "d", "mountPath": "/shared", "readOnly": True},
                         {"name": "m", "mountPath": "/mem"}]})
    pod["spec"]["volumes"] = [{"name": "d", "emptyDir": {}},
                              {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}]
    apply(node, ns, pod)
    p = running(node, ns, "share")
    out = wait_for(lambda: "tmpfs" in (o := _logs(node, ns, "share", "reader")) and o,
                   what="reader output")
    assert out.startswith("hello-from-writer\n") and "size=8192k" in out
    r = node.kubectl.run("exec", "share", "-n", ns, "-c", "reader", "--", "touch", "/shared/x",
                         check=False)
    assert r.returncode != 0 and "Read-only" in r.stderr
    uid = p["metadata"]["uid"]
    tmpfs = node.data_dir / "volumes" / uid / "kubernetes.io~empty-dir" / "m"
    assert os.path.ismount(tmpfs)
    node.kubectl("delete", "pod", "share", "-n", ns, "--grace-period=1", "--wait=true", timeout=60)
    assert not os.path.ismount(tmpfs) and not (node.data_dir / "volumes" / uid).exists()


def test_configmap_secret_downward_volumes_and_update(node):
    ns = new_namespace(node)
    node.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=color=blue",
                 "--from-literal=size=L")
    node.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cr3t")
    apply(node, ns, busybox_pod("files", "sleep 3600", container={"volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "info", "mountPath": "/etc/info"},
        {"name": "cfg", "mountPath": "/etc/only-size", "subPath": "size"}]},
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}},
                 {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                 {"name": "info", "downwardAPI": {"items": [
                     {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                     {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]))
    running(node, ns, "files")

    def sh(cmd):
        return node.kubectl("exec", "files", "-n", ns, "--", "sh", "-c", cmd)

    assert sh("cat /etc/cfg/color /etc/sec/password /etc/info/ns") == f"blues3cr3t{ns}"
    assert sh("stat -L -c %a /etc/sec/password").strip() == "400"
    assert sh("readlink /etc/cfg/color").strip() == "..data/color"
    assert sh("cat /etc/only-size") == "L"
    node.kubectl("patch", "configmap", "cfg", "-n", ns, "-p", '{"data":{"color":"green"}}')
    wait_for(lambda: sh("cat /etc/cfg/color") == "green", timeout=40, what="updated file")


def test_projected_service_account_token_like_admission_adds(node):
    ns = new_namespace(node)
    # the serviceaccount and root-ca-cert-publisher controllers fill every namespace
    wait_for(lambda: node.kubectl.run("get", "configmap", "kube-root-ca.crt", "-n", ns,
                                      check=False).returncode == 0, what="kube-root-ca.crt")
    mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    apply(node, ns, busybox_pod("sa", "sleep 3600", container={"volumeMounts": [
        {"name": "kube-api-access-abcde", "mountPath": mount, "readOnly": True}]},
        serviceAccountName="default",
        volumes=[{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]))
    pod = running(node, ns, "sa")
    token = node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{mount}/token")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    bound = claims.get("kubernetes.io", {}).get("pod", {})
    assert bound.get("uid") == pod["metadata"]["uid"]
    assert node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{mount}/namespace") == ns
    assert node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{mount}/ca.crt").startswith("-----BEGIN")
    # the token authenticates against the API server as the service account
    who = node.kubectl.run("auth", "whoami", "-o", "json", "--token", token, check=False)
    if who.returncode == 0:
        assert f"system:serviceaccount:{ns}:default" in who.stdout


def test_host_path_and_claim_of_a_host_path_volume(node, tmp_path):
    ns = new_namespace(node)
    host_dir = tmp_path / "hp" / "made"
    pv_dir = tmp_path / "pv"
    apply(node, ns, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": "claim"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                              "volumeName": f"pv-{ns}", "resources": {"requests": {"storage": "1Gi"}}}})
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"pv-{ns}"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "manual",
                 "hostPath": {"path": str(pv_dir), "type": "DirectoryOrCreate"},
                 "claimRef": {"namespace": ns, "name": "claim"}}}))
    node.kubectl("patch", "pvc", "claim", "-n", ns, "--subresource=status", "--type=merge",
                 "-p", '{"status":{"phase":"Bound"}}')
    apply(node, ns, busybox_pod("hp", "echo via-hostpath > /host/out; echo via-claim > /claim/out; "
                                      "sleep 3600", container={"volumeMounts": [
                                          {"name": "h", "mountPath": "/host"},
                                          {"name": "p", "mountPath": "/claim"}]},
                                volumes=[{"name": "h", "hostPath": {"path": str(host_dir),
                                                                    "type": "DirectoryOrCreate"}},
                                         {"name": "p", "persistentVolumeClaim": {"claimName": "claim"}}]))
    running(node, ns, "hp")
    wait_for(lambda: (host_dir / "out").exists() and (pv_dir / "out").exists(), what="files on host")
    assert (host_dir / "out").read_text() == "via-hostpath\n"
    assert (pv_dir / "out").read_text() == "via-claim\n"
    # A wrong hostPath type keeps the pod waiting with a FailedMount event.
    apply(node, ns, busybox_pod("bad", "sleep 3600", container={"volumeMounts": [
        {"name": "h", "mountPath": "/h"}]},
        volumes=[{"name": "h", "hostPath": {"path": str(host_dir / "out"), "type": "Directory"}}]))
    ev = wait_for(lambda: [e for e in events(node, ns, "bad") if e["reason"] == "FailedMount"],
                  what="FailedMount event")
    assert ev[0]["type"] == "Warning"
    assert 'MountVolume.SetUp failed for volume "h"' in ev[0]["message"]
    assert "is not a directory" in ev[0]["message"]
    assert get_pod(node, ns, "bad")["status"].get("phase") == "Pending"
