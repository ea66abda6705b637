"""Incident timelines: what happened to every alert instance, stored in the state store.

An instance is an alert's fingerprint plus the moment its condition became true (`activeAt`,
which a restart restores), so a restarted server adds to the same timeline. Entry ids are
derived from what happened (`entry_id`): recording the same thing twice, as a restarted
process does, stores it once. Acknowledging and resolving an instance also write the
`incident_acknowledged` / `incident_resolved` events the `mtta` / `mttr` KPIs read (value:
seconds since the instance fired; props rule, team, severity, protocol, `source: timeline`).
See docs/alerting.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opsmetrics.alerting.model import Alert
from opsmetrics.alerting.notifiers.base import Batch
from opsmetrics.catalog.protocols import Protocol, ProtocolSet
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.model import Event, Scalar
from opsmetrics.storage.alert_records import NotificationOutcome
from opsmetrics.storage.base import Storage
from opsmetrics.storage.timeline_records import KINDS, TimelineEntry

log = logging.getLogger(__name__)
#: Who did what the system did by itself.
SYSTEM = "opsmetrics"
EventWriter = Callable[[Sequence[Event]], None]
#: Entries at the same ms sort in the order things happen (a FakeClock makes ties common).
_ORDER = {k: i for i, k in enumerate(KINDS)}


def started_ms(active_at_ms: int) -> int:
    """An instance's key: its activeAt in whole seconds, as ALERTS_FOR_STATE keeps it and a
    restart restores it (alerting/alert_state.py)."""
    return active_at_ms // 1000 * 1000


def entry_id(fingerprint: str, started_ms: int, *what: object) -> str:
    text = "|".join(str(p) for p in (fingerprint, started_ms, *what))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Instance:
    """One alert instance as its `fired` entry recorded it."""

    fingerprint: str
    started_ms: int
    fired_ms: int
    detail: dict[str, Any]

    @property
    def protocol(self) -> str:
        return str(self.detail.get("protocol") or "")


class IncidentLog:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        protocols: ProtocolSet,
        write_events: EventWriter | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self.protocols = protocols
        self._write_events = write_events
        self._seen: set[tuple[str, int]] = set()
        self._resolved: set[tuple[str, int]] = set()

    def protocol_of(self, alert: Alert) -> Protocol | None:
        return self.protocols.for_labels(dict(alert.labels))

    # --- what the dispatcher reports ----------------------------------------------------
    def fired(self, alert: Alert) -> bool:
        """Record that the instance fired; True the first time this process sees it."""
        key = (alert.fingerprint, started_ms(alert.active_at_ms))
        if key in self._seen:
            return False
        self._seen.add(key)
        protocol = self.protocol_of(alert)
        labels = dict(alert.labels)
        detail = {
            "alertname": alert.name,
            "severity": alert.severity,
            "rule": alert.rule_id,
            "team": protocol.team if protocol else labels.get("team", ""),
            "protocol": protocol.name if protocol else "",
            "value": alert.value,
            "summary": dict(alert.annotations).get("summary", ""),
        }
        at = alert.fired_at_ms or alert.active_at_ms
        self._record(alert.fingerprint, key[1], at, "fired", SYSTEM, detail)
        return True

    def resolved(self, alert: Alert) -> None:
        fp, started = alert.fingerprint, started_ms(alert.active_at_ms)
        self._seen.discard((fp, started))
        if (fp, started) in self._resolved:
            return  # a rule re-sends a resolved alert for 15 minutes
        self._resolved.add((fp, started))
        at = alert.resolved_at_ms or self._clock.now_ms()
        if self._record(fp, started, at, "resolved", SYSTEM, {"value": alert.value}):
            self._incident_event("incident_resolved", fp, started, at)

    def acknowledged(self, alert: Alert, by: str, comment: str, at_ms: int) -> None:
        fp, started = alert.fingerprint, started_ms(alert.active_at_ms)
        if self._record(fp, started, at_ms, "acknowledged", by, {"comment": comment}):
            self._incident_event("incident_acknowledged", fp, started, at_ms)

    def notified(self, batch: Batch, outcome: NotificationOutcome) -> None:
        """A notification's outcome, one entry per alert in it (escalations as `escalated`)."""
        kind = "escalated" if batch.kind == "escalation" else "notified"
        detail = {
            "channel": batch.receiver,
            "kind": batch.kind,
            "status": outcome.status,
            "attempts": outcome.attempts,
            "httpStatus": outcome.http_status,
            "detail": outcome.detail[:300],
            "alertStatus": "",
        }
        entries = []
        for a in batch.alerts:
            started = started_ms(a.active_at_ms or a.starts_at_ms)
            d = {**detail, "alertStatus": a.status}
            entries.append(self._entry(a.fingerprint, started, outcome.finished_ms, kind,
                                       batch.receiver, d, outcome.id))  # fmt: skip
        self._storage.record_timeline(entries)

    # --- what people do -----------------------------------------------------------------
    def complete_step(self, fingerprint: str, n: int, by: str, note: str) -> TimelineEntry:
        """Mark step n (1-based) of the protocol of the alert's newest instance done."""
        instance = self.latest(fingerprint)
        protocol = self.protocols.named(instance.protocol)
        if protocol is None:
            raise NotFoundError(f"alert {fingerprint} has no response protocol with steps")
        if not 1 <= n <= len(protocol.steps):
            raise BadDataError(
                f"step: {n} is not a step of protocol {protocol.name!r}; "
                f"use 1 to {len(protocol.steps)}"
            )
        step = protocol.steps[n - 1]
        detail = {"step": n, "title": step.title, "note": note, "protocol": protocol.name}
        now = self._clock.now_ms()
        e = self._entry(fingerprint, instance.started_ms, now, "step", by, detail, n)
        if not self._storage.record_timeline([e]):
            done = next(x for x in self._storage.timeline(fingerprint) if x.id == e.id)
            raise BadDataError(f"step: step {n} is done already (by {done.actor}); it is kept once")
        return e

    # --- reading ------------------------------------------------------------------------
    def entries(self, fingerprint: str) -> list[TimelineEntry]:
        """Oldest first; at the same ms in the order things happen to an instance."""
        rows = self._storage.timeline(fingerprint)
        return sorted(rows, key=lambda e: (e.at_ms, _ORDER.get(e.kind, len(_ORDER))))

    def latest(self, fingerprint: str) -> Instance:
        """The alert's newest instance; NotFoundError if it never fired."""
        fired = [e for e in self._storage.timeline(fingerprint) if e.kind == "fired"]
        if not fired:
            raise NotFoundError(
                f"no alert with fingerprint {fingerprint!r} has fired; "
                "list them with GET /api/v1/alerts"
            )
        newest = max(fired, key=lambda e: e.started_ms)
        return Instance(fingerprint, newest.started_ms, newest.at_ms, json.loads(newest.detail))

    def instance(self, fingerprint: str, started_ms: int) -> Instance | None:
        for e in self._storage.timeline(fingerprint):
            if e.kind == "fired" and e.started_ms == started_ms:
                return Instance(fingerprint, started_ms, e.at_ms, json.loads(e.detail))
        return None

    # --- helpers ------------------------------------------------------------------------
    def record(self, entry: TimelineEntry) -> bool:
        return self._storage.record_timeline([entry]) == 1

    def _record(
        self, fp: str, started: int, at: int, kind: str, actor: str, detail: dict[str, Any]
    ) -> bool:
        return self.record(self._entry(fp, started, at, kind, actor, detail))

    @staticmethod
    def _entry(
        fp: str, started: int, at: int, kind: str, actor: str, detail: dict[str, Any], *what: object
    ) -> TimelineEntry:
        return TimelineEntry(
            entry_id(fp, started, kind, *what), fp, started, at, kind, actor, json.dumps(detail)
        )

    def _incident_event(self, name: str, fp: str, started: int, at_ms: int) -> None:
        """The event the mtta / mttr KPIs read; written once (its id is the entry's)."""
        if self._write_events is None:
            return
        instance = self.instance(fp, started)
        if instance is None:
            return  # it fired before timelines were kept: no start to measure from
        d = instance.detail
        props: dict[str, Scalar] = {
            "rule": str(d.get("alertname", "")),
            "team": str(d.get("team", "")),
            "severity": str(d.get("severity", "")),
            "protocol": instance.protocol,
            "source": "timeline",
        }
        seconds = max(0.0, (at_ms - instance.fired_ms) / 1000)
        event = Event(name, at_ms, f"incident:{fp}:{started}", seconds, props,
                      f"timeline-{name}-{fp}-{started}")  # fmt: skip
        try:
            self._write_events([event])
        except Exception:  # the timeline keeps the facts; the KPI misses one incident
            log.exception("could not write the %s event of alert %s", name, fp)
