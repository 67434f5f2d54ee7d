"""Small JSON answers written in one piece.

Most API calls answer one object of a few KiB. aiohttp's Response machinery (header multidicts,
the stream writer, a separate header and body write) cost about a quarter of such a request's
server time in profiles; this class serializes status line, headers and body itself and hands
them to the transport in one write. aiohttp's request handler only needs `prepare`, `write_eof`
and `keep_alive` from what a handler returns. Large bodies still go through web.Response, which
waits for the client to drain.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from kybernetes.api.clock import now_http_date

SMALL = 256 * 1024  # larger bodies: web.Response (flow control)

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON = b"Content-Type: application/json\r\n"


class JsonResponse:
    """A complete response, application/json unless told; `headers` are extra ones (a mapping,
    possibly a multidict)."""

    __slots__ = ("status", "body", "ctype", "extra", "keep_alive")

    def __init__(self, body: bytes, status: int = 200, headers=None,
                 content_type: str | None = None) -> None:
        self.status, self.body, self.keep_alive = status, body, True
        self.ctype = (_JSON if content_type is None else
                      f"Content-Type: {one_line(content_type)}\r\n".encode())
        self.extra = b"".join(f"{k}: {one_line(str(v))}\r\n".encode()
                              for k, v in headers.items()) if headers else b""

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(self.render(request))
        # Back-pressure as web.Response has it: a client that does not read stops us here
        # (and so from reading its next pipelined request) once the transport is full.
        await request.writer.drain()

    def render(self, request) -> bytes:
        """Status line, headers and body; sets keep_alive from the request."""
        self.keep_alive = keep = request.keep_alive
        body = b"" if request.method == "HEAD" else self.body
        # An HTTP/1.0 client hears 1.0 back (as aiohttp and Go's server answer it), and is told
        # when the connection stays open; 1.1 is told when it closes.
        old = request.version < (1, 1)
        connection = (b"Connection: keep-alive\r\n" if old and keep else
                      b"Connection: close\r\n" if not keep else b"")
        return b"HTTP/1.%d %d %s\r\n%sContent-Length: %d\r\nDate: %s\r\n%s%s\r\n%s" % (
            0 if old else 1, self.status, _REASONS.get(self.status, b"Unknown"),
            self.ctype, len(self.body), now_http_date(), self.extra, connection, body)

    async def write_eof(self, data: bytes = b"") -> None:
        """Everything went out in prepare()."""


_CONTROL = {c: " " for c in range(32) if c != 9}


def one_line(value: str) -> str:
    """A header value without CR, LF or other controls (Go's server turns them into spaces)."""
    return value.translate(_CONTROL) if not value.isprintable() else value
