"""The impact request of an initiative, shared by HTTP and the CLI (docs/initiatives.md):

    impact_request(initiative, params, storage, catalog, clock) -> Data

Per KPI of the initiative: its daily values from `pre` (default 8 weeks) before the start to
the initiative's end or the last complete day, the effect (analysis/impact.py: interrupted
time series, or difference-in-differences with the initiative's control) and the chart's
points (value and counterfactual).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from opsmetrics.analysis.impact import (
    Impact,
    difference_in_differences,
    interrupted_time_series,
)
from opsmetrics.analysis.series import DAY_MS, Series, fetch_kpi
from opsmetrics.catalog.initiatives import Control, Initiative, InitiativeKpi
from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.params import Params, invalid_param, parse_prom_duration_ms
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.storage.base import Storage

DEFAULT_PRE_MS = 56 * DAY_MS
MAX_PRE_MS = 730 * DAY_MS
Data = dict[str, Any]


def impact_request(
    initiative: Initiative, params: Params, storage: Storage, catalog: Catalog, clock: Clock
) -> Data:
    pre_ms = _pre(params)
    now = clock.now_ms()
    last = min(now - now % DAY_MS, initiative.end_ms or now)  # complete days only
    span = (initiative.start_ms - pre_ms, max(last, initiative.start_ms + DAY_MS))
    source = _Source(storage, catalog, clock, span)
    kpis = [_one(initiative, k, source) for k in initiative.kpis]
    return initiative_json(initiative) | {"pre_days": pre_ms // DAY_MS, "impact": kpis}


def initiative_json(i: Initiative) -> Data:
    return i.model_dump(mode="json") | {"start_ms": i.start_ms, "end_ms": i.end_ms}


class _Source:
    def __init__(self, storage: Storage, catalog: Catalog, clock: Clock, span: tuple[int, int]):
        self.storage, self.catalog, self.clock, self.span = storage, catalog, clock, span

    def kpi(self, name: str, segment: dict[str, str] | None) -> Series:
        start, end = self.span
        if not segment:
            return fetch_kpi(self.storage, self.catalog, self.clock, name, start, end, DAY_MS)
        evaluator = KpiEvaluator(self.storage, self.catalog, self.clock)
        got = evaluator.series(name, start, end, grain=Grain.DAY, by=sorted(segment))
        want = tuple(sorted(segment.items()))
        by_day = {p.start_ms: p.value for p in got.points if tuple(sorted(p.group)) == want}
        days = sorted({p.start_ms for p in got.points})
        values = [math.nan if by_day.get(d) is None else by_day[d] for d in days]
        ts = np.array(days, dtype=np.int64)
        return Series(ts, np.array(values, dtype=np.float64), name=name, step_ms=DAY_MS)


def _one(i: Initiative, k: InitiativeKpi, source: _Source) -> Data:
    series = source.kpi(k.kpi, i.segment)
    control = _control(i.control, k.kpi, source)
    if control is None:
        got = interrupted_time_series(series, i.start_ms, i.end_ms, k.direction)
    else:
        got = difference_in_differences(series, control, i.start_ms, i.end_ms, k.direction)
    return {"kpi": k.kpi, "direction": k.direction, "expected": k.expected} | impact_json(
        got, series
    )


def _control(c: Control | None, kpi: str, source: _Source) -> Series | None:
    if c is None:
        return None
    if c.kpi is not None:
        return source.kpi(c.kpi, None)
    return source.kpi(kpi, c.segment)


def impact_json(got: Impact, series: Series) -> Data:
    cf = got.counterfactual
    points = [
        [int(t), _num(v), None if cf is None else _num(cf[j])]
        for j, (t, v) in enumerate(zip(series.ts.tolist(), series.values.tolist(), strict=True))
    ]
    return {
        "method": got.method,
        "verdict": got.verdict.value,
        "explanation": got.explanation,
        "effect": _num(got.effect),
        "low": _num(got.low),
        "high": _num(got.high),
        "relative": _num(got.relative),
        "relative_low": _num(got.relative_low),
        "relative_high": _num(got.relative_high),
        "pre_points": got.pre_points,
        "post_points": got.post_points,
        "ar1": _num(got.rho),
        "points": points,
    }


def _pre(params: Params) -> int:
    raw = params.get("pre")
    if not raw:
        return DEFAULT_PRE_MS
    try:
        got = parse_prom_duration_ms(raw)
    except ValueError as exc:
        raise invalid_param("pre", f"{exc}; use a duration of days such as 56d") from None
    if not DAY_MS * 7 <= got <= MAX_PRE_MS:
        raise invalid_param("pre", "the pre-period must be between 7d and 730d, e.g. pre=56d")
    return got - got % DAY_MS


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None  # numpy's float64 too
