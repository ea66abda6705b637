"""PromQL over HTTP, with Prometheus's parameters, JSON shapes, error types and messages.

`/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query`, `/api/v1/query_exemplars`.
The engine does the work; this module checks parameters in Prometheus's order, runs the engine
off the event loop and writes the result as Prometheus does.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import promql_parser
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.errors import BadDataError
from opsmetrics.model import Labels
from opsmetrics.params import (
    Params,
    invalid_param,
    parse_prom_duration_ms,
    parse_prom_time_ms,
    time_param,
)
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range
from opsmetrics.query.promql.values import InstantVector, RangeVector, Scalar, StringValue, Value
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require, services
from opsmetrics.web.routers.read import (
    format_ts,
    format_value,
    format_values,
    limit_param,
    metric_json,
    request_params,
    success,
    truncate,
)

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["query"])
MAX_POINTS_PER_SERIES = 11_000  # as Prometheus: start/end/step may not ask for more
#: Top-level functions whose instant-query order Prometheus keeps; every other vector is sorted.
SORTING_FUNCTIONS = {"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"}
_NOT_FOR_RANGE = {"MatrixSelector": "range vector", "SubqueryExpr": "range vector"}


def parse_query(text: str) -> Any:
    """The parsed expression, or Prometheus's `invalid parameter "query"` error."""
    try:
        return parse_promql(text)
    except ValueError as exc:
        where = "1:1: " if text.strip() == "" else ""
        raise invalid_param("query", f"{where}parse error: {exc}") from None


def _duration_param(params: Params, name: str) -> int:
    try:
        return parse_prom_duration_ms(params.get(name))
    except ValueError as exc:
        raise invalid_param(name, str(exc)) from None


def _engine_options(params: Params) -> dict[str, Any]:
    """`timeout` and `lookback_delta`, passed to the engine only when given."""
    options: dict[str, Any] = {}
    if params.get("timeout"):
        options["timeout_s"] = _duration_param(params, "timeout") / 1000
    if params.get("lookback_delta"):
        try:
            lookback = parse_prom_duration_ms(params.get("lookback_delta"))
        except ValueError as exc:
            raise BadDataError(f"error parsing lookback delta duration: {exc}") from None
        if lookback > 0:
            options["lookback_ms"] = lookback
    return options


@router.api_route("/api/v1/query", methods=["GET", "POST"], summary="Instant query")
async def query(request: Request) -> Response:
    svc = services(request)
    params = await request_params(request)
    limit = limit_param(params)
    given = time_param(params, "time", None)
    at = svc.clock.now_ms() if given is None else given
    options = _engine_options(params)
    expr = parse_query(params.get("query"))
    value = await _run(evaluate_instant, svc.storage, params.get("query"), at, **options)
    data, warnings = instant_data(value, at, expr, limit)
    return success(data, warnings)


def _range_times(params: Params) -> tuple[int, int, int]:
    """start, end and step (ms), checked with Prometheus's messages and in its order."""
    times = []
    for name in ("start", "end"):
        try:
            times.append(parse_prom_time_ms(params.get(name)))
        except ValueError as exc:
            raise invalid_param(name, str(exc)) from None
    start, end = times
    if end < start:
        raise invalid_param("end", "end timestamp must not be before start time")
    step = _duration_param(params, "step")
    if step <= 0:
        raise invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. "
            "Try a positive integer",
        )
    if (end - start) // step > MAX_POINTS_PER_SERIES:
        raise BadDataError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
            "query resolution (?step=XX)"
        )
    return start, end, step


def _check_range_type(expr: Any) -> None:
    while type(expr).__name__ == "ParenExpr":
        expr = expr.expr
    kind = _NOT_FOR_RANGE.get(type(expr).__name__)
    if isinstance(expr, promql_parser.StringLiteral):
        kind = "string"
    if kind is not None:
        raise invalid_param(
            "query",
            f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector',
        )


@router.api_route("/api/v1/query_range", methods=["GET", "POST"], summary="Range query")
async def query_range(request: Request) -> Response:
    svc = services(request)
    params = await request_params(request)
    limit = limit_param(params)
    start, end, step = _range_times(params)
    options = _engine_options(params)
    _check_range_type(parse_query(params.get("query")))
    text = params.get("query")
    value = await _run(evaluate_range, svc.storage, text, start, end, step, **options)
    data, warnings = range_data(value, start, step, limit)
    return success(data, warnings)


@router.api_route("/api/v1/format_query", methods=["GET", "POST"], summary="Pretty-print PromQL")
async def format_query(request: Request) -> Response:
    params = await request_params(request)
    expr = parse_query(params.get("query"))
    return success(expr.prettify())


@router.api_route(
    "/api/v1/query_exemplars", methods=["GET", "POST"], summary="Exemplars (none are stored)"
)
async def query_exemplars(request: Request) -> Response:
    params = await request_params(request)
    start = time_param(params, "start", None)
    end = time_param(params, "end", None)
    if start is not None and end is not None and end < start:
        raise BadDataError("end timestamp must not be before start timestamp")
    try:
        parse_promql(params.get("query"))
    except ValueError as exc:
        raise BadDataError(f"parse error: {exc}") from None
    return success([])


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Value:
    value: Value = await asyncio.to_thread(fn, *args, **kwargs)
    return value


JsonObj = dict[str, Any]


def instant_data(value: Value, at: int, expr: Any, limit: int) -> tuple[JsonObj, list[str]]:
    """The `data` of an instant query, and its warnings."""
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": _point(at, float(value.values[0]))}, []
    if isinstance(value, StringValue):
        return {"resultType": "string", "result": [format_ts(at), value.value]}, []
    if isinstance(value, RangeVector):
        kind, items = "matrix", _raw_series(value)
    else:
        kind, items = "vector", _vector(value, at, expr)
    shown, warnings = truncate(items, limit)
    return {"resultType": kind, "result": shown}, warnings


def range_data(value: Value, start: int, step: int, limit: int) -> tuple[JsonObj, list[str]]:
    """The `data` of a range query: a matrix sorted by labels, series without points left out."""
    if isinstance(value, Scalar):
        value = InstantVector(
            [()], value.values.reshape(1, -1), np.ones((1, len(value.values)), dtype=bool)
        )
    if not isinstance(value, InstantVector):
        raise BadDataError("range queries evaluate to a scalar or an instant vector")
    times = [format_ts(start + j * step) for j in range(value.values.shape[1])]
    items = []
    for i in sorted(range(len(value.labels)), key=lambda i: value.labels[i]):
        steps = np.flatnonzero(value.present[i])
        if len(steps):
            texts = format_values(value.values[i][steps].tolist())
            values = [[times[j], text] for j, text in zip(steps.tolist(), texts, strict=True)]
            items.append({"metric": metric_json(value.labels[i]), "values": values})
    shown, warnings = truncate(items, limit)
    return {"resultType": "matrix", "result": shown}, warnings


def _point(ms: int, value: float) -> list[Any]:
    return [format_ts(ms), format_value(value)]


def _raw_series(value: RangeVector) -> list[JsonObj]:
    """An instant query's range vector: each series' raw points in the window, by labels."""
    items = []
    for i in sorted(range(len(value.labels)), key=lambda i: value.labels[i]):
        lo, hi = value.bounds(i)
        ts = value.ts[i][int(lo[0]) : int(hi[0])].tolist()
        vals = value.values[i][int(lo[0]) : int(hi[0])].tolist()
        if ts:
            points = [_point(t, v) for t, v in zip(ts, vals, strict=True)]
            items.append({"metric": metric_json(value.labels[i]), "values": points})
    return items


def _vector(value: InstantVector, at: int, expr: Any) -> list[JsonObj]:
    rows = np.flatnonzero(value.present[:, 0]).tolist()
    column = value.values[:, 0].tolist()
    return [
        {"metric": metric_json(value.labels[i]), "value": _point(at, column[i])}
        for i in _vector_order(value.labels, column, rows, expr)
    ]


def _unwrap(expr: Any) -> Any:
    while type(expr).__name__ == "ParenExpr":
        expr = expr.expr
    return expr


def _vector_order(
    labels: list[Labels], column: list[float], rows: list[int], expr: Any
) -> list[int]:
    """Prometheus keeps sort*() order and orders topk/bottomk by value; we sort the rest by
    labels so that answers are stable."""
    top = _unwrap(expr)
    kind = type(top).__name__
    if kind == "Call" and top.func.name in SORTING_FUNCTIONS:
        return rows
    if kind == "AggregateExpr" and str(top.op) in ("topk", "bottomk"):
        sign = -1.0 if str(top.op) == "topk" else 1.0
        group = _grouping(top.modifier)
        return sorted(rows, key=lambda i: (group(labels[i]), _rank(sign, column[i]), labels[i]))
    return sorted(rows, key=lambda i: labels[i])


def _rank(sign: float, value: float) -> float:
    return math.inf if math.isnan(value) else sign * value


def _grouping(modifier: Any) -> Any:
    if modifier is None:
        return lambda labels: ()
    names = set(modifier.labels)
    if str(modifier.type).endswith("By"):
        return lambda labels: tuple(p for p in labels if p[0] in names)
    return lambda labels: tuple(p for p in labels if p[0] not in names and p[0] != "__name__")
