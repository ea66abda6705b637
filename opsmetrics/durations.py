"""Prometheus-style durations ("1h30m", "90d") and timestamps (RFC 3339 or epoch seconds)."""

from __future__ import annotations

import math
import re
from datetime import datetime

from opsmetrics.errors import BadDataError

_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration_ms(text: str, *, field: str = "duration") -> int:
    """Parse `1h30m`, `90d`, `500ms`, or a bare number of seconds (`15`, `0.5`)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise BadDataError(f"{field}: {text!r} is not a valid duration; use e.g. 15s or 1h")
        return round(seconds * 1000)
    pos, total = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise BadDataError(
            f"{field}: {text!r} is not a valid duration; use a number of seconds or units "
            "ms, s, m, h, d, w, y such as 30s, 5m, 1h30m, 90d"
        )
    return total


def format_duration_ms(ms: int) -> str:
    if ms == 0:
        return "0s"
    parts = []
    for unit in ("y", "w", "d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts)


def parse_time_ms(text: str, *, field: str = "time") -> int:
    """Parse a Prometheus API time: RFC 3339 or (fractional) Unix seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # Beyond ±2^63 ms a timestamp overflows every int64 column it would be stored in.
        if not math.isfinite(seconds) or abs(seconds) >= 9.2e15:
            raise BadDataError(f"{field}: {text!r} is not a valid timestamp")
        return round(seconds * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadDataError(
            f"{field}: cannot parse {text!r} to a valid timestamp; use RFC 3339 "
            "(2026-01-02T15:04:05Z) or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        raise BadDataError(f"{field}: {text!r} has no time zone; add Z or an offset")
    return round(parsed.timestamp() * 1000)


def config_duration_ms(value: object, examples: str) -> int:
    """A duration written in a config file (`5m`, `1h30m`, or a number of seconds), for
    pydantic validators: a ValueError names the problem and shows `examples` of good values."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as {examples}")
    try:
        return parse_duration_ms(str(value))
    except BadDataError:
        raise ValueError(f"{value!r} is not a duration; use e.g. {examples}") from None
