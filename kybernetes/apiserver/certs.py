"""The cluster's PKI: a self-made CA, the serving certificate, client certificates, kubeconfigs.

Files live in DATA_DIR/tls; existing files are reused so clients keep trusting a restarted server.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_TEN_YEARS = dt.timedelta(days=3650)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CertificateAuthority:
    def __init__(self, tls_dir: Path):
        self.dir = tls_dir
        self.cert_path = tls_dir / "ca.crt"
        self.key_path = tls_dir / "ca.key"
        tls_dir.mkdir(parents=True, exist_ok=True)
        if self.cert_path.exists() and self.key_path.exists():
            self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                 f"kybernetes-ca@{int(dt.datetime.now().timestamp())}")])
            now = dt.datetime.now(dt.timezone.utc)
            self.cert = (
                x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _TEN_YEARS)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256())
            )
            _write_private(self.key_path, _key_pem(self.key))
            self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, organizations: tuple[str, ...] = (),
              dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = (),
              server: bool = False, client: bool = False) -> tuple[bytes, bytes]:
        """A new key and certificate signed by this CA, as (cert PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.timezone.utc)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (
            x509.CertificateBuilder().subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _TEN_YEARS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            # Key identifiers: verifiers in strict mode (Python 3.13's default) require them.
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.cert.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def ensure(self, name: str, common_name: str, **kw) -> tuple[Path, Path]:
        """DIR/name.crt and DIR/name.key, issued once."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if not (crt.exists() and key.exists()):
            cert_pem, key_pem = self.issue(common_name, **kw)
            _write_private(key, key_pem)
            crt.write_bytes(cert_pem)
        return crt, key


def serving_cert(ca: CertificateAuthority, extra_sans: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The API server's certificate; reissued when the wanted names change."""
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    ips = ["127.0.0.1", "::1", "10.43.0.1"]
    for s in extra_sans:
        try:
            ipaddress.ip_address(s)
            ips.append(s)
        except ValueError:
            dns.append(s)
    marker = ca.dir / "serving.sans"
    want = ",".join(sorted(set(dns)) + sorted(set(ips)))
    if marker.exists() and marker.read_text() != want:
        for suffix in ("crt", "key"):
            (ca.dir / f"serving.{suffix}").unlink(missing_ok=True)
    paths = ca.ensure("serving", "kube-apiserver", dns_names=tuple(sorted(set(dns))),
                      ips=tuple(sorted(set(ips))), server=True)
    marker.write_text(want)
    return paths


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, user: str,
                     cert_path: Path | None = None, key_path: Path | None = None,
                     token: str | None = None, cluster: str = "kybernetes") -> None:
    """A kubeconfig with embedded credentials (so it can be copied elsewhere)."""
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    user_entry: dict = {}
    if cert_path and key_path:
        user_entry["client-certificate-data"] = b64(cert_path.read_bytes())
        user_entry["client-key-data"] = b64(key_path.read_bytes())
    if token:
        user_entry["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


def new_token() -> str:
    return secrets.token_hex(16)


def merge_kubeconfig(source: Path, target: Path) -> None:
    """Put SOURCE's cluster, user and context into TARGET (created if missing), replacing
    entries of the same names and making the context current, as `k3s` does on request."""
    src = yaml.safe_load(source.read_text())
    doc = yaml.safe_load(target.read_text()) if target.exists() else None
    doc = doc or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "users", "contexts"):
        names = {e["name"] for e in src.get(section) or []}
        kept = [e for e in doc.get(section) or [] if e.get("name") not in names]
        doc[section] = kept + list(src.get(section) or [])
    doc["current-context"] = src["current-context"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, target)
