"""Ingest endpoints. Every 2xx answer is sent only after the data is committed to disk.

Each runs inside its endpoint's admission (web/backpressure.py): overload answers 429.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opsmetrics.errors import UserError
from opsmetrics.ingest.compression import decompress_body
from opsmetrics.ingest.exposition import parse_exposition
from opsmetrics.ingest.json_formats import (
    decode_annotations_json,
    decode_events_json,
)
from opsmetrics.ingest.json_samples import SeriesLabels, decode_samples_json
from opsmetrics.ingest.otlp import decode_otlp
from opsmetrics.ingest.otlp_numbers import SeriesCache
from opsmetrics.ingest.otlp_response import encode_otlp_response
from opsmetrics.ingest.pipeline import WriteRequest, WriteResult
from opsmetrics.ingest.remote_write import LabelsCache, decode_remote_write
from opsmetrics.services import Services
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.backpressure import guard, otlp_answer
from opsmetrics.web.deps import read_body, require, services

router = APIRouter(dependencies=[Depends(require(Scope.INGEST))], tags=["ingest"])
T = TypeVar("T")


async def _decode(svc: Services, fn: Callable[[], T]) -> T:
    """Decode off the event loop, counting rejects by reason."""
    try:
        return await run_in_threadpool(fn)
    except UserError as exc:
        svc.telemetry.rejected.labels(exc.reason).inc()
        raise


async def _store(svc: Services, request: WriteRequest) -> WriteResult:
    return await asyncio.wrap_future(svc.ingestor.submit(request))


async def _body(request: Request) -> tuple[Services, bytes]:
    svc = services(request)
    return svc, await read_body(request, svc.settings.limits.max_body_bytes)


async def _text_body(request: Request) -> tuple[Services, bytes]:
    """A body that may come gzip-compressed (JSON, NDJSON, exposition text)."""
    svc, body = await _body(request)
    encoding = request.headers.get("content-encoding")
    limit = svc.settings.limits.max_decompressed_bytes
    return svc, await _decode(svc, lambda: decompress_body(body, encoding, limit))


def _labels_cache(request: Request) -> LabelsCache:
    """One cache per app: senders repeat their series, so after the first request nearly every
    series' labels are a dictionary hit instead of a protobuf decode (the hot spot in profiles).
    """
    cache: LabelsCache | None = getattr(request.app.state, "remote_write_labels", None)
    if cache is None:
        cache = request.app.state.remote_write_labels = LabelsCache()
    return cache


def _series_labels(request: Request) -> SeriesLabels:
    """One per app, like the remote_write cache: a JSON sender's series repeat too."""
    cache: SeriesLabels | None = getattr(request.app.state, "json_series_labels", None)
    if cache is None:
        cache = request.app.state.json_series_labels = SeriesLabels()
    return cache


def _otlp_series(request: Request) -> SeriesCache:
    """One per app: an exporter sends the same series every export."""
    cache: SeriesCache | None = getattr(request.app.state, "otlp_series", None)
    if cache is None:
        cache = request.app.state.otlp_series = SeriesCache()
    return cache


def _ok(data: dict[str, object]) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


@router.post("/api/v1/write", status_code=204, summary="Prometheus remote_write 1.0")
@guard("remote_write")
async def remote_write(request: Request) -> Response:
    svc, body = await _body(request)
    limits = svc.settings.limits
    ctype = request.headers.get("content-type")
    encoding = request.headers.get("content-encoding")
    cache = _labels_cache(request)
    decoded = await _decode(
        svc, lambda: decode_remote_write(body, ctype, encoding, limits, cache=cache)
    )
    await _store(svc, WriteRequest("remote_write", samples=decoded))
    return Response(status_code=204)


@router.post("/api/v1/import/prometheus", summary="Prometheus text format / OpenMetrics")
@guard("import_prometheus")
async def import_prometheus(request: Request) -> JSONResponse:
    svc, body = await _text_body(request)
    ctype = request.headers.get("content-type")
    now = svc.clock.now_ms()
    decoded = await _decode(svc, lambda: parse_exposition(body, ctype, now))
    result = await _store(svc, WriteRequest("import_prometheus", samples=decoded))
    return _ok({"samples": result.samples, "duplicates": result.duplicates})


@router.post("/v1/metrics", summary="OTLP/HTTP metrics (protobuf or JSON)")
@guard("otlp", otlp_answer)
async def otlp_metrics(request: Request) -> Response:
    svc, body = await _body(request)
    limits = svc.settings.limits
    ctype = request.headers.get("content-type")
    encoding = request.headers.get("content-encoding")
    cache = _otlp_series(request)
    decoded = await _decode(svc, lambda: decode_otlp(body, ctype, encoding, limits, cache=cache))
    await _store(svc, WriteRequest("otlp", samples=decoded.decoded))
    if decoded.rejected_points:
        svc.telemetry.rejected.labels("otlp_unsupported_point").inc(decoded.rejected_points)
    payload, media_type = encode_otlp_response(
        ctype, decoded.rejected_points, decoded.error_message
    )
    return Response(payload, media_type=media_type)


@router.post("/api/v1/samples", summary="Samples as JSON or NDJSON")
@guard("samples")
async def samples_json(request: Request) -> JSONResponse:
    svc, body = await _text_body(request)
    now = svc.clock.now_ms()
    cache = _series_labels(request)
    decoded = await _decode(svc, lambda: decode_samples_json(body, now, cache))
    result = await _store(svc, WriteRequest("json", samples=decoded))
    return _ok({"samples": result.samples, "duplicates": result.duplicates})


@router.post("/api/v1/events", summary="Business events as a JSON array or NDJSON")
@guard("events")
async def post_events(request: Request) -> JSONResponse:
    return await accept_events(request)


async def accept_events(request: Request) -> JSONResponse:
    """Decode, validate and store events (also the SDK endpoint's, under its own guard)."""
    svc, body = await _text_body(request)
    now = svc.clock.now_ms()
    decoded = await _decode(svc, lambda: decode_events_json(body, now))
    result = await _store(svc, WriteRequest("events", events=decoded))
    return _ok({"events": result.events})


@router.post("/api/v1/annotations", summary="Annotations: deploys, incidents, campaigns")
@guard("annotations")
async def post_annotations(request: Request) -> JSONResponse:
    svc, body = await _text_body(request)
    now = svc.clock.now_ms()
    decoded = await _decode(svc, lambda: decode_annotations_json(body, now))
    await _store(svc, WriteRequest("annotations", annotations=decoded))
    return _ok({"ids": [a.id for a in decoded]})
