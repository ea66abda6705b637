"""When an alert rule is active or muted: Alertmanager `time_intervals`, in any IANA time zone.

    interval = parse_time_interval([
        {"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}],
         "location": "Europe/Berlin"},
    ])
    interval.contains(ts_ms)  # True during Berlin business hours

A `TimeInterval` is a list of windows and contains a moment if any window does; a window
contains it if every field it sets does (weekdays, times [start, end), days_of_month with
negative days counting from the month's end, months), read in the window's `location`. The
window itself (matching and range parsing) is the one the notification router uses:
`opsmetrics.catalog.mute_windows.Window`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsmetrics.catalog.mute_windows import (
    MONTHS,
    WEEKDAYS,
    Window,
    parse_range,
    parse_time,
)

__all__ = ["TimeInterval", "Window", "parse_time_interval", "parse_window"]

_FIELDS = ("weekdays", "times", "days_of_month", "months", "location")


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """Any of `windows`; an interval without windows contains every moment (as Alertmanager)."""

    windows: tuple[Window, ...] = ()

    def contains(self, ts_ms: int) -> bool:
        return not self.windows or any(w.contains(ts_ms) for w in self.windows)


def parse_time_interval(items: Sequence[Mapping[str, Any]]) -> TimeInterval:
    """Windows written as in Alertmanager's `time_intervals`; ValueError names the bad field."""
    windows = []
    for i, item in enumerate(items):
        try:
            windows.append(parse_window(item))
        except ValueError as exc:
            raise ValueError(f"[{i}].{exc}") from None
    return TimeInterval(tuple(windows))


def parse_window(item: Mapping[str, Any]) -> Window:
    """One window; ValueError as `<field>: <message>`."""
    if not isinstance(item, Mapping):
        raise ValueError("(window): expected a mapping of weekdays, times, days_of_month…")
    unknown = [k for k in item if k not in _FIELDS]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; use one of {', '.join(_FIELDS)}")
    return Window(
        weekdays=_spans(item, "weekdays", WEEKDAYS, 0),
        times=_times(item.get("times") or []),
        days_of_month=_spans(item, "days_of_month", (), 0),
        months=_spans(item, "months", MONTHS, 1),
        location=_location(item.get("location", "UTC")),
    )


def _spans(
    item: Mapping[str, Any], key: str, names: Sequence[str], offset: int
) -> tuple[tuple[int, int], ...]:
    values = item.get(key) or []
    if not isinstance(values, list):
        raise ValueError(f"{key}: expected a list such as [monday:friday] or [1:15]")
    try:
        spans = tuple(parse_range(_sexagesimal(v), names, offset=offset) for v in values)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if key == "days_of_month":
        for lo, hi in spans:
            if not (1 <= abs(lo) <= 31 and 1 <= abs(hi) <= 31):
                raise ValueError(f"{key}: days are 1 to 31, or -1 to -31 from the month's end")
    return spans


def _times(values: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(values, list):
        raise ValueError("times: expected a list of {start_time: HH:MM, end_time: HH:MM}")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, Mapping) or set(value) != {"start_time", "end_time"}:
            raise ValueError(f"times[{i}]: expected {{start_time: HH:MM, end_time: HH:MM}}")
        try:
            start = parse_time(_sexagesimal(value["start_time"]))
            end = parse_time(_sexagesimal(value["end_time"]))
        except ValueError as exc:
            raise ValueError(f"times[{i}]: {exc}") from None
        if start >= end:
            raise ValueError(f"times[{i}]: start_time must be before end_time")
        out.append((start, end))
    return tuple(out)


def _sexagesimal(value: Any) -> str:
    """YAML 1.1 reads unquoted `17:00` or `1:5` as base-60 numbers (1020, 65); undo that."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 60:
        return f"{value // 60:02d}:{value % 60:02d}" if value < 1500 else str(value)
    return str(value)


def _location(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"location: unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
        ) from None
    return str(value)
