"""Response protocols at work: escalation times, protocol actions, and the timeline hooks the
dispatcher calls (`Responder`).

A protocol action is an HTTP call. It is claimed in the state store before it is sent, under
an Idempotency-Key derived from the alert's fingerprint, its firing start and the action's
name, so it runs once per alert instance: a restart, a second click or a second node finds
the claim and does not send it again. Only a run that failed may be claimed again (by a
click). A run claimed by a process that died before it finished is not retried: the timeline
shows it as claimed, the receiver may or may not have seen it. See docs/alerting.md.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx

from opsmetrics.alerting.model import Alert
from opsmetrics.alerting.notifiers.base import Batch
from opsmetrics.alerting.timeline import SYSTEM, IncidentLog, entry_id, started_ms
from opsmetrics.catalog.alert_template_funcs import TemplateError
from opsmetrics.catalog.alert_templates import AlertData
from opsmetrics.catalog.alert_templates import parse as parse_template
from opsmetrics.catalog.protocols import Action, Protocol, ProtocolSet
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import Event
from opsmetrics.storage.alert_records import NotificationOutcome
from opsmetrics.storage.base import Storage
from opsmetrics.storage.timeline_records import ActionClaim, TimelineEntry

log = logging.getLogger(__name__)
#: How much of an action's response the timeline keeps.
RESPONSE_EXCERPT = 500


@dataclass(frozen=True, slots=True)
class ActionRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None

    def shown(self) -> dict[str, Any]:
        """For the timeline: header names only (their values may be secrets)."""
        return {"method": self.method, "url": self.url, "headers": sorted(self.headers),
                "body": self.body}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    status: int | None
    response: str


@dataclass
class ActionRunner:
    storage: Storage
    clock: Clock
    incidents: IncidentLog
    env: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="protocol-action")
    )

    _running: set[Future[None]] = field(default_factory=set)

    def on_fired(self, alert: Alert, protocol: Protocol) -> None:
        """Run the protocol's `run: auto` actions in the background (once per instance)."""
        for action in protocol.actions:
            if action.run == "auto":
                future = self._pool.submit(self._run_logged, alert, protocol, action)
                self._running.add(future)
                future.add_done_callback(self._running.discard)

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait for the background actions under way (tests)."""
        wait(list(self._running), timeout=timeout_s)

    def run_manual(self, alert: Alert, name: str, by: str) -> TimelineEntry:
        """Run an action of the alert's protocol now; BadDataError if it ran already."""
        protocol = self.incidents.protocol_of(alert)
        action = protocol.action(name) if protocol is not None else None
        if protocol is None or action is None:
            names = [a.name for a in protocol.actions] if protocol else []
            raise NotFoundError(
                f"action: {name!r} is not an action of this alert's protocol; "
                f"its actions: {', '.join(names) or 'none'}"
            )
        done = self.run(alert, protocol, action, by)
        if done is None:
            raise BadDataError(
                f"action: {name!r} ran already for this firing of the alert (it runs once per "
                "firing; only a failed run may be run again); see its timeline"
            )
        return done

    def close(self) -> None:
        """Stop: actions not started are dropped (their claim was not taken); those under way
        finish (each is bounded by its timeout), so their outcome is logged."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run_logged(self, alert: Alert, protocol: Protocol, action: Action) -> None:
        try:
            self.run(alert, protocol, action, SYSTEM)
        except Exception:  # a bad action must not stop the others
            log.exception("protocol %s action %s failed", protocol.name, action.name)

    def run(
        self, alert: Alert, protocol: Protocol, action: Action, by: str
    ) -> TimelineEntry | None:
        """Claim, send, log; None if the action is claimed or succeeded already."""
        fp, started = alert.fingerprint, started_ms(alert.active_at_ms)
        key = entry_id(fp, started, "action", action.name)
        claimed_ms = self.clock.now_ms()
        if not self.storage.claim_action(ActionClaim(key, fp, started, action.name, claimed_ms)):
            return None
        base = {"action": action.name, "protocol": protocol.name, "run": action.run, "key": key}
        claimed = {**base, "status": "claimed"}
        self.incidents.record(_entry(fp, started, claimed_ms, by, claimed))
        request: ActionRequest | None = None
        try:
            request = self._request(alert, action, key)
            result = send(request, action.timeout_ms / 1000)
        except BadDataError as exc:
            result = ActionResult(False, None, exc.message)
        now = self.clock.now_ms()
        self.storage.finish_action(key, "succeeded" if result.ok else "failed", now)
        detail = {
            **base,
            "status": "succeeded" if result.ok else "failed",
            "request": request.shown() if request else None,
            "response": {"status": result.status, "body": result.response},
        }
        entry = _entry(fp, started, now, by, detail)
        self.incidents.record(entry)
        return entry

    def _request(self, alert: Alert, action: Action, key: str) -> ActionRequest:
        url = action.url or self._env(action.url_env or "")
        headers = {**action.headers, **{h: self._env(v) for h, v in action.headers_env.items()}}
        headers["Idempotency-Key"] = key
        body = None
        if action.body is not None:
            data = AlertData(dict(alert.labels), alert.value, external_url=self.external_url)
            try:
                body = parse_template(action.body, action.name).render(data)
            except TemplateError as exc:
                raise BadDataError(f"body: {exc.message}") from None
            headers.setdefault("Content-Type", "application/json")
        return ActionRequest(action.method, url, headers, body)

    def _env(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise BadDataError(f"environment variable {name} is not set; the action needs it")
        return value


def send(request: ActionRequest, timeout_s: float) -> ActionResult:
    """One attempt: actions are not retried (a failed one may be run again by a click)."""
    try:
        response = httpx.request(
            request.method, request.url, headers=request.headers,
            content=request.body, timeout=timeout_s,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        return ActionResult(False, None, f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT])
    ok = 200 <= response.status_code < 300
    return ActionResult(ok, response.status_code, response.text[:RESPONSE_EXCERPT])


def _entry(fp: str, started: int, at: int, by: str, detail: dict[str, Any]) -> TimelineEntry:
    """A run's entries need no derived id: its claim already keeps it from running twice."""
    return TimelineEntry(uuid.uuid4().hex, fp, started, at, "action", by, json.dumps(detail))


@dataclass
class Responder:
    """What the dispatcher tells the protocols and the timeline, and asks them."""

    incidents: IncidentLog
    actions: ActionRunner

    def response_time_ms(self, alert: Alert) -> int | None:
        protocol = self.incidents.protocol_of(alert)
        return protocol.response_time_ms(alert.severity) if protocol is not None else None

    def fired(self, alert: Alert) -> None:
        if self.incidents.fired(alert):
            protocol = self.incidents.protocol_of(alert)
            if protocol is not None:
                self.actions.on_fired(alert, protocol)

    def resolved(self, alert: Alert) -> None:
        self.incidents.resolved(alert)

    def acknowledged(self, alert: Alert, by: str, comment: str, at_ms: int) -> None:
        self.incidents.acknowledged(alert, by, comment, at_ms)

    def notified(self, batch: Batch, outcome: NotificationOutcome) -> None:
        self.incidents.notified(batch, outcome)

    def close(self) -> None:
        self.actions.close()


def build_responder(
    storage: Storage,
    clock: Clock,
    protocols: ProtocolSet,
    ingestor: Ingestor | None,
    env: Mapping[str, str],
    external_url: str = "",
) -> Responder:
    """The timeline in the state store, its incident events through the ingestor (not
    waited for: the dispatcher must not block on the writer)."""

    def write_events(events: Sequence[Event]) -> None:
        if ingestor is not None:
            future = ingestor.submit(WriteRequest("timeline", events=list(events)))
            future.add_done_callback(_log_failure)

    incidents = IncidentLog(storage, clock, protocols, write_events)
    return Responder(incidents, ActionRunner(storage, clock, incidents, env, external_url))


def _log_failure(future: Future[Any]) -> None:
    if future.exception() is not None:
        log.error("could not write incident events: %s", future.exception())
