"""Series analysis over HTTP: trend, anomalies, forecast, capacity, outlook (docs/analysis.md).

GET takes `kpi=NAME` or `query=PROMQL` and the parameters opsmetrics.analysis.series_api lists;
POST /forecast and /anomalies take plain numbers: {"values": [...], "step": 3600, "horizon": 48}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.analysis import series_api
from opsmetrics.params import Params
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import read_json_body, require, services
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["analysis"])
READ = [Depends(require(Scope.READ))]


@router.get("/api/v1/analysis/trend", dependencies=READ, summary="Trend, growth, STL")
async def trend_route(request: Request) -> Response:
    return await _answer(request, series_api.trend_request)


@router.get("/api/v1/analysis/anomalies", dependencies=READ, summary="Anomalies, level shifts")
async def anomalies_get(request: Request) -> Response:
    return await _answer(request, series_api.anomalies_request)


@router.post("/api/v1/analysis/anomalies", dependencies=READ, summary="Anomalies in numbers")
async def anomalies_post(request: Request) -> Response:
    return await _answer_numbers(request, series_api.anomalies_of_numbers)


@router.get("/api/v1/analysis/forecast", dependencies=READ, summary="Forecast with intervals")
async def forecast_get(request: Request) -> Response:
    return await _answer(request, series_api.forecast_request)


@router.post("/api/v1/analysis/forecast", dependencies=READ, summary="Forecast of numbers")
async def forecast_post(request: Request) -> Response:
    return await _answer_numbers(request, series_api.forecast_of_numbers)


@router.get("/api/v1/analysis/capacity", dependencies=READ, summary="When a limit is crossed")
async def capacity_route(request: Request) -> Response:
    return await _answer(request, series_api.capacity_request)


@router.get("/api/v1/analysis/outlook", dependencies=READ, summary="Will the target be met")
async def outlook_route(request: Request) -> Response:
    return await _answer(request, series_api.outlook_request)


async def _answer(request: Request, ask: series_api.Request) -> Response:
    svc = services(request)
    params = Params(list(request.query_params.multi_items()))
    return success(await asyncio.to_thread(ask, params, svc.storage, svc.catalog, svc.clock))


async def _answer_numbers(request: Request, ask: Callable[[bytes], series_api.Data]) -> Response:
    raw = await read_json_body(request, services(request).settings.limits.max_body_bytes)
    return success(await asyncio.to_thread(ask, raw))
