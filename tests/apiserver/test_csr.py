"""CertificateSigningRequests in the API server, driven by real kubectl.

Matches upstream's registry strategies (pkg/registry/certificates/certificates/strategy.go):
create records the requester in spec.username/groups; /approval changes only the conditions;
/status may not touch Approved/Denied; Approved and Denied are mutually exclusive. And kubectl's
`certificate approve|deny` (reasons KubectlApprove/KubectlDeny) over the approval subresource.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request

import pytest

from csr_helpers import condition, csr_object, get_csr, new_key, unique
from kybernetes.api import certificates as certs

CLIENT = certs.KUBE_APISERVER_CLIENT


def create(kubectl, obj: dict) -> None:
    kubectl("create", "-f", "-", input=json.dumps(obj))


def test_create_records_requester_and_drops_status(kubectl):
    name = unique("who")
    obj = csr_object(name, new_key(), "alice", ("devs",), signer=CLIENT, usages=["client auth"])
    obj["spec"]["username"] = "mallory"  # set by the server, never by the client
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Self"}]}
    create(kubectl, obj)
    csr = get_csr(kubectl, name)
    assert csr["spec"]["username"] == "kubernetes-admin"
    assert "system:masters" in csr["spec"]["groups"]
    assert "system:authenticated" in csr["spec"]["groups"]
    assert condition(csr, "Approved") is None
    assert kubectl("get", "csr", name, "-o", "jsonpath={.spec.signerName}") == CLIENT


def test_bad_request_is_invalid(kubectl):
    obj = csr_object(unique("bad"), new_key(), "x", signer=CLIENT, usages=["client auth"])
    obj["spec"]["request"] = base64.b64encode(b"not a certificate request").decode()
    p = kubectl.run("create", "-f", "-", input=json.dumps(obj), check=False)
    assert p.returncode != 0 and "spec.request" in p.stderr and "is invalid" in p.stderr


def test_kubectl_certificate_approve_and_deny(kubectl):
    approve, deny = unique("approve"), unique("deny")
    for n in (approve, deny):
        create(kubectl, csr_object(n, new_key(), n, signer=CLIENT, usages=["client auth"]))
    out = kubectl("certificate", "approve", approve)
    assert "approved" in out
    c = condition(get_csr(kubectl, approve), "Approved")
    assert c["status"] == "True" and c["reason"] == "KubectlApprove"
    assert c["lastUpdateTime"] and c["lastTransitionTime"]
    kubectl("certificate", "deny", deny)
    c = condition(get_csr(kubectl, deny), "Denied")
    assert c["status"] == "True" and c["reason"] == "KubectlDeny"
    # The printed CONDITION column follows the conditions.
    table = kubectl("get", "csr", approve, deny)
    lines = {ln.split()[0]: ln for ln in table.splitlines()[1:]}
    assert "Approved" in lines[approve] and "Denied" in lines[deny]
    # kubectl reads the decision back and will not approve a denied request.
    p = kubectl.run("certificate", "approve", deny, check=False)
    assert p.returncode != 0 and "already Denied" in p.stderr
    assert condition(get_csr(kubectl, deny), "Approved") is None


def _api(apiserver, method: str, path: str, body: dict) -> dict:
    """A request as the admin (the kubeconfig's client certificate)."""
    tls = apiserver.data_dir / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
    req = urllib.request.Request(f"{apiserver.url}{path}", method=method,
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def test_approval_changes_conditions_only_and_status_keeps_decisions(apiserver, kubectl):
    name = unique("sub")
    create(kubectl, csr_object(name, new_key(), name, signer=CLIENT, usages=["client auth"]))
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    csr = get_csr(kubectl, name)
    fake = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    csr["status"] = {"certificate": fake.decode(), "conditions": [
        {"type": "Approved", "status": "True", "reason": "Test", "message": "by hand"}]}
    out = _api(apiserver, "PUT", path + "/approval", csr)
    assert condition(out, "Approved")["reason"] == "Test"
    assert "certificate" not in out["status"]  # /approval ignores everything but conditions
    # A status write cannot drop the decision (the signer's write keeps Approved).
    current = get_csr(kubectl, name)
    current["status"]["conditions"] = [{"type": "Failed", "status": "True",
                                       "reason": "SignerValidationFailure", "message": "x"}]
    out = _api(apiserver, "PUT", path + "/status", current)
    types = {c["type"] for c in out["status"]["conditions"]}
    assert types == {"Approved", "Failed"}
    # Approved and Denied together are refused, as is removing an existing decision.
    current = get_csr(kubectl, name)
    current["status"]["conditions"].append({"type": "Denied", "status": "True"})
    out = _api(apiserver, "PUT", path + "/approval", current)
    assert out.get("code") == 422 and "mutually exclusive" in out["message"]
    current = get_csr(kubectl, name)
    current["status"]["conditions"] = []
    out = _api(apiserver, "PUT", path + "/approval", current)
    assert out.get("code") == 422 and "may not remove the Approved condition" in out["message"]


def test_cacerts_is_public_and_join_token_pins_it(apiserver):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"{apiserver.url}/cacerts", context=ctx, timeout=5) as r:
        served = r.read()
    assert served == (apiserver.data_dir / "tls" / "ca.crt").read_bytes()
    token = (apiserver.data_dir / "join-token").read_text().strip()
    digest, _, secret = token.removeprefix("K10").partition("::")
    assert digest == certs.ca_hash(served)
    assert secret == (apiserver.data_dir / "node-token").read_text().strip()
    # Everything else still needs credentials.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{apiserver.url}/api/v1/namespaces", context=ctx, timeout=5)
    assert e.value.code == 401
