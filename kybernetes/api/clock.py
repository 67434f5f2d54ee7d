"""Wall-clock timestamps as Kubernetes writes them (RFC 3339, seconds, UTC)."""

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
