"""What the API server's answers look like on the wire (RFC 9112): several requests on one
kept-alive TLS connection, pipelined ones answered in order, `Connection: close` and HTTP/1.0
honoured, a HEAD answer without a body. Raw sockets with the admin client
certificate against a real server process."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from kybtest import start_apiserver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_apiserver(tmp_path_factory.mktemp("wire"))
    yield srv
    srv.stop()


def _connect(server) -> ssl.SSLSocket:
    tls = server.data_dir / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ctx.wrap_socket(sock)


class Reader:
    """Reads whole HTTP/1.1 responses (Content-Length framed) off one connection."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock, self.buf = sock, b""
        self.version = ""  # of the last response read

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self, head_only: bool = False) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed mid-head: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.version, status = lines[0].split()[0], int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        """The server closed the connection (nothing more after what was read)."""
        try:
            return not self._fill() and not self.buf
        except (ConnectionResetError, ssl.SSLError):
            return True


def _get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", "Accept: application/json",
             *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    with _connect(server) as sock:
        r = Reader(sock)
        sock.sendall(_get("/api/v1/namespaces/default"))
        status, headers, body = r.response()
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body)["metadata"]["name"] == "default"
        assert "date" in headers and "connection" not in headers
        # Three at once: a hit, a miss (a Status), another hit; answers in the same order.
        sock.sendall(_get("/api/v1/namespaces/kube-system") + _get("/api/v1/namespaces/nope-x")
                     + _get("/version"))
        answers = [r.response() for _ in range(3)]
        assert [a[0] for a in answers] == [200, 404, 200]
        assert json.loads(answers[0][2])["metadata"]["name"] == "kube-system"
        status_obj = json.loads(answers[1][2])
        assert (status_obj["kind"], status_obj["reason"], status_obj["code"]) == \
            ("Status", "NotFound", 404)
        assert "gitVersion" in json.loads(answers[2][2])


def test_connection_close_and_http10_end_the_connection(server):
    for version, extra in (("1.1", ("Connection: close",)), ("1.0", ())):
        with _connect(server) as sock:
            r = Reader(sock)
            sock.sendall(_get("/api/v1/namespaces/default", *extra, version=version))
            status, headers, body = r.response()
            assert status == 200 and json.loads(body)["kind"] == "Namespace"
            assert r.version == f"HTTP/{version}"  # a 1.0 client hears 1.0 back
            if version == "1.1":
                assert headers.get("connection", "").lower() == "close"
            assert r.closed()


def test_http10_keep_alive_is_answered_as_such(server):
    with _connect(server) as sock:
        r = Reader(sock)
        for _ in range(2):  # the connection stays usable
            sock.sendall(_get("/api/v1/namespaces/default", "Connection: keep-alive",
                              version="1.0"))
            status, headers, body = r.response()
            assert (status, r.version) == (200, "HTTP/1.0")
            assert headers.get("connection", "").lower() == "keep-alive"


def test_line_breaks_in_a_warning_cannot_split_the_answer(server):
    """An unknown field's name comes back in a Warning header (fieldValidation=Warn): line
    breaks in it become spaces (as Go's server writes header values), never a header or an
    answer of the client's making."""
    name = "cm-warn"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "x\r\nX-Injected: 1\r\n\r\nHTTP/1.1 200 OK": "v"}).encode()
    with _connect(server) as sock:
        r = Reader(sock)
        sock.sendall(("POST /api/v1/namespaces/default/configmaps?fieldValidation=Warn HTTP/1.1\r\n"
                      "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body +
                     _get("/version"))
        status, headers, created = r.response()
        assert status == 201 and json.loads(created)["metadata"]["name"] == name
        assert "x-injected" not in headers
        assert "unknown field" in headers["warning"] and "X-Injected: 1" in headers["warning"]
        status2, _, version = r.response()  # the next answer is the real one, intact
        assert status2 == 200 and "gitVersion" in json.loads(version)


def test_a_head_answer_has_no_body(server):
    """Resources take no HEAD (405, as go-restful answers); the Status's length is announced
    but nothing follows the head: the next answer on the connection reads cleanly."""
    with _connect(server) as sock:
        r = Reader(sock)
        sock.sendall(_get("/api/v1/namespaces/default", method="HEAD") +
                     _get("/api/v1/namespaces/default"))
        status, headers, body = r.response(head_only=True)
        assert status == 405 and int(headers["content-length"]) > 0
        status2, _, body2 = r.response()
        assert status2 == 200 and json.loads(body2)["kind"] == "Namespace"


def test_certificates_pass_strict_verification(server):
    """Python 3.13 verifies in strict mode by default (VERIFY_X509_STRICT): a CA needs a subject
    key identifier, every certificate it issues an authority key identifier naming it."""
    from cryptography import x509

    tls = server.data_dir / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
        s.sendall(_get("/version", "Connection: close"))
        assert Reader(s).response()[0] == 200
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    issued = [p for p in tls.glob("*.crt") if p.name != "ca.crt"]
    assert len(issued) >= 2  # the serving certificate and the admin's at least
    for path in issued:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski, path.name
