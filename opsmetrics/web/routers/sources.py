"""SQL sources over HTTP (docs/sources.md):

GET /api/v1/sources          every source of config/sources/: kind, last run, rows, cursor, lag
GET /api/v1/sources/{name}   one source
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.catalog.kpi_lineage import Lineage
from opsmetrics.catalog.source_lineage import upstream_sources
from opsmetrics.catalog.sources import SqlSource, load_sources
from opsmetrics.errors import NotFoundError
from opsmetrics.services import Services
from opsmetrics.storage.source_records import SourceCursor, SourceRun
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require, services
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["sources"])
READ = [Depends(require(Scope.READ))]


def _shown_url(url: str) -> str:
    """The URL without user info: who the collector logs in as is not for every reader."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url  # as written: geturl() would turn sqlite:///file.db into sqlite:/file.db
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=host).geturl()


def _run_json(run: SourceRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "rows": run.rows,
        "error": run.error or None,
    }


def _emits(source: SqlSource) -> dict[str, str]:
    emit = source.spec.emit
    if emit.events is not None:
        return {"events": emit.events.name}
    return {"samples": emit.samples.metric} if emit.samples is not None else {}


def source_json(
    source: SqlSource, run: SourceRun | None, cursor: SourceCursor | None
) -> dict[str, Any]:
    spec = source.spec
    return {
        "name": source.name,
        "kind": "sql",
        "driver": source.driver,
        "url": _shown_url(spec.url),
        "tables": source.tables(),
        "interval_ms": spec.interval,
        "emits": _emits(source),
        "cursor": None
        if cursor is None
        else {"value": cursor.value, "updated_ms": cursor.updated_ms},
        "cursor_column": spec.cursor.column if spec.cursor else None,
        "last_run": _run_json(run),
        "up": None if run is None else run.up,
        "rows_total": 0 if run is None else run.rows_total,
        "lag_seconds": None if run is None or run.lag_ms is None else run.lag_ms / 1000,
        "last_success_ms": None if run is None else run.last_success_ms,
        "error": None if run is None else run.error or None,
        "source": source.source,
    }


def _all(svc: Services) -> list[dict[str, Any]]:
    runs = {r.source: r for r in svc.storage.source_runs()}
    return [
        source_json(s, runs.get(s.name), svc.storage.source_cursor(s.name))
        for s in load_sources(svc.settings.config_dir).sources
    ]


def _one(svc: Services, name: str) -> dict[str, Any]:
    source = load_sources(svc.settings.config_dir).named(name)
    if source is None:
        raise NotFoundError(f"no source {name!r} in config/sources/; see GET /api/v1/sources")
    run = next((r for r in svc.storage.source_runs() if r.source == name), None)
    return source_json(source, run, svc.storage.source_cursor(name))


def upstream_json(svc: Services, lineage: Lineage) -> list[dict[str, Any]]:
    """A KPI's SQL sources for its lineage: input → source → tables."""
    found = upstream_sources(lineage, load_sources(svc.settings.config_dir))
    return [
        {"input": u.input, "source": u.source.name, "driver": u.source.driver,
         "tables": u.source.tables()}
        for u in found
    ]  # fmt: skip


@router.get("/api/v1/sources", dependencies=READ, summary="SQL sources and their last runs")
async def list_sources(request: Request) -> Response:
    return success(await asyncio.to_thread(_all, services(request)))


@router.get("/api/v1/sources/{name}", dependencies=READ, summary="One SQL source")
async def get_source(request: Request, name: str) -> Response:
    return success(await asyncio.to_thread(_one, services(request), name))
