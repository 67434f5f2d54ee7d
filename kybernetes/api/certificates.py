"""certificates.k8s.io/v1 helpers: reading CertificateSigningRequests, recognising kubelet
client and serving requests, conditions, and issuing a certificate for an approved request.

Plain data and crypto, no I/O: the API server, the csrapproving/csrsigning controllers and the
node agent's bootstrap all use these. The rules follow upstream's pkg/apis/certificates
(IsKubeletClientCSR, IsKubeletServingCSR) and pkg/controller/certificates/signer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"

# A kubelet client request must ask for exactly one of these usage sets (RSA keys add key
# encipherment; ECDSA keys do not).
KUBELET_CLIENT_USAGES = ({"digital signature", "client auth"},
                         {"key encipherment", "digital signature", "client auth"})
KUBELET_SERVING_USAGES = ({"digital signature", "server auth"},
                          {"key encipherment", "digital signature", "server auth"})
# What each built-in signer may put in a certificate.
SIGNER_USAGES = {
    KUBE_APISERVER_CLIENT: {"digital signature", "key encipherment", "client auth"},
    KUBE_APISERVER_CLIENT_KUBELET: {"digital signature", "key encipherment", "client auth"},
    KUBELET_SERVING: {"digital signature", "key encipherment", "server auth"},
}
DEFAULT_DURATION = dt.timedelta(days=365)  # --cluster-signing-duration's default (8760h)
MIN_EXPIRATION_SECONDS = 600
BACKDATE = dt.timedelta(minutes=5)  # tolerate clock skew between nodes, as upstream


class CSRError(ValueError):
    pass


# ---- reading ----

def request_pem(csr: dict) -> bytes:
    """spec.request (base64 in JSON) as PEM bytes."""
    raw = (csr.get("spec") or {}).get("request") or ""
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        raise CSRError("spec.request is not valid base64") from None


def parse_request(csr: dict) -> x509.CertificateSigningRequest:
    pem = request_pem(csr)
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise CSRError("PEM block type must be CERTIFICATE REQUEST")
    try:
        req = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise CSRError(f"failed to parse certificate request: {e}") from None
    if not req.is_signature_valid:
        raise CSRError("the certificate request's signature is invalid")
    return req


def subject(req: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """(common name, organizations)."""
    cn = [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(cn[0]) if cn else ""), [str(o) for o in orgs]


def sans(req: x509.CertificateSigningRequest) -> tuple[list[str], list[str], list[str], list[str]]:
    """(DNS names, IP addresses, emails, URIs) the request asks for."""
    try:
        ext = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return ([str(n) for n in ext.get_values_for_type(x509.DNSName)],
            [str(i) for i in ext.get_values_for_type(x509.IPAddress)],
            [str(e) for e in ext.get_values_for_type(x509.RFC822Name)],
            [str(u) for u in ext.get_values_for_type(x509.UniformResourceIdentifier)])


# ---- conditions ----

def condition(csr: dict, type_: str) -> dict | None:
    for c in (csr.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status", "True") == "True":
            return c
    return None


def is_approved(csr: dict) -> bool:
    return condition(csr, "Approved") is not None


def is_denied(csr: dict) -> bool:
    return condition(csr, "Denied") is not None


def is_failed(csr: dict) -> bool:
    return condition(csr, "Failed") is not None


def has_certificate(csr: dict) -> bool:
    return bool((csr.get("status") or {}).get("certificate"))


def new_condition(type_: str, reason: str, message: str, now: str) -> dict:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}


def populate_timestamps(new: list[dict], old: list[dict], now: str) -> None:
    """Fill lastUpdateTime and lastTransitionTime the way the API server does: transition time
    carries over while a condition's status is unchanged."""
    for c in new:
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            prev = next((o for o in old if o.get("type") == c.get("type")), None)
            c["lastTransitionTime"] = (prev.get("lastTransitionTime") if prev and
                                       prev.get("status") == c.get("status") and
                                       prev.get("lastTransitionTime") else now)


# ---- recognisers ----

def kubelet_client_problem(csr: dict, req: x509.CertificateSigningRequest) -> str | None:
    """None when `csr` is a well-formed kubelet client certificate request, else why not."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBE_APISERVER_CLIENT_KUBELET:
        return f"signerName must be {KUBE_APISERVER_CLIENT_KUBELET}"
    cn, orgs = subject(req)
    if orgs != [NODES_GROUP]:
        return f'subject organization is not {NODES_GROUP}'
    if not cn.startswith(NODE_PREFIX) or len(cn) == len(NODE_PREFIX):
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    if any(sans(req)):
        return "DNS, email, IP and URI subjectAltNames are not allowed"
    if set(spec.get("usages") or ()) not in KUBELET_CLIENT_USAGES or \
            len(spec.get("usages") or ()) != len(set(spec.get("usages") or ())):
        return f"usages must be one of {sorted(sorted(u) for u in KUBELET_CLIENT_USAGES)}"
    return None


def kubelet_serving_problem(csr: dict, req: x509.CertificateSigningRequest) -> str | None:
    """None when `csr` is a well-formed kubelet serving certificate request, else why not."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_SERVING:
        return f"signerName must be {KUBELET_SERVING}"
    cn, orgs = subject(req)
    if orgs != [NODES_GROUP]:
        return f'subject organization is not {NODES_GROUP}'
    if not cn.startswith(NODE_PREFIX) or len(cn) == len(NODE_PREFIX):
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    dns, ips, emails, uris = sans(req)
    if emails or uris:
        return "email and URI subjectAltNames are not allowed"
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    if set(spec.get("usages") or ()) not in KUBELET_SERVING_USAGES:
        return f"usages must be one of {sorted(sorted(u) for u in KUBELET_SERVING_USAGES)}"
    return None


def node_addresses(node: dict) -> set[str]:
    """Every address the Node reports, IPs normalised."""
    out = set()
    for a in (node.get("status") or {}).get("addresses") or []:
        addr = a.get("address") or ""
        try:
            addr = str(ipaddress.ip_address(addr))
        except ValueError:
            pass
        out.add(addr)
    return out


# ---- signing ----

def signer_problem(csr: dict, req: x509.CertificateSigningRequest) -> str | None:
    """Why a built-in signer refuses an approved request (None: it signs)."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName")
    usages = set(spec.get("usages") or ())
    allowed = SIGNER_USAGES.get(signer)
    if allowed is None:
        return f"unsupported signer {signer}"
    if not usages <= allowed:
        return f"invalid usage for {signer}: {sorted(usages - allowed)}"
    if signer == KUBE_APISERVER_CLIENT_KUBELET:
        return kubelet_client_problem(csr, req)
    if signer == KUBELET_SERVING:
        return kubelet_serving_problem(csr, req)
    return None


def duration(csr: dict, default: dt.timedelta = DEFAULT_DURATION) -> dt.timedelta:
    """The signer's duration, shortened by spec.expirationSeconds (never below 10 minutes)."""
    secs = (csr.get("spec") or {}).get("expirationSeconds")
    if isinstance(secs, int) and not isinstance(secs, bool) and secs > 0:
        return min(default, dt.timedelta(seconds=max(secs, MIN_EXPIRATION_SECONDS)))
    return default


_EKU = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH}


def sign(csr: dict, req: x509.CertificateSigningRequest, ca_cert: x509.Certificate, ca_key,
         *, now: dt.datetime | None = None, default: dt.timedelta = DEFAULT_DURATION) -> bytes:
    """A certificate (PEM) for an approved request: its subject and SANs, the usages asked
    for, valid from a little before now for the signer's duration (not past the CA's end)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    usages = set((csr.get("spec") or {}).get("usages") or ())
    not_after = min(now + duration(csr, default), ca_cert.not_valid_after_utc)
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca_cert.subject)
         .public_key(req.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - BACKDATE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(
             digital_signature="digital signature" in usages,
             key_encipherment="key encipherment" in usages, content_commitment=False,
             data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
             encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                        critical=False))
    ekus = [_EKU[u] for u in sorted(usages) if u in _EKU]
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    try:
        b = b.add_extension(req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                            critical=False)
    except x509.ExtensionNotFound:
        pass
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# ---- building requests (the node's side) ----

def build_request(key, common_name: str, organizations: tuple[str, ...] = (),
                  dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> bytes:
    """A PEM certificate request signed with `key`."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def ca_hash(ca_pem: bytes) -> str:
    """The CA bundle's digest as join tokens carry it (k3s' K10<sha256 hex>::secret)."""
    return hashlib.sha256(ca_pem).hexdigest()
