"""The API server's connections: aiohttp's request handler, with a short path for plain calls.

For every request aiohttp's RequestHandler wakes its connection task, starts a task for the
handler, builds a StreamWriter and a BaseRequest, and walks the response through its state
machine. Nearly every API call is plain: a request whose answer is one JSON document.
ApiConnection answers those itself, from the message aiohttp's parser made: one task runs the
handler with an ApiRequest (what the handlers read of a request), and the answer (a
JsonResponse) goes out in one write. In a scratch TLS server this saved 10-25 of ~160 µs of
server CPU per small call; end to end (benchmarks/scheduler.py) about 6% of the API server's CPU
per pod.

Everything else takes aiohttp's own path on the same connection: watches and other streams,
upgrades (exec, attach, port-forward), proxies, `Expect: 100-continue`, bad requests, and
requests that arrive while the other path is busy. Answers stay in request order: a plain
request is taken only while aiohttp's side is idle, and requests arriving behind it wait.

This leans on aiohttp's RequestHandler internals (its message queue and the waiter of its
connection task); `supported()` checks they are there, and the server uses the stock handler if
not.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

try:
    from aiohttp.web_protocol import _ErrInfo
except ImportError:  # another aiohttp: supported() says no
    _ErrInfo = None

from kybernetes.api import errors

from .authn import UNREAD
from .request import MAX_BODY
from .response import JsonResponse

log = logging.getLogger(__name__)

_INTERNALS = ("_messages", "_waiter", "_parser", "_request_handler", "_keepalive_handle",
              "_next_keepalive_close_time", "_keepalive_timeout", "_request_count",
              "_pause_reading_for_buffer", "_buffer_paused", "_max_msg_queue_size",
              "_upgraded", "_payload_parser", "_message_tail", "_drain_helper", "_close",
              "_force_close", "_process_keepalive", "_resume_reading_if_drained",
              "_lingering_time")
_STREAM_SUFFIXES = ("/exec", "/attach", "/portforward", "/log")


def supported() -> bool:
    """Whether this aiohttp has the RequestHandler internals ApiConnection relies on."""
    return _ErrInfo is not None and all(hasattr(RequestHandler, n) for n in _INTERNALS)


def plain(message) -> bool:
    """Whether a request's answer is one document: not a stream, an upgrade or a proxy."""
    if type(message) is not RawRequestMessage or message.upgrade:
        return False
    headers = message.headers
    if "Expect" in headers or "Upgrade" in headers:
        return False
    url = message.url
    path = url.path
    # Conservative: a name such as "proxy-1" or "log" also takes aiohttp's path, still correct.
    if "/proxy" in path or "/watch/" in path or path.endswith(_STREAM_SUFFIXES):
        return False
    return "watch" not in url.query


class ApiRequest:
    """The part of aiohttp's BaseRequest that the API handlers use."""

    __slots__ = ("method", "path", "query", "headers", "version", "content", "_message",
                 "_protocol", "_state", "_body")

    def __init__(self, message: RawRequestMessage, payload, protocol: "ApiConnection") -> None:
        url = message.url
        self.method, self.headers, self.version = message.method, message.headers, message.version
        self.path, self.query = url.path, url.query
        self.content = payload
        self._message, self._protocol = message, protocol
        self._state: dict = {}
        self._body: bytes | None = None

    @property
    def keep_alive(self) -> bool:
        return not self._message.should_close

    @property
    def transport(self):
        return self._protocol.transport

    @property
    def protocol(self) -> "ApiConnection":
        return self._protocol

    @property
    def writer(self) -> "ApiRequest":
        return self  # JsonResponse only drains

    async def drain(self) -> None:
        await self._protocol._drain_helper()

    @property
    def can_read_body(self) -> bool:
        return not self.content.at_eof()

    async def read(self) -> bytes:
        """The whole body, refused (413) beyond the server's limit, as BaseRequest.read."""
        if self._body is None:
            body = bytearray()
            while True:
                chunk = await self.content.readany()
                body += chunk
                if len(body) > MAX_BODY:
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
                if not chunk:
                    break
            self._body = bytes(body)
        return self._body

    def __getitem__(self, key):
        return self._state[key]

    def __setitem__(self, key, value) -> None:
        self._state[key] = value

    def get(self, key, default=None):
        return self._state.get(key, default)


def one_piece(resp) -> JsonResponse:
    """A handler's answer as one write. web.Response with a bytes body converts; anything
    else (a stream) means a request was taken for plain that is not, which is a bug."""
    if isinstance(resp, JsonResponse):
        return resp
    if type(resp) is web.Response and isinstance(resp.body, bytes):
        headers = CIMultiDict(resp.headers)
        ctype = headers.pop("Content-Type", "application/octet-stream")
        headers.pop("Content-Length", None)
        return JsonResponse(resp.body, resp.status, headers, content_type=ctype)
    log.error("a plain request was answered with %s", type(resp).__name__)
    return JsonResponse(orjson.dumps(errors.internal("the answer could not be sent").status()), 500)


class ApiConnection(RequestHandler):
    """aiohttp's RequestHandler, answering plain requests on a short path (module docstring)."""

    peer_user = UNREAD  # the user of this connection's client certificate, once read

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._plain_task: asyncio.Task | None = None
        self._held: deque = deque()  # requests that came while a plain one was answered

    def data_received(self, data: bytes) -> None:
        if (self._force_close or self._close or self._payload_parser is not None
                or self._upgraded or self._parser is None):
            super().data_received(data)
            return
        try:
            messages, upgraded, tail = self._parser.feed_data(data)
        except HttpProcessingError as exc:  # aiohttp's path answers it with a 400
            messages = [(_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)]
            upgraded, tail = False, b""
        for message, payload in messages:
            self._request_count += 1
            if self._plain_task is not None or self._held:
                self._held.append((message, payload))
                if len(self._held) >= self._max_msg_queue_size and not self._buffer_paused:
                    self._pause_reading_for_buffer()
            elif self._aiohttp_idle() and plain(message):
                self._take(message, payload)
            else:
                self._queue(message, payload)
        self._upgraded = upgraded
        if upgraded and tail:
            self._message_tail = tail

    def _aiohttp_idle(self) -> bool:
        """aiohttp's connection task waits for a request, with none queued or in progress."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _queue(self, message, payload) -> None:
        """Hand a request to aiohttp's path, as its own data_received does."""
        self._messages.append((message, payload))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self._buffer_paused and len(self._messages) >= self._max_msg_queue_size:
            self._pause_reading_for_buffer()

    def _take(self, message, payload) -> None:
        consumed = getattr(self._parser, "message_consumed", None)
        if consumed is not None:
            consumed()  # the parser counts requests in flight
        self._plain_task = self._loop.create_task(self._answer(message, payload))

    async def _answer(self, message, payload) -> None:
        request = ApiRequest(message, payload, self)
        keep = False
        try:
            resp = one_piece(await self._request_handler(request))
            await resp.prepare(request)
            if not payload.is_eof():
                await self._drop_rest(payload)
            keep = resp.keep_alive and payload.is_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away
        except Exception:
            log.exception("answering %s %s", message.method, message.path)
        finally:
            self._plain_task = None
        if not keep or self.transport is None:
            self.force_close()
            return
        loop = self._loop
        self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = loop.call_at(self._next_keepalive_close_time,
                                                  self._process_keepalive)
        self._flush_held()

    async def _drop_rest(self, payload) -> None:
        """Read and drop the unread rest of a body (a refused one, say) for up to aiohttp's
        lingering time, as its own path does: a connection closed with unread data is reset,
        and the reset can take the answer with it before the client reads it."""
        try:
            async with asyncio.timeout(self._lingering_time):
                while not payload.is_eof():
                    await payload.readany()
        except Exception:  # too slow, or the connection went: the caller closes it
            pass

    def _flush_held(self) -> None:
        """After a plain answer: the next held request, plain again if it can be, or every
        held request to aiohttp's path, in order."""
        while self._held and self._plain_task is None:
            message, payload = self._held[0]
            if self._aiohttp_idle() and plain(message):
                self._held.popleft()
                self._take(message, payload)
            else:
                while self._held:
                    self._queue(*self._held.popleft())
        if self._buffer_paused and not self._held:
            self._resume_reading_if_drained()

    def _process_keepalive(self) -> None:
        if self._plain_task is not None:  # not idle: look again after the answer
            self._keepalive_handle = self._loop.call_at(
                self._loop.time() + self._keepalive_timeout, self._process_keepalive)
            return
        super()._process_keepalive()

    def connection_lost(self, exc: BaseException | None) -> None:
        task = self._plain_task
        super().connection_lost(exc)
        self._held.clear()
        if task is not None:
            task.cancel()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        task = self._plain_task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            task.cancel()
        await super().shutdown(timeout)


class ApiHttpServer(web.Server):
    """aiohttp's low-level server, with ApiConnection for each connection."""

    def __call__(self) -> RequestHandler:
        return ApiConnection(self, loop=self._loop, **self._kwargs)
