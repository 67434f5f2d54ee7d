"""Keep-alive HTTP/1.1 connections for the client's plain request/response calls.

Going through aiohttp's ClientSession cost a component about twice the CPU of this path per
request (~500 µs against ~250-300 µs for a GET over TLS, measured here), and every component pays
it on each write. Here the request head is one formatted string and the answer is read by
aiohttp's own response parser (llhttp, in C: status line, headers, Content-Length, chunked and
close-delimited bodies). Watches and other streams stay on aiohttp's session.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from aiohttp.http import HttpResponseParser

# Bodies are buffered whole, so a limit this large keeps the parser's flow control (which pauses
# reading for a consumer that reads as it goes) from ever engaging.
_LIMIT = 1 << 30
# A connection idle this long is closed instead of reused: below aiohttp's server keep-alive
# (75 s), so a reused connection is rarely one the server is closing at that very moment.
_MAX_IDLE = 30.0
# Verbs that may be sent twice: retried once when a reused connection dies before answering
# (Go's net/http replays the same ones; a PUT or DELETE the server did apply would come back as a
# spurious conflict or not-found).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class ServerDisconnected(ConnectionResetError):
    """The server closed the connection before a whole response arrived."""


class BadResponse(ConnectionError):
    """The server's bytes were not an HTTP/1.1 response (or not one we asked for)."""


class _Connection(asyncio.Protocol):
    """One connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_set: set):
        self.loop = loop
        self.open_set = open_set  # the pool's open connections, for close()
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self, loop, _LIMIT, read_until_eof=True)
        self.waiter: asyncio.Future | None = None
        self.message = None
        self.payload = None
        self.received = False  # any byte of the current response
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    # -- asyncio.Protocol --

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.open_set.add(self)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            messages, _, _ = self.parser.feed_data(data)
        except Exception as e:  # a parse error: nothing more on this connection makes sense
            self._fail(BadResponse(f"malformed response: {e!r}"))
            return
        for message, payload in messages:
            if 100 <= message.code < 200:
                continue    # an interim answer (100 Continue): the final one follows
            if self.waiter is None or self.message is not None:
                self._fail(BadResponse("response without a request"))
                return
            self.message, self.payload = message, payload
        self._deliver()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.transport = None
        self.open_set.discard(self)
        if self.waiter is None or self.waiter.done():
            return
        if self.message is not None:
            try:
                self.parser.feed_eof()  # ends a body delimited by the close
            except Exception as e:
                self.waiter.set_exception(ServerDisconnected(f"response cut short: {e}"))
                return
            self._deliver()
        if not self.waiter.done():
            self.waiter.set_exception(ServerDisconnected(
                f"server closed the connection{f': {exc}' if exc else ''}"))

    # StreamReader's flow-control calls: pausing never happens with _LIMIT (see above); resuming
    # is also called at the end of every body (with keywords that vary by aiohttp version).
    def pause_reading(self, *args, **kw) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self, *args, **kw) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    # -- requests --

    def _deliver(self) -> None:
        waiter, payload = self.waiter, self.payload
        if payload is None or not payload.is_eof() or waiter is None or waiter.done():
            return
        try:
            waiter.set_result((self.message, payload.read_nowait()))
        except Exception as e:  # the parser put an error on the body (bad chunk, ...)
            waiter.set_exception(BadResponse(f"malformed body: {e!r}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, data: bytes, deadline: float):
        """Send one request; the (RawResponseMessage, body bytes) that answers it, unless the
        loop's clock passes `deadline` first (TimeoutError)."""
        self.waiter = waiter = self.loop.create_future()
        self.message = self.payload = None
        self.received = False
        # A bare timer rather than asyncio.timeout(): this runs for every request.
        timer = self.loop.call_at(deadline, self._time_out)
        self.transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _time_out(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Up to `limit` keep-alive connections to one server; requests wait for a free one."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | bool, *, limit: int = 100):
        url = urlsplit(server)
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.netloc = url.netloc  # the Host header, brackets and port as written
        self.prefix = url.path.rstrip("/")
        self.ssl = ssl_context if url.scheme == "https" else None
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(limit)  # made again for each event loop (see _bind)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def request(self, method: str, target: str, headers: str, body: bytes | None,
                      timeout: float) -> tuple[int, bytes]:
        """One exchange within `timeout` seconds: `target` is the path and query, `headers` the
        lines ("Name: value\r\n") besides Host and Content-Length; (status, body) comes back.
        (Not for HEAD: the parser would wait for the body its Content-Length announces.)"""
        head = f"{method} {self.prefix}{target} HTTP/1.1\r\nHost: {self.netloc}\r\n{headers}"
        if body:
            data = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        elif method in _WITH_BODY:
            data = f"{head}Content-Length: 0\r\n\r\n".encode()
        else:
            data = f"{head}\r\n".encode()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections and waits belong to one event loop
            self._bind(loop)
        deadline = loop.time() + timeout
        if self._slots.locked():  # all connections busy: wait for one, within the time given
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            for attempt in (1, 2):
                conn = self._idle_connection(loop)
                reused = conn is not None
                if conn is None:
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect(loop)
                try:
                    message, answer = await conn.exchange(data, deadline)
                except ServerDisconnected:
                    conn.close()
                    # A reused connection may have been closing as we wrote; only a request
                    # that is safe to repeat (nothing answered, idempotent verb) goes again.
                    if attempt == 1 and reused and not conn.received and method in _IDEMPOTENT:
                        continue
                    raise
                except BaseException:  # timeout, cancellation, bad response: state unknown
                    conn.close()
                    raise
                if message.should_close or not conn.usable:
                    conn.close()
                else:
                    conn.idle_since = loop.time()
                    self._idle.append(conn)
                return message.code, answer
            raise AssertionError("unreachable")
        finally:
            self._slots.release()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        for conn in self._open:
            conn.closed = True  # a connection of a loop that has gone cannot be used or closed
        self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        self._idle, self._open = [], set()

    def _idle_connection(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: least likely to be stale
            if conn.usable and now - conn.idle_since < _MAX_IDLE:
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        _, conn = await loop.create_connection(
            lambda: _Connection(loop, self._open), self.host, self.port, ssl=self.ssl,
            server_hostname=self.host if self.ssl else None)
        return conn

    async def close(self) -> None:
        self._idle.clear()
        for conn in list(self._open):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()  # no TLS goodbye needed: we are the ones leaving
        await asyncio.sleep(0)  # let connection_lost run before the loop may end
