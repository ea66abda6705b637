"""Operations: our own metrics, health and readiness, build info."""

from __future__ import annotations

import asyncio
import platform

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from opsmetrics import __version__
from opsmetrics.web.deps import services

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="opsmetrics' own metrics, Prometheus text format")
async def own_metrics(request: Request) -> Response:
    svc = services(request)
    stats = svc.storage.stats()
    gauge = svc.telemetry.storage_bytes
    gauge.labels("database").set(stats.bytes_on_disk)
    gauge.labels("wal").set(stats.wal_bytes)
    rows = svc.telemetry.storage_rows
    rows.labels("series").set(stats.series)
    rows.labels("samples").set(stats.samples)
    rows.labels("samples_head").set(stats.samples_head)
    rows.labels("events").set(stats.events)
    rows.labels("annotations").set(stats.annotations)
    # Collectors may evaluate KPIs: keep that work off the event loop.
    body = await asyncio.to_thread(generate_latest, svc.telemetry.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: storage open and the writer running")
async def readyz(request: Request) -> JSONResponse:
    svc = services(request)
    if not svc.ingestor.healthy:
        return JSONResponse({"status": "unavailable", "reason": "writer stopped"}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/api/v1/status/buildinfo", summary="Build information, Prometheus shape")
async def buildinfo() -> JSONResponse:
    return JSONResponse(
        {
            "status": "success",
            "data": {
                "version": __version__,
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": f"python{platform.python_version()}",
            },
        }
    )
