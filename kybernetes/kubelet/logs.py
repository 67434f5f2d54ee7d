"""Container logs in the CRI format, read back for `kubectl logs`.

Each line of a CRI log file is `TIMESTAMP STREAM TAG MESSAGE`: RFC 3339 nano timestamp,
stdout/stderr, F (full line) or P (partial: the message continues on the next entry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable


@dataclass
class Entry:
    timestamp: str
    stream: str
    full: bool
    message: bytes


@dataclass
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: str | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, q) -> "LogOptions":
        def num(name: str) -> int | None:
            return int(q[name]) if q.get(name) not in (None, "") else None
        return cls(follow=q.get("follow") in ("true", "1"), tail_lines=num("tailLines"),
                   timestamps=q.get("timestamps") in ("true", "1"),
                   since_seconds=num("sinceSeconds"), since_time=q.get("sinceTime"),
                   limit_bytes=num("limitBytes"))


def parse_line(line: bytes) -> Entry | None:
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    msg = parts[3] if len(parts) == 4 else b""
    return Entry(parts[0].decode(), parts[1].decode(), parts[2] != b"P", msg)


def _parse_ts(ts: str) -> float:
    head, _, frac = ts.rstrip("Z").partition(".")
    t = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return t.timestamp() + (float("0." + frac.split("+")[0]) if frac else 0.0)


def render(entries: list[Entry], opts: LogOptions, now: float | None = None) -> bytes:
    """Whole lines (partial entries joined) after the since/tail filters, as kubectl shows them."""
    lines: list[tuple[str, bytes]] = []
    pending: bytes = b""
    first_ts = ""
    for e in entries:
        if not pending:
            first_ts = e.timestamp
        pending += e.message
        if e.full:
            lines.append((first_ts, pending + b"\n"))
            pending = b""
    if pending:
        lines.append((first_ts, pending))
    since = _since(opts, now)
    if since is not None:
        lines = [ln for ln in lines if _parse_ts(ln[0]) >= since]
    if opts.tail_lines is not None:
        lines = lines[-opts.tail_lines:] if opts.tail_lines else []
    return b"".join((ts.encode() + b" " if opts.timestamps else b"") + msg for ts, msg in lines)


def _since(opts: LogOptions, now: float | None) -> float | None:
    if opts.since_seconds is not None:
        return (now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp()) - opts.since_seconds
    if opts.since_time:
        return _parse_ts(opts.since_time)
    return None


def read_entries(path: Path) -> tuple[list[Entry], int]:
    """The whole file's entries and the offset after the last complete line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return [e for e in map(parse_line, data[:end].splitlines(keepends=True)) if e], end


async def stream(path: Path, opts: LogOptions,
                 running: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """The log as chunks: what is there now (filtered), then, with follow, what gets written
    until the container stops. limitBytes caps the total."""
    entries, offset = read_entries(path)
    budget = opts.limit_bytes
    first = render(entries, opts)

    def cap(chunk: bytes) -> bytes:
        nonlocal budget
        if budget is None:
            return chunk
        chunk, budget = chunk[:budget], budget - min(budget, len(chunk))
        return chunk

    if first:
        yield cap(first)
    if not opts.follow:
        return
    follow = LogOptions(timestamps=opts.timestamps)
    idle = 0
    while budget is None or budget > 0:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        if end:
            offset += end
            chunk = render([e for e in map(parse_line, data[:end].splitlines(keepends=True)) if e],
                           follow)
            if chunk:
                yield cap(chunk)
            idle = 0
            continue
        idle += 1
        if idle % 5 == 0 and not await running():
            return
        await asyncio.sleep(0.1)
