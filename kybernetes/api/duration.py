"""Human-readable durations, as kubectl and the API server's Table printers show them.

Same buckets as apimachinery's `util/duration`: `human_duration` keeps two to three significant
figures ("5s", "3m2s", "10m", "5h3m", "2d3h", "3y45d"); `short_human_duration` keeps one unit.
Both treat up to one second in the future as "now" (clock skew) and anything further as
"<invalid>".
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_YEAR = 365 * _DAY


def _whole_seconds(d: timedelta | float) -> int:
    """Whole seconds, truncated toward zero (Go's int(d.Seconds()))."""
    if isinstance(d, timedelta):
        micros = d // timedelta(microseconds=1)
        return micros // 1_000_000 if micros >= 0 else -((-micros) // 1_000_000)
    return int(d)


def human_duration(d: timedelta | float) -> str:
    """Age with ~2-3 significant figures: 0s..119s, 2m..9m59s, 10m..179m, 3h..7h59m, 8h..47h,
    2d..7d23h, 8d..729d, 2y..7y364d, then whole years."""
    seconds = _whole_seconds(d)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * _MINUTE:
        return f"{seconds}s"
    minutes = seconds // _MINUTE
    if minutes < 10:
        rest = seconds % _MINUTE
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = seconds // _HOUR
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{hours // 24 // 365}y"


def short_human_duration(d: timedelta | float) -> str:
    """One unit only: "45s", "3m", "5h", "12d", "2y"."""
    seconds = _whole_seconds(d)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < _MINUTE:
        return f"{seconds}s"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE}m"
    if seconds < _DAY:
        return f"{seconds // _HOUR}h"
    if seconds < _YEAR:
        return f"{seconds // _DAY}d"
    return f"{seconds // _YEAR}y"


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 Time/MicroTime string as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def age(value: object, now: datetime) -> str:
    """`translateTimestampSince`: human duration since a timestamp, "<unknown>" when unset."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(now - t)
