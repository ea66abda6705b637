"""The `anomaly` condition: is the KPI's last complete period far outside its seasonal
baseline (analysis/anomalies.py: hour-of-day × day-of-week, median and robust σ)?

The rule reads `history` of complete periods before the last one, scores the last one and
judges the score in the rule's direction (docs/kpi-alerts.md#anomaly)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from opsmetrics.analysis.anomalies import DEFAULT_THRESHOLD, is_anomalous_now
from opsmetrics.analysis.series import Series
from opsmetrics.catalog.kpi_alerts import AnomalyDirection, KpiAlertSpec
from opsmetrics.catalog.kpi_model import Direction, Grain, KpiDefinition, Unit
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.formulas import compute

DAY_MS = 86_400_000
#: History read when the rule sets none: four past weeks of each hour (or weekday), enough
#: for the weekly slot baseline; half a year of weeks.
HISTORY_MS = {Grain.HOUR: 28 * DAY_MS, Grain.DAY: 56 * DAY_MS, Grain.WEEK: 26 * 7 * DAY_MS}


@dataclass(frozen=True, slots=True)
class Scored:
    """The last complete period scored against its baseline; `score` is None without a
    baseline (too little history) or without a value, and `explanation` then says why."""

    value: float | None
    score: float | None
    explanation: str


def kpi_anomaly(ctx: EvalContext, kpi: KpiDefinition, spec: KpiAlertSpec, grain_ms: int) -> Scored:
    """Score the last complete period of `kpi` against the `history` before it."""
    end = cal.floor(ctx.now_ms, kpi.grain, "UTC")
    history = spec.history_ms or HISTORY_MS.get(kpi.grain, 28 * DAY_MS)
    n = max(history // grain_ms, 1) + 1  # the references and the period judged
    periods = cal.periods(cal.add(end, kpi.grain, -n, "UTC"), end, kpi.grain, "UTC")
    cells = compute(ctx, kpi.formula, periods, kpi.name).only(len(periods))
    if not cells:
        return Scored(None, None, f"{kpi.title}: no complete period yet")
    values = _from_first_data(np.array([math.nan if c.value is None else c.value for c in cells]))
    ts = np.array([p.start_ms for p in periods], dtype=np.int64)
    unit = "percent" if kpi.unit is Unit.PERCENT else ""
    series = Series(ts, values, kpi.title, unit, step_ms=grain_ms)
    threshold = spec.score_threshold or DEFAULT_THRESHOLD
    _, score, explanation = is_anomalous_now(series, int(ts[-1]), threshold=threshold)
    return Scored(cells[-1].value, None if math.isnan(score) else score, explanation)


def _from_first_data(values: np.ndarray) -> np.ndarray:
    """Periods before the KPI's first non-zero value are no history (a count or sum reads 0
    before any input existed), not a baseline of zeros."""
    seen = np.flatnonzero(np.nan_to_num(values, nan=0.0) != 0)
    out = values.astype(float)
    out[: seen[0] if len(seen) else len(out) - 1] = math.nan
    return out


def anomaly_direction(spec: KpiAlertSpec, kpi: KpiDefinition | None) -> AnomalyDirection:
    """The rule's `direction`, else by the KPI's: higher_is_better alerts on low values."""
    if spec.direction is not None:
        return spec.direction
    if kpi is not None and kpi.direction is Direction.HIGHER_IS_BETTER:
        return AnomalyDirection.LOW
    if kpi is not None and kpi.direction is Direction.LOWER_IS_BETTER:
        return AnomalyDirection.HIGH
    return AnomalyDirection.BOTH


def directed(score: float, direction: AnomalyDirection) -> float:
    """The score as judged: how far past the baseline in the direction that matters."""
    if direction is AnomalyDirection.LOW:
        return -score
    if direction is AnomalyDirection.HIGH:
        return score
    return abs(score)
