"""When a report fires and what period it covers, in its own time zone (docs/reports.md).

A cron schedule fires at local wall-clock time, so daylight saving never moves it: `0 8 * * *`
in Europe/Berlin is 08:00 Berlin all year (07:00 UTC in summer, 08:00 UTC in winter). A local
time that does not exist (the spring gap) fires once at the first valid instant after it; a
local time that occurs twice (the repeated autumn hour) fires once, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from opsmetrics.durations import parse_duration_ms

_MINUTE_MS = 60_000
#: Cron expressions that fire rarely still give n slots within this many candidates.
_MAX_CANDIDATES = 10_000
CALENDAR_WINDOWS = ("day", "week", "month", "month-to-date")


def to_local(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


def wall_to_utc_ms(wall: datetime, tz: ZoneInfo) -> int:
    """The UTC instant of a naive local wall-clock time: the first of a repeated time, the
    first valid instant after a time skipped by a forward jump."""
    first = _ms(wall.replace(tzinfo=tz, fold=0))
    if to_local(first, tz).replace(tzinfo=None) == wall:
        return first
    # In a gap fold=0 applies the offset before the jump and fold=1 the one after, so the
    # jump lies between the two readings; find it to the minute.
    lo, hi = sorted((first, _ms(wall.replace(tzinfo=tz, fold=1))))
    while hi - lo > _MINUTE_MS:
        mid = lo + (hi - lo) // 2 // _MINUTE_MS * _MINUTE_MS
        if to_local(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def cron_slots(schedule: str, tz: ZoneInfo, after_ms: int, n: int) -> list[int]:
    """The next `n` slots (UTC ms) strictly after `after_ms`."""
    start = to_local(after_ms, tz).replace(tzinfo=None, second=0, microsecond=0)
    it = croniter(schedule, start - timedelta(minutes=1))
    out: list[int] = []
    for _ in range(_MAX_CANDIDATES):
        if len(out) >= n:
            break
        slot = wall_to_utc_ms(it.get_next(datetime), tz)
        if slot > after_ms and (not out or slot > out[-1]):
            out.append(slot)
    return out


def previous_slot(schedule: str, tz: ZoneInfo, at_ms: int) -> int | None:
    """The latest slot at or before `at_ms` (within a year), or None."""
    start = to_local(at_ms, tz).replace(tzinfo=None, second=0, microsecond=0)
    it = croniter(schedule, start + timedelta(minutes=1))
    for _ in range(_MAX_CANDIDATES):
        slot = wall_to_utc_ms(it.get_prev(datetime), tz)
        if slot <= at_ms:
            return slot
        if at_ms - slot > 366 * 86_400_000:
            return None
    return None


def window_bounds(window: str, tz: ZoneInfo, slot_ms: int) -> tuple[int, int]:
    """[start, end) of the period a report at `slot_ms` covers: a duration (`1h`, `7d`) ending
    at the slot, or a calendar word (CALENDAR_WINDOWS) read in the report's time zone: `day`,
    `week` and `month` are the last whole one before the slot, `month-to-date` runs from the
    first of the month to the slot (the whole previous month when the slot is the first)."""
    if window not in CALENDAR_WINDOWS:
        return slot_ms - parse_duration_ms(window, field="window"), slot_ms
    today = to_local(slot_ms, tz).date()
    if window == "day":
        return _midnight(today - timedelta(days=1), tz), _midnight(today, tz)
    if window == "week":
        monday = today - timedelta(days=today.weekday())
        return _midnight(monday - timedelta(days=7), tz), _midnight(monday, tz)
    first = today.replace(day=1)
    if window == "month" or _midnight(first, tz) == slot_ms:
        return _midnight(_month_before(first), tz), _midnight(first, tz)
    return _midnight(first, tz), slot_ms


def compare_bounds(window: str, compare: str, tz: ZoneInfo, slot_ms: int) -> tuple[int, int] | None:
    """[start, end) of the period a report compares with, or None for `compare: none`."""
    start, end = window_bounds(window, tz, slot_ms)
    if compare == "none":
        return None
    if compare == "previous_year":
        return _year_before(start, tz), _year_before(end, tz)
    if window in ("day", "week", "month"):
        return window_bounds(window, tz, start)
    if window == "month-to-date":
        before = window_bounds("month", tz, start)[0]
        return before, min(before + (end - start), start)
    return start - (end - start), start


def _midnight(day: date, tz: ZoneInfo) -> int:
    return wall_to_utc_ms(datetime(day.year, day.month, day.day), tz)


def _month_before(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


def _year_before(ms: int, tz: ZoneInfo) -> int:
    wall = to_local(ms, tz).replace(tzinfo=None)
    try:
        earlier = wall.replace(year=wall.year - 1)
    except ValueError:  # 29 February
        earlier = wall.replace(year=wall.year - 1, day=28)
    return wall_to_utc_ms(earlier, tz)
