"""csrapproving and csrsigning: pure decisions, then both controllers against a real API server.

Upstream references: pkg/controller/certificates/approver/sarapprove.go (recognisers
nodeclient/selfnodeclient, reason AutoApproved and its messages) and
pkg/controller/certificates/signer (per-signer usage rules, Failed/SignerValidationFailure).
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings, strategies as st

from csr_helpers import (condition, csr_object, get_csr, issued, key_pem, kubeconfig_as, new_key,
                         subject_of, unique)
from kybernetes.api import certificates as certs
from kybernetes.controllers.csrapproving import CLIENT_MESSAGE, SELF_CLIENT_MESSAGE, decide
from kybtest import Kubectl, wait_for

KUBELET_CLIENT = certs.KUBE_APISERVER_CLIENT_KUBELET
USAGES = ["digital signature", "key encipherment", "client auth", "server auth", "signing"]


def _requested(obj: dict, username: str, groups: list[str]) -> dict:
    obj["spec"].update(username=username, groups=groups)
    return obj


# ---- pure decisions ----

@settings(max_examples=60, deadline=None)
@given(usages=st.lists(st.sampled_from(USAGES), unique=True, max_size=4),
       groups=st.sets(st.sampled_from(["system:bootstrappers", "system:nodes", "devs"])),
       self_request=st.booleans())
def test_node_client_decision(usages, groups, self_request):
    key = new_key()
    obj = _requested(csr_object("x", key, "system:node:n1", ("system:nodes",),
                                signer=KUBELET_CLIENT, usages=usages),
                     "system:node:n1" if self_request else "kyb:node-join", sorted(groups))
    message, _ = decide(obj, None)
    usage_ok = set(usages) in certs.KUBELET_CLIENT_USAGES
    if usage_ok and self_request and "system:nodes" in groups:
        assert message == SELF_CLIENT_MESSAGE
    elif usage_ok and "system:bootstrappers" in groups:
        assert message == CLIENT_MESSAGE
    else:
        assert message is None


@pytest.mark.parametrize("cn,orgs,dns", [
    ("alice", ("system:nodes",), ()),             # not a node name
    ("system:node:n1", ("devs",), ()),            # wrong organization
    ("system:node:n1", ("system:nodes",), ("n1",)),  # client certificates carry no SANs
])
def test_node_client_decision_needs_a_node_subject(cn, orgs, dns):
    obj = _requested(csr_object("x", new_key(), cn, orgs, dns=dns, signer=KUBELET_CLIENT,
                                usages=["digital signature", "client auth"]),
                     "kyb:node-join", ["system:bootstrappers"])
    assert decide(obj, None) == (None, None)


def _serving(sans_dns=("n1",), ips=("10.0.0.5",), user="system:node:n1"):
    return _requested(csr_object("s", new_key(), "system:node:n1", ("system:nodes",),
                                 signer=certs.KUBELET_SERVING, dns=sans_dns, ips=ips,
                                 usages=["digital signature", "server auth"]),
                      user, ["system:nodes", "system:authenticated"])


NODE = {"metadata": {"name": "n1"}, "status": {"addresses": [
    {"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "n1"}]}}


def test_serving_decision():
    assert decide(_serving(), NODE)[0] is not None
    assert decide(_serving(), None) == (None, 5.0)  # wait for the Node to show up
    assert decide(_serving(ips=("10.0.0.6",)), NODE)[0] is None  # not this node's address
    assert decide(_serving(user="system:node:n2"), NODE)[0] is None  # someone else's name


def test_sign_honours_request_and_expiration():
    from kybernetes.apiserver.certs import CertificateAuthority
    import tempfile
    from pathlib import Path
    ca = CertificateAuthority(Path(tempfile.mkdtemp()) / "tls")
    obj = csr_object("s", new_key(), "system:node:n1", ("system:nodes",),
                     signer=certs.KUBELET_SERVING, dns=("n1",), ips=("10.0.0.5",),
                     usages=["digital signature", "server auth"], expiration=3600)
    req = certs.parse_request(obj)
    assert certs.signer_problem(obj, req) is None
    cert = x509.load_pem_x509_certificate(certs.sign(obj, req, ca.cert, ca.key))
    cert.verify_directly_issued_by(ca.cert)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life.total_seconds() == 3600 + certs.BACKDATE.total_seconds()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    obj["spec"]["usages"] = ["digital signature", "client auth"]
    assert "invalid usage" in certs.signer_problem(obj, req)


# ---- the controllers in a controller manager ----

def _wait_csr(kubectl, name: str, pred) -> dict:
    return wait_for(lambda: (c if pred(c := get_csr(kubectl, name)) else None), what=f"{name} to change")


def test_join_requests_are_approved_and_signed(apiserver, controller_manager, kubectl133, tmp_path):
    tls = apiserver.data_dir / "tls"
    controller_manager(apiserver.kubeconfig, "csrapproving,csrsigning",
                       "--cluster-signing-cert-file", str(tls / "ca.crt"),
                       "--cluster-signing-key-file", str(tls / "ca.key"))
    token = (apiserver.data_dir / "node-token").read_text().strip()
    boot = Kubectl(kubectl133.binary, kubeconfig_as(tmp_path / "boot.yaml",
                   apiserver.kubeconfig, token=token), tmp_path / "cache-boot")
    node = unique("n")
    stranger, good, bad_usage = unique("stranger"), unique("node-csr"), unique("bad-usage")
    # A bootstrapper asking for a name that is not a node's: left pending.
    boot("create", "-f", "-", input=json.dumps(csr_object(
        stranger, new_key(), "alice", ("system:nodes",), signer=KUBELET_CLIENT,
        usages=["digital signature", "client auth"])))
    key = new_key()
    boot("create", "-f", "-", input=json.dumps(csr_object(
        good, key, f"system:node:{node}", ("system:nodes",), signer=KUBELET_CLIENT,
        usages=["digital signature", "client auth"])))
    csr = _wait_csr(kubectl133, good, issued)
    approved = condition(csr, "Approved")
    assert approved["reason"] == "AutoApproved" and approved["message"] == CLIENT_MESSAGE
    cert = issued(csr)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes()))
    assert subject_of(cert) == (f"system:node:{node}", ["system:nodes"])
    assert condition(get_csr(kubectl133, stranger), "Approved") is None

    # The certificate is the node's credential from now on.
    as_node = Kubectl(kubectl133.binary, kubeconfig_as(
        tmp_path / "node.yaml", apiserver.kubeconfig,
        cert_pem=base64.b64decode(csr["status"]["certificate"]), key=key_pem(key)),
        tmp_path / "cache-node")
    who = json.loads(as_node("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert who["username"] == f"system:node:{node}" and "system:nodes" in who["groups"]

    # Its serving request, for addresses its Node reports, is approved too; one naming an
    # address the Node does not have stays pending.
    kubectl133("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.9.9.9"},
                                 {"type": "Hostname", "address": node}]}}))
    serving, foreign = unique("csr"), unique("csr")
    as_node("create", "-f", "-", input=json.dumps(csr_object(
        foreign, new_key(), f"system:node:{node}", ("system:nodes",), dns=(node,),
        ips=("10.1.1.1",), signer=certs.KUBELET_SERVING, usages=["digital signature", "server auth"])))
    as_node("create", "-f", "-", input=json.dumps(csr_object(
        serving, new_key(), f"system:node:{node}", ("system:nodes",), dns=(node,),
        ips=("10.9.9.9",), signer=certs.KUBELET_SERVING, usages=["digital signature", "server auth"])))
    csr = _wait_csr(kubectl133, serving, issued)
    assert condition(csr, "Approved")["reason"] == "AutoApproved"
    assert condition(get_csr(kubectl133, foreign), "Approved") is None

    # An administrator's approval of a request the signer's rules refuse: Failed, not signed.
    kubectl133("create", "-f", "-", input=json.dumps(csr_object(
        bad_usage, new_key(), f"system:node:{node}", ("system:nodes",), signer=KUBELET_CLIENT,
        usages=["digital signature", "server auth"])))
    kubectl133("certificate", "approve", bad_usage)
    csr = _wait_csr(kubectl133, bad_usage, lambda c: condition(c, "Failed"))
    assert condition(csr, "Failed")["reason"] == "SignerValidationFailure"
    assert issued(csr) is None
    for n in (stranger, good, serving, foreign, bad_usage):
        kubectl133("delete", "csr", n)
    kubectl133("delete", "node", node)
