"""The ASGI application: routers, error table, lifespan (maintenance, scraping, host)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from opsmetrics import __version__
from opsmetrics.alerting.groups import RuleManager
from opsmetrics.alerting.kpi_rules import KpiAlertManager
from opsmetrics.alerting.model import AlertHub
from opsmetrics.alerting.schedule import GroupScheduler
from opsmetrics.catalog.kpi_alert_files import kpi_alert_rules
from opsmetrics.catalog.probes import FILE as PROBES_FILE
from opsmetrics.catalog.probes import load_probes_config
from opsmetrics.catalog.rules import load_rules
from opsmetrics.catalog.scrape import load_scrape_config
from opsmetrics.catalog.sources import load_sources
from opsmetrics.errors import StorageUnavailableError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.host import HostCollector
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.ingest.probes import Prober
from opsmetrics.ingest.scrape import Scraper
from opsmetrics.ingest.sql_sources import SqlSourceCollector
from opsmetrics.services import Services
from opsmetrics.web import bodies, errors, kpi_metrics, security
from opsmetrics.web.routers import (
    alerts,
    analysis_series,
    analysis_stats,
    dashboards,
    events,
    incidents,
    ingest,
    initiatives,
    kpis,
    ops,
    quality,
    query,
    read,
    reports,
    reviews,
    rules,
    sdk,
    sources,
    ui,
)

log = logging.getLogger(__name__)
SCRAPE_FILE = "scrape.yaml"


def create_app(services: Services) -> FastAPI:
    alert_hub = AlertHub()
    # One scheduler for the Prometheus rule groups and the KPI alert rules: one loop, one set
    # of workers, each group on its own interval (alerting/schedule.py).
    rules_scheduler: GroupScheduler[Any] = GroupScheduler(
        "opsmetrics-rules",
        services.clock,
        telemetry=services.telemetry,
        lease=services.alerting_lease,
    )
    rule_manager = RuleManager(
        load_rules(services.settings.config_dir),
        services.storage,
        services.ingestor,
        services.clock,
        hub=alert_hub,
        outage_tolerance_ms=services.settings.alert_outage_tolerance_ms,
        telemetry=services.telemetry,
        lease=services.alerting_lease,
        scheduler=rules_scheduler,
    )
    alert_hub.add_source(rule_manager)
    kpi_alerts = KpiAlertManager(
        kpi_alert_rules(services.catalog, services.settings.config_dir),
        services.storage,
        services.catalog,
        services.clock,
        services.ingestor,
        alert_hub,
        outage_tolerance_ms=services.settings.alert_outage_tolerance_ms,
        telemetry=services.telemetry,
        lease=services.alerting_lease,
        scheduler=rules_scheduler,
    )
    alert_hub.add_source(kpi_alerts)
    quality_monitor = quality.make_monitor(services, alert_hub)
    alert_hub.add_source(quality_monitor)
    services.telemetry.watch_alerts(
        rule=rule_manager.active_alerts,
        kpi=kpi_alerts.active_alerts,
        quality=quality_monitor.active_alerts,
    )
    dispatcher = alerts.make_dispatcher(services, alert_hub)
    report_scheduler = reports.make_report_scheduler(services, alert_hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_maintenance_loop(services))
        token_task = asyncio.create_task(_token_loop(services))
        dispatch_task = await alerts.start_dispatcher(dispatcher, services)
        await rules_scheduler.start()
        await report_scheduler.start()
        await quality_monitor.start()
        collectors = _collectors(services)
        for collector in collectors:
            await collector.start()
        try:
            yield
        finally:
            await rules_scheduler.stop()
            await report_scheduler.stop()
            await quality_monitor.stop()
            await alerts.stop_dispatcher(dispatcher, dispatch_task)
            for collector in collectors:
                await collector.stop()
            for background in (task, token_task):
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background

    app = FastAPI(
        title="opsmetrics",
        version=__version__,
        description="Operational metrics: technical and business KPIs in one service.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.rules = rule_manager
    app.state.alerts = alert_hub
    app.state.kpi_alerts = kpi_alerts
    app.state.quality = quality_monitor
    app.state.dispatcher = dispatcher
    app.state.reports = report_scheduler
    errors.install(app)
    # Innermost (added first): its 408 must reach the error table, not an "http" middleware's
    # task group. The security middleware is outermost: a refused request goes no further.
    body_timeout_s = services.settings.limits.body_read_timeout_ms / 1000
    app.add_middleware(bodies.BodyDeadlineMiddleware, timeout_s=body_timeout_s)
    app.middleware("http")(_timing(services))
    app.add_middleware(security.SecurityMiddleware)
    kpi_metrics.install(app, services)
    routers = (
        *(ingest, read, query, rules, events, kpis, ops),
        *(dashboards, alerts, incidents, analysis_stats, analysis_series, sdk, initiatives),
        reviews,
        sources,
        quality,
        reports,
    )
    for module in routers:
        app.include_router(module.router)
    ui.install(app)
    return app


def _timing(
    services: Services,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        services.telemetry.http_seconds.labels(
            request.method, path, str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response

    return middleware


def _collectors(
    services: Services,
) -> list[Scraper | Prober | HostCollector | SqlSourceCollector]:
    """The background collectors the config directory and settings ask for."""
    found = (_scraper(services), _prober(services), _host_collector(services))
    return [c for c in (*found, _sql_sources(services)) if c is not None]


def _scraper(services: Services) -> Scraper | None:
    """The scrape loop, when the config directory has a scrape.yaml."""
    config_dir = services.settings.config_dir
    if config_dir is None or not (config_dir / SCRAPE_FILE).exists():
        return None
    config = load_scrape_config(config_dir / SCRAPE_FILE)

    async def sink(decoded: DecodedSamples) -> None:
        await asyncio.wrap_future(services.ingestor.submit(WriteRequest("scrape", decoded)))

    return Scraper(config, sink, services.clock)


def _prober(services: Services) -> Prober | None:
    """The HTTP/TCP probes, when the config directory has a probes.yaml."""
    config_dir = services.settings.config_dir
    if config_dir is None or not (config_dir / PROBES_FILE).exists():
        return None
    config = load_probes_config(config_dir / PROBES_FILE)

    async def sink(decoded: DecodedSamples) -> None:
        await asyncio.wrap_future(services.ingestor.submit(WriteRequest("probes", decoded)))

    return Prober(config, sink, services.clock)


def _host_collector(services: Services) -> HostCollector | None:
    """The host collector (node_exporter's series), with --collect-host."""
    if not services.settings.collect_host:
        return None

    async def sink(decoded: DecodedSamples) -> None:
        await asyncio.wrap_future(services.ingestor.submit(WriteRequest("host", decoded)))

    return HostCollector(sink, services.clock, services.settings.collect_host_interval_ms)


def _sql_sources(services: Services) -> SqlSourceCollector | None:
    """The SQL source collector, when config/sources/ defines any (on the maintenance
    lease's node: with several nodes, one pulls)."""
    sources = load_sources(services.settings.config_dir)
    if not sources.sources:
        return None
    collector = SqlSourceCollector(
        sources,
        services.storage,
        services.ingestor.write,
        services.clock,
        dict(os.environ),
        holds_lease=services.maintenance_lease.held,
        registry=services.telemetry.registry,
        data_dir=services.settings.data_dir,
    )
    return collector


TOKEN_REFRESH_S = 10.0


async def _token_loop(services: Services) -> None:
    """With a shared state store, take up tokens other nodes created (or revoked)."""
    if not services.alerting_lease.shared:
        return
    while True:
        await asyncio.sleep(TOKEN_REFRESH_S)
        try:
            services.tokens.replace(await asyncio.to_thread(services.storage.tokens))
        except StorageUnavailableError as exc:
            log.warning("tokens not refreshed: %s", exc)


async def _maintenance_loop(services: Services) -> None:
    interval = services.settings.maintenance_interval_ms / 1000
    while True:
        await asyncio.sleep(interval)
        if await asyncio.to_thread(services.maintenance_lease.held):
            await asyncio.to_thread(services.run_maintenance)
