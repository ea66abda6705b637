"""Alertmanager-style time intervals: when routes are muted (weekdays, times, days, months).

A time interval is a list of windows; it contains a moment if any window does. A window
contains a moment if every field it sets does (an unset field matches everything).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip

#: An inclusive range of integers.
Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Window:
    weekdays: tuple[Span, ...] = ()  # 0 = Monday
    times: tuple[Span, ...] = ()  # minutes of the day, [start, end)
    days_of_month: tuple[Span, ...] = ()  # 1..31; negative counts from the month's end
    months: tuple[Span, ...] = ()  # 1..12
    location: str = "UTC"

    def contains(self, at_ms: int) -> bool:
        t = datetime.fromtimestamp(at_ms / 1000, ZoneInfo(self.location))
        minute = t.hour * 60 + t.minute
        return (
            _in(self.weekdays, t.weekday())
            and (not self.times or any(a <= minute < b for a, b in self.times))
            and _in_days(self.days_of_month, t)
            and _in(self.months, t.month)
        )


def interval_contains(windows: Sequence[Window], at_ms: int) -> bool:
    return any(w.contains(at_ms) for w in windows)


def _in(spans: tuple[Span, ...], value: int) -> bool:
    return not spans or any(a <= value <= b for a, b in spans)


def _in_days(spans: tuple[Span, ...], t: datetime) -> bool:
    if not spans:
        return True
    last = calendar.monthrange(t.year, t.month)[1]
    for a, b in spans:
        lo = a if a > 0 else last + a + 1
        hi = b if b > 0 else last + b + 1
        if lo <= t.day <= hi:
            return True
    return False


def parse_range(text: str, names: Sequence[str] = (), *, offset: int = 0) -> Span:
    """`monday:friday`, `1:5`, `-1`, `june` → an inclusive span; ValueError if malformed."""
    parts = str(text).strip().lower().split(":")
    if len(parts) > 2:
        raise ValueError(f"{text!r} is not a range; use start:end")
    values = [_one(p, names, offset) for p in parts]
    lo, hi = values[0], values[-1]
    if lo > hi and (lo > 0) == (hi > 0):
        raise ValueError(f"{text!r}: the start is after the end")
    return lo, hi


def _one(text: str, names: Sequence[str], offset: int) -> int:
    if text in names:
        return names.index(text) + offset
    try:
        return int(text)
    except ValueError:
        hint = f"; use one of {', '.join(names)}" if names else ""
        raise ValueError(f"{text!r} is not a number{hint}") from None


def parse_time(text: str) -> int:
    """`HH:MM` → minutes of the day (24:00 allowed as an end)."""
    try:
        hours, minutes = (int(p) for p in text.split(":"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use HH:MM") from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 1440:
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes
