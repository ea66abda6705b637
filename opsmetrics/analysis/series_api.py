"""Requests of the series-analysis API shared by HTTP and the CLI (docs/analysis.md): trend,
anomalies, forecast, capacity and outlook of a KPI or PromQL series. Each takes the request's
parameters and returns the JSON `data` of the answer.

Parameters: `kpi=NAME` or `query=PROMQL` (one of them), `start`/`end` (RFC 3339 or Unix
seconds; default the last 30 days), `step` (a duration; default the finest of 1m/5m/15m/1h/1d
that gives at most MAX_DEFAULT_POINTS points — KPIs start at 1h), and per request `horizon`,
`season`, `threshold`, `limit`, `target`, `period`, `agg`, `view`, `reduce=sum`. The *_of_numbers
requests take plain numbers instead: {"values": [...], "step": 3600, "horizon": 48}.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from opsmetrics.analysis import anomalies, capacity, trend
from opsmetrics.analysis.forecast import forecast
from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series, fetch_series
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError
from opsmetrics.params import Params, invalid_param, parse_prom_duration_ms, time_param
from opsmetrics.storage.base import Storage

MAX_DEFAULT_POINTS = 11_000
DEFAULT_RANGE_MS = 30 * DAY_MS
_STEPS_MS = (60_000, 300_000, 900_000, HOUR_MS, DAY_MS)
_INT = re.compile(r"\d+")


class _NumbersBody(msgspec.Struct, forbid_unknown_fields=True):
    values: list[float | None]
    step: float = 3600.0
    start: float = 0.0
    horizon: int = 24
    season: int | None = None
    threshold: float = anomalies.DEFAULT_THRESHOLD
    level: float = 0.95
    name: str = "values"
    unit: str = ""


@dataclass(frozen=True)
class _Ask:
    series: Series
    params: Params
    now_ms: int


#: The JSON `data` of an answer.
Data = dict[str, Any]
Request = Callable[[Params, Storage, Catalog, Clock], Data]


# --- requests -----------------------------------------------------------------------------
def trend_request(params: Params, storage: Storage, catalog: Catalog, clock: Clock) -> Data:
    view = params.get("view")
    window = trend.view_window(view, clock.now_ms()) if view else None
    return _trend(_fetch(params, storage, catalog, clock, window), view or "custom")


def anomalies_request(params: Params, storage: Storage, catalog: Catalog, clock: Clock) -> Data:
    ask = _fetch(params, storage, catalog, clock)
    threshold = _float(ask.params, "threshold", anomalies.DEFAULT_THRESHOLD)
    return _anomalies(ask.series, threshold, ask.now_ms)


def anomalies_of_numbers(raw: bytes) -> Data:
    body, series = _numbers(raw)
    return _anomalies(series, body.threshold, int(series.ts[-1]))


def forecast_request(params: Params, storage: Storage, catalog: Catalog, clock: Clock) -> Data:
    ask = _fetch(params, storage, catalog, clock)
    horizon = _horizon(ask.params, ask.series)
    season = _opt_int(ask.params, "season")
    level = _float(ask.params, "level", 0.95)
    fc = forecast(ask.series, horizon, season, level=level)
    return _head(ask.series) | fc.json()


def forecast_of_numbers(raw: bytes) -> Data:
    body, series = _numbers(raw)
    fc = forecast(series, body.horizon, body.season, level=body.level)
    return _head(series) | fc.json()


def capacity_request(params: Params, storage: Storage, catalog: Catalog, clock: Clock) -> Data:
    ask = _fetch(params, storage, catalog, clock)
    limit = _float(ask.params, "limit", math.nan)
    if math.isnan(limit):
        raise invalid_param("limit", "required: the capacity limit, e.g. limit=0.9")
    horizon = _horizon(ask.params, ask.series)
    season = _opt_int(ask.params, "season")
    got = capacity.capacity(ask.series, limit, horizon, season)
    return _head(ask.series) | _capacity_json(got)


def outlook_request(params: Params, storage: Storage, catalog: Catalog, clock: Clock) -> Data:
    now = clock.now_ms()
    period_start, period_end = capacity.period_bounds(params.get("period") or "month", now)
    target, direction = _target(catalog, params, period_end)
    # Complete days only (up to the last millisecond of yesterday): today's value so far
    # would read as a drop.
    today = now - now % DAY_MS
    ask = _fetch(params, storage, catalog, clock, (period_end - 120 * DAY_MS, today - 1, DAY_MS))
    got = capacity.outlook(
        ask.series,
        target,
        period_end,
        period_start_ms=period_start,
        agg=params.get("agg") or "last",
        direction=direction,
        season_steps=_opt_int(params, "season"),
    )
    return _head(ask.series) | _outlook_json(got, period_start)


#: The GET requests by name, as `opsmetrics analyze NAME --data DIR` runs them.
REQUESTS: dict[str, Request] = {
    "trend": trend_request,
    "anomalies": anomalies_request,
    "forecast": forecast_request,
    "capacity": capacity_request,
    "outlook": outlook_request,
}


# --- work ----------------------------------------------------------------------------------
def _trend(ask: _Ask, view: str) -> dict[str, Any]:
    s = ask.series
    period_ms = _duration(ask.params, "period", s.step_ms)
    g = trend.growth(s, period_ms)
    season = _opt_int(ask.params, "season") or _default_season(s)
    decomposition: dict[str, Any] | None = None
    why = None
    try:
        d = trend.decompose(s, season) if season else None
        if d is not None:
            decomposition = {
                "period": d.period,
                "filled": d.filled,
                "trend": _list(d.trend),
                "seasonal": _list(d.seasonal),
                "remainder": _list(d.remainder),
            }
        else:
            why = "no season: give season= (in steps) to decompose"
    except BadDataError as exc:
        why = exc.message
    return _head(s) | {
        "view": view,
        "points": _points(s),
        "growth": _growth_json(g),
        "decomposition": decomposition,
        "decomposition_error": why,
    }


def _growth_json(g: trend.Growth) -> dict[str, Any]:
    return {
        "period_ms": g.period_ms,
        "latest": _num(g.latest),
        "previous": _num(g.previous),
        "period_over_period": _num(g.period_over_period),
        "compound_rate": _num(g.compound_rate),
        "slope_per_day": _num(g.slope_per_day),
    }


def _anomalies(series: Series, threshold: float, now_ms: int) -> dict[str, Any]:
    report = anomalies.detect(series, threshold=threshold)
    flagged, score, text = anomalies.is_anomalous_now(series, now_ms, threshold=threshold)
    return _head(series) | {
        "threshold": threshold,
        "anomalies": [
            {
                "ts": a.ts,
                "value": _num(a.value),
                "expected": _num(a.expected),
                "expected_low": _num(a.expected_low),
                "expected_high": _num(a.expected_high),
                "score": _num(a.score),
                "explanation": a.explanation,
            }
            for a in report.anomalies
        ],
        "change_points": [
            {
                "ts": c.ts,
                "before": _num(c.before),
                "after": _num(c.after),
                "explanation": c.explanation,
            }
            for c in report.change_points
        ],
        "now": {"anomalous": flagged, "score": _num(score), "explanation": text},
    }


def _capacity_json(c: capacity.Capacity) -> dict[str, Any]:
    return {
        "limit": c.limit,
        "direction": c.direction,
        "current": _num(c.current),
        "eta": c.eta_ms,
        "earliest": c.earliest_ms,
        "latest": c.latest_ms,
        "explanation": c.explanation,
        "forecast": c.forecast.json(),
    }


def _outlook_json(o: capacity.Outlook, period_start: int) -> dict[str, Any]:
    return {
        "target": o.target,
        "direction": o.direction,
        "agg": o.agg,
        "period_start": period_start,
        "period_end": o.period_end_ms,
        "observed": _num(o.observed),
        "expected": _num(o.expected),
        "low": _num(o.low),
        "high": _num(o.high),
        "probability": _num(o.probability),
        "forecast": o.forecast.json(),
    }


# --- parameters ---------------------------------------------------------------------------
def _fetch(
    params: Params,
    storage: Storage,
    catalog: Catalog,
    clock: Clock,
    window: tuple[int, int, int] | None = None,
) -> _Ask:
    now = clock.now_ms()
    kpi, query = params.get("kpi"), params.get("query")
    if bool(kpi) == bool(query):
        raise invalid_param("query", "give exactly one of kpi=NAME or query=PROMQL")
    if kpi and kpi not in catalog:
        catalog.get(kpi)  # 404 with a suggestion
    d_start, d_end, d_step = window or (None, now, None)
    end = time_param(params, "end", d_end)
    assert end is not None
    start = time_param(params, "start", d_start if d_start is not None else end - DEFAULT_RANGE_MS)
    assert start is not None
    if end <= start:
        raise invalid_param("end", "it must be after start")
    step = _duration(params, "step", d_step or _default_step(end - start, bool(kpi)))
    source = kpi or query
    reduce = params.get("reduce") or None
    series = fetch_series(storage, catalog, clock, source, start, end, step, reduce=reduce)
    return _Ask(series, params, min(now, end))


def _numbers(raw: bytes) -> tuple[_NumbersBody, Series]:
    try:
        body = msgspec.json.decode(raw, type=_NumbersBody)
    except msgspec.DecodeError as exc:
        raise BadDataError(
            f"invalid body: {exc}; send JSON like "
            '{"values": [1, 2, null, 4], "step": 3600, "horizon": 24}'
        ) from None
    if not body.values:
        raise invalid_param("values", "the list is empty")
    if not body.step > 0:
        raise invalid_param("step", "seconds between values; must be positive")
    values = [math.nan if v is None else float(v) for v in body.values]
    series = Series.of(
        values, round(body.step * 1000), round(body.start * 1000), body.name, body.unit
    )
    return body, series


def _default_step(span_ms: int, is_kpi: bool) -> int:
    for step in _STEPS_MS:
        if is_kpi and step < HOUR_MS:
            continue
        if span_ms // step <= MAX_DEFAULT_POINTS:
            return step
    return DAY_MS


def _default_season(s: Series) -> int | None:
    if s.step_ms < DAY_MS and DAY_MS % s.step_ms == 0:
        return DAY_MS // s.step_ms
    return 7 if s.step_ms == DAY_MS else None


def _duration(params: Params, name: str, default: int) -> int:
    raw = params.get(name)
    if not raw:
        return default
    try:
        got = parse_prom_duration_ms(raw)
    except ValueError as exc:
        raise invalid_param(name, f"{exc}; use a duration such as 5m, 1h or 1d") from None
    if got <= 0:
        raise invalid_param(name, "must be a positive duration such as 5m")
    return got


def _horizon(params: Params, s: Series) -> int:
    """`horizon` in steps (an integer) or as a duration (2d); default a season or 24 steps."""
    raw = params.get("horizon")
    if not raw:
        return _default_season(s) or 24
    if _INT.fullmatch(raw):
        return int(raw)
    return max(1, _duration(params, "horizon", s.step_ms) // s.step_ms)


def _opt_int(params: Params, name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    if not _INT.fullmatch(raw) or int(raw) < 1:
        raise invalid_param(name, f"{raw!r} is not a positive whole number of steps")
    return int(raw)


def _float(params: Params, name: str, default: float) -> float:
    raw = params.get(name)
    if not raw:
        return default
    try:
        got = float(raw)
    except ValueError:
        raise invalid_param(name, f"{raw!r} is not a number") from None
    if not math.isfinite(got):
        raise invalid_param(name, f"{raw!r} is not a finite number")
    return got


def _target(catalog: Catalog, params: Params, period_end: int) -> tuple[float, str]:
    """`target=` and `direction=`, else the KPI's target on the period's last day."""
    direction = params.get("direction")
    raw = _float(params, "target", math.nan)
    kpi_name = params.get("kpi")
    if kpi_name and (math.isnan(raw) or not direction):
        kpi = catalog.get(kpi_name)
        direction = direction or kpi.direction.value
        if math.isnan(raw) and kpi.target is not None:
            last_day = datetime.fromtimestamp((period_end - 1) / 1000, UTC).date()
            raw = kpi.target.at(last_day) or math.nan
    if math.isnan(raw):
        raise invalid_param("target", "required (the KPI has no target): e.g. target=1000")
    direction = direction or "higher_is_better"
    if direction not in ("higher_is_better", "lower_is_better"):
        direction = "higher_is_better" if direction == "target_is_best" else direction
    if direction not in ("higher_is_better", "lower_is_better"):
        raise invalid_param("direction", f"{direction!r}; use higher_is_better or lower_is_better")
    return raw, direction


# --- JSON -----------------------------------------------------------------------------------
def _head(s: Series) -> dict[str, Any]:
    return {"name": s.name, "unit": s.unit, "step": s.step_ms / 1000}


def _points(s: Series) -> list[list[Any]]:
    return [[int(t), _num(v)] for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True)]


def _list(values: Any) -> list[float | None]:
    return [_num(v) for v in values.tolist()]


def _num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None
