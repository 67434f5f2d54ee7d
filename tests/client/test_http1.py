"""Client.request over its own keep-alive HTTP/1.1 connections (kybernetes/client/http1.py):
against the real API server for behaviour, and against small scripted servers for the wire
cases a healthy API server does not produce (chunked and close-delimited bodies, connections
dropped mid-request, silence)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, resource
from kybernetes.client.config import ClientConfig
from kybernetes.client.http1 import ConnectionPool
from kybernetes.client.metadata import MetadataClient

CONFIGMAPS = resource("v1", "ConfigMap")
NAMESPACES = resource("v1", "Namespace")


@pytest.fixture
async def ns(client):
    name = f"h1-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await client.delete(NAMESPACES, name)


def _cm(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


# ---- against the API server ----

async def test_verbs_round_trip(client, ns):
    created = await client.create(CONFIGMAPS, _cm("one"), ns)
    assert created["metadata"]["uid"]
    got = await client.get(CONFIGMAPS, "one", ns)
    assert got["data"] == {"k": "v"}
    got["data"] = {"k": "w"}
    updated = await client.update(CONFIGMAPS, got)
    assert updated["data"] == {"k": "w"}
    assert updated["metadata"]["resourceVersion"] != got["metadata"]["resourceVersion"]
    patched = await client.patch(CONFIGMAPS, "one", {"data": {"x": "y"}}, ns)
    assert patched["data"] == {"k": "w", "x": "y"}
    patched = await client.patch(CONFIGMAPS, "one", [{"op": "remove", "path": "/data/k"}], ns,
                                 type="json")
    assert patched["data"] == {"x": "y"}
    await client.delete(CONFIGMAPS, "one", ns)
    with pytest.raises(ApiError) as e:
        await client.get(CONFIGMAPS, "one", ns)
    assert e.value.code == 404


async def test_ready_reads_plain_text_health_endpoints(client):
    """/readyz answers "ok", not JSON: request() cannot read it, ready() reads the status."""
    with pytest.raises(ValueError):
        await client.request("GET", "/readyz")
    assert await client.ready()
    assert await client.ready("/livez")
    assert not await client.ready("/version/nothing-here")
    dead = Client(ClientConfig(server="https://127.0.0.1:1"), timeout=2)
    try:
        assert not await dead.ready()
    finally:
        await dead.close()


async def test_errors_carry_the_servers_status(client, ns):
    with pytest.raises(ApiError) as e:
        await client.get(CONFIGMAPS, "missing", ns)
    assert (e.value.code, e.value.reason) == (404, "NotFound")
    assert e.value.details.get("name") == "missing"

    await client.create(CONFIGMAPS, _cm("dup"), ns)
    with pytest.raises(ApiError) as e:
        await client.create(CONFIGMAPS, _cm("dup"), ns)
    assert (e.value.code, e.value.reason) == (409, "AlreadyExists")

    with pytest.raises(ApiError) as e:
        await client.create(CONFIGMAPS, _cm("Not_A_Name"), ns)
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    # The connection that carried the errors is still good for the next request.
    assert (await client.get(CONFIGMAPS, "dup", ns))["metadata"]["name"] == "dup"


async def test_label_selectors_with_reserved_characters(client, ns):
    await client.create(CONFIGMAPS, _cm("a", env="prod", tier="db"), ns)
    await client.create(CONFIGMAPS, _cm("b", env="dev", tier="web"), ns)
    await client.create(CONFIGMAPS, _cm("c", env="test", tier="db", legacy="yes"), ns)

    async def names(selector: str) -> list[str]:
        out = await client.list(CONFIGMAPS, ns, label_selector=selector)
        return sorted(i["metadata"]["name"] for i in out["items"])

    assert await names("env in (prod, dev),tier!=web") == ["a"]
    assert await names("tier=db,!legacy") == ["a"]
    assert await names("env notin (prod)") == ["b", "c"]
    assert await names("legacy") == ["c"]
    # Booleans go out lowercased, None is left out.
    out = await client.request("GET", Client.path(CONFIGMAPS, ns), params={
        "labelSelector": "env=prod", "allowWatchBookmarks": False, "limit": None})
    assert [i["metadata"]["name"] for i in out["items"]] == ["a"]


async def test_many_requests_at_once(client, ns):
    creates = [client.create(CONFIGMAPS, _cm(f"c{i}"), ns) for i in range(150)]
    gets = [client.get(NAMESPACES, ns) for _ in range(150)]
    out = await asyncio.gather(*creates, *gets)
    assert {o["metadata"]["name"] for o in out[:150]} == {f"c{i}" for i in range(150)}
    assert all(o["metadata"]["name"] == ns for o in out[150:])
    assert len(client.pool._open) <= 100
    items, _ = await client.list_all(CONFIGMAPS, ns)
    assert len(items) == 150


async def test_metadata_client_gets_partial_objects(client, ns):
    await client.create(CONFIGMAPS, _cm("meta", app="x"), ns)
    meta = MetadataClient.like(client)
    try:
        got = await meta.get(CONFIGMAPS, "meta", ns)
        assert got["kind"] == "PartialObjectMetadata"
        assert got["metadata"]["labels"] == {"app": "x"}
        assert "data" not in got
        listed = await meta.list(CONFIGMAPS, ns)
        assert listed["kind"] == "PartialObjectMetadataList"
        assert [i["metadata"]["name"] for i in listed["items"]] == ["meta"]
        # The plain client on the same server still gets whole objects.
        assert (await client.get(CONFIGMAPS, "meta", ns))["data"] == {"k": "v"}
    finally:
        await meta.close()


async def test_close_closes_the_connections(apiserver):
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    await c.request("GET", "/api/v1/namespaces/default")
    conns = list(c.pool._open)
    assert conns
    await c.close()
    assert all(conn.closed for conn in conns)
    # A closed client opens new connections if used again.
    assert (await c.request("GET", "/api/v1/namespaces/default"))["metadata"]["name"] == "default"
    await c.close()


# ---- against scripted servers ----

class Scripted:
    """A plain-HTTP server on loopback answering each request with `answer(n, head, body,
    writer)`, n counting requests across connections; the requests are kept."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.url = ""
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> "Scripted":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def client(self, **kw) -> Client:
        return Client(ClientConfig(server=self.url, token="sekret"), **kw)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self._handlers.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append((conn, head, body))
                if await self.answer(len(self.requests), head, body, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the test ended (cancelled so: a quiet end)
        finally:
            writer.close()


def _ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def test_request_bytes_on_the_wire():
    async def answer(n, head, body, w):
        w.write(_ok())

    async with Scripted(answer) as s:
        c = s.client()
        try:
            await c.request("POST", "/api/v1/namespaces/a b/things", body={"x": 1},
                            params={"labelSelector": "a=b,c!=d", "dryRun": "All", "w": True})
            await c.request("GET", "/api/v1/things")
        finally:
            await c.close()
    (_, post, post_body), (_, get, get_body) = s.requests
    lines = post.decode().split("\r\n")
    assert lines[0] == ("POST /api/v1/namespaces/a%20b/things?labelSelector=a%3Db%2Cc%21%3Dd"
                        "&dryRun=All&w=true HTTP/1.1")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    assert headers["host"] == s.url.removeprefix("http://")
    assert headers["authorization"] == "Bearer sekret"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "kyb"
    assert int(headers["content-length"]) == len(post_body)
    assert post_body == b'{"x":1}'
    assert get.startswith(b"GET /api/v1/things HTTP/1.1\r\n")
    assert b"content-length" not in get.lower() and get_body == b""


async def test_chunked_and_close_delimited_bodies():
    async def answer(n, head, body, w):
        if n == 1:  # chunked, in pieces with pauses between them
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"items": [', b'1, 2, 3', b"]}"):
                w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await w.drain()
                await asyncio.sleep(0.01)
            w.write(b"0\r\n\r\n")
        elif n == 2:  # an error, chunked
            status = b'{"kind": "Status", "reason": "Conflict", "code": 409, "message": "no"}'
            w.write(b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"%x\r\n%s\r\n0\r\n\r\n" % (len(status), status))
        else:  # no length: the body ends with the connection
            w.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"until": "eof"}')
            return False

    async with Scripted(answer) as s:
        c = s.client()
        try:
            assert await c.request("GET", "/a") == {"items": [1, 2, 3]}
            with pytest.raises(ApiError) as e:
                await c.request("GET", "/b")
            assert (e.value.code, e.value.reason, e.value.message) == (409, "Conflict", "no")
            assert await c.request("GET", "/c") == {"until": "eof"}
            assert await c.request("GET", "/d") == {"until": "eof"}
        finally:
            await c.close()
    # Keep-alive held for the first three; Connection: close made the fourth open a new one.
    assert [conn for conn, _, _ in s.requests] == [1, 1, 1, 2]


@pytest.mark.parametrize("together", [True, False])
async def test_an_interim_100_continue_is_skipped(together):
    async def answer(n, head, body, w):
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not together:
            await w.drain()
            await asyncio.sleep(0.05)
        w.write(_ok(b'{"final": true}'))

    async with Scripted(answer) as s:
        c = s.client()
        try:
            assert await c.request("POST", "/x", body={}) == {"final": True}
            assert await c.request("GET", "/y") == {"final": True}
        finally:
            await c.close()


async def test_connection_close_is_honoured():
    async def answer(n, head, body, w):
        w.write(_ok(extra=b"Connection: close\r\n"))

    async with Scripted(answer) as s:
        c = s.client()
        try:
            for _ in range(3):
                assert await c.request("GET", "/x") == {"ok": True}
        finally:
            await c.close()
    assert [conn for conn, _, _ in s.requests] == [1, 2, 3]


def _drop_second_request():
    """Answers the first request, then drops that connection when the next request arrives on
    it without answering: a keep-alive connection the server closed under the client."""
    async def answer(n, head, body, w):
        if n == 2:
            return False
        w.write(_ok(b'{"n": %d}' % n))
    return answer


async def test_get_on_a_dropped_keepalive_connection_is_retried():
    async with Scripted(_drop_second_request()) as s:
        c = s.client()
        try:
            assert await c.request("GET", "/x") == {"n": 1}
            assert await c.request("GET", "/x") == {"n": 3}
        finally:
            await c.close()
    assert [conn for conn, _, _ in s.requests] == [1, 1, 2]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_write_on_a_dropped_connection_is_not_sent_twice(method):
    """Only GET, HEAD, OPTIONS and TRACE are replayed, as Go's net/http does: a PUT or DELETE
    the server applied before dying would come back as a spurious conflict or not-found."""
    async with Scripted(_drop_second_request()) as s:
        c = s.client()
        try:
            assert await c.request("POST", "/x", body={}) == {"n": 1}
            with pytest.raises(ApiError) as e:
                await c.request(method, "/x", body={"again": True})
            assert e.value.code == 503
            assert e.value.message.startswith(f"{method} /x: ")
            assert len(s.requests) == 2
            # The next request goes on a new connection.
            assert await c.request("POST", "/x", body={}) == {"n": 3}
        finally:
            await c.close()
    assert [conn for conn, _, _ in s.requests] == [1, 1, 2]


async def test_a_connection_closed_while_idle_is_not_reused():
    async def answer(n, head, body, w):
        w.write(_ok(b'{"n": %d}' % n))
        return False  # close after every answer, without saying so

    async with Scripted(answer) as s:
        c = s.client()
        try:
            assert await c.request("POST", "/x", body={}) == {"n": 1}
            for _ in range(200):  # until the client has seen the close
                if not any(conn.usable for conn in c.pool._idle):
                    break
                await asyncio.sleep(0.01)
            assert await c.request("POST", "/x", body={}) == {"n": 2}
        finally:
            await c.close()
    assert [conn for conn, _, _ in s.requests] == [1, 2]


async def test_silence_times_out_as_unavailable():
    async def answer(n, head, body, w):
        if n == 1:
            await asyncio.sleep(30)
        w.write(_ok())

    async with Scripted(answer) as s:
        c = s.client(timeout=0.3)
        try:
            with pytest.raises(ApiError) as e:
                await c.request("GET", "/slow")
            assert (e.value.code, e.value.message) == (503, "GET /slow: TimeoutError")
            # The timed-out connection is dropped; a new one answers.
            assert await c.request("GET", "/fast", timeout=10) == {"ok": True}
        finally:
            await c.close()


async def test_malformed_responses_and_refused_connections_are_unavailable():
    async def answer(n, head, body, w):
        w.write(b"SMTP ready\r\n\r\n")

    async with Scripted(answer) as s:
        c = s.client()
        try:
            with pytest.raises(ApiError) as e:
                await c.request("GET", "/x")
            assert e.value.code == 503 and e.value.message.startswith("GET /x: ")
        finally:
            await c.close()
        url = s.url
    c = Client(ClientConfig(server=url))  # nothing listens there any more
    try:
        with pytest.raises(ApiError) as e:
            await c.request("GET", "/x")
        assert e.value.code == 503 and e.value.message.startswith("GET /x: ")
    finally:
        await c.close()


async def test_waiting_for_a_free_connection():
    gate = asyncio.Event()

    async def answer(n, head, body, w):
        await gate.wait()
        w.write(_ok(b'{"n": %d}' % n))

    async with Scripted(answer) as s:
        c = s.client()
        c._pool = ConnectionPool(s.url, False, limit=3)
        try:
            calls = [asyncio.ensure_future(c.request("GET", "/x")) for _ in range(10)]
            for _ in range(500):  # until the three connections carry a request each
                if len(s.requests) == 3:
                    break
                await asyncio.sleep(0.01)
            assert len(s.requests) == 3 and s.connections == 3
            gate.set()
            out = await asyncio.gather(*calls)
        finally:
            await c.close()
    assert sorted(o["n"] for o in out) == list(range(1, 11))
    assert s.connections == 3
