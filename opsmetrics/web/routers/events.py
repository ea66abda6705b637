"""Event analytics over HTTP: GET /api/v1/events/{aggregate,funnel,retention}.

Times (`start`, `end`) are RFC 3339 or Unix seconds, durations (`window`, `rolling`) Prometheus
style (`1d`, `36h`) or seconds. Property filters are a JSON list in `where` (repeatable):
`[{"prop": "plan", "op": "in", "values": ["pro", "team"]}]`; ops are `=`, `!=`, `in`,
`not in`, `exists`, `not exists`; `value` may stand for a one-element `values`.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.errors import BadDataError
from opsmetrics.params import Params, parse_prom_duration_ms, time_param
from opsmetrics.query import events as ev
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require, services
from opsmetrics.web.routers.read import success

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["events"])
DAY_MS = 86_400_000
Scalar = str | int | float | bool | None


class _FilterJSON(msgspec.Struct, forbid_unknown_fields=True):
    prop: str
    op: str = "="
    value: Scalar = None
    values: list[Scalar] = msgspec.field(default_factory=list)


class _StepJSON(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None
    where: list[_FilterJSON] = msgspec.field(default_factory=list)


@router.get("/api/v1/events/aggregate", summary="Event count/sum/unique/avg/pXX per bucket")
async def aggregate(request: Request) -> Response:
    params = Params(list(request.query_params.multi_items()))
    start, end = _range(params)
    tz = params.get("tz") or ev.UTC
    name = params.get("name") or None
    where = _filters(params, "where")
    store = services(request).storage
    if params.get("rolling"):
        q = ev.RollingUnique(name, _rolling_days(params), start, end, tz, where)
        buckets = await asyncio.to_thread(ev.rolling_unique, store, q)
        return success(_buckets_json(buckets, "unique", "day", tz, []))
    agg = _enum(ev.Agg, params.get("agg") or "count", "agg")
    grain = _enum(ev.Grain, params.get("grain") or "day", "grain")
    by = tuple(params.all("by"))
    aq = ev.EventAggregate(name, agg, start, end, grain, tz, where, by)
    buckets = await asyncio.to_thread(ev.aggregate, store, aq)
    return success(_buckets_json(buckets, agg.value, grain.value, tz, list(by)))


@router.get("/api/v1/events/funnel", summary="Ordered funnel with a conversion window")
async def funnel(request: Request) -> Response:
    params = Params(list(request.query_params.multi_items()))
    start, end = _range(params)
    window = _duration(params, "window", "14d")
    q = ev.Funnel(_steps(params), start, end, window, params.get("breakdown") or None)
    result = await asyncio.to_thread(ev.funnel, services(request).storage, q)
    groups = [
        {"breakdown": g.breakdown, "steps": [_clean(msgspec.to_builtins(s)) for s in g.steps]}
        for g in result.groups
    ]
    return success({"window_ms": window, "breakdown": q.breakdown, "groups": groups})


@router.get("/api/v1/events/retention", summary="Cohort retention matrix")
async def retention(request: Request) -> Response:
    params = Params(list(request.query_params.multi_items()))
    start, end = _range(params)
    start_event = params.get("start_event")
    if not start_event:
        raise BadDataError('missing parameter "start_event" (the event that starts a cohort)')
    returning = None
    if params.get("return_event") or params.all("return_where"):
        returning = ev.EventMatch(
            params.get("return_event") or None, _filters(params, "return_where")
        )
    q = ev.Retention(
        ev.EventMatch(start_event, _filters(params, "start_where")),
        returning,
        start,
        end,
        _enum(ev.Grain, params.get("grain") or "week", "grain"),
        _int(params, "periods", 8),
        params.get("tz") or ev.UTC,
    )
    matrix = await asyncio.to_thread(ev.retention, services(request).storage, q)
    cohorts = [
        {"t": _rfc3339(c.start_ms, q.tz), "start_ms": c.start_ms, "size": c.size}
        | {"counts": c.counts, "rates": c.rates}
        for c in matrix.cohorts
    ]
    return success({"grain": q.grain.value, "tz": q.tz, "periods": q.periods, "cohorts": cohorts})


# --- parameters -------------------------------------------------------------------------
def _range(params: Params) -> tuple[int, int]:
    start, end = time_param(params, "start", None), time_param(params, "end", None)
    if start is None or end is None:
        raise BadDataError('parameters "start" and "end" are required (RFC 3339 or Unix seconds)')
    return start, end


def _duration(params: Params, name: str, default: str) -> int:
    raw = params.get(name) or default
    try:
        return parse_prom_duration_ms(raw)
    except ValueError as exc:
        raise BadDataError(f'invalid parameter "{name}": {exc}') from None


def _rolling_days(params: Params) -> int:
    ms = _duration(params, "rolling", "1d")
    if ms % DAY_MS:
        raise BadDataError('invalid parameter "rolling": use whole days, e.g. 7d or 30d')
    if params.get("agg") not in ("", "unique"):
        raise BadDataError('"rolling" counts unique entities; use it with agg=unique')
    return ms // DAY_MS


def _int(params: Params, name: str, default: int) -> int:
    raw = params.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise BadDataError(f'invalid parameter "{name}": {raw!r} is not an integer') from None


def _enum(kind: Any, raw: str, name: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise BadDataError(f'invalid parameter "{name}": {raw!r}; use one of {allowed}') from None


def _filters(params: Params, name: str) -> tuple[ev.PropFilter, ...]:
    return tuple(f for raw in params.all(name) for f in _decode_filters(raw, name))


def _decode_filters(raw: str, name: str) -> list[ev.PropFilter]:
    try:
        got = msgspec.json.decode(raw, type=list[_FilterJSON])
    except msgspec.DecodeError as exc:
        raise BadDataError(
            f'invalid parameter "{name}": {exc}; expected a JSON list such as '
            '[{"prop": "plan", "op": "=", "value": "pro"}]'
        ) from None
    return [_filter(f, name) for f in got]


def _filter(f: _FilterJSON, name: str) -> ev.PropFilter:
    op = _enum(ev.FilterOp, f.op, name + ".op")
    values = f.values if f.values or op in (ev.FilterOp.EXISTS, ev.FilterOp.NOT_EXISTS) else []
    if not values and f.value is not None:
        values = [f.value]
    return ev.PropFilter(f.prop, op, tuple(ev.prop_text(v) for v in values))


def _steps(params: Params) -> tuple[ev.EventMatch, ...]:
    raw = params.get("steps")
    if not raw:
        return tuple(ev.EventMatch(name) for name in params.all("step"))
    try:
        got = msgspec.json.decode(raw, type=list[_StepJSON])
    except msgspec.DecodeError as exc:
        raise BadDataError(
            f'invalid parameter "steps": {exc}; expected a JSON list such as '
            '[{"name": "cart_view"}, {"name": "purchase", "where": [...]}]'
        ) from None
    return tuple(
        ev.EventMatch(s.name, tuple(_filter(f, f"steps[{i}].where") for f in s.where))
        for i, s in enumerate(got)
    )


# --- answers ----------------------------------------------------------------------------
def _buckets_json(
    buckets: list[ev.Bucket], agg: str, grain: str, tz: str, by: list[str]
) -> dict[str, Any]:
    rows = [
        {"t": _rfc3339(b.start_ms, tz), "start_ms": b.start_ms, "group": b.group}
        | {"value": None if math.isnan(b.value) else b.value, "sample_size": b.sample_size}
        for b in buckets
    ]
    return {"agg": agg, "grain": grain, "tz": tz, "by": by, "buckets": rows}


def _rfc3339(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat()


def _clean(d: Any) -> Any:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
