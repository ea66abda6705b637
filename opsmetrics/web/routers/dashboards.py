"""Dashboards over HTTP: the list, one definition, and the data of its widgets
(docs/api.md#dashboards, docs/dashboards.md).

`start`/`end` are RFC 3339, Unix seconds, `now` or `now-<duration>` (`now-7d`, `now-90m`);
without them the dashboard's own `time_range` ending now. `widget=<id>` (repeatable) limits the
answer to some widgets.
"""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.dashboards.data import DashboardData, dashboard_json, summary_json
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError
from opsmetrics.params import Params, invalid_param, parse_prom_time_ms
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require, services
from opsmetrics.web.kpi_metrics import kpi_values
from opsmetrics.web.routers.quality import stale_notes
from opsmetrics.web.routers.read import success

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["dashboards"])
_RELATIVE = re.compile(r"now\s*(?:-\s*(\S+))?")


@router.get("/api/v1/dashboards", summary="Every dashboard")
async def list_dashboards(request: Request) -> Response:
    return success([summary_json(d) for d in services(request).dashboards])


@router.get("/api/v1/dashboards/{name}", summary="One dashboard's definition")
async def show_dashboard(request: Request, name: str) -> Response:
    svc = services(request)
    return success(dashboard_json(svc.dashboards.get(name), svc.catalog))


@router.get("/api/v1/dashboards/{name}/data", summary="The data of a dashboard's widgets")
async def dashboard_data(request: Request, name: str) -> Response:
    svc = services(request)
    dashboard = svc.dashboards.get(name)
    params = Params(list(request.query_params.multi_items()))
    now = svc.clock.now_ms()
    end = time_value(params, "end", now, now)
    start = time_value(params, "start", end - dashboard.spec.time_range, now)
    if end <= start:
        raise invalid_param("end", "end timestamp must be after start time")
    data = _data(request)
    ids = [i for raw in params.all("widget") for i in raw.split(",") if i]
    payload = await asyncio.to_thread(data.payload, dashboard, start, end, ids or None)
    return success(payload)


def time_value(params: Params, name: str, default_ms: int, now_ms: int) -> int:
    """A time parameter: RFC 3339, Unix seconds, `now` or `now-7d` (relative to now)."""
    raw = params.get(name).strip()
    if raw == "":
        return default_ms
    relative = _RELATIVE.fullmatch(raw)
    try:
        if relative is None:
            return parse_prom_time_ms(raw)
        back = relative.group(1)
        return now_ms - (parse_duration_ms(back) if back else 0)
    except (ValueError, BadDataError) as exc:
        raise invalid_param(
            name,
            f"cannot parse {raw!r}: {exc}; use RFC 3339, Unix seconds, now or now-7d",
        ) from None


def _data(request: Request) -> DashboardData:
    """The app's DashboardData, made on first use; alerts come from the app's alert hub,
    acknowledgements from its notification dispatcher."""
    data: DashboardData | None = getattr(request.app.state, "dashboard_data", None)
    if data is None:
        svc = services(request)
        data = DashboardData(svc.storage, svc.catalog, kpi_values(request).evaluator, svc.clock)
        request.app.state.dashboard_data = data
    data.alerts = getattr(request.app.state, "alerts", None)
    dispatcher = getattr(request.app.state, "dispatcher", None)
    data.acked = dispatcher.quieting.is_acked if dispatcher is not None else None
    data.stale = stale_notes(request)
    return data
