"""The server end of exec/attach: accept kubectl's WebSocket or SPDY upgrade, run a handler.

    async def handler(io: ExecIO) -> int:   # returns the exit code
        async for chunk in io.stdin: await io.stdout(chunk)
        return 0

    return await serve_exec(request, handler)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from aiohttp import WSMsgType, web

from . import channels as ch
from .spdy import Session, Stream
from .upgrade import hijack

log = logging.getLogger("kyb.streaming.exec")
STREAM_WAIT = 30.0  # how long the client has to open the streams it announced


class _Stdin:
    """Data the client types, as an async iterator of chunks; ends at the client's EOF."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    def feed(self, data: bytes) -> None:
        if not self.closed and data:
            self._q.put_nowait(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._q.put_nowait(b"")

    async def read(self) -> bytes:
        if self.closed and self._q.empty():
            return b""
        return await self._q.get()

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class ExecIO:
    """What a handler sees: stdin (None unless requested), stdout/stderr writers, resizes."""

    def __init__(self, options: ch.ExecOptions, stdout: Callable[[bytes], Awaitable[None]],
                 stderr: Callable[[bytes], Awaitable[None]]):
        self.options = options
        self.tty = options.tty
        self.stdin: _Stdin | None = _Stdin() if options.stdin else None
        self._stdout, self._stderr = stdout, stderr
        self.resizes: asyncio.Queue[ch.TerminalSize] = asyncio.Queue()

    async def stdout(self, data: bytes) -> None:
        if self.options.stdout and data:
            await self._stdout(data)

    async def stderr(self, data: bytes) -> None:
        if data and self.options.stderr and not self.tty:
            await self._stderr(data)
        elif data and self.tty:  # a terminal has one output stream
            await self.stdout(data)


Handler = Callable[[ExecIO], Awaitable[int]]


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")


def bad_request(message: str, code: int = 400, reason: str = "BadRequest") -> web.Response:
    import orjson

    return web.Response(status=code, content_type="application/json", body=orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code}))


async def serve_exec(request: web.Request, handler: Handler,
                     options: ch.ExecOptions | None = None) -> web.StreamResponse:
    """Serve one exec/attach request with whichever protocol the client upgraded to."""
    options = options or ch.ExecOptions.from_query(request.query)
    if not (options.stdin or options.stdout or options.stderr):
        return bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if is_websocket(request):
        return await _serve_websocket(request, handler, options)
    if is_spdy(request):
        return await _serve_spdy(request, handler, options)
    return bad_request("Upgrade request required")


async def _run(handler: Handler, io: ExecIO) -> bytes:
    """Run the handler; its outcome as the Status bytes of the error channel."""
    try:
        code = await handler(io)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the command could not run: say why, as upstream does
        log.info("exec failed: %s", e)
        return ch.failure_status(str(e))
    return ch.exit_status(int(code or 0))


# ---- WebSocket channels ----

async def _serve_websocket(request: web.Request, handler: Handler,
                           options: ch.ExecOptions) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=ch.WEBSOCKET_PROTOCOLS, autoping=True, max_msg_size=0)
    if not ws.can_prepare(request).ok:
        return bad_request("unable to upgrade: no supported channel protocol requested", 403,
                           "Forbidden")
    await ws.prepare(request)
    v5 = ws.ws_protocol == ch.V5
    send_lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with send_lock:
            await ws.send_bytes(bytes((channel,)) + data)

    io = ExecIO(options, lambda d: send(ch.STDOUT, d), lambda d: send(ch.STDERR, d))
    task = asyncio.create_task(_run(handler, io))
    reader = asyncio.create_task(_read_websocket(ws, io, v5))
    try:
        done, _ = await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await send(ch.ERROR, task.result())
                await ws.close()
    finally:
        for t in (task, reader):
            t.cancel()
        for t in (task, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if io.stdin:
            io.stdin.close()
    return ws


async def _read_websocket(ws: web.WebSocketResponse, io: ExecIO, v5: bool) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == ch.STDIN and io.stdin:
            io.stdin.feed(data)
        elif channel == ch.RESIZE:
            size = ch.parse_resize(data)
            if size:
                io.resizes.put_nowait(size)
        elif channel == ch.CLOSE and v5 and data[:1] == bytes((ch.STDIN,)) and io.stdin:
            io.stdin.close()
    if io.stdin:
        io.stdin.close()


# ---- SPDY streams ----

async def accept_spdy(request: web.Request, protocols: tuple[str, ...]):
    """Negotiate X-Stream-Protocol-Version and switch to SPDY: (Session, protocol) or a Response."""
    offered = [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", [])
               for p in v.split(",") if p.strip()]
    chosen = next((p for p in protocols if p in offered), None)
    if chosen is None:
        return bad_request(f"unable to upgrade: unable to negotiate protocol: client supports "
                           f"{offered}, server accepts {list(protocols)}", 403, "Forbidden"), None
    conn = await hijack(request, 101, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                       ("X-Stream-Protocol-Version", chosen)])
    return Session(conn), chosen


async def _serve_spdy(request: web.Request, handler: Handler,
                      options: ch.ExecOptions) -> web.StreamResponse:
    session, chosen = await accept_spdy(request, ch.SPDY_PROTOCOLS)
    if chosen is None:
        return session
    runner = asyncio.create_task(session.run())
    want = {ch.STREAM_ERROR}
    if options.stdin:
        want.add(ch.STREAM_STDIN)
    if options.stdout:
        want.add(ch.STREAM_STDOUT)
    if options.stderr and not options.tty:
        want.add(ch.STREAM_STDERR)
    if options.tty:
        want.add(ch.STREAM_RESIZE)
    streams: dict[str, Stream] = {}
    tasks: list[asyncio.Task] = []
    try:
        async with asyncio.timeout(STREAM_WAIT):
            while not want <= streams.keys():
                s = await session.accept()
                if s is None:
                    return session.conn.response
                streams[s.header(ch.STREAM_TYPE)] = s
    except TimeoutError:
        log.info("exec: client did not open its streams in time")
        await session.close()
        runner.cancel()
        return session.conn.response

    async def out(name: str, data: bytes) -> None:
        if name in streams:
            await streams[name].write(data)

    io = ExecIO(options, lambda d: out(ch.STREAM_STDOUT, d), lambda d: out(ch.STREAM_STDERR, d))
    if io.stdin is not None:
        tasks.append(asyncio.create_task(_pump_stdin(streams[ch.STREAM_STDIN], io.stdin)))
    if ch.STREAM_RESIZE in streams:
        tasks.append(asyncio.create_task(_pump_resize(streams[ch.STREAM_RESIZE], io)))
    run = asyncio.create_task(_run(handler, io))
    try:
        done, _ = await asyncio.wait({run, runner}, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            with contextlib.suppress(ConnectionError):
                for name in (ch.STREAM_STDOUT, ch.STREAM_STDERR):
                    if name in streams:
                        await streams[name].close()
                await streams[ch.STREAM_ERROR].write(run.result())
                await streams[ch.STREAM_ERROR].close()
                # Let the client read everything and hang up first, as the kubelet does.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await session.closed.wait()
    finally:
        for t in (run, *tasks):
            t.cancel()
        await session.close()
        runner.cancel()
        for t in (run, runner, *tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    return session.conn.response


async def _pump_stdin(stream: Stream, stdin: _Stdin) -> None:
    async for chunk in stream:
        stdin.feed(chunk)
    stdin.close()


async def _pump_resize(stream: Stream, io: ExecIO) -> None:
    decoder = ch.ResizeDecoder()
    async for chunk in stream:
        for size in decoder.feed(chunk):
            io.resizes.put_nowait(size)
