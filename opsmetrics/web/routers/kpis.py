"""KPIs over HTTP: the catalog with current values, one definition with its lineage, values over
a range, definition versions, and manual values (docs/api.md#kpis).

Times (`from`, `to`, a manual value's `ts`) are RFC 3339 or Unix seconds (`ts` may also be
integer milliseconds); answers carry RFC 3339 in UTC. An unknown KPI is a 404 that suggests the
closest name.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.analysis.quality_kpis import stale_for_kpi
from opsmetrics.catalog.kpi_model import Grain, KpiDefinition, ManualFormula
from opsmetrics.errors import BadDataError
from opsmetrics.params import Params, parse_prom_time_ms, time_param
from opsmetrics.query import events as ev
from opsmetrics.query.kpi import Compare
from opsmetrics.storage.token_records import Scope
from opsmetrics.web import kpi_json
from opsmetrics.web.deps import read_json_body, require, services
from opsmetrics.web.kpi_metrics import kpi_values
from opsmetrics.web.routers import sources as sources_router
from opsmetrics.web.routers.quality import quality_report
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["kpis"])
READ = [Depends(require(Scope.READ))]
INGEST = [Depends(require(Scope.INGEST))]
#: Without `from`, a series covers this many periods of its grain, ending with the current one.
DEFAULT_PERIODS = 30
_FALSE = ("false", "0", "no")
_TRUE = ("true", "1", "yes", "")


class _ManualValueJSON(msgspec.Struct, forbid_unknown_fields=True):
    value: float
    author: str
    ts: str | int | None = None
    note: str = ""


_ManualBody = list[_ManualValueJSON] | _ManualValueJSON


@router.get("/api/v1/kpis", dependencies=READ, summary="Every KPI with its current value")
async def list_kpis(request: Request) -> Response:
    params = _params(request)
    catalog = services(request).catalog
    rows = {kpi.name: kpi_json.summary_json(kpi) for kpi in catalog}
    if _bool(params, "values"):
        currents = await asyncio.to_thread(kpi_values(request).all)
        report = await quality_report(request)
        for kpi, current in currents:
            rows[kpi.name] |= kpi_json.current_json(current.point, current.error, current.excluded)
            stale = stale_for_kpi(report, catalog, kpi)
            rows[kpi.name]["stale_sources"] = kpi_json.stale_json(stale)
    return success(list(rows.values()))


@router.get("/api/v1/kpis/{name}", dependencies=READ, summary="One KPI: definition, lineage")
async def show_kpi(request: Request, name: str) -> Response:
    svc = services(request)
    kpi = svc.catalog.get(name)
    history = await asyncio.to_thread(svc.storage.kpi_versions, name)
    latest = history[-1] if history else None
    # Dashboards and KPI alert rules that use this KPI appear as its dependents.
    users = [svc.dashboards, request.app.state.kpi_alerts]
    lineage = svc.catalog.lineage(name, users)
    body = kpi_json.definition_json(kpi, lineage, latest)
    body["lineage"]["sources"] = sources_router.upstream_json(svc, lineage)
    stale = stale_for_kpi(await quality_report(request), svc.catalog, kpi)
    return success(body | {"stale_sources": kpi_json.stale_json(stale)})


@router.get("/api/v1/kpis/{name}/series", dependencies=READ, summary="A KPI's values over time")
async def kpi_series(request: Request, name: str) -> Response:
    svc = services(request)
    kpi = svc.catalog.get(name)
    params = _params(request)
    grain = _grain(params)
    tz = params.get("tz") or ev.UTC
    ev.check_tz(tz)
    start, end = _range(params, grain or kpi.grain, tz, svc.clock.now_ms())
    evaluator = kpi_values(request).evaluator
    series = await asyncio.to_thread(
        lambda: evaluator.series(
            name, start, end, grain=grain, tz=tz, compare=_compare(params), by=_by(params, kpi)
        )
    )
    stale = stale_for_kpi(await quality_report(request), svc.catalog, kpi)
    return success(kpi_json.series_json(series) | {"stale_sources": kpi_json.stale_json(stale)})


@router.get("/api/v1/kpis/{name}/versions", dependencies=READ, summary="Definition history")
async def kpi_versions(request: Request, name: str) -> Response:
    svc = services(request)
    svc.catalog.get(name)
    history = await asyncio.to_thread(svc.storage.kpi_versions, name)
    return success([kpi_json.version_json(v) for v in history])


@router.post("/api/v1/kpis/{name}/values", dependencies=INGEST, summary="Manual KPI values")
async def post_manual_values(request: Request, name: str) -> Response:
    svc = services(request)
    kpi = svc.catalog.get(name)
    if not isinstance(kpi.formula, ManualFormula):
        raise BadDataError(
            f"KPI {name!r} is computed by its formula ({kpi.source}); only KPIs defined with "
            "`manual: true` take values by POST"
        )
    body = await read_json_body(request, svc.settings.limits.max_body_bytes)
    now = svc.clock.now_ms()
    entries = [_manual_entry(item, i, now) for i, item in enumerate(_decode_manual(body))]
    evaluator = kpi_values(request).evaluator

    def record() -> None:
        for ts, value, author, note in entries:
            evaluator.record_manual(name, ts, value, author, note)

    await asyncio.to_thread(record)
    kpi_values(request).forget(name)
    return success({"kpi": name, "values": len(entries)})


# --- parameters -------------------------------------------------------------------------
def _params(request: Request) -> Params:
    return Params(list(request.query_params.multi_items()))


def _bool(params: Params, name: str) -> bool:
    raw = params.get(name).lower()
    if raw in _FALSE or raw in _TRUE:
        return raw not in _FALSE
    raise BadDataError(f'invalid parameter "{name}": {raw!r}; use true or false')


def _grain(params: Params) -> Grain | None:
    raw = params.get("grain")
    return _enum(Grain, raw, "grain") if raw else None


def _compare(params: Params) -> Compare | None:
    raw = params.get("compare")
    return _enum(Compare, raw, "compare") if raw else None


def _enum(kind: Any, raw: str, name: str) -> Any:
    try:
        return kind(raw.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise BadDataError(f'invalid parameter "{name}": {raw!r}; use one of {allowed}') from None


def _by(params: Params, kpi: KpiDefinition) -> tuple[str, ...]:
    """`by=a&by=b` or `by=a,b`: dimensions of the KPI to break its values down by."""
    names = [n.strip() for raw in params.all("by") for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in kpi.dimensions]
    if unknown and kpi.dimensions:
        raise BadDataError(
            f'invalid parameter "by": {unknown[0]!r} is not a dimension of KPI {kpi.name!r}; '
            f"its dimensions are {', '.join(kpi.dimensions)}"
        )
    if unknown:
        raise BadDataError(
            f'invalid parameter "by": KPI {kpi.name!r} declares no dimensions to break down by; '
            f"add `dimensions:` to its definition ({kpi.source})"
        )
    return tuple(dict.fromkeys(names))


def _range(params: Params, grain: Grain, tz: str, now_ms: int) -> tuple[int, int]:
    """`from`/`to`; without `from`, the last DEFAULT_PERIODS periods up to `to` (default now)."""
    end = time_param(params, "to", now_ms)
    assert end is not None
    start = time_param(params, "from", None)
    if start is None:
        start = _periods_before(end, grain, tz, DEFAULT_PERIODS)
    if end <= start:
        raise BadDataError('invalid parameter "to": it must be after "from"')
    return start, end


def _periods_before(end_ms: int, grain: Grain, tz: str, periods: int) -> int:
    """The start of the period `periods - 1` before the one holding `end_ms` (calendar, tz)."""
    current = period_floor_ms(end_ms, grain, tz)
    return ev.period_start_ms(current, 1 - periods, ev.Grain(grain.value), tz)


def period_floor_ms(ms: int, grain: Grain, tz: str) -> int:
    """The start of the calendar period (weeks start on Monday) holding `ms`, in `tz`."""
    local = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).replace(tzinfo=None)
    hour = local.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    match grain:
        case Grain.HOUR:
            floor = hour
        case Grain.DAY:
            floor = day
        case Grain.WEEK:
            floor = day - timedelta(days=day.weekday())
        case Grain.MONTH:
            floor = day.replace(day=1)
        case Grain.QUARTER:
            floor = day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
        case Grain.YEAR:
            floor = day.replace(day=1, month=1)
    return round(floor.replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


# --- manual values ----------------------------------------------------------------------
def _decode_manual(body: bytes) -> list[_ManualValueJSON]:
    try:
        got = msgspec.json.decode(body, type=_ManualBody)
    except msgspec.DecodeError as exc:
        raise BadDataError(
            f"invalid manual value: {exc}; send "
            '{"value": 42.1, "ts": "2026-01-01T00:00:00Z", "author": "ana", "note": "survey"} '
            "or a list of such objects"
        ) from None
    items = got if isinstance(got, list) else [got]
    if not items:
        raise BadDataError("no manual values: the list is empty")
    return items


def _manual_entry(item: _ManualValueJSON, i: int, now_ms: int) -> tuple[int, float, str, str]:
    where = f"values[{i}]"
    if not math.isfinite(item.value):
        raise BadDataError(f"{where}.value: {item.value} is not a finite number")
    if not item.author.strip():
        raise BadDataError(f"{where}.author: must not be empty; say who entered the value")
    return _manual_ts(item.ts, where, now_ms), item.value, item.author.strip(), item.note


def _manual_ts(ts: str | int | None, where: str, now_ms: int) -> int:
    if ts is None:
        return now_ms
    if isinstance(ts, int):
        return ts
    try:
        return parse_prom_time_ms(ts)
    except ValueError as exc:
        raise BadDataError(
            f"{where}.ts: {exc}; use RFC 3339 (2026-01-01T00:00:00Z) or milliseconds"
        ) from None
