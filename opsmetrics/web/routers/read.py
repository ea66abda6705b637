"""Reading back, with Prometheus's JSON shapes: series, label names and values, metadata.

GET takes query parameters; POST takes the same as an `application/x-www-form-urlencoded` body.
Parameter errors use Prometheus's messages (`invalid parameter "start": ...`), so clients that
match on them (Grafana) behave as they do against Prometheus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TypeVar
from urllib.parse import parse_qsl

import msgspec
import promql_parser
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.errors import BadDataError
from opsmetrics.model import METRIC_NAME, Labels, Matcher, MatchOp
from opsmetrics.params import Params, invalid_param, time_param
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import read_body, require, services

T = TypeVar("T")
router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["query"])
TRUNCATED = "results truncated due to limit"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = {
    "MatchOp.Equal": MatchOp.EQ,
    "MatchOp.NotEqual": MatchOp.NE,
    "MatchOp.Re": MatchOp.RE,
    "MatchOp.NotRe": MatchOp.NRE,
}


async def request_params(request: Request) -> Params:
    """Query parameters from the URL and, for POST, the form body (repeats kept)."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await read_body(request, 1 << 20)
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return Params(pairs)


def limit_param(params: Params) -> int:
    """0 means no limit, as in Prometheus's parseLimitParam."""
    raw = params.get("limit")
    if raw == "":
        return 0
    limit = _atoi(raw, "limit")
    if limit < 0:
        raise invalid_param("limit", "limit must be non-negative")
    return limit


def _atoi(raw: str, name: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise invalid_param(name, f'strconv.Atoi: parsing "{raw}": invalid syntax')
    return int(raw)


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


def format_values(values: list[float]) -> list[str]:
    """format_value over many values: repr in bulk, the exact path only where it differs."""
    out = [t[:-2] if t.endswith(".0") else t for t in map(repr, values)]
    joined = "".join(out)
    if any(c in joined for c in "ein"):  # an exponent, inf or nan somewhere
        out = [
            format_value(v) if any(c in "ein" for c in t) else t
            for v, t in zip(values, out, strict=True)
        ]
    return out


def format_ts(ms: int) -> int | float:
    """Prometheus's JSON timestamp: seconds, with a fraction only when there is one."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def metric_json(labels: Labels) -> dict[str, str]:
    return dict(labels)


def success(data: object, warnings: Iterable[str] = ()) -> Response:
    body: dict[str, object] = {"status": "success", "data": data}
    warned = list(warnings)
    if warned:
        body["warnings"] = warned
    return Response(msgspec.json.encode(body), media_type="application/json")


def parse_matcher_set(text: str) -> list[Matcher]:
    """One `match[]` selector, with Prometheus's ParseMetricSelector checks and messages."""
    try:
        expr = parse_promql(text)
    except ValueError as exc:
        raise BadDataError(f"parse error: {exc}") from None
    if not isinstance(expr, promql_parser.VectorSelector):
        raise BadDataError(f'1:1: parse error: unexpected input "{text}", expected a selector')
    matchers = [Matcher.of(m.name, _OPS[str(m.op)], m.value) for m in expr.matchers.matchers]
    if expr.name:
        matchers.insert(0, Matcher.of(METRIC_NAME, MatchOp.EQ, expr.name))
    if all(m.matches("") for m in matchers):
        raise BadDataError("match[] must contain at least one non-empty matcher")
    return matchers


def _matcher_sets(params: Params) -> list[list[Matcher]]:
    return [parse_matcher_set(m) for m in params.all("match[]")]


def _window(params: Params) -> tuple[int | None, int | None]:
    return time_param(params, "start", None), time_param(params, "end", None)


def _selected(request: Request, sets: list[list[Matcher]], params: Params) -> list[Labels]:
    """Label sets of the series any matcher set selects in [start, end], sorted, deduplicated."""
    start, end = _window(params)
    storage = services(request).storage
    found = {s.labels for matchers in sets for s in storage.select_series(matchers, start, end)}
    return sorted(found)


def truncate(items: Sequence[T], limit: int) -> tuple[list[T], list[str]]:
    if 0 < limit < len(items):
        return list(items[:limit]), [TRUNCATED]
    return list(items), []


@router.api_route("/api/v1/series", methods=["GET", "POST"], summary="Series by matchers")
async def series(request: Request) -> Response:
    params = await request_params(request)
    if not params.all("match[]"):
        raise BadDataError("no match[] parameter provided")
    limit = limit_param(params)
    _window(params)
    try:
        sets = _matcher_sets(params)
    except BadDataError as exc:
        raise invalid_param("match[]", exc.message) from None
    found = [metric_json(labels) for labels in _selected(request, sets, params)]
    return success(*truncate(found, limit))


@router.api_route("/api/v1/labels", methods=["GET", "POST"], summary="Label names")
async def labels(request: Request) -> Response:
    params = await request_params(request)
    limit = limit_param(params)
    sets = _matcher_sets(params) or _all_series_if_windowed(params)
    if not sets:
        names = list(services(request).storage.label_names())
    else:
        selected = _selected(request, sets, params)
        names = sorted({name for labels in selected for name, _ in labels})
    return success(*truncate(names, limit))


def _all_series_if_windowed(params: Params) -> list[list[Matcher]]:
    """With start/end but no match[], every series that has samples in the window."""
    if params.get("start") == "" and params.get("end") == "":
        return []
    return [[Matcher.of(METRIC_NAME, MatchOp.RE, ".+")]]


@router.api_route(
    "/api/v1/label/{name}/values", methods=["GET", "POST"], summary="Values of one label"
)
async def label_values(request: Request, name: str) -> Response:
    if not _LABEL_NAME.fullmatch(name):
        raise BadDataError(f'invalid label name: "{name}"')
    params = await request_params(request)
    limit = limit_param(params)
    sets = _matcher_sets(params) or _all_series_if_windowed(params)
    if not sets:
        values = list(services(request).storage.label_values(name))
    else:
        selected = _selected(request, sets, params)
        values = sorted({v for labels in selected for k, v in labels if k == name})
    return success(*truncate(values, limit))


@router.api_route(
    "/api/v1/metadata", methods=["GET", "POST"], summary="Metric metadata (type, help, unit)"
)
async def metadata(request: Request) -> Response:
    params = await request_params(request)
    limit = _number(params, "limit")
    per_metric = _number(params, "limit_per_metric")
    items = sorted(
        services(request).storage.metadata(params.get("metric") or None), key=lambda m: m.metric
    )
    if limit >= 0:
        items = items[:limit]
    entries = [{"type": m.type.value, "help": m.help, "unit": m.unit} for m in items]
    cap = per_metric if per_metric > 0 else None
    return success({m.metric: [e][:cap] for m, e in zip(items, entries, strict=True)})


def _number(params: Params, name: str) -> int:
    """Prometheus's metadata limits: -1 (none) unless given; not a number is an error."""
    raw = params.get(name)
    if raw == "":
        return -1
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise BadDataError(f"{name} must be a number")
    return int(raw)
