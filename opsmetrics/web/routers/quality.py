"""Data quality over HTTP (docs/sources.md, Data quality):

GET /api/v1/quality   every source (event names, metrics, scrape jobs) with a status per
                      monitor, last seen, expected freshness, KPIs reading it, and details
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.alerting.model import AlertHub
from opsmetrics.alerting.quality_alerts import QualityMonitor
from opsmetrics.analysis.quality import QualityReport, report_json, stale_note
from opsmetrics.analysis.quality_assess import QualityAssessor, SqlSourceInfo
from opsmetrics.analysis.quality_kpis import stale_for_kpi
from opsmetrics.catalog.quality import load_quality_config
from opsmetrics.catalog.scrape import load_scrape_config
from opsmetrics.catalog.sources import load_sources
from opsmetrics.services import Services
from opsmetrics.storage.token_records import Scope
from opsmetrics.telemetry import Telemetry
from opsmetrics.web.deps import require, services
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["quality"])
READ = [Depends(require(Scope.READ))]
SCRAPE_FILE = "scrape.yaml"


def make_monitor(svc: Services, hub: AlertHub) -> QualityMonitor:
    """The monitors with config/quality.yaml and the scrape jobs' intervals."""
    config_dir = svc.settings.config_dir
    intervals: dict[str, int] = {}
    if config_dir is not None and (config_dir / SCRAPE_FILE).exists():
        scrape = load_scrape_config(config_dir / SCRAPE_FILE)
        intervals = {job.job_name: scrape.interval_ms(job) for job in scrape.scrape_configs}
    assessor = QualityAssessor(
        svc.storage,
        svc.catalog,
        load_quality_config(config_dir),
        intervals,
        lambda: duplicates_by_name(svc.telemetry),
        sql_sources(config_dir),
    )
    return QualityMonitor(assessor, svc.clock, svc.ingestor, hub, svc.telemetry, svc.alerting_lease)


def sql_sources(config_dir: Path | None) -> list[SqlSourceInfo]:
    """The SQL sources of config/sources/ and what each writes."""
    out = []
    for source in load_sources(config_dir).sources:
        emit = source.spec.emit
        emits = f"event:{emit.events.name}" if emit.events is not None else ""
        if emit.samples is not None:
            emits = f"metric:{emit.samples.metric}"
        out.append(SqlSourceInfo(source.name, source.spec.interval, emits))
    return out


def duplicates_by_name(telemetry: Telemetry) -> dict[str, int]:
    """Duplicate events this process refused since it started, per event name."""
    return {
        sample.labels["name"]: int(sample.value)
        for family in telemetry.duplicate_events.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def monitor(request: Request) -> QualityMonitor:
    found: QualityMonitor = request.app.state.quality
    return found


async def quality_report(request: Request) -> QualityReport:
    return await asyncio.to_thread(monitor(request).report)


@router.get("/api/v1/quality", dependencies=READ, summary="Data quality of every source")
async def get_quality(request: Request) -> Response:
    services(request)  # the app is up
    return success(report_json(await quality_report(request)))


def stale_notes(request: Request) -> Callable[[str], list[str]] | None:
    """KPI name → the notes on the stale sources it reads (dashboards' KPI widgets)."""
    found: QualityMonitor | None = getattr(request.app.state, "quality", None)
    if found is None:
        return None
    catalog = services(request).catalog

    def notes(kpi: str) -> list[str]:
        return [stale_note(s) for s in stale_for_kpi(found.report(), catalog, catalog.get(kpi))]

    return notes
