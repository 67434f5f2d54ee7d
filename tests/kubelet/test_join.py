"""`kyb agent --server URL --token K10<ca hash>::<secret>`: a real agent joins a cluster.

As k3s/kubeadm: the agent pins the CA with the token's hash, gets a client certificate
(system:node:NAME) through a CertificateSigningRequest that the controller manager auto-approves
and signs, then a CA-signed serving certificate the same way, so the API server verifies the
kubelet when it proxies `kubectl logs`. A token with the wrong CA hash is refused.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from cryptography import x509

from kubelet_node import _skip_reason, root, wait_for

NAME = "kyb-join-node"
BRIDGE = "kybj0"


@pytest.fixture
def cluster(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    api = root.start_apiserver(tmp_path / "api")
    tls = api.data_dir / "tls"
    cm = root.start_component(
        ["controller-manager", "--kubeconfig", str(api.kubeconfig), "--leader-elect=false",
         "--controllers", "csrapproving,csrsigning,serviceaccount,root-ca-cert-publisher",
         "--cluster-signing-cert-file", str(tls / "ca.crt"),
         "--cluster-signing-key-file", str(tls / "ca.key")], tmp_path / "cm.log")
    kubectl = root.Kubectl(root.kubectl_binary("1.33"), api.kubeconfig, tmp_path / "cache")
    try:
        yield api, kubectl
    finally:
        root.stop_process(cm)
        api.stop()


def _agent(tmp_path, api, token: str, log: str) -> subprocess.Popen:
    return root.start_component(
        ["agent", "--server", api.url, "--token", token, "--data-dir", str(tmp_path / "agent"),
         "--kubelet-port", str(root.free_port()), "--node-name", NAME, "--node-ip", "127.0.0.1",
         "--cni-bridge", BRIDGE, "--pod-cidr", "10.244.7.0/24", "--remove-pods-on-exit"],
        tmp_path / log)


def _stop_agent(tmp_path, proc: subprocess.Popen) -> None:
    root.stop_process(proc, timeout=30)
    subprocess.run(["umount", "-R", str(tmp_path / "agent" / "containerd")],
                   stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "link", "del", BRIDGE], stderr=subprocess.DEVNULL)


def test_wrong_ca_hash_is_refused(cluster, tmp_path):
    api, kubectl = cluster
    secret = (api.data_dir / "node-token").read_text().strip()
    proc = _agent(tmp_path, api, f"K10{'0' * 64}::{secret}", "bad.log")
    try:
        assert proc.wait(60) != 0
    finally:
        _stop_agent(tmp_path, proc)
    assert "refusing to join" in (tmp_path / "bad.log").read_text()
    assert json.loads(kubectl("get", "csr", "-o", "json"))["items"] == []


def test_agent_joins_with_node_certificates(cluster, tmp_path):
    api, kubectl = cluster
    token = (api.data_dir / "join-token").read_text().strip()
    proc = _agent(tmp_path, api, token, "agent.log")
    log = tmp_path / "agent.log"
    try:
        deadline = time.monotonic() + 120
        while "agent ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        ca = x509.load_pem_x509_certificate((api.data_dir / "tls" / "ca.crt").read_bytes())
        pki = tmp_path / "agent" / "pki"
        client = x509.load_pem_x509_certificate((pki / "kubelet-client.crt").read_bytes())
        client.verify_directly_issued_by(ca)
        assert client.subject.rfc4514_string() == f"CN=system:node:{NAME},O=system:nodes"
        serving = x509.load_pem_x509_certificate((pki / "kubelet.crt").read_bytes())
        serving.verify_directly_issued_by(ca)
        san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}

        csrs = json.loads(kubectl("get", "csr", "-o", "json"))["items"]
        by_signer = {c["spec"]["signerName"]: c for c in csrs}
        client_csr = by_signer["kubernetes.io/kube-apiserver-client-kubelet"]
        assert "system:bootstrappers" in client_csr["spec"]["groups"]
        serving_csr = by_signer["kubernetes.io/kubelet-serving"]
        assert serving_csr["spec"]["username"] == f"system:node:{NAME}"
        for c in (client_csr, serving_csr):
            assert [x["reason"] for x in c["status"]["conditions"]] == ["AutoApproved"]
        # The kubelet's kubeconfig speaks as the node.
        as_node = root.Kubectl(kubectl.binary, tmp_path / "agent" / "kubelet.kubeconfig",
                               tmp_path / "cache-node")
        who = json.loads(as_node("auth", "whoami", "-o", "json"))["status"]["userInfo"]
        assert who["username"] == f"system:node:{NAME}"

        # `kubectl logs` goes through the API server, which verifies the kubelet's certificate.
        ns = "join"
        kubectl("create", "namespace", ns)
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
            "spec": {"nodeName": NAME, "restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo joined-ok"]}]}}))
        tries: list[subprocess.CompletedProcess] = []

        def logs():
            tries.append(kubectl.run("logs", "-n", ns, "hello", check=False))
            return tries[-1].returncode == 0 and "joined-ok" in tries[-1].stdout

        try:
            wait_for(logs, timeout=90, what="logs through the API server")
        except AssertionError:
            raise AssertionError(f"{tries[-1].stderr}\n{kubectl('get', 'pod', '-n', ns, '-o', 'yaml')}"
                                 f"\n{log.read_text()[-3000:]}") from None
        assert tries[-1].stdout.strip() == "joined-ok"
    finally:
        _stop_agent(tmp_path, proc)
