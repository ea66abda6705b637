"""Operations: our own metrics, health and readiness, build info."""

from __future__ import annotations

import asyncio
import platform

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from opsmetrics import __version__
from opsmetrics.errors import StorageUnavailableError
from opsmetrics.services import Services
from opsmetrics.storage.base import StorageStats
from opsmetrics.storage.diskspace import BELOW_RESERVE, DiskStatus
from opsmetrics.web.deps import services

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="opsmetrics' own metrics, Prometheus text format")
async def own_metrics(request: Request) -> Response:
    svc = services(request)
    _spool_gauges(svc)
    _disk_gauges(svc, await asyncio.to_thread(svc.storage.disk_status))
    try:
        stats = await asyncio.to_thread(svc.storage.stats)
    except StorageUnavailableError:  # the data store is down: the spool gauges tell
        stats = None
    if stats is not None:
        _storage_gauges(svc, stats)
    # Collectors may evaluate KPIs: keep that work off the event loop.
    body = await asyncio.to_thread(generate_latest, svc.telemetry.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _spool_gauges(svc: Services) -> None:
    spool = svc.storage.spool_stats()
    gauge = svc.telemetry.spool
    gauge.labels("bytes").set(spool.bytes)
    gauge.labels("batches").set(spool.batches)
    age = 0.0 if spool.oldest_ms is None else (svc.clock.now_ms() - spool.oldest_ms) / 1000
    gauge.labels("oldest_age_seconds").set(max(age, 0.0))
    gauge.labels("rejected").set(spool.rejected)
    gauge.labels("max_bytes").set(spool.max_bytes)


def _disk_gauges(svc: Services, disks: list[DiskStatus]) -> None:
    t = svc.telemetry
    t.storage_writable.clear()  # the reason label changes: no stale series
    for d in disks:
        t.storage_writable.labels(d.directory, d.reason).set(int(d.writable))
        t.storage_free_bytes.labels(d.directory).set(d.free_bytes)
        t.storage_min_free_bytes.labels(d.directory).set(d.min_free_bytes)


def _storage_gauges(svc: Services, stats: StorageStats) -> None:
    gauge = svc.telemetry.storage_bytes
    gauge.labels("database").set(stats.bytes_on_disk)
    gauge.labels("wal").set(stats.wal_bytes)
    rows = svc.telemetry.storage_rows
    rows.labels("series").set(stats.series)
    rows.labels("samples").set(stats.samples)
    rows.labels("samples_head").set(stats.samples_head)
    rows.labels("events").set(stats.events)
    rows.labels("annotations").set(stats.annotations)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: storage open and the writer running")
async def readyz(request: Request) -> JSONResponse:
    svc = services(request)
    if not svc.ingestor.healthy:
        return JSONResponse({"status": "unavailable", "reason": "writer stopped"}, 503)
    full = [d for d in await asyncio.to_thread(svc.storage.disk_status) if not d.writable]
    if full:
        return JSONResponse(_disk_full_body(full), 503)
    spool = svc.storage.spool_stats()
    if not spool.max_bytes:  # an embedded store: nothing is spooled
        return JSONResponse({"status": "ready"})
    age = None if spool.oldest_ms is None else (svc.clock.now_ms() - spool.oldest_ms) / 1000
    body = {
        "status": "ready",
        "spool": {"bytes": spool.bytes, "batches": spool.batches, "oldestAgeSeconds": age},
    }
    if spool.full:
        body.update(status="unavailable", reason="the data store is down and the spool is full")
        return JSONResponse(body, 503)
    return JSONResponse(body)


def _disk_full_body(full: list[DiskStatus]) -> dict[str, object]:
    d = full[0]
    why = (
        f"{d.free_bytes} bytes free, less than the reserve of {d.min_free_bytes} "
        "(OPSMETRICS_MIN_FREE_BYTES)"
        if d.reason == BELOW_RESERVE
        else "the last write found no space left on the device"
    )
    return {
        "status": "unavailable",
        "reason": f"the filesystem of {d.directory} is full: {why}. Writes are refused (507) "
        "and resume by themselves once space is freed; reads work",
        "disks": [
            {
                "directory": x.directory,
                "freeBytes": x.free_bytes,
                "minFreeBytes": x.min_free_bytes,
                "reason": x.reason,
            }
            for x in full
        ],
    }


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
