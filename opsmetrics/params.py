"""Request parameters as Prometheus's HTTP API reads them: the first value of a name wins,
times are Unix seconds or RFC 3339, durations are seconds or `1h30m`, and errors are worded as
Prometheus words them (`invalid parameter "start": ...`). The web API and the analysis requests
that the CLI also runs share them.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from opsmetrics.errors import BadDataError

_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_UNIT_MS = (31_536_000_000, 604_800_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


class Params:
    """Named parameters in the order given, repeats kept: a URL query, a form body, CLI options."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str:
        """The first value of `name`, or "" (Go's Request.FormValue)."""
        return next((v for k, v in self.pairs if k == name), "")

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def invalid_param(name: str, message: str) -> BadDataError:
    return BadDataError(f'invalid parameter "{name}": {message}')


def parse_prom_time_ms(text: str) -> int:
    """Prometheus's parseTime: float Unix seconds (ms precision) or RFC 3339."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return round(seconds * 1000)
    if "T" in text:
        try:
            return _rfc3339_ms(text)
        except ValueError:
            pass
    raise ValueError(f'cannot parse "{text}" to a valid timestamp')


def _rfc3339_ms(text: str) -> int:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(text)
    return round(parsed.timestamp() * 1000)


def parse_prom_duration_ms(text: str) -> int:
    """Prometheus's parseDuration: float seconds (may be negative) or `1h30m`, units in order."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return round(seconds * 1000)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f'cannot parse "{text}" to a valid duration')
    return sum(int(g) * unit for g, unit in zip(match.groups(), _UNIT_MS, strict=True) if g)


def time_param(params: Params, name: str, default_ms: int | None) -> int | None:
    """An optional time parameter, as Prometheus's parseTimeParam words its errors."""
    raw = params.get(name)
    if raw == "":
        return default_ms
    try:
        return parse_prom_time_ms(raw)
    except ValueError as exc:
        raise invalid_param(name, f"invalid time value for '{name}': {exc}") from None
