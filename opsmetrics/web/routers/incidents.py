"""Incident timelines, protocol steps and actions, response times (docs/alerting.md).

Reads need scope `read`; completing a step and running an action need `admin`, as ack does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from opsmetrics.alerting.model import Alert, AlertState
from opsmetrics.alerting.protocols import Responder
from opsmetrics.alerting.response_times import KINDS, response_times
from opsmetrics.alerting.timeline import IncidentLog
from opsmetrics.catalog.protocols import Protocol
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.storage.timeline_records import TimelineEntry
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import require, services
from opsmetrics.web.routers.alerts import dispatcher_of, hub_of, json_body
from opsmetrics.web.routers.rules import rfc3339

router = APIRouter(tags=["alerts"])
_READ = [Depends(require(Scope.READ))]
_ADMIN = [Depends(require(Scope.ADMIN))]
#: The response-times window when `since` is not given.
DEFAULT_WINDOW = "30d"


def _responder(request: Request) -> Responder:
    responder = dispatcher_of(request).responder
    if responder is None:
        raise NotFoundError("incident timelines are not enabled in this server")
    return responder


def _firing(request: Request, fingerprint: str) -> Alert:
    for alert in hub_of(request).active_alerts():
        if alert.fingerprint == fingerprint and alert.state is AlertState.FIRING:
            return alert
    raise NotFoundError(
        f"no firing alert with fingerprint {fingerprint!r}; list them with GET /api/v1/alerts"
    )


def _who(body: dict[str, Any]) -> str:
    by = body.get("by")
    if not isinstance(by, str) or not by.strip():
        raise BadDataError("by: say who does it (a non-empty string, e.g. a name or email)")
    return by.strip()


# --- routes -----------------------------------------------------------------------------
@router.get("/api/v1/alerts/response-times", dependencies=_READ)
async def get_response_times(request: Request) -> JSONResponse:
    _responder(request)  # 404 unless timelines are kept
    by = request.query_params.get("by", "rule")
    now = services(request).clock.now_ms()
    window = request.query_params.get("window", DEFAULT_WINDOW)
    since = now - parse_duration_ms(window, field="window")
    storage = services(request).storage
    entries = await asyncio.to_thread(storage.timeline_entries, KINDS, since)
    rows = response_times(entries, by)
    data = {"by": by, "since": rfc3339(since), "groups": [r.to_json() for r in rows]}
    return JSONResponse({"status": "success", "data": data})


@router.get("/api/v1/alerts/{fingerprint}/timeline", dependencies=_READ)
async def get_timeline(fingerprint: str, request: Request) -> JSONResponse:
    incidents = _responder(request).incidents
    entries = await asyncio.to_thread(incidents.entries, fingerprint)
    if not entries:
        raise NotFoundError(
            f"alert {fingerprint!r} has no timeline (it never fired here); "
            "list alerts with GET /api/v1/alerts"
        )
    data = timeline_json(fingerprint, entries, incidents)
    return JSONResponse({"status": "success", "data": data})


@router.post("/api/v1/alerts/{fingerprint}/steps/{n}", dependencies=_ADMIN)
async def complete_step(fingerprint: str, n: int, request: Request) -> JSONResponse:
    incidents = _responder(request).incidents
    body = await json_body(request, required=True)
    by, note = _who(body), str(body.get("note") or "")
    entry = await asyncio.to_thread(incidents.complete_step, fingerprint, n, by, note)
    return JSONResponse({"status": "success", "data": entry_json(entry)})


@router.post("/api/v1/alerts/{fingerprint}/actions/{name}", dependencies=_ADMIN)
async def run_action(fingerprint: str, name: str, request: Request) -> JSONResponse:
    runner = _responder(request).actions
    alert = _firing(request, fingerprint)
    by = _who(await json_body(request, required=True))
    entry = await asyncio.to_thread(runner.run_manual, alert, name, by)
    return JSONResponse({"status": "success", "data": entry_json(entry)})


# --- JSON shapes ------------------------------------------------------------------------
def entry_json(e: TimelineEntry) -> dict[str, Any]:
    return {"at": rfc3339(e.at_ms), "kind": e.kind, "by": e.actor, "detail": json.loads(e.detail)}


def timeline_json(
    fingerprint: str, entries: list[TimelineEntry], incidents: IncidentLog
) -> dict[str, Any]:
    """The alert's instances, newest first, each with its protocol checklist and entries."""
    starts = sorted({e.started_ms for e in entries}, reverse=True)
    out = []
    for started in starts:
        mine = [e for e in entries if e.started_ms == started]
        fired = next((e for e in mine if e.kind == "fired"), None)
        name = json.loads(fired.detail).get("protocol", "") if fired else ""
        protocol = incidents.protocols.named(name) if name else None
        out.append({
            "startedAt": rfc3339(started),
            "protocol": _protocol_json(protocol, mine) if protocol else None,
            "entries": [entry_json(e) for e in mine],
        })  # fmt: skip
    return {"fingerprint": fingerprint, "instances": out}


def _protocol_json(p: Protocol, entries: list[TimelineEntry]) -> dict[str, Any]:
    done = {json.loads(e.detail).get("step"): e for e in entries if e.kind == "step"}
    steps = [
        {"n": i, "title": s.title, "link": s.link, "query": s.query,
         "done": entry_json(done[i]) if i in done else None}
        for i, s in enumerate(p.steps, 1)
    ]  # fmt: skip
    actions = [{"name": a.name, "run": a.run, "method": a.method} for a in p.actions]
    return {
        "name": p.name, "title": p.title, "team": p.team, "role": p.role,
        "responseTimeSeconds": {k: v / 1000 for k, v in p.response_ms.items()},
        "steps": steps, "actions": actions,
    }  # fmt: skip
