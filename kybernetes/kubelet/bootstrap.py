"""Joining a cluster (`kyb agent --server URL --token TOKEN`): trust, then node credentials.

1. Trust: the server's CA bundle comes from its public /cacerts (as k3s serves it); a token of
   the form K10<sha256 of that bundle>::<secret> pins it, and a bundle with another digest is
   refused. A bare secret still works, with a warning that the CA was not verified.
2. Client certificate: with the token (a bootstrapper) the agent files a CertificateSigningRequest
   for CN system:node:NAME, O system:nodes (signer kube-apiserver-client-kubelet), waits for the
   controller manager to approve and sign it, and from then on speaks as the node.
3. Serving certificate: as the node, a second request (signer kubelet-serving) for the node's
   addresses, so the API server can verify the kubelet against the cluster CA.

Certificates live in DATA/pki and are reused while valid; DATA/kubelet.kubeconfig holds the
node's credentials. When the CA key is on this host (--ca-dir), certificates are issued locally
instead, as k3s' supervisor does for its own agents.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kybernetes.api import certificates as certs
from kybernetes.api.errors import ApiError
from kybernetes.client import Client, ClientConfig, resource

log = logging.getLogger("kyb.kubelet.bootstrap")

CSRS = resource("certificates.k8s.io/v1", "CertificateSigningRequest")
CERTIFICATE_WAIT = 15 * 60.0  # the kubelet's bootstrap waits this long for a signed certificate


class BootstrapError(RuntimeError):
    pass


@dataclass(frozen=True)
class JoinToken:
    secret: str
    ca_hash: str | None = None


def parse_token(token: str) -> JoinToken:
    """K10<sha256 hex>::<secret> (k3s' secure form) or a bare secret."""
    if token.startswith("K10") and "::" in token:
        digest, _, secret = token[3:].partition("::")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest) or not secret:
            raise BootstrapError("malformed join token: expected K10<sha256 of the CA>::<secret>")
        return JoinToken(secret, digest.lower())
    return JoinToken(token)


async def fetch_ca(server: str) -> bytes:
    """The server's CA bundle, fetched without verification: the caller checks its digest."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async with s.get(f"{server}/cacerts", ssl=False) as resp:
                if resp.status != 200:
                    raise BootstrapError(f"GET {server}/cacerts: HTTP {resp.status}")
                return await resp.read()
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise BootstrapError(f"GET {server}/cacerts: {e or type(e).__name__}") from None


async def cluster_ca(server: str, token: JoinToken, ca_dir: Path | None) -> bytes:
    if token.ca_hash:
        pem = await fetch_ca(server)
        got = certs.ca_hash(pem)
        if got != token.ca_hash:
            raise BootstrapError(f"the CA served by {server} has sha256 {got}, but the join token "
                                 f"pins {token.ca_hash}: refusing to join")
        return pem
    if ca_dir and (ca_dir / "ca.crt").exists():
        return (ca_dir / "ca.crt").read_bytes()
    msg = ("the join token carries no CA hash: trusting the server's CA without verification "
           "(use the K10… token from the server's DATA/join-token to pin it)")
    log.warning(msg)
    print(f"kyb agent: WARNING: {msg}", file=sys.stderr, flush=True)
    return await fetch_ca(server)


# ---- certificate files ----

def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def usable(cert_path: Path, key_path: Path, ca_pem: bytes, common_name: str,
           names: set[str] | None = None) -> bool:
    """An existing certificate is kept if this CA issued it for this name (and these SANs),
    and more than a fifth of its lifetime is left."""
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except Exception:  # noqa: BLE001 - unreadable, or another CA's: issue anew
        return False
    cn = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if cn != [common_name]:
        return False
    now = dt.datetime.now(dt.timezone.utc)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now < life / 5:
        return False
    if names is not None:
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in ext.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in ext.get_values_for_type(x509.IPAddress)}
        return have == names
    return True


async def request_certificate(client: Client, csr_pem: bytes, signer: str, usages: list[str],
                              prefix: str, timeout: float = CERTIFICATE_WAIT) -> bytes:
    """File a CertificateSigningRequest and wait until it is signed (PEM) or refused."""
    created = await client.create(CSRS, {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": prefix},
        "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": signer,
                 "usages": usages}})
    name = created["metadata"]["name"]
    log.info("waiting for certificate signing request %s (%s) to be approved and signed",
             name, signer)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            csr = await client.get(CSRS, name)
        except ApiError as e:
            if e.code == 404:
                raise BootstrapError(f"certificate signing request {name} was deleted") from None
            log.warning("reading %s: %s", name, e)
            csr = {}
        for kind in ("Denied", "Failed"):
            c = certs.condition(csr, kind)
            if c:
                raise BootstrapError(f"certificate signing request {name} {kind.lower()}: "
                                     f"{c.get('reason', '')} {c.get('message', '')}".strip())
        cert = (csr.get("status") or {}).get("certificate")
        if cert:
            return base64.b64decode(cert)
        await asyncio.sleep(0.5)
    raise BootstrapError(f"timed out waiting for certificate signing request {name}")


def _key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


# ---- the node's credentials ----

class NodeCredentials:
    """The joining node's CA, client certificate and serving certificate, under DATA/pki."""

    def __init__(self, server: str, token: str, node_name: str, data_dir: Path,
                 ca_dir: Path | None = None, user_agent: str = "kubelet"):
        self.server = server.rstrip("/")
        self.token = parse_token(token)
        self.node_name = node_name
        self.data_dir = data_dir
        self.ca_dir = ca_dir if ca_dir and (ca_dir / "ca.key").exists() else None
        self.user_agent = user_agent
        self.pki = data_dir / "pki"
        self.ca_path = self.pki / "ca.crt"
        self.ca_pem = b""

    @property
    def common_name(self) -> str:
        return certs.NODE_PREFIX + self.node_name

    def _local_ca(self):
        """The cluster CA with its key, when it is on this host and is the server's CA."""
        if self.ca_dir is None or (self.ca_dir / "ca.crt").read_bytes() != self.ca_pem:
            return None
        from kybernetes.apiserver.certs import CertificateAuthority
        return CertificateAuthority(self.ca_dir)

    async def client_config(self) -> ClientConfig:
        self.pki.mkdir(parents=True, exist_ok=True)
        self.ca_pem = await cluster_ca(self.server, self.token, self.ca_dir)
        self.ca_path.write_bytes(self.ca_pem)
        crt, key = self.pki / "kubelet-client.crt", self.pki / "kubelet-client.key"
        if not usable(crt, key, self.ca_pem, self.common_name):
            ca = self._local_ca()
            if ca is not None:
                cert_pem, key_pem = ca.issue(self.common_name, organizations=(certs.NODES_GROUP,),
                                             client=True)
            else:
                k, key_pem = _key()
                csr_pem = certs.build_request(k, self.common_name, (certs.NODES_GROUP,))
                boot = Client(ClientConfig(server=self.server, token=self.token.secret,
                                           ca_pem=self.ca_pem, user_agent=self.user_agent))
                try:
                    cert_pem = await request_certificate(
                        boot, csr_pem, certs.KUBE_APISERVER_CLIENT_KUBELET,
                        ["digital signature", "client auth"], "node-csr-")
                finally:
                    await boot.close()
            _write_private(key, key_pem)
            crt.write_bytes(cert_pem)
            log.info("node client certificate for %s issued", self.common_name)
        from kybernetes.apiserver.certs import write_kubeconfig
        write_kubeconfig(self.data_dir / "kubelet.kubeconfig", server=self.server,
                         ca_pem=self.ca_pem, user=self.common_name, cert_path=crt, key_path=key)
        return ClientConfig(server=self.server, ca_pem=self.ca_pem, cert_pem=crt.read_bytes(),
                            key_pem=key.read_bytes(), user_agent=self.user_agent)

    async def serving_cert(self, client: Client, node_ip: str) -> tuple[Path, Path, Path]:
        """(cert, key, CA) for the kubelet's HTTPS server; the CA verifies the API server."""
        crt, key = self.pki / "kubelet.crt", self.pki / "kubelet.key"
        names = (node_ip, self.node_name)
        if not usable(crt, key, self.ca_pem, self.common_name, set(names)):
            ca = self._local_ca()
            if ca is not None:
                from kybernetes.apiserver.proxy import kubelet_serving_cert
                cert_pem, key_pem = kubelet_serving_cert(ca, self.node_name, names)
            else:
                k, key_pem = _key()
                csr_pem = certs.build_request(k, self.common_name, (certs.NODES_GROUP,),
                                              dns_names=(self.node_name,), ips=(node_ip,))
                cert_pem = await request_certificate(client, csr_pem, certs.KUBELET_SERVING,
                                                     ["digital signature", "server auth"], "csr-")
            _write_private(key, key_pem)
            crt.write_bytes(cert_pem)
            log.info("kubelet serving certificate for %s issued", ", ".join(names))
        return crt, key, self.ca_path
