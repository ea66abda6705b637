"""A KPI's figures in a report: value, target attainment, status, the change against the
comparison period in words that follow the KPI's direction, and a warning for stale or
missing data (shown instead of the value, never as 0). Evaluated as of the slot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from opsmetrics.catalog.kpi_model import Direction, Grain, KpiDefinition
from opsmetrics.catalog.report_times import CALENDAR_WINDOWS
from opsmetrics.dashboards.format import Format, status_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.query.kpi import Compare, KpiEvaluator, KpiPoint, Status
from opsmetrics.query.kpi import periods as cal

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_CALENDAR_GRAIN = {"day": Grain.DAY, "week": Grain.WEEK, "month": Grain.MONTH,
                   "month-to-date": Grain.MONTH}  # fmt: skip
_COMPARES = {"previous_period": Compare.PREVIOUS, "previous_year": Compare.YOY}
_GRAIN_WORD = {Grain.HOUR: "hour", Grain.DAY: "day", Grain.WEEK: "week", Grain.MONTH: "month",
               Grain.QUARTER: "quarter", Grain.YEAR: "year"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Figures:
    kpi: KpiDefinition
    start_ms: int
    end_ms: int
    value: float | None
    formatted: str
    target: float | None
    target_formatted: str
    attainment: float | None
    status: Status
    status_text: str
    compare: float | None
    change: float | None
    #: "up 4.1% vs the previous day — better"; "" when there is nothing to compare with.
    change_text: str
    #: better | worse | None (no direction to judge by, or no comparison)
    verdict: str | None
    #: "no data since Mon 7 Dec 2026, 09:00": shown instead of the value.
    warning: str | None

    @property
    def attainment_text(self) -> str:
        return "–" if self.attainment is None else f"{self.attainment * 100:.1f} %"


def value_grain(window: str) -> Grain:
    """The KPI grain a window is read at: its calendar unit, or the longest grain that fits
    in a duration (1h → hour, 1d → day, 7d → week, 30d → month)."""
    if window in CALENDAR_WINDOWS:
        return _CALENDAR_GRAIN[window]
    span = parse_duration_ms(window, field="window")
    if span < DAY_MS:
        return Grain.HOUR
    if span < 7 * DAY_MS:
        return Grain.DAY
    return Grain.WEEK if span < 28 * DAY_MS else Grain.MONTH


def value_period(window: str, tz: str, slot_ms: int) -> tuple[Grain, int]:
    """The grain and start of the period whose value the report shows: the last whole one
    before the slot, or the current one for `month-to-date` (its value so far)."""
    grain = value_grain(window)
    current = cal.floor(slot_ms - 1, grain, tz)
    if window == "month-to-date" and cal.floor(slot_ms, grain, tz) != slot_ms:
        return grain, current
    return grain, cal.floor(cal.add(cal.floor(slot_ms, grain, tz), grain, -1, tz), grain, tz)


def figures(
    evaluator: KpiEvaluator, kpi: KpiDefinition, window: str, compare: str, tz: str, slot_ms: int
) -> tuple[Figures, int | None]:
    """The KPI's figures for the report at `slot_ms` (the evaluator's clock reads the slot),
    and the newest input time (None: not tracked)."""
    grain, start = value_period(window, tz, slot_ms)
    got = evaluator.series(kpi.name, start, start + 1, grain=grain, tz=tz,
                           compare=_COMPARES.get(compare))  # fmt: skip
    point = next((p for p in got.points if not p.group), None)
    fresh = got.freshness_ms
    warning = _warning(point, fresh, start, slot_ms, tz)
    if warning is not None:
        point = None
    return _figures(kpi, grain, compare, point, start, warning), fresh


def _warning(
    point: KpiPoint | None, fresh: int | None, start: int, slot_ms: int, tz: str
) -> str | None:
    if fresh is not None and fresh < start:
        return f"no data since {local_text(fresh, tz)}"
    if point is None or point.value is None:
        if point is not None and point.note:
            return f"no value: {point.note}"
        return "no data for this period" if fresh is not None else "no data yet"
    return None


def _figures(
    kpi: KpiDefinition,
    grain: Grain,
    compare: str,
    point: KpiPoint | None,
    start: int,
    warning: str | None,
) -> Figures:
    fmt = Format.of(kpi)
    value = point.value if point else None
    target = point.target if point else None
    if target is None and kpi.target is not None:
        target = kpi.target.at(cal.local_date(start, "UTC"))
    status = point.status if point else Status.UNKNOWN
    before = point.compare if point else None
    words, verdict = change_words(kpi, value, before, target, _compared_with(compare, grain))
    return Figures(
        kpi=kpi, start_ms=start, end_ms=point.end_ms if point else start,
        value=value, formatted=fmt(value), target=target,
        target_formatted=fmt(target) if target is not None else "–",
        attainment=point.attainment if point else None, status=status,
        status_text=status_text(status, kpi.thresholds, kpi.direction, fmt, target),
        compare=before, change=point.change if point else None,
        change_text=words, verdict=verdict, warning=warning,
    )  # fmt: skip


def _compared_with(compare: str, grain: Grain) -> str:
    if compare == "previous_year":
        return "a year earlier"
    return f"the previous {_GRAIN_WORD[grain]}"


def change_words(
    kpi: KpiDefinition,
    value: float | None,
    before: float | None,
    target: float | None,
    against: str,
) -> tuple[str, str | None]:
    """("up 4.1% vs the previous day — better", "better"); ("", None) with nothing to compare."""
    if value is None or before is None:
        return "", None
    if value == before:
        return f"unchanged vs {against}", None
    way = "up" if value > before else "down"
    size = f" {abs(value / before - 1) * 100:.1f}%" if before else ""
    verdict = _verdict(kpi.direction, value, before, target)
    tail = f" — {verdict}" if verdict else ""
    return f"{way}{size} vs {against}{tail}", verdict


def _verdict(direction: Direction, value: float, before: float, target: float | None) -> str | None:
    match direction:
        case Direction.HIGHER_IS_BETTER:
            return "better" if value > before else "worse"
        case Direction.LOWER_IS_BETTER:
            return "better" if value < before else "worse"
        case Direction.TARGET_IS_BEST:
            if target is None or abs(value - target) == abs(before - target):
                return None
            return "better" if abs(value - target) < abs(before - target) else "worse"


def local_text(ms: int, tz: str, *, with_time: bool = True) -> str:
    """`Mon 7 Dec 2026, 09:00` in the report's time zone."""
    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz))
    day = f"{when:%a} {when.day} {when:%b %Y}"
    return f"{day}, {when:%H:%M}" if with_time else day
