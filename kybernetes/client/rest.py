"""The one HTTP client every component uses to talk to the API server (JSON over HTTPS)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import AsyncIterator, Literal
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from kybernetes.api import errors
from kybernetes.api.errors import ApiError
from kybernetes.api.registry import BUILTIN, Registry, Resource

from .config import ClientConfig, load_kubeconfig
from .http1 import ConnectionPool

log = logging.getLogger(__name__)

PatchType = Literal["merge", "strategic", "json", "apply"]
_PATCH_CONTENT = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

# Resources are named by the registry of built-in kinds; CRDs can be added to `client.registry`.
_REGISTRY = Registry(BUILTIN)


def resource(api_version: str, kind: str) -> Resource:
    r = _REGISTRY.by_kind(api_version, kind)
    if r is None:
        raise KeyError(f"unknown kind {kind} in {api_version}")
    return r


def object_key(obj: dict) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


# Characters a path may carry as they are; anything else is percent-encoded (a '%' is taken as
# the start of an escape the caller made, as aiohttp did).
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9/\-._~!$&'()*+,;=:@%?]")


class Client:
    accept = "application/json"

    def __init__(self, config: ClientConfig, *, timeout: float = 30):
        self.config = config
        self.registry = Registry(BUILTIN)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._pool: ConnectionPool | None = None
        self._ssl = None
        # The header lines every plain request carries, formatted once.
        self._headers = f"User-Agent: {config.user_agent}\r\nAccept: {self.accept}\r\n"
        if config.token:
            self._headers += f"Authorization: Bearer {config.token}\r\n"

    @classmethod
    def from_kubeconfig(cls, path=None, user_agent: str = "kyb", **kw) -> "Client":
        return cls(load_kubeconfig(path, user_agent=user_agent), **kw)

    def _ssl_context(self):
        if self._ssl is None:  # built once: it writes the client key to a file to load it
            self._ssl = self.config.ssl_context()
        return self._ssl

    @property
    def session(self) -> aiohttp.ClientSession:
        """aiohttp's session, for watches and other streams."""
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.config.user_agent, "Accept": self.accept}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            conn = aiohttp.TCPConnector(ssl=self._ssl_context(), limit=100)
            self._session = aiohttp.ClientSession(self.config.server, connector=conn,
                                                  headers=headers, json_serialize=None)
        return self._session

    @property
    def pool(self) -> ConnectionPool:
        """Keep-alive connections for plain requests (see http1.py for why not the session)."""
        if self._pool is None:
            self._pool = ConnectionPool(self.config.server, self._ssl_context(), limit=100)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- paths ----

    @staticmethod
    def path(r: Resource, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        base = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        if r.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{r.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base

    # ---- raw requests ----

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body=None, content_type: str = "application/json",
                      timeout: float | None = None) -> dict:
        data = None
        headers = self._headers
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers += f"Content-Type: {content_type}\r\n"
        target = _target(path, params)
        try:
            status, raw = await self.pool.request(method, target, headers, data,
                                                  timeout or self.timeout)
        except (asyncio.TimeoutError, OSError) as e:
            raise errors.unavailable(f"{method} {path}: {str(e) or type(e).__name__}") from None
        if status >= 400:
            raise _error(status, raw)
        return orjson.loads(raw) if raw else {}

    async def ready(self, path: str = "/readyz") -> bool:
        """Whether a health endpoint answers 200. Its body is plain text ("ok"), which
        request() would fail to decode as JSON."""
        try:
            status, _ = await self.pool.request("GET", path, self._headers, None, self.timeout)
        except (asyncio.TimeoutError, OSError):
            return False
        return status == 200

    # ---- verbs ----

    async def get(self, r: Resource, name: str, namespace: str | None = None) -> dict:
        return await self.request("GET", self.path(r, namespace, name))

    async def list(self, r: Resource, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None) -> dict:
        return await self.request("GET", self.path(r, namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
            "continue": continue_, "resourceVersion": resource_version})

    async def list_all(self, r: Resource, namespace: str | None = None, *,
                       page: int = 500, **kw) -> tuple[list[dict], str]:
        """Every item, paged; returns (items, the list's resourceVersion)."""
        items: list[dict] = []
        cont = None
        while True:
            out = await self.list(r, namespace, limit=page, continue_=cont, **kw)
            items.extend(out.get("items") or [])
            cont = out["metadata"].get("continue")
            if not cont:
                return items, out["metadata"]["resourceVersion"]

    async def create(self, r: Resource, obj: dict, namespace: str | None = None, *,
                     field_manager: str | None = None, dry_run: bool = False) -> dict:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self.request("POST", self.path(r, ns), body=_typed(r, obj), params={
            "fieldManager": field_manager, "dryRun": "All" if dry_run else None})

    async def update(self, r: Resource, obj: dict, *, subresource: str | None = None,
                     field_manager: str | None = None) -> dict:
        meta = obj["metadata"]
        return await self.request("PUT", self.path(r, meta.get("namespace"), meta["name"],
                                                   subresource),
                                  body=_typed(r, obj), params={"fieldManager": field_manager})

    async def update_status(self, r: Resource, obj: dict, **kw) -> dict:
        return await self.update(r, obj, subresource="status", **kw)

    async def patch(self, r: Resource, name: str, patch, namespace: str | None = None, *,
                    type: PatchType = "merge", subresource: str | None = None,
                    field_manager: str | None = None, force: bool | None = None) -> dict:
        return await self.request("PATCH", self.path(r, namespace, name, subresource),
                                  body=patch, content_type=_PATCH_CONTENT[type],
                                  params={"fieldManager": field_manager, "force": force})

    async def delete(self, r: Resource, name: str, namespace: str | None = None, *,
                     propagation: str | None = None, grace_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        opts: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            opts["propagationPolicy"] = propagation
        if grace_seconds is not None:
            opts["gracePeriodSeconds"] = grace_seconds
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", self.path(r, namespace, name), body=opts)

    async def watch(self, r: Resource, namespace: str | None = None, *,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = 300,
                    bookmarks: bool = True) -> AsyncIterator[dict]:
        """Watch events as dicts {"type", "object"}. Ends when the server ends the stream; an
        ERROR event raises ApiError (410 Expired: re-list)."""
        params = {"watch": "true", "resourceVersion": resource_version,
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "allowWatchBookmarks": "true" if bookmarks else None,
                  "timeoutSeconds": timeout_seconds}
        params = {k: v for k, v in params.items() if v is not None}
        try:
            async with self.session.get(
                    self.path(r, namespace), params={k: str(v) for k, v in params.items()},
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                                  sock_read=(timeout_seconds or 300) + 30)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                async for ev in _events(resp.content):
                    if ev.get("type") == "ERROR":
                        raise ApiError.from_status(ev.get("object") or {}, 500)
                    yield ev
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise errors.unavailable(f"watch {r.plural}: {e or type(e).__name__}") from None


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[dict]:
    """The stream's newline-delimited events, split from whole chunks: reading it a line at a
    time cost more than decoding the events when they come fast."""
    pending = bytearray()
    async for chunk in content.iter_any():
        if b"\n" not in chunk:
            pending += chunk  # part of a long line: wait for its end
            continue
        if pending:
            pending += chunk
            chunk = bytes(pending)
            pending.clear()
        lines = chunk.split(b"\n")
        pending += lines.pop()
        for line in lines:
            if line.strip():
                yield orjson.loads(line)
    if pending.strip():
        yield orjson.loads(bytes(pending))


def _target(path: str, params: dict | None) -> str:
    """The request target: the path percent-encoded where needed, then the query (bools as
    true/false, None left out, every reserved character of a value encoded: selectors carry
    '=', '!', ',' and spaces)."""
    if _PATH_UNSAFE.search(path):
        path = quote(path, safe="/-._~!$&'()*+,;=:@%?")
    if not params:
        return path
    query = urlencode([(k, str(v).lower() if isinstance(v, bool) else str(v))
                       for k, v in params.items() if v is not None], quote_via=quote)
    if not query:
        return path
    return f"{path}&{query}" if "?" in path else f"{path}?{query}"


def _typed(r: Resource, obj: dict) -> dict:
    if obj.get("apiVersion") and obj.get("kind"):
        return obj
    return dict(obj, apiVersion=r.api_version, kind=r.kind)


def _error(status: int, raw: bytes) -> ApiError:
    try:
        body = orjson.loads(raw)
        if isinstance(body, dict) and body.get("kind") == "Status":
            return ApiError.from_status(body, status)
    except orjson.JSONDecodeError:
        pass
    return ApiError(status, "Unknown", raw.decode(errors="replace")[:500] or f"HTTP {status}")
