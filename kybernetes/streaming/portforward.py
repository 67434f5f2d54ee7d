"""The server end of port-forward: SPDY streams, over an upgraded connection or a WebSocket.

For each forwarded connection kubectl opens two streams carrying the same `requestID` and `port`
headers: `streamType: error` (we write a message there if forwarding fails) and
`streamType: data` (the connection's bytes both ways).

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...
    return await serve_portforward(request, connect)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from aiohttp import web

from . import channels as ch
from .remotecommand import accept_spdy, bad_request, is_spdy, is_websocket
from .spdy import Session, Stream
from .upgrade import WebSocketTunnel

log = logging.getLogger("kyb.streaming.portforward")

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def serve_portforward(request: web.Request, connect: Connect) -> web.StreamResponse:
    if is_websocket(request):
        ws = web.WebSocketResponse(protocols=(ch.PORT_FORWARD_TUNNEL,), max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return bad_request("unable to upgrade: port-forward over WebSocket needs the "
                               f"{ch.PORT_FORWARD_TUNNEL} subprotocol", 403, "Forbidden")
        await ws.prepare(request)
        await run_portforward(Session(WebSocketTunnel(ws)), connect)
        return ws
    if is_spdy(request):
        session, chosen = await accept_spdy(request, (ch.PORT_FORWARD_SPDY,))
        if chosen is None:
            return session
        await run_portforward(session, connect)
        return session.conn.response
    return bad_request("Upgrade request required")


async def run_portforward(session: Session, connect: Connect) -> None:
    """Serve the session's stream pairs until the client hangs up."""
    runner = asyncio.create_task(session.run())
    pending: dict[str, dict[str, Stream]] = {}
    tasks: set[asyncio.Task] = set()
    try:
        while (stream := await session.accept()) is not None:
            kind = stream.header(ch.STREAM_TYPE)
            if kind not in (ch.STREAM_ERROR, ch.STREAM_DATA):
                await stream.reset()
                continue
            # Old clients send no requestID: then an error stream and the next data stream pair.
            rid = stream.header("requestid") or stream.header("port")
            pair = pending.setdefault(rid, {})
            pair[kind] = stream
            if len(pair) == 2:
                del pending[rid]
                t = asyncio.create_task(_forward(pair[ch.STREAM_DATA], pair[ch.STREAM_ERROR],
                                                 connect))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
    finally:
        for t in list(tasks):
            t.cancel()
        for t in list(tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await session.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


async def _forward(data: Stream, error: Stream, connect: Connect) -> None:
    port_text = data.header("port")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(port_text)
    except ValueError:
        await _fail(data, error, f"invalid port {port_text!r}")
        return
    try:
        async with asyncio.timeout(10):
            reader, writer = await connect(port)
    except (OSError, TimeoutError, LookupError, ValueError) as e:
        await _fail(data, error, f"error forwarding port {port}: {e}")
        return

    async def upstream() -> None:  # client → pod
        async for chunk in data:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def downstream() -> None:  # pod → client
        while chunk := await reader.read(65536):
            await data.write(chunk)
        await data.close()

    up, down = asyncio.create_task(upstream()), asyncio.create_task(downstream())
    try:
        await asyncio.wait({down}, return_when=asyncio.ALL_COMPLETED)
    except asyncio.CancelledError:
        raise
    finally:
        up.cancel()
        down.cancel()
        for t in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        writer.close()
        await error.close()


async def _fail(data: Stream, error: Stream, message: str) -> None:
    with contextlib.suppress(ConnectionError):
        await error.write(message.encode())
        await error.close()
        await data.close()
