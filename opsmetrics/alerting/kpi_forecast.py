"""The `forecast` condition: fit the KPI's recent complete periods (analysis/forecast.py) and
look `horizon` ahead; the rule is breached when the forecast mean crosses a line."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from opsmetrics.analysis.forecast import forecast
from opsmetrics.analysis.series import Series
from opsmetrics.catalog.kpi_alerts import KpiAlertSpec
from opsmetrics.catalog.kpi_model import Grain, KpiDefinition
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.formulas import compute

log = logging.getLogger(__name__)
#: Complete periods fitted when the rule sets no `history`: two weeks of hours, eight weeks
#: of days, half a year of weeks, two years of months…
HISTORY_PERIODS = {
    Grain.HOUR: 14 * 24,
    Grain.DAY: 56,
    Grain.WEEK: 26,
    Grain.MONTH: 24,
    Grain.QUARTER: 12,
    Grain.YEAR: 6,
}


@dataclass(frozen=True, slots=True)
class Outlook:
    """The forecast mean at the end of each future period."""

    ts: tuple[int, ...]
    mean: tuple[float, ...]

    def first(self, op: str, limit: float) -> int | None:
        """When the mean first crosses `limit` (op "<": below it, ">": above it)."""
        for ts, value in zip(self.ts, self.mean, strict=True):
            if value < limit if op == "<" else value > limit:
                return ts
        return None


def kpi_outlook(
    ctx: EvalContext, kpi: KpiDefinition, spec: KpiAlertSpec, grain_ms: int
) -> tuple[float | None, Outlook | None]:
    """(the last complete period's value, the forecast); no forecast with too little history."""
    end = cal.floor(ctx.now_ms, kpi.grain, "UTC")
    n = HISTORY_PERIODS[kpi.grain]
    if spec.history_ms is not None:
        n = max(spec.history_ms // grain_ms, 1)
    periods = cal.periods(cal.add(end, kpi.grain, -n, "UTC"), end, kpi.grain, "UTC")
    cells = compute(ctx, kpi.formula, periods, kpi.name).only(len(periods))
    values = np.array([math.nan if c.value is None else c.value for c in cells], dtype=float)
    last = cells[-1].value if cells else None
    steps = max(1, math.ceil((spec.horizon_ms or grain_ms) / grain_ms))
    ts = np.array([p.end_ms for p in periods], dtype=np.int64)
    try:
        got = forecast(Series(ts, values, kpi.name, step_ms=grain_ms), steps)
    except BadDataError:  # too little history yet
        return last, None
    except ValueError as exc:  # a model that cannot be fitted to this history
        log.warning("forecast of %s failed: %s", kpi.name, exc)
        return last, None
    return last, Outlook(tuple(int(t) for t in got.ts), tuple(float(m) for m in got.mean))
