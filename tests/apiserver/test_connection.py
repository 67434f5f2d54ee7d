"""The API server's connections (kybernetes/apiserver/connection.py): plain calls answered on the
short path, everything else on aiohttp's, one connection carrying both, answers in request
order. Raw TLS sockets against an in-process server, so pipelining, HTTP/1.0 and
`Connection: close` can be written byte for byte."""

from __future__ import annotations

import asyncio
import re
import ssl

import orjson
import pytest
from aiohttp import web
from aiohttp.http_parser import HttpRequestParser

from kybernetes.apiserver import connection
from kybernetes.apiserver.request import MAX_BODY
from kybernetes.apiserver.server import ApiServer, Config
from kybernetes.client.config import load_kubeconfig


@pytest.fixture
async def server(tmp_path):
    srv = ApiServer(Config(data_dir=tmp_path, secure_port=0))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def taken(monkeypatch):
    """Paths of the requests the short path took, in order."""
    paths: list[str] = []
    take = connection.ApiConnection._take

    def spy(self, message, payload):
        paths.append(message.path)
        take(self, message, payload)
    monkeypatch.setattr(connection.ApiConnection, "_take", spy)
    return paths


class Raw:
    """One TLS connection, written and read as bytes."""

    def __init__(self, server: ApiServer):
        cfg = load_kubeconfig(server.config.data_dir / "kubeconfig.yaml")
        self.ctx: ssl.SSLContext = cfg.ssl_context()  # type: ignore[assignment]
        self.port = server.port
        self.auth = f"Authorization: Bearer {cfg.token}\r\n" if cfg.token else ""

    async def __aenter__(self) -> "Raw":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                                 ssl=self.ctx)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    def request(self, method: str, target: str, body: bytes = b"", version: str = "1.1",
                headers: str = "") -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
        return (f"{method} {target} HTTP/{version}\r\nHost: x\r\n{self.auth}{headers}{length}"
                f"Content-Type: application/json\r\n\r\n").encode() + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, head_only: bool = False) -> tuple[str, dict[str, str], bytes]:
        """One response: status line, headers (lower-case names), body (de-chunked)."""
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)).decode()
        status, *lines = head.split("\r\n")[:-2]
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        if head_only:
            body = b""
        elif "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            assert headers.get("transfer-encoding") == "chunked", headers
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
        return status, headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""


def _cm(name: str) -> bytes:
    return orjson.dumps({"metadata": {"name": name}, "data": {"k": name}})


async def test_plain_calls_take_the_short_path_and_a_watch_aiohttps_on_the_same_connection(
        server, taken):
    cms = "/api/v1/namespaces/default/configmaps"
    async with Raw(server) as raw:
        # the first request of a connection may reach aiohttp's path before its task waits
        await raw.send(raw.request("GET", "/version"))
        assert (await raw.answer())[0] == "HTTP/1.1 200 OK"
        await raw.send(raw.request("POST", cms, _cm("a")))
        status, headers, body = await raw.answer()
        assert status == "HTTP/1.1 201 Created"
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body)["data"] == {"k": "a"}
        await raw.send(raw.request("GET", f"{cms}?watch=1&timeoutSeconds=1&resourceVersion=0"))
        status, headers, body = await raw.answer()
        assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
        assert [orjson.loads(line)["type"] for line in body.splitlines()] == ["ADDED"]
        await raw.send(raw.request("GET", f"{cms}/a"))
        status, _, body = await raw.answer()
        assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["metadata"]["name"] == "a"
    assert f"{cms}/a" in taken and cms in taken
    assert not any("watch" in p for p in taken)


async def test_pipelined_requests_are_answered_in_order_across_both_paths(server, taken):
    cms = "/api/v1/namespaces/default/configmaps"
    async with Raw(server) as raw:
        await raw.send(raw.request("GET", "/version"))
        await raw.answer()
        # one write: two creates, a watch that ends after a second, a read, a create
        await raw.send(raw.request("POST", cms, _cm("p1")) + raw.request("POST", cms, _cm("p2"))
                       + raw.request("GET", f"{cms}?watch=true&timeoutSeconds=1")
                       + raw.request("GET", f"{cms}/p2") + raw.request("POST", cms, _cm("p3")))
        answers = [await raw.answer() for _ in range(5)]
        assert [a[0].split(" ", 2)[1] for a in answers] == ["201", "201", "200", "200", "201"]
        assert [orjson.loads(a[2])["metadata"]["name"] for a in answers[:2]] == ["p1", "p2"]
        assert answers[2][1]["transfer-encoding"] == "chunked"  # the watch, quiet, then ended
        assert orjson.loads(answers[3][2])["metadata"]["name"] == "p2"
        assert orjson.loads(answers[4][2])["metadata"]["name"] == "p3"
        # (a bad request in the same write would take the whole write's requests with it, as
        # aiohttp's parser fails them all)
        await raw.send(raw.request("GET", "/version") + b"NOT HTTP\r\n\r\n")
        status, _, _ = await raw.answer()
        assert status.split(" ")[1] == "400"
        assert await raw.closed()
    assert taken.count(cms) >= 1  # p1 at least: the rest may wait behind it


async def test_connection_close_http10_and_head(server, taken):
    async with Raw(server) as raw:
        await raw.send(raw.request("GET", "/version"))
        await raw.answer()
        await raw.send(raw.request("HEAD", "/version"))
        status, headers, body = await raw.answer(head_only=True)
        assert status == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 0
        await raw.send(raw.request("GET", "/api/v1/namespaces/default",
                                   headers="Connection: close\r\n"))
        status, headers, body = await raw.answer()
        assert headers["connection"] == "close"
        assert orjson.loads(body)["metadata"]["name"] == "default"
        assert await raw.closed()
    async with Raw(server) as raw:
        await raw.send(raw.request("GET", "/version"))
        await raw.answer()
        await raw.send(raw.request("GET", "/api/v1/namespaces/default", version="1.0",
                                   headers="Connection: keep-alive\r\n"))
        status, headers, _ = await raw.answer()
        assert status == "HTTP/1.0 200 OK" and headers["connection"] == "keep-alive"
        await raw.send(raw.request("GET", "/api/v1/namespaces/default", version="1.0"))
        status, headers, _ = await raw.answer()
        assert status == "HTTP/1.0 200 OK" and headers["connection"] == "close"
        assert await raw.closed()
    assert taken.count("/api/v1/namespaces/default") == 3 and "/version" in taken


async def test_a_body_over_the_limit_is_refused_and_its_rest_dropped(server, taken):
    """413 as a Status as soon as the limit is passed; the rest of the body, sent after the
    answer, is read and dropped (as aiohttp lingers), so the connection serves the next request
    instead of being reset with the answer unread."""
    async with Raw(server) as raw:
        await raw.send(raw.request("GET", "/version"))
        await raw.answer()
        big = b'{"metadata":{"name":"big"},"data":{"k":"' + b"x" * (MAX_BODY + 2 ** 20) + b'"}}'
        whole = raw.request("POST", "/api/v1/namespaces/default/configmaps", big)
        cut = len(whole) - 2 ** 19
        await raw.send(whole[:cut])
        status, _, body = await raw.answer()
        assert status.startswith("HTTP/1.1 413")
        st = orjson.loads(body)
        assert (st["kind"], st["code"], st["reason"]) == ("Status", 413, "RequestEntityTooLarge")
        await raw.send(whole[cut:] + raw.request("GET", "/api/v1/namespaces/default"))
        status, _, body = await raw.answer()
        assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["metadata"]["name"] == "default"
    assert "/api/v1/namespaces/default/configmaps" in taken


def _message(head: str):
    class Proto:
        transport = None

        def pause_reading(self, *a, **kw) -> None: ...

        def resume_reading(self, *a, **kw) -> None: ...
    parser = HttpRequestParser(Proto(), asyncio.new_event_loop(), 2 ** 16)
    line, _, rest = head.partition("\r\n")
    data = f"{line}\r\nHost: x\r\n{rest + chr(13) + chr(10) if rest else ''}\r\n"
    (message, _), = parser.feed_data(data.encode())[0]
    return message


@pytest.mark.parametrize("head, expected", [
    ("GET /api/v1/namespaces/a/pods HTTP/1.1", True),
    ("POST /api/v1/namespaces/a/pods/p/binding HTTP/1.1", True),
    ("PATCH /apis/apps/v1/namespaces/a/deployments/d/scale HTTP/1.1", True),
    ("GET /api/v1/namespaces/a/pods?watch=1 HTTP/1.1", False),
    ("GET /api/v1/namespaces/a/pods?watch=false HTTP/1.1", False),  # conservative
    ("GET /api/v1/watch/namespaces/a/pods HTTP/1.1", False),
    ("GET /apis/apps/v1/watch/deployments HTTP/1.1", False),
    ("GET /api/v1/namespaces/a/pods/p/log?follow=true HTTP/1.1", False),
    ("POST /api/v1/namespaces/a/pods/p/exec?command=ls HTTP/1.1", False),
    ("GET /api/v1/namespaces/a/pods/p/attach HTTP/1.1", False),
    ("POST /api/v1/namespaces/a/pods/p/portforward HTTP/1.1", False),
    ("GET /api/v1/namespaces/a/services/s:80/proxy/x HTTP/1.1", False),
    ("GET /api/v1/nodes/n/proxy/metrics HTTP/1.1", False),
    ("GET /api/v1/namespaces/a/pods/p HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade",
     False),
    ("POST /api/v1/namespaces/a/pods HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2",
     False),
])
def test_which_requests_are_plain(head, expected):
    assert connection.plain(_message(head)) is expected


def test_one_piece_answers():
    resp = connection.one_piece(web.Response(text="ok", headers={"X-A": "1"}))

    class Req:
        method, version, keep_alive = "GET", (1, 1), True
    data = resp.render(Req())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in data and b"X-A: 1\r\n" in data
    assert re.search(rb"Content-Length: 2\r\n", data)
    broken = connection.one_piece(web.StreamResponse())
    assert broken.status == 500 and orjson.loads(broken.body)["code"] == 500
