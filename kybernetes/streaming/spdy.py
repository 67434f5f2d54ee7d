"""SPDY/3.1 framing and a server-side session, as kubectl (moby/spdystream) speaks it.

kubectl opens every stream (odd ids) with SYN_STREAM; the server answers each with an empty
SYN_REPLY, moves bytes in DATA frames and ends a direction with the FIN flag. Header blocks are
zlib-compressed with the published SPDY/3 dictionary, one compression context per direction for
the whole session. spdystream does no flow control, so windows are granted but never waited on.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("kyb.streaming.spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_CANCEL = 1, 2, 5
DEFAULT_WINDOW = 64 * 1024
MAX_DATA = 32 * 1024  # bytes per DATA frame we send

# The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed words, then a tail.
_DICT_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
             "origin"]
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICT_WORDS) + \
    _DICT_TAIL.encode()


class SpdyError(Exception):
    pass


# ---- frames ----

@dataclass
class Frame:
    """A decoded frame: control frames have `type` > 0; DATA frames have type 0."""
    type: int
    flags: int
    stream_id: int = 0
    data: bytes = b""
    headers: dict[str, list[str]] = field(default_factory=dict)
    value: int = 0  # RST/GOAWAY status, PING id, WINDOW_UPDATE delta


def encode_header_block(headers: dict[str, list[str] | str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        if isinstance(values, str):
            values = [values]
        n, v = name.lower().encode(), "\x00".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(raw: bytes) -> dict[str, list[str]]:
    try:
        (count,), pos = struct.unpack_from(">I", raw), 4
        headers: dict[str, list[str]] = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            headers.setdefault(name.lower(), []).extend(value.split("\x00"))
        return headers
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"bad header block: {e}") from None


class Codec:
    """Frame encoding/decoding with the two zlib contexts of one session."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                         zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def _compress(self, headers: dict) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def _decompress(self, data: bytes) -> dict[str, list[str]]:
        try:
            return decode_header_block(self._inflate.decompress(data))
        except zlib.error as e:
            raise SpdyError(f"bad compressed header block: {e}") from None

    @staticmethod
    def control(type_: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        flags = FLAG_FIN if fin else 0
        return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload

    def syn_stream(self, stream_id: int, headers: dict, fin: bool = False) -> bytes:
        body = struct.pack(">IIH", stream_id, 0, 0) + self._compress(headers)
        return self.control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply(self, stream_id: int, headers: dict, fin: bool = False) -> bytes:
        body = struct.pack(">I", stream_id) + self._compress(headers)
        return self.control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self.control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self.control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream: int, status: int = 0) -> bytes:
        return self.control(GOAWAY, 0, struct.pack(">II", last_stream, status))

    def window_update(self, stream_id: int, delta: int) -> bytes:
        return self.control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))

    def decode(self, head: bytes, payload: bytes) -> Frame:
        """One frame from its 8-byte head and its payload."""
        first, second = struct.unpack(">II", head)
        flags = second >> 24
        if not first & 0x80000000:
            return Frame(0, flags, first & 0x7FFFFFFF, payload)
        version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        f = Frame(type_, flags)
        try:
            if type_ in (SYN_STREAM, SYN_REPLY, HEADERS):
                f.stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                f.headers = self._decompress(payload[10 if type_ == SYN_STREAM else 4:])
            elif type_ in (RST_STREAM, WINDOW_UPDATE, GOAWAY):
                sid, value = struct.unpack_from(">II", payload)
                f.stream_id, f.value = sid & 0x7FFFFFFF, value & 0x7FFFFFFF
            elif type_ == PING:
                f.value = struct.unpack_from(">I", payload)[0]
        except struct.error:
            raise SpdyError(f"short control frame of type {type_}") from None
        return f


# ---- a session over any byte stream ----

class ByteStream(Protocol):
    """What a session runs over: an upgraded TCP/TLS connection or a WebSocket tunnel."""

    async def read(self) -> bytes: ...  # b"" at EOF

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class Stream:
    def __init__(self, session: "Session", stream_id: int, headers: dict[str, list[str]]):
        self.session, self.id, self.headers = session, stream_id, headers
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_closed = False
        self.local_closed = False
        self._unacked = 0

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    async def read(self) -> bytes:
        """The next chunk of data; b"" once the peer finished (FIN or reset)."""
        if self.remote_closed and self._chunks.empty():
            return b""
        chunk = await self._chunks.get()
        if chunk:
            self._unacked += len(chunk)
            if self._unacked >= DEFAULT_WINDOW // 2:
                await self.session._send(self.session.codec.window_update(self.id, self._unacked))
                self._unacked = 0
        return chunk

    async def __aiter__(self):
        while chunk := await self.read():
            yield chunk

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            raise SpdyError(f"stream {self.id} is closed for writing")
        for i in range(0, len(data), MAX_DATA):
            await self.session._send(Codec.data(self.id, data[i:i + MAX_DATA]))

    async def close(self) -> None:
        """Half-close: FIN our direction."""
        if not self.local_closed:
            self.local_closed = True
            try:
                await self.session._send(Codec.data(self.id, b"", fin=True))
            except (ConnectionError, SpdyError):
                pass

    async def reset(self, status: int = RST_CANCEL) -> None:
        self.local_closed = True
        self._end()
        try:
            await self.session._send(self.session.codec.rst_stream(self.id, status))
        except (ConnectionError, SpdyError):
            pass

    def _feed(self, data: bytes, fin: bool) -> None:
        if data:
            self._chunks.put_nowait(data)
        if fin:
            self._end()

    def _end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._chunks.put_nowait(b"")


class Session:
    """The server end of a SPDY session: accepts the client's streams, replies to each."""

    def __init__(self, conn: ByteStream):
        self.conn = conn
        self.codec = Codec()
        self.streams: dict[int, Stream] = {}
        self._incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._buf = bytearray()
        self._eof = False
        self.closed = asyncio.Event()

    async def _send(self, frame: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionResetError("SPDY session closed")
        async with self._lock:
            await self.conn.write(frame)

    async def _send_compressed(self, build) -> None:
        # The header compressor is a stream: compress and write in the same order.
        if self.closed.is_set():
            raise ConnectionResetError("SPDY session closed")
        async with self._lock:
            await self.conn.write(build())

    async def _read_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if self._eof:
                return None
            chunk = await self.conn.read()
            if not chunk:
                self._eof = True
                continue
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def accept(self) -> Stream | None:
        """The next stream the client opened; None once the session ended."""
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
        return stream

    async def run(self) -> None:
        """Read frames until the connection ends; then every stream sees EOF."""
        try:
            while True:
                head = await self._read_exact(8)
                if head is None:
                    break
                length = struct.unpack(">I", head[4:])[0] & 0xFFFFFF
                payload = await self._read_exact(length)
                if payload is None:
                    break
                if not await self._handle(self.codec.decode(head, payload)):
                    break
        except SpdyError as e:
            log.debug("SPDY session error: %s", e)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._finish()

    def _finish(self) -> None:
        self.closed.set()
        for s in self.streams.values():
            s._end()
        self._incoming.put_nowait(None)

    async def _handle(self, f: Frame) -> bool:
        if f.type == 0:
            stream = self.streams.get(f.stream_id)
            if stream is None:
                await self._send(self.codec.rst_stream(f.stream_id, RST_INVALID_STREAM))
            else:
                stream._feed(f.data, bool(f.flags & FLAG_FIN))
        elif f.type == SYN_STREAM:
            stream = Stream(self, f.stream_id, f.headers)
            self.streams[f.stream_id] = stream
            await self._send_compressed(lambda: self.codec.syn_reply(f.stream_id, {}))
            if f.flags & FLAG_FIN:
                stream._end()
            self._incoming.put_nowait(stream)
        elif f.type == RST_STREAM:
            stream = self.streams.get(f.stream_id)
            if stream:
                stream.local_closed = True
                stream._end()
        elif f.type == PING:
            await self._send(self.codec.ping(f.value))
        elif f.type == GOAWAY:
            return False
        elif f.type == HEADERS and f.flags & FLAG_FIN:
            stream = self.streams.get(f.stream_id)
            if stream:
                stream._end()
        return True  # SETTINGS, WINDOW_UPDATE: nothing to do without flow control

    async def close(self) -> None:
        """GOAWAY, then close the connection."""
        if not self.closed.is_set():
            try:
                last = max(self.streams, default=0)
                await self._send(self.codec.goaway(last))
            except (ConnectionError, SpdyError):
                pass
        self.closed.set()
        try:
            await self.conn.close()
        except ConnectionError:
            pass
