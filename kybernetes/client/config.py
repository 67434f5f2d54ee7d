"""Connection settings from a kubeconfig file (the same file kubectl reads)."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass
class ClientConfig:
    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False
    user_agent: str = "kyb"

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # load_cert_chain takes files only: write them privately, load, remove.
            with tempfile.TemporaryDirectory() as d:
                cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                cert.write_bytes(self.cert_pem)
                fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(self.key_pem)
                ctx.load_cert_chain(str(cert), str(key))
        return ctx


def _data(entry: dict, name: str, base: Path) -> bytes | None:
    if entry.get(f"{name}-data"):
        return base64.b64decode(entry[f"{name}-data"])
    if entry.get(name):
        return (base / entry[name]).read_bytes()
    return None


def load_kubeconfig(path: str | Path | None = None, context: str | None = None,
                    user_agent: str = "kyb") -> ClientConfig:
    """The current (or named) context of a kubeconfig: $KUBECONFIG or ~/.kube/config by default."""
    path = Path(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                or Path.home() / ".kube" / "config")
    doc = yaml.safe_load(path.read_text()) or {}
    ctx_name = context or doc.get("current-context")
    ctx = next(c["context"] for c in doc.get("contexts", []) if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc.get("clusters", []) if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
    base = path.parent
    return ClientConfig(
        server=cluster["server"].rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base),
        cert_pem=_data(user, "client-certificate", base),
        key_pem=_data(user, "client-key", base),
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        user_agent=user_agent,
    )
