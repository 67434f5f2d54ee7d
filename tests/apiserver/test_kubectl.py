"""Real kubectl (1.27, 1.30, 1.32, 1.33, fresh cache each) against a real `kyb apiserver`.

Every command of ../shared/kubectl-wire.md that needs no kubelet. Each test works in its own
namespace so the versions can share one server.
"""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
import yaml


@pytest.fixture
def ns(kubectl) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
    spec:
      replicas: 2
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: web
            image: nginx:1.25
            ports:
            - containerPort: 80
    """)


def test_api_resources(kubectl):
    out = kubectl("api-resources")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "po" in lines["pods"].split()
    assert "deploy" in lines["deployments"].split()
    assert "apps/v1" in lines["deployments"]
    assert "customresourcedefinitions" in lines
    namespaced = kubectl("api-resources", "--namespaced=false", "-o", "name")
    assert "nodes" in namespaced.split() and "pods" not in namespaced.split()


def test_default_namespaces_and_version(kubectl):
    names = kubectl("get", "namespaces", "-o", "name").split()
    for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{n}" in names
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["major"] == "1"


def test_create_get_formats(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    table = kubectl("-n", ns, "get", "deployments")
    header = table.splitlines()[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.splitlines()[1].split()[:2] == ["web", "0/2"]
    wide = kubectl("-n", ns, "get", "deploy", "-o", "wide").splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert "nginx:1.25" in wide[1] and "app=web" in wide[1]
    obj = yaml.safe_load(kubectl("-n", ns, "get", "deploy", "web", "-o", "yaml"))
    assert obj["metadata"]["generation"] == 1
    assert obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"  # defaulted
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    as_json = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert as_json["metadata"]["uid"] == obj["metadata"]["uid"]
    assert kubectl("-n", ns, "get", "deploy", "web", "-o",
                   "jsonpath={.spec.template.spec.containers[0].image}") == "nginx:1.25"
    cc = kubectl("-n", ns, "get", "deploy", "-o",
                 "custom-columns=N:.metadata.name,R:.spec.replicas").split()
    assert cc == ["N", "R", "web", "2"]
    labels = kubectl("-n", ns, "get", "deploy", "--show-labels")
    assert "app=web" in labels.splitlines()[1]
    everywhere = kubectl("get", "deployments", "-A")
    assert any(line.split()[:2] == [ns, "web"] for line in everywhere.splitlines())


def test_imperative_create(kubectl, ns):
    """kubectl 1.32+ sends these bodies as protobuf."""
    kubectl("-n", ns, "create", "deployment", "d1", "--image=busybox", "--replicas=3")
    kubectl("-n", ns, "create", "configmap", "c1", "--from-literal=a=b")
    kubectl("-n", ns, "create", "secret", "generic", "s1", "--from-literal=pw=hunter2")
    kubectl("-n", ns, "create", "service", "clusterip", "svc1", "--tcp=80:8080")
    kubectl("-n", ns, "create", "serviceaccount", "sa1")
    kubectl("-n", ns, "create", "job", "j1", "--image=busybox", "--", "echo", "hi")
    dep = json.loads(kubectl("-n", ns, "get", "deploy", "d1", "-o", "json"))
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    cm = json.loads(kubectl("-n", ns, "get", "cm", "c1", "-o", "json"))
    assert cm["data"] == {"a": "b"}
    sec = json.loads(kubectl("-n", ns, "get", "secret", "s1", "-o", "json"))
    assert sec["data"] == {"pw": "aHVudGVyMg=="} and sec["type"] == "Opaque"
    svc = json.loads(kubectl("-n", ns, "get", "svc", "svc1", "-o", "json"))
    assert svc["spec"]["clusterIP"].startswith("10.43.")
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    job = json.loads(kubectl("-n", ns, "get", "job", "j1", "-o", "json"))
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    kubectl("-n", ns, "get", "sa", "sa1")


def test_apply_client_side(kubectl, ns):
    out = kubectl("-n", ns, "apply", "-f", "-", input=DEPLOYMENT)
    assert "created" in out
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    changed = DEPLOYMENT.replace("nginx:1.25", "nginx:1.26").replace("replicas: 2", "replicas: 4")
    out = kubectl("-n", ns, "apply", "-f", "-", input=changed)
    assert "configured" in out
    obj2 = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    c = obj2["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.26" and c["ports"][0]["containerPort"] == 80
    assert obj2["spec"]["replicas"] == 4
    assert obj2["metadata"]["generation"] == 2
    assert "unchanged" in kubectl("-n", ns, "apply", "-f", "-", input=changed)


def test_apply_server_side(kubectl, ns):
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n  b: '2'\n"
    assert "serverside-applied" in kubectl("-n", ns, "apply", "--server-side", "-f", "-", input=cm)
    obj = json.loads(kubectl("-n", ns, "get", "cm", "ssa", "-o", "json", "--show-managed-fields"))
    managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:a" in managers["kubectl"]["fieldsV1"]["f:data"]
    # Re-apply without b: the field this manager owned alone is removed.
    cm2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '3'\n"
    kubectl("-n", ns, "apply", "--server-side", "-f", "-", input=cm2)
    data = json.loads(kubectl("-n", ns, "get", "cm", "ssa", "-o", "json"))["data"]
    assert data == {"a": "3"}
    # Another manager setting the same field to another value conflicts...
    p = kubectl.run("-n", ns, "apply", "--server-side", "--field-manager=other", "-f", "-",
                    input=cm2.replace("'3'", "'4'"), check=False)
    assert p.returncode != 0 and "conflict" in p.stderr.lower()
    # ...unless forced.
    kubectl("-n", ns, "apply", "--server-side", "--field-manager=other", "--force-conflicts",
            "-f", "-", input=cm2.replace("'3'", "'4'"))
    assert json.loads(kubectl("-n", ns, "get", "cm", "ssa", "-o", "json"))["data"] == {"a": "4"}


def test_replace_and_conflict(kubectl, ns):
    kubectl("-n", ns, "create", "configmap", "r1", "--from-literal=a=1")
    obj = json.loads(kubectl("-n", ns, "get", "cm", "r1", "-o", "json"))
    obj["data"]["a"] = "2"
    kubectl("-n", ns, "replace", "-f", "-", input=json.dumps(obj))
    assert json.loads(kubectl("-n", ns, "get", "cm", "r1", "-o", "json"))["data"]["a"] == "2"
    obj["data"]["a"] = "3"  # still carries the old resourceVersion
    p = kubectl.run("-n", ns, "replace", "-f", "-", input=json.dumps(obj), check=False)
    assert p.returncode != 0 and "the object has been modified" in p.stderr


def test_patch_types(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    kubectl("-n", ns, "patch", "deploy", "web", "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}')
    names = kubectl("-n", ns, "get", "deploy", "web", "-o",
                    "jsonpath={.spec.template.spec.containers[*].name}").split()
    # Strategic merge by name keeps "web"; the patch's new item comes first, as in the docs'
    # "Update API Objects in Place Using kubectl patch" example.
    assert names == ["side", "web"]
    kubectl("-n", ns, "patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":5}}')
    kubectl("-n", ns, "patch", "deploy", "web", "--type=json",
            "-p", '[{"op":"replace","path":"/metadata/labels/app","value":"changed"}]')
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert obj["spec"]["replicas"] == 5 and obj["metadata"]["labels"]["app"] == "changed"
    bad = kubectl.run("-n", ns, "patch", "deploy", "web", "--type=json",
                      "-p", '[{"op":"test","path":"/spec/replicas","value":1}]', check=False)
    assert bad.returncode != 0


def test_edit_label_annotate_scale(kubectl, ns, tmp_path):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/replicas: 2/replicas: 6/' \"$1\"\n")
    editor.chmod(0o755)
    kubectl("-n", ns, "edit", "deploy", "web", env={"KUBE_EDITOR": str(editor)})
    assert kubectl("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "6"
    kubectl("-n", ns, "label", "deploy", "web", "tier=front")
    kubectl("-n", ns, "annotate", "deploy", "web", "note=hello")
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert obj["metadata"]["labels"]["tier"] == "front"
    assert obj["metadata"]["annotations"]["note"] == "hello"
    assert kubectl("-n", ns, "get", "deploy", "-l", "tier=front", "-o", "name").strip() == \
        "deployment.apps/web"
    assert kubectl("-n", ns, "get", "deploy", "-l", "tier!=front", "-o", "name").strip() == ""
    kubectl("-n", ns, "label", "deploy", "web", "tier-")
    kubectl("-n", ns, "scale", "deploy", "web", "--replicas=1")
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert obj["spec"]["replicas"] == 1 and "tier" not in obj["metadata"]["labels"]


def test_chunked_list(kubectl, ns):
    for i in range(7):
        kubectl("-n", ns, "create", "configmap", f"c{i}")
    p = kubectl.run("-n", ns, "get", "cm", "--chunk-size=2", "-o", "name", "-v=6")
    names = [n for n in p.stdout.split() if n != "configmap/kube-root-ca.crt"]
    assert names == [f"configmap/c{i}" for i in range(7)]
    assert p.stderr.count("continue=") >= 3  # pages of two, each continuing the last


def test_dry_run_server(kubectl, ns):
    out = kubectl("-n", ns, "create", "configmap", "dry", "--from-literal=a=b",
                  "--dry-run=server", "-o", "json")
    assert json.loads(out)["data"] == {"a": "b"}
    assert kubectl.run("-n", ns, "get", "cm", "dry", check=False).returncode != 0
    kubectl("-n", ns, "create", "configmap", "real")
    kubectl("-n", ns, "delete", "cm", "real", "--dry-run=server")
    kubectl("-n", ns, "get", "cm", "real")


def test_delete_with_finalizer_and_wait(kubectl, ns):
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    kubectl("-n", ns, "create", "-f", "-", input=json.dumps(cm))
    kubectl("-n", ns, "delete", "cm", "held", "--wait=false")
    obj = json.loads(kubectl("-n", ns, "get", "cm", "held", "-o", "json"))
    assert obj["metadata"]["deletionTimestamp"]
    import subprocess
    import sys

    waiter = subprocess.Popen(
        [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir",
         str(kubectl.cache_dir), "-n", ns, "wait", "--for=delete", "cm/held", "--timeout=30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kubectl("-n", ns, "patch", "cm", "held", "--type=json",
            "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert kubectl.run("-n", ns, "get", "cm", "held", check=False).returncode != 0


@pytest.mark.parametrize("cascade,finalizer", [("orphan", "orphan"), ("foreground", "foregroundDeletion")])
def test_cascade_sets_finalizer(kubectl, ns, cascade, finalizer):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    kubectl("-n", ns, "delete", "deploy", "web", f"--cascade={cascade}", "--wait=false")
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert finalizer in obj["metadata"]["finalizers"]
    assert obj["metadata"]["deletionTimestamp"]


def test_cascade_background_deletes(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    kubectl("-n", ns, "delete", "deploy", "web", "--cascade=background")
    assert kubectl.run("-n", ns, "get", "deploy", "web", check=False).returncode != 0


def test_explain(kubectl):
    out = kubectl("explain", "deployment.spec.replicas")
    assert "replicas" in out.lower() and "integer" in out.lower()


def test_auth_can_i(kubectl):
    assert kubectl("auth", "can-i", "create", "pods").strip() == "yes"


def test_wait_for_condition(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    import subprocess

    waiter = subprocess.Popen(
        [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir",
         str(kubectl.cache_dir), "-n", ns, "wait", "--for=condition=Available", "deploy/web",
         "--timeout=30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = {"conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                              "message": "ok"}]}
    kubectl("-n", ns, "patch", "deploy", "web", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert "condition met" in out


def test_get_watch(kubectl, ns):
    import subprocess
    import time

    watcher = subprocess.Popen(
        [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir",
         str(kubectl.cache_dir), "-n", ns, "get", "cm", "-w", "--request-timeout=8s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    kubectl("-n", ns, "create", "configmap", "watched")
    try:
        out, _ = watcher.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        watcher.kill()
        out, _ = watcher.communicate()
    assert any(line.split()[:1] == ["watched"] for line in out.splitlines()), out


def test_describe(kubectl, ns):
    kubectl("-n", ns, "create", "-f", "-", input=DEPLOYMENT)
    out = kubectl("-n", ns, "describe", "deploy", "web")
    assert "Name:" in out and "web" in out and "nginx:1.25" in out
    assert "RollingUpdate" in out


def test_errors_are_statuses(kubectl, ns):
    p = kubectl.run("-n", ns, "get", "deploy", "missing", check=False)
    assert p.returncode != 0 and 'deployments.apps "missing" not found' in p.stderr
    kubectl("-n", ns, "create", "configmap", "dup")
    p = kubectl.run("-n", ns, "create", "configmap", "dup", check=False)
    assert 'configmaps "dup" already exists' in p.stderr
    bad = DEPLOYMENT.replace("image: nginx:1.25", "image: ''")
    p = kubectl.run("-n", ns, "create", "-f", "-", input=bad, check=False)
    assert "is invalid" in p.stderr and "spec.template.spec.containers[0].image" in p.stderr
    unknown = DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  bogus: 1")
    p = kubectl.run("-n", ns, "create", "-f", "-", input=unknown, check=False)
    assert 'unknown field "spec.bogus"' in p.stderr


def test_service_account_token(kubectl, ns, apiserver):
    """`kubectl create token` issues a JWT that then authenticates as the ServiceAccount."""
    kubectl("-n", ns, "create", "serviceaccount", "robot")
    token = kubectl("-n", ns, "create", "token", "robot").strip()
    assert token.count(".") == 2
    who = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                  "--token", token, check=False) if kubectl.binary.name >= "kubectl.1.28" else None
    if who is not None:
        assert who == f"system:serviceaccount:{ns}:robot"
    out = kubectl("get", "ns", ns, "-o", "name", "--token", token)
    assert out.strip() == f"namespace/{ns}"
    p = kubectl.run("get", "ns", "--token", token[:-4] + "AAAA", check=False)
    assert p.returncode != 0 and "Unauthorized" in p.stderr


def test_anonymous_is_unauthorized(apiserver):
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(apiserver.data_dir / "tls" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{apiserver.url}/api/v1/namespaces", context=ctx, timeout=5)
    assert e.value.code == 401
    body = json.loads(e.value.read())
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
    with urllib.request.urlopen(f"{apiserver.url}/readyz", context=ctx, timeout=5) as r:
        assert r.status == 200


def test_service_type_change_allocates_and_releases_node_ports(kubectl, ns):
    """ClusterIP → NodePort allocates a node port; back to ClusterIP drops and frees it."""
    kubectl("-n", ns, "create", "service", "clusterip", "flip", "--tcp=80:8080")
    kubectl("-n", ns, "patch", "svc", "flip", "-p", '{"spec":{"type":"NodePort"}}')
    port = json.loads(kubectl("-n", ns, "get", "svc", "flip", "-o", "json"))["spec"]["ports"][0]
    assert 30000 <= port["nodePort"] <= 32767
    kubectl("-n", ns, "patch", "svc", "flip", "-p", '{"spec":{"type":"ClusterIP"}}')
    again = json.loads(kubectl("-n", ns, "get", "svc", "flip", "-o", "json"))["spec"]["ports"][0]
    assert "nodePort" not in again
    taker = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taker"},
             "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port["nodePort"]}]}}
    kubectl("-n", ns, "create", "-f", "-", input=json.dumps(taker))  # the port was freed
