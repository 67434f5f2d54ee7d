"""Helpers shared by the certificate tests: hand-made CSRs, kubeconfigs for other identities."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kybernetes.api import certificates as certs
from kybernetes.apiserver.certs import write_kubeconfig


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def csr_object(name: str, key, cn: str, orgs=(), *, signer: str, usages: list[str],
               dns=(), ips=(), expiration: int | None = None) -> dict:
    pem = certs.build_request(key, cn, tuple(orgs), tuple(dns), tuple(ips))
    spec = {"request": base64.b64encode(pem).decode(), "signerName": signer, "usages": usages}
    if expiration:
        spec["expirationSeconds"] = expiration
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name}, "spec": spec}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def get_csr(kubectl, name: str) -> dict:
    return json.loads(kubectl("get", "csr", name, "-o", "json"))


def condition(csr: dict, type_: str) -> dict | None:
    return next((c for c in (csr.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), None)


def issued(csr: dict) -> x509.Certificate | None:
    data = (csr.get("status") or {}).get("certificate")
    return x509.load_pem_x509_certificate(base64.b64decode(data)) if data else None


def kubeconfig_as(path: Path, api_kubeconfig: Path, *, token: str | None = None,
                  cert_pem: bytes | None = None, key: bytes | None = None) -> Path:
    """A kubeconfig for the same server and CA with another identity."""
    import yaml
    doc = yaml.safe_load(api_kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    cert_path = key_path = None
    if cert_pem:
        cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key)
    write_kubeconfig(path, server=cluster["server"],
                     ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
                     user="someone", cert_path=cert_path, key_path=key_path, token=token)
    return path


def subject_of(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    return cn[0], orgs
