"""Byte streams for the streaming protocols: a hijacked aiohttp connection and a WebSocket tunnel.

aiohttp's server only treats `Upgrade: websocket` as an upgrade, so for `Upgrade: SPDY/3.1`
(and for a proxy that must pass any upgrade through untouched) we answer 101 ourselves and take
the connection's bytes from the protocol, the way aiohttp's own WebSocketResponse does.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

_HIGH_WATER = 256 * 1024


class _RawParser:
    """Stands in for aiohttp's payload parser: every byte after the 101 goes to a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class HijackedConnection:
    """The client connection of an aiohttp request after we answered 101 Switching Protocols."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 reader: asyncio.StreamReader):
        self.request, self.response, self.reader = request, response, reader
        self.transport = request.transport

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > _HIGH_WATER:
            await self.request.protocol._drain_helper()  # aiohttp's own writers wait here too

    async def write_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except (OSError, RuntimeError):
                pass

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def hijack(request: web.Request, status: int = 101,
                 headers: list[tuple[str, str]] | None = None) -> HijackedConnection:
    """Answer `status` (101) with `headers` and own the raw connection from now on."""
    resp = web.StreamResponse(status=status)
    for k, v in headers or ():
        resp.headers.add(k, v)
    resp.force_close()
    reader = asyncio.StreamReader(limit=2 ** 20)
    if request.transport is None:
        raise ConnectionResetError("connection lost")
    reader.set_transport(request.transport)  # pauses reading when the buffer is full
    # The parser goes in before the 101 leaves, so no byte of the new protocol is parsed as HTTP.
    request.protocol.set_parser(_RawParser(reader))  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    await resp.prepare(request)
    return HijackedConnection(request, resp, reader)


class StreamPair:
    """An asyncio (reader, writer) pair as a ByteStream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer.can_write_eof():
            try:
                self.writer.write_eof()
            except (OSError, RuntimeError):
                pass

    async def close(self) -> None:
        self.writer.close()


class WebSocketTunnel:
    """A byte stream carried in binary WebSocket messages (`SPDY/3.1+portforward.k8s.io`).

    Message boundaries mean nothing: each write is one message, reads concatenate them."""

    def __init__(self, ws):
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return msg.data
            elif msg.type == WSMsgType.TEXT:
                if msg.data:
                    return msg.data.encode()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                              WSMsgType.ERROR):
                return b""

    async def write(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("websocket closed")
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        await self.ws.close()
