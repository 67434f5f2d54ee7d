"""Who is asking: client certificates (CN = user, O = groups) and bearer tokens.

Anonymous requests get 401, except the health endpoints (as kube's default RBAC allows)."""

from __future__ import annotations

import csv
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def info(self) -> dict:
        out: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        return out


class TokenFile:
    """kube-apiserver's --token-auth-file format: token,user,uid,"group1,group2"."""

    def __init__(self, path: Path):
        self.path = path
        self.tokens: dict[str, User] = {}
        self.reload()

    def reload(self) -> None:
        self.tokens.clear()
        if not self.path.exists():
            return
        with self.path.open() as f:
            for row in csv.reader(f):
                if len(row) < 2 or row[0].startswith("#"):
                    continue
                groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
                self.tokens[row[0]] = User(row[1], groups, row[2] if len(row) > 2 else "")

    def add(self, token: str, user: User) -> None:
        with self.path.open("a") as f:
            csv.writer(f).writerow([token, user.name, user.uid, ",".join(user.groups)])
        self.tokens[token] = user


UNREAD = object()  # a connection whose client certificate was not read yet


class Authenticator:
    def __init__(self, tokens: TokenFile, service_account=None):
        self.tokens = tokens
        # token -> User for ServiceAccount JWTs (None when invalid)
        self.service_account = service_account

    def authenticate(self, request: web.Request) -> User | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            user = self.tokens.tokens.get(token)
            if user:
                return User(user.name, user.groups + ("system:authenticated",), user.uid)
            if self.service_account and token.count(".") == 2:
                return self.service_account(token)
            return None
        # A connection's client certificate is fixed once its handshake is done (the server
        # refuses renegotiation): the API server's connections (ApiConnection) keep its user.
        proto = request.protocol
        user = getattr(proto, "peer_user", UNREAD)
        if user is not UNREAD:
            return user
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        if not isinstance(sslobj, ssl.SSLObject):
            return None
        cert = sslobj.getpeercert()
        user = _user_from_cert(cert) if cert else None
        if hasattr(proto, "peer_user"):
            proto.peer_user = user
        return user


def _user_from_cert(cert: dict) -> User:
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    return User(cn, tuple(orgs) + ("system:authenticated",))
