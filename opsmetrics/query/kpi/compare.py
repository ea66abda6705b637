"""Comparison periods: the previous period, and the same period a week, month, quarter or year
earlier. Week-based grains compare whole weeks so weekdays line up: YoY at hour, day and week
grain is 364 days (52 weeks) back, MoM at week grain 4 weeks, QoQ 13 weeks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.model import Compare, KpiQueryError, Period

# (unit, amount) per compare and grain: "days" and "months" move the local calendar,
# "periods" moves by whole periods of the grain.
_SHIFT: dict[Compare, dict[Grain, tuple[str, int]]] = {
    Compare.WOW: {Grain.HOUR: ("days", 7), Grain.DAY: ("days", 7), Grain.WEEK: ("periods", 1)},
    Compare.MOM: {
        Grain.HOUR: ("months", 1),
        Grain.DAY: ("months", 1),
        Grain.WEEK: ("periods", 4),
        Grain.MONTH: ("periods", 1),
    },
    Compare.QOQ: {
        Grain.HOUR: ("months", 3),
        Grain.DAY: ("months", 3),
        Grain.WEEK: ("periods", 13),
        Grain.MONTH: ("periods", 3),
        Grain.QUARTER: ("periods", 1),
    },
    Compare.YOY: {
        Grain.HOUR: ("days", 364),
        Grain.DAY: ("days", 364),
        Grain.WEEK: ("periods", 52),
        Grain.MONTH: ("periods", 12),
        Grain.QUARTER: ("periods", 4),
        Grain.YEAR: ("periods", 1),
    },
}


def compare_period(p: Period, compare: Compare, grain: Grain, tz: str) -> Period:
    """The period `p` is compared with."""
    if compare is Compare.PREVIOUS:
        return cal.period_at(cal.add(p.start_ms, grain, -1, tz), grain, tz)
    shift = _SHIFT[compare].get(grain)
    if shift is None:
        raise KpiQueryError(
            f"compare={compare.value} does not apply at grain {grain.value}; use "
            "compare=previous or a finer grain"
        )
    unit, amount = shift
    if unit == "periods":
        return cal.period_at(cal.add(p.start_ms, grain, -amount, tz), grain, tz)
    return cal.period_at(_local_shift(p.start_ms, unit, amount, tz), grain, tz)


def _local_shift(ms: int, unit: str, amount: int, tz: str) -> int:
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(ms / 1000, zone).replace(tzinfo=None)
    if unit == "days":
        local -= timedelta(days=amount)
    else:
        day = cal.add_months(local.date(), -amount)
        local = local.replace(year=day.year, month=day.month, day=day.day)
    return round(local.replace(tzinfo=zone).timestamp() * 1000)
