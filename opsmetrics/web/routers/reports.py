"""Scheduled reports over HTTP (docs/reports.md):

GET  /api/v1/reports                   each report: its next 3 slots (local and UTC), last run
GET  /api/v1/reports/{name}/preview    render it (?format=html|pdf|csv&at=RFC3339); sends nothing
POST /api/v1/reports/{name}/send       send now (admin; ?to= one email recipient); the run id
GET  /api/v1/reports/{name}/runs       the delivery log: runs and their channels
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.alerting.model import AlertHub
from opsmetrics.catalog.notify import load_notify
from opsmetrics.catalog.report_times import to_local
from opsmetrics.catalog.reports import (
    Delivery,
    References,
    ReportSet,
    ReportSpec,
    load_reports,
    next_slots,
)
from opsmetrics.durations import parse_time_ms
from opsmetrics.errors import BadDataError
from opsmetrics.reports.delivery import attachment_stem
from opsmetrics.reports.render import inputs_from_services, render_report
from opsmetrics.reports.runs import ReportRunner, RunnerConfig
from opsmetrics.reports.scheduler import ReportFailureAlerts, ReportScheduler
from opsmetrics.services import Services
from opsmetrics.storage.report_records import ReportDelivery, ReportRun, Trigger
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import check_token, require, services
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["reports"])
READ = [Depends(require(Scope.READ))]
MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "csv": "text/csv"}
RUNS_LIMIT = 50
_UTC = ZoneInfo("UTC")


# --- wiring (web/app.py) ------------------------------------------------------------------
def make_report_scheduler(svc: Services, hub: AlertHub) -> ReportScheduler:
    """The runner and scheduler of config/reports/, raising OpsmetricsReportFailing via `hub`."""
    settings = svc.settings
    notify = load_notify(settings.config_dir)
    reports = load_reports(settings.config_dir, References(svc.catalog, svc.dashboards, notify))
    inputs = inputs_from_services(svc)

    def render(spec: ReportSpec, slot_ms: int, delayed: bool) -> Any:
        return render_report(inputs, spec, slot_ms, delayed=delayed, formats=spec.formats)

    config = RunnerConfig(
        channels=notify.channels,
        env=dict(os.environ),
        holder=settings.node_name or f"{socket.gethostname()}:{os.getpid()}",
        external_url=f"http://{settings.host}:{settings.port}",
        retry_backoff_ms=settings.report_retry_backoff_ms,
    )
    runner = ReportRunner(svc.storage, svc.clock, reports, render, config)
    alerts = ReportFailureAlerts(svc.storage, svc.clock, hub, settings.max_report_failures)
    hub.add_source(alerts)
    return ReportScheduler(runner, svc.storage, svc.clock, svc.alerting_lease, alerts)


def scheduler_of(request: Request) -> ReportScheduler:
    scheduler: ReportScheduler = request.app.state.reports
    return scheduler


# --- JSON --------------------------------------------------------------------------------
def _moment(ms: int, spec: ReportSpec) -> dict[str, Any]:
    local = to_local(ms, spec.tz)
    return {"ms": ms, "local": local.isoformat(timespec="minutes"),
            "utc": to_local(ms, _UTC).isoformat(timespec="minutes")}  # fmt: skip


def run_json(run: ReportRun, deliveries: list[ReportDelivery]) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "report": run.report, "slot_ms": run.slot_ms,
        "trigger": run.trigger.value, "status": run.status.value, "delayed": run.delayed,
        "claimed_ms": run.claimed_ms, "claimed_by": run.claimed_by,
        "finished_ms": run.finished_ms, "sha256": run.sha256, "error": run.error,
        "render_attempts": run.render_attempts,
        "deliveries": [
            {"channel": d.channel, "recipients": list(d.recipients), "status": d.status.value,
             "attempts": d.attempts, "error": d.error, "message_id": d.message_id,
             "next_attempt_ms": d.next_attempt_ms, "sent_ms": d.sent_ms}
            for d in deliveries if d.run_id == run.run_id
        ],
    }  # fmt: skip


def report_json(spec: ReportSpec, now: int, last: ReportRun | None) -> dict[str, Any]:
    return {
        "name": spec.name, "title": spec.title, "audience": spec.audience,
        "schedule": spec.schedule, "timezone": spec.timezone, "window": spec.window,
        "compare": spec.compare, "formats": sorted(spec.formats), "enabled": spec.enabled,
        "channels": [d.channel for d in spec.deliver], "source": spec.source,
        "next": [_moment(s, spec) for s in next_slots(spec, now, 3)] if spec.enabled else [],
        "last_run": None if last is None else run_json(last, []) | {"deliveries": None},
        "status": "never run" if last is None else last.status.value,
    }  # fmt: skip


def list_json(reports: ReportSet, svc: Services) -> list[dict[str, Any]]:
    now = svc.clock.now_ms()
    last = svc.storage.latest_report_runs([s.name for s in reports])
    return [report_json(s, now, last.get(s.name)) for s in reports]


# --- routes ------------------------------------------------------------------------------
@router.get("/api/v1/reports", dependencies=READ, summary="Scheduled reports")
async def list_reports(request: Request) -> Response:
    reports = scheduler_of(request).runner.reports
    return success(await asyncio.to_thread(list_json, reports, services(request)))


@router.get("/api/v1/reports/{name}/preview", dependencies=READ, summary="Render a report")
async def preview(request: Request, name: str, format: str = "html", at: str = "") -> Response:
    runner = scheduler_of(request).runner
    spec = runner.reports.get(name)
    if format not in MEDIA:
        raise BadDataError(f"format: {format!r} is not one of html, pdf, csv")
    slot = parse_time_ms(at, field="at") if at else services(request).clock.now_ms()
    shown = spec.with_formats(frozenset({format}))
    rendered = await asyncio.to_thread(runner.render_now, shown, slot)
    body = {"html": rendered.html_page.encode(), "pdf": rendered.pdf, "csv": rendered.csv}[format]
    stem = attachment_stem(spec, ReportRun("", name, slot, Trigger.MANUAL, slot, ""))
    disposition = "inline" if format != "csv" else "attachment"
    headers = {"content-disposition": f'{disposition}; filename="{stem}.{format}"'}
    return Response(body or b"", media_type=MEDIA[format], headers=headers)


@router.post("/api/v1/reports/{name}/send", summary="Send a report now (admin)")
async def send(request: Request, name: str, to: str = "") -> Response:
    check_token(request, request.headers.get("authorization"), Scope.ADMIN)
    runner = scheduler_of(request).runner
    spec = runner.reports.get(name)
    deliver = _one_recipient(spec, runner, to) if to else None
    svc = services(request)
    run = await asyncio.to_thread(_send_now, runner, spec, svc, deliver)
    deliveries = await asyncio.to_thread(svc.storage.report_deliveries, [run.run_id])
    return success(run_json(run, deliveries))


def _send_now(
    runner: ReportRunner, spec: ReportSpec, svc: Services, deliver: list[Delivery] | None
) -> ReportRun:
    slot = svc.clock.now_ms()
    run = runner.claim(spec, slot, Trigger.MANUAL, deliver=deliver)
    while run is None:  # two sends in the same millisecond: the next one
        slot += 1
        run = runner.claim(spec, slot, Trigger.MANUAL, deliver=deliver)
    return runner.process(run, force=True)


def _one_recipient(spec: ReportSpec, runner: ReportRunner, to: str) -> list[Delivery]:
    if "@" not in to or any(c in to for c in " ,<>"):
        raise BadDataError(f"to: {to!r} is not an email address (name@example.com)")
    channels = runner.channels
    email = [d.channel for d in spec.deliver if channels[d.channel].type == "email"]
    email = email or [n for n, c in channels.items() if c.type == "email"][:1]
    if not email:
        raise BadDataError("to: there is no email channel in notify.yaml to send through")
    return [Delivery(email[0], (to,))]


@router.get("/api/v1/reports/{name}/runs", dependencies=READ, summary="A report's runs")
async def runs(request: Request, name: str, limit: int = RUNS_LIMIT) -> Response:
    runner = scheduler_of(request).runner
    runner.reports.get(name)
    if not 1 <= limit <= 1000:
        raise BadDataError("limit: give a number of runs from 1 to 1000")
    svc = services(request)
    found = await asyncio.to_thread(svc.storage.report_runs, name, limit)
    deliveries = await asyncio.to_thread(svc.storage.report_deliveries, [r.run_id for r in found])
    return success([run_json(r, deliveries) for r in found])
