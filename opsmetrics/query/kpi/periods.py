"""Calendar periods of a grain in a timezone, as UTC millisecond bounds.

Days, weeks (from Monday), months, quarters and years start at local midnight, so around a DST
change a day lasts 23 or 25 hours; hours are UTC hours shifted by the zone's offset (a repeated
local hour is two periods). Arithmetic on local dates, then back to UTC with zoneinfo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi.model import Period

HOUR_MS = 3_600_000
MAX_PERIODS = 5_000
_MONTHS = {Grain.MONTH: 1, Grain.QUARTER: 3, Grain.YEAR: 12}


def local_date(ms: int, tz: str) -> date:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).date()


def local_midnight_ms(day: date, tz: str) -> int:
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    return round(local.astimezone(UTC).timestamp() * 1000)


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the end of a shorter month."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month + 1, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def floor(ms: int, grain: Grain, tz: str) -> int:
    """Start of the period of `grain` holding `ms`."""
    if grain is Grain.HOUR:
        local = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))
        into_hour = (local.minute * 60 + local.second) * 1000 + local.microsecond // 1000
        return ms - into_hour
    day = local_date(ms, tz)
    match grain:
        case Grain.DAY:
            pass
        case Grain.WEEK:
            day -= timedelta(days=day.weekday())
        case Grain.MONTH | Grain.QUARTER | Grain.YEAR:
            month0 = (day.month - 1) // _MONTHS[grain] * _MONTHS[grain]
            day = date(day.year, month0 + 1, 1)
    return local_midnight_ms(day, tz)


def add(start_ms: int, grain: Grain, k: int, tz: str) -> int:
    """Start of the k-th period after (k < 0: before) the one starting at `start_ms`."""
    if grain is Grain.HOUR:
        return start_ms + k * HOUR_MS
    day = local_date(start_ms, tz)
    if grain in (Grain.DAY, Grain.WEEK):
        day += timedelta(days=k * (7 if grain is Grain.WEEK else 1))
    else:
        day = add_months(day, k * _MONTHS[grain])
    return local_midnight_ms(day, tz)


def period_at(start_ms: int, grain: Grain, tz: str) -> Period:
    return Period(start_ms, add(start_ms, grain, 1, tz))


def periods(start_ms: int, end_ms: int, grain: Grain, tz: str) -> list[Period]:
    """The periods overlapping [start_ms, end_ms), the first one starting at or before start."""
    if end_ms <= start_ms:
        raise BadDataError("end must be after start")
    out: list[Period] = []
    at = floor(start_ms, grain, tz)
    while at < end_ms:
        if len(out) >= MAX_PERIODS:
            raise BadDataError(
                f"more than {MAX_PERIODS} {grain.value} periods; shorten the range or use a "
                "coarser grain"
            )
        nxt = add(at, grain, 1, tz)
        out.append(Period(at, nxt))
        at = nxt
    return out
