"""Reading back, with Prometheus's JSON shapes: series, labels, metadata, selector queries.

GET takes query parameters; POST takes the same as an `application/x-www-form-urlencoded` body.
"""

from __future__ import annotations

import math
from decimal import Decimal
from urllib.parse import parse_qsl

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from opsmetrics.auth import Scope
from opsmetrics.durations import parse_duration_ms, parse_time_ms
from opsmetrics.errors import BadDataError
from opsmetrics.model import Labels, Matcher
from opsmetrics.query.selectors import (
    SeriesValues,
    instant_vectors,
    parse_selector,
    range_vectors,
)
from opsmetrics.web.deps import read_body, require, services

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["query"])
MAX_POINTS_PER_SERIES = 11_000  # as Prometheus: start/end/step may not ask for more


class Params:
    """Query parameters from the URL and, for POST, the form body (repeats kept)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    @staticmethod
    async def of(request: Request) -> Params:
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await read_body(request, 1 << 20)
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return Params(pairs)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.pairs if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise BadDataError(f"missing required parameter {name!r}")
        return value


def format_value(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64), as Prometheus writes sample values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _metric(labels: Labels) -> dict[str, str]:
    return dict(labels)


def _success(data: object) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


def _time(params: Params, name: str, default_ms: int) -> int:
    raw = params.get(name)
    return default_ms if raw in (None, "") else parse_time_ms(raw, field=name)


def _matchers(params: Params) -> list[list[Matcher]]:
    return [parse_selector(m, field="match[]").matchers for m in params.all("match[]")]


@router.api_route("/api/v1/query", methods=["GET", "POST"], summary="Instant query")
async def query(request: Request) -> JSONResponse:
    svc = services(request)
    params = await Params.of(request)
    selector = parse_selector(params.required("query"))
    at = _time(params, "time", svc.clock.now_ms())
    if selector.range_ms is not None:
        got = range_vectors(svc.storage, selector, at)
        return _success({"resultType": "matrix", "result": [_matrix_item(s) for s in got]})
    got = instant_vectors(svc.storage, selector, np.array([at], dtype=np.int64))
    result = [
        {"metric": _metric(s.labels), "value": [at / 1000, format_value(float(s.values[0]))]}
        for s in got
    ]
    return _success({"resultType": "vector", "result": result})


def _matrix_item(s: SeriesValues) -> dict[str, object]:
    values = [[int(t) / 1000, format_value(float(v))] for t, v in zip(s.ts, s.values, strict=True)]
    return {"metric": _metric(s.labels), "values": values}


@router.api_route("/api/v1/query_range", methods=["GET", "POST"], summary="Range query")
async def query_range(request: Request) -> JSONResponse:
    svc = services(request)
    params = await Params.of(request)
    selector = parse_selector(params.required("query"))
    if selector.range_ms is not None:
        raise BadDataError(
            'invalid expression type "range vector" for range query, must be Scalar or '
            "instant Vector"
        )
    start = parse_time_ms(params.required("start"), field="start")
    end = parse_time_ms(params.required("end"), field="end")
    step = parse_duration_ms(params.required("step"), field="step")
    _check_range(start, end, step)
    times = np.arange(start, end + 1, step, dtype=np.int64)
    got = instant_vectors(svc.storage, selector, times)
    return _success({"resultType": "matrix", "result": [_matrix_item(s) for s in got]})


def _check_range(start: int, end: int, step: int) -> None:
    if end < start:
        raise BadDataError("end timestamp must not be before start time")
    if step <= 0:
        raise BadDataError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if (end - start) // step > MAX_POINTS_PER_SERIES:
        raise BadDataError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
            "query resolution (?step=XX)"
        )


@router.api_route("/api/v1/series", methods=["GET", "POST"], summary="Series by matchers")
async def series(request: Request) -> JSONResponse:
    svc = services(request)
    params = await Params.of(request)
    selectors = _matchers(params)
    if not selectors:
        raise BadDataError("no match[] parameter provided")
    start, end = _optional_range(params)
    seen: dict[Labels, None] = {}
    for matchers in selectors:
        for s in svc.storage.select_series(matchers, start, end):
            seen[s.labels] = None
    return _success([_metric(labels) for labels in seen])


def _optional_range(params: Params) -> tuple[int | None, int | None]:
    start = params.get("start")
    end = params.get("end")
    return (
        parse_time_ms(start, field="start") if start else None,
        parse_time_ms(end, field="end") if end else None,
    )


@router.api_route("/api/v1/labels", methods=["GET", "POST"], summary="Label names")
async def labels(request: Request) -> JSONResponse:
    svc = services(request)
    params = await Params.of(request)
    selectors = _matchers(params)
    if not selectors:
        return _success(svc.storage.label_names())
    start, end = _optional_range(params)
    names = {
        name
        for matchers in selectors
        for s in svc.storage.select_series(matchers, start, end)
        for name, _ in s.labels
    }
    return _success(sorted(names))


@router.get("/api/v1/label/{name}/values", summary="Values of one label")
async def label_values(request: Request, name: str) -> JSONResponse:
    svc = services(request)
    params = await Params.of(request)
    selectors = _matchers(params)
    if not selectors:
        return _success(svc.storage.label_values(name))
    start, end = _optional_range(params)
    values = {
        dict(s.labels)[name]
        for matchers in selectors
        for s in svc.storage.select_series(matchers, start, end)
        if name in dict(s.labels)
    }
    return _success(sorted(values))


@router.get("/api/v1/metadata", summary="Metric metadata (type, help, unit)")
async def metadata(request: Request) -> JSONResponse:
    svc = services(request)
    metric = request.query_params.get("metric") or None
    limit_raw = request.query_params.get("limit")
    items = svc.storage.metadata(metric)
    if limit_raw:
        items = items[: max(int(limit_raw), 0)] if limit_raw.lstrip("-").isdigit() else items
    data = {m.metric: [{"type": m.type.value, "help": m.help, "unit": m.unit}] for m in items}
    return _success(data)
