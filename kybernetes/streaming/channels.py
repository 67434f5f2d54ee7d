"""The channel protocols of exec/attach: what each stream or WebSocket channel carries.

WebSocket (`v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary message starts with a channel
byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a Status JSON once the command ends), 4 resize
(`{"Width":W,"Height":H}`); v5 adds 255 = "close channel N" (`ff 00` is stdin EOF).
SPDY (`v4.channel.k8s.io` and older): one stream per channel, named by the `streamType` header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping

import orjson

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
WEBSOCKET_PROTOCOLS = (V5, V4)  # preference order; base64 variants are not offered
SPDY_PROTOCOLS = (V4,)
PORT_FORWARD_SPDY = "portforward.k8s.io"
PORT_FORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"  # SPDY frames in WebSocket messages

STREAM_TYPE = "streamtype"  # SPDY header names travel lower-cased
STREAM_ERROR, STREAM_STDIN, STREAM_STDOUT = "error", "stdin", "stdout"
STREAM_STDERR, STREAM_RESIZE, STREAM_DATA = "stderr", "resize", "data"


def _flag(query: Mapping[str, str], *names: str) -> bool:
    return any(query.get(n, "").lower() in ("1", "true") for n in names)


@dataclass
class ExecOptions:
    """What the client asked for. The API server says stdin/stdout/stderr/tty=true; the kubelet
    hears input/output/error/tty=1 (both spellings are accepted)."""
    command: list[str] = field(default_factory=list)
    container: str = ""
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False

    @classmethod
    def from_query(cls, query) -> "ExecOptions":
        command = query.getall("command", []) if hasattr(query, "getall") else \
            list(query.get("command", []))
        stdout_given = any(k in query for k in ("stdout", "output"))
        stderr_given = any(k in query for k in ("stderr", "error"))
        return cls(command=list(command), container=query.get("container", ""),
                   stdin=_flag(query, "stdin", "input"),
                   stdout=_flag(query, "stdout", "output") if stdout_given else False,
                   stderr=_flag(query, "stderr", "error") if stderr_given else False,
                   tty=_flag(query, "tty"))

    def kubelet_query(self) -> list[tuple[str, str]]:
        """The query of the API server's request to the kubelet."""
        q = [("command", c) for c in self.command]
        for name, on in (("input", self.stdin), ("output", self.stdout),
                         ("error", self.stderr and not self.tty), ("tty", self.tty)):
            if on:
                q.append((name, "1"))
        return q


def success_status() -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Success"})


def exit_status(code: int) -> bytes:
    """The Status that makes kubectl exit with `code`."""
    if code == 0:
        return success_status()
    return orjson.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    })


def failure_status(message: str) -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Failure", "message": message,
                         "reason": "InternalError", "code": 500})


def parse_exit_status(raw: bytes) -> int | None:
    """The exit code a status message means (0 on Success); None for other failures."""
    status = orjson.loads(raw)
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or ():
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    return None


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class ResizeDecoder:
    """Terminal sizes from a byte stream of concatenated JSON objects (the SPDY resize stream)."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[TerminalSize]:
        self._buf += data.decode("utf-8", "replace")
        out = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            try:
                obj, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._buf = text
                return out
            self._buf = text[end:]
            if isinstance(obj, dict):
                out.append(TerminalSize(int(obj.get("Width", 0)), int(obj.get("Height", 0))))


def parse_resize(data: bytes) -> TerminalSize | None:
    """One resize message of the WebSocket protocol."""
    try:
        obj = orjson.loads(data)
        return TerminalSize(int(obj.get("Width", 0)), int(obj.get("Height", 0)))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None
