"""Wall-clock timestamps as Kubernetes writes them (RFC 3339, seconds, UTC) and HTTP dates."""

from __future__ import annotations

import time

_last: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """Now, like "2026-11-26T18:02:08Z". Formatted once per second: bulk writes stamp many
    objects within the same second, and formatting showed in the API server's profiles."""
    global _last
    second = int(time.time())
    if _last[0] != second:
        _last = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last[1]


_last_http: tuple[int, bytes] = (-1, b"")


def now_http_date() -> bytes:
    """Now as an HTTP Date header value (RFC 9110 IMF-fixdate), formatted once per second."""
    global _last_http
    second = int(time.time())
    if _last_http[0] != second:
        _last_http = (second, time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                            time.gmtime(second)).encode())
    return _last_http[1]
