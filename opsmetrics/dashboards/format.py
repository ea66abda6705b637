"""How dashboard values read: `3.5 %`, `EUR 1,234.50`, `250 ms`, and status sentences.

Percent values are fractions (0.035 → `3.5 %`), as KPIs of unit percent store them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opsmetrics.catalog.kpi_model import Direction, KpiDefinition, Thresholds
from opsmetrics.query.kpi import Status

_SUFFIX = {
    "ms": " ms",
    "seconds": " s",
    "minutes": " min",
    "hours": " h",
    "days": " d",
    "per_second": "/s",
    "per_minute": "/min",
    "score": "",
    "ratio": "",
    "count": "",
}


@dataclass(frozen=True, slots=True)
class Format:
    """A unit and how to print it (the KPI's display settings when there is a KPI)."""

    unit: str = ""
    currency: str | None = None
    decimals: int | None = None

    @staticmethod
    def of(kpi: KpiDefinition) -> Format:
        return Format(kpi.unit.value, kpi.display.currency, kpi.display.decimals)

    def __call__(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "–"
        if self.unit == "percent":
            return f"{value * 100:,.{_or(self.decimals, 1)}f} %"
        if self.unit == "currency":
            prefix = f"{self.currency} " if self.currency else ""
            return f"{prefix}{value:,.{_or(self.decimals, 2)}f}"
        if self.unit == "bytes":
            return _bytes(value)
        if self.unit == "seconds" and abs(value) < 1:
            return f"{value * 1000:,.0f} ms"
        decimals = self.decimals
        if decimals is None:
            decimals = 0 if float(value).is_integer() or abs(value) >= 1000 else 2
        return (
            f"{value:,.{decimals}f}{_SUFFIX.get(self.unit, f' {self.unit}' if self.unit else '')}"
        )

    def signed(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "–"
        text = self(abs(value))
        if self.unit == "percent":
            text = text.replace(" %", " pp")
        return ("+" if value >= 0 else "−") + text


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{value:,.0f} B"
        value /= 1024
    raise AssertionError("unreachable")


def number(value: float | None) -> float | None:
    """A finite float or None (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def status_text(
    status: Status,
    thresholds: Thresholds,
    direction: Direction,
    fmt: Format,
    target: float | None = None,
) -> str:
    """`On target`, `Warning: below 3.0 %`, `Critical: above 500 ms`, `No data`."""
    if status is Status.UNKNOWN:
        return "No data"
    if status is Status.OK:
        return "On target" if target is not None else "OK"
    level = thresholds.critical if status is Status.CRITICAL else thresholds.warning
    label = "Critical" if status is Status.CRITICAL else "Warning"
    if direction is Direction.TARGET_IS_BEST:
        return f"{label}: more than {fmt(level)} off target"
    side = "below" if direction is Direction.HIGHER_IS_BETTER else "above"
    return f"{label}: {side} {fmt(level)}"


def threshold_status(value: float | None, thresholds: Thresholds, direction: Direction) -> Status:
    """The status of a value against plain thresholds (no target needed)."""
    from opsmetrics.query.kpi.status import status_of

    if direction is Direction.TARGET_IS_BEST:
        return Status.UNKNOWN
    return status_of(value, None, thresholds, direction)


def direction_of(good: float | None, warning: float | None, critical: float | None) -> Direction:
    """Higher is better when the good band lies above the critical one."""
    low, high = (critical, good) if good is not None else (critical, warning)
    if low is None or high is None:
        low, high = critical, warning
    if low is not None and high is not None and high < low:
        return Direction.LOWER_IS_BETTER
    return Direction.HIGHER_IS_BETTER
