"""Recording core/v1 Events, so `kubectl describe` tells what controllers did.

Events are written in the background; a repeat of the same (object, reason, message) within
the window bumps `count` and `lastTimestamp` instead of creating another, as client-go's
event correlator does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import time

from kybernetes.api.errors import ApiError

from .rest import Client, resource

log = logging.getLogger(__name__)
_EVENTS = resource("v1", "Event")
_AGGREGATE_WINDOW = 600.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str | None = None):
        self.client = client
        self.component = component
        self.host = host or socket.gethostname()
        self._seen: dict[tuple, tuple[str, int, float]] = {}  # → (event name, count, when)
        self._pending: set[asyncio.Task] = set()

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Fire and remember: the write happens in a task this recorder owns."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._write(obj, type_, reason, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _write(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid"), type_, reason, message)
        now = _now()
        seen = self._seen.get(key)
        try:
            if seen and time.monotonic() - seen[2] < _AGGREGATE_WINDOW:
                name, count, _ = seen
                await self.client.patch(_EVENTS, name, {"count": count + 1, "lastTimestamp": now}, ns)
                self._seen[key] = (name, count + 1, time.monotonic())
                return
            name = f"{meta['name']}.{time.time_ns():x}"
            body = {
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"kind": obj.get("kind"), "namespace": meta.get("namespace"),
                                   "name": meta["name"], "uid": meta.get("uid"),
                                   "apiVersion": obj.get("apiVersion"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message, "type": type_,
                "source": {"component": self.component, "host": self.host},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host,
            }
            await self.client.create(_EVENTS, body, ns)
            self._seen[key] = (name, 1, time.monotonic())
            if len(self._seen) > 4096:
                self._seen.clear()
        except ApiError as e:
            log.debug("event %s/%s not recorded: %s", reason, meta.get("name"), e)
