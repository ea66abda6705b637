"""Alerts, silences, acknowledgements and the notification log (docs/alerting.md).

Reads need scope `read`; creating or expiring silences and acknowledging need `admin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from opsmetrics.alerting.dispatcher import Dispatcher
from opsmetrics.alerting.model import Alert, AlertHub
from opsmetrics.alerting.protocols import build_responder
from opsmetrics.alerting.silences import Silence, parse_matchers
from opsmetrics.catalog.notify import load_notify
from opsmetrics.catalog.protocols import load_protocols
from opsmetrics.durations import parse_time_ms
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.services import Services
from opsmetrics.storage.alert_records import NotificationFilter, NotificationRecord
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import read_json_body, require, services
from opsmetrics.web.routers.rules import rfc3339

log = logging.getLogger(__name__)
router = APIRouter(tags=["alerts"])
_READ = [Depends(require(Scope.READ))]
_ADMIN = [Depends(require(Scope.ADMIN))]
_BODY_LIMIT = 64 * 1024
TICK_S = 1.0


# --- wiring (web/app.py) --------------------------------------------------------------
def make_dispatcher(svc: Services, hub: AlertHub) -> Dispatcher:
    """The dispatcher for the config directory's notify.yaml, subscribed to the hub, with the
    response protocols of config/protocols/ and the incident timeline."""
    settings = svc.settings
    external = f"http://{settings.host}:{settings.port}"
    protocols = load_protocols(settings.config_dir, svc.catalog.names())
    responder = build_responder(
        svc.storage, svc.clock, protocols, svc.ingestor, dict(os.environ), external
    )
    dispatcher = Dispatcher(
        load_notify(settings.config_dir),
        svc.storage,
        svc.clock,
        external_url=external,
        source=hub,
        telemetry=svc.telemetry,
        responder=responder,
    )
    hub.add_sink(dispatcher)
    return dispatcher


async def start_dispatcher(dispatcher: Dispatcher, svc: Services) -> asyncio.Task[None]:
    """Resend unfinished notifications, then tick every second in the background; with a
    shared state store, only while this node holds the alerting lease."""
    lease = svc.alerting_lease
    if await asyncio.to_thread(lease.held):
        await asyncio.to_thread(dispatcher.start)
    return asyncio.create_task(_tick_loop(dispatcher, svc))


async def stop_dispatcher(dispatcher: Dispatcher, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    dispatcher.close()


async def _tick_loop(dispatcher: Dispatcher, svc: Services) -> None:
    lease = svc.alerting_lease
    gained = lease.gained
    while True:
        await asyncio.sleep(TICK_S)
        try:
            if not await asyncio.to_thread(lease.held):
                continue
            if lease.gained != gained:  # taken over from another node
                gained = lease.gained
                await asyncio.to_thread(dispatcher.take_over, svc.clock.now_ms())
            await asyncio.to_thread(dispatcher.tick, svc.clock.now_ms())
        except Exception:  # one bad tick must not stop notifications for good
            log.exception("notification dispatcher tick failed")


def dispatcher_of(request: Request) -> Dispatcher:
    dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
    if dispatcher is None:
        raise NotFoundError("alert notifications are not enabled in this server")
    return dispatcher


def hub_of(request: Request) -> AlertHub:
    hub: AlertHub | None = getattr(request.app.state, "alerts", None)
    return hub if hub is not None else AlertHub()


# --- alerts ---------------------------------------------------------------------------
@router.get("/api/v1/alerts", dependencies=_READ)
async def list_alerts(request: Request) -> JSONResponse:
    dispatcher = dispatcher_of(request)
    alerts = sorted(hub_of(request).active_alerts(), key=lambda a: a.labels)
    statuses = dispatcher.alert_statuses(alerts)
    out = [_alert_json(a, st) for a, st in zip(alerts, statuses, strict=True)]
    return JSONResponse({"status": "success", "data": {"alerts": out}})


def _alert_json(alert: Alert, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "state": alert.state.value,
        "activeAt": rfc3339(alert.active_at_ms),
        "value": go_exp_float(alert.value),
        "fingerprint": alert.fingerprint,
        "status": status,
    }


def go_exp_float(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'e', -1, 64), as Prometheus writes an alert's value."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = np.format_float_scientific(value, unique=True, exp_digits=2)
    return text.replace(".e", "e")


@router.post("/api/v1/alerts/{fingerprint}/ack", dependencies=_ADMIN)
async def ack_alert(fingerprint: str, request: Request) -> JSONResponse:
    dispatcher = dispatcher_of(request)
    if not any(a.fingerprint == fingerprint for a in hub_of(request).active_alerts()):
        raise NotFoundError(
            f"no active alert with fingerprint {fingerprint!r}; list them with GET /api/v1/alerts"
        )
    body = await json_body(request, required=False)
    by = str(body.get("by") or "anonymous")
    comment = str(body.get("comment") or "")
    await asyncio.to_thread(dispatcher.ack, fingerprint, by, comment)
    return JSONResponse({"status": "success", "data": {"fingerprint": fingerprint, "by": by}})


# --- silences -------------------------------------------------------------------------
@router.get("/api/v1/silences", dependencies=_READ)
async def list_silences(request: Request) -> JSONResponse:
    dispatcher = dispatcher_of(request)
    now = services(request).clock.now_ms()
    out = [_silence_json(s, now) for s in dispatcher.quieting.silences()]
    return JSONResponse({"status": "success", "data": out})


def _silence_json(s: Silence, now_ms: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [m.to_json() for m in s.matchers],
        "startsAt": rfc3339(s.starts_ms),
        "endsAt": rfc3339(s.ends_ms),
        "updatedAt": rfc3339(s.updated_ms),
        "createdBy": s.created_by,
        "comment": s.comment,
        "status": {"state": s.state(now_ms)},
    }


@router.post("/api/v1/silences", dependencies=_ADMIN)
async def post_silence(request: Request) -> JSONResponse:
    dispatcher = dispatcher_of(request)
    body = await json_body(request, required=True)
    now = services(request).clock.now_ms()
    starts = _time(body, "startsAt", now)
    ends = _time(body, "endsAt", None)
    created_by = body.get("createdBy")
    if not isinstance(created_by, str) or not created_by:
        raise BadDataError("createdBy: say who creates the silence (a non-empty string)")
    sid = await asyncio.to_thread(
        dispatcher.quieting.put_silence,
        parse_matchers(body.get("matchers")),
        starts,
        ends,
        created_by,
        str(body.get("comment") or ""),
        now,
        body.get("id") or None,
    )
    return JSONResponse({"status": "success", "data": {"silenceID": sid}, "silenceID": sid})


@router.delete("/api/v1/silences/{silence_id}", dependencies=_ADMIN)
async def delete_silence(silence_id: str, request: Request) -> JSONResponse:
    dispatcher = dispatcher_of(request)
    now = services(request).clock.now_ms()
    await asyncio.to_thread(dispatcher.quieting.expire_silence, silence_id, now)
    return JSONResponse({"status": "success", "data": {"silenceID": silence_id}})


def _time(body: dict[str, Any], key: str, default: int | None) -> int:
    raw = body.get(key)
    if raw is None or raw == "":
        if default is None:
            raise BadDataError(f"{key}: required (RFC 3339 time, e.g. 2026-01-02T15:04:05Z)")
        return default
    return parse_time_ms(str(raw), field=key)


async def json_body(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await read_json_body(request, _BODY_LIMIT)
    if not raw.strip():
        if required:
            raise BadDataError("body: send a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadDataError(f"body: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadDataError("body: send a JSON object")
    return data


# --- notification log and status ------------------------------------------------------
@router.get("/api/v1/notifications", dependencies=_READ)
async def list_notifications(request: Request) -> JSONResponse:
    q = request.query_params
    limit_raw = q.get("limit", "100")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 10_000:
        raise BadDataError("limit: use a whole number from 1 to 10000")
    status = q.get("status") or None
    if status not in (None, "pending", "delivered", "failed"):
        raise BadDataError("status: use pending, delivered or failed")
    filt = NotificationFilter(q.get("alert") or None, q.get("channel") or None, status,
                              int(limit_raw))  # fmt: skip
    rows = await asyncio.to_thread(services(request).storage.notifications, filt)
    return JSONResponse({"status": "success", "data": [_record_json(r) for r in rows]})


def _record_json(r: NotificationRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "groupKey": r.group_key,
        "route": r.route,
        "channel": r.channel,
        "kind": r.kind,
        "status": r.status,
        "alerts": list(r.fingerprints),
        "alertnames": list(r.alertnames),
        "attempts": r.attempts,
        "httpStatus": r.http_status,
        "detail": r.detail,
        "createdAt": rfc3339(r.created_ms),
        "finishedAt": rfc3339(r.finished_ms) if r.finished_ms is not None else None,
    }


@router.get("/api/v1/notifications/status", dependencies=_READ)
async def dispatcher_status(request: Request) -> JSONResponse:
    return JSONResponse({"status": "success", "data": dispatcher_of(request).status()})
