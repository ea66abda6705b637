"""What every alert producer and consumer shares: the alert, its fingerprint, sources and sinks.

Producers (Prometheus alerting rules, KPI alert rules) evaluate on the clock and hand their
alerts to the hub; consumers (the notification dispatcher) receive them. The hub also answers
"which alerts are active now" for `/api/v1/alerts` and the UI, across every producer.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from opsmetrics.model import Labels

ALERT_NAME = "alertname"
SEVERITY = "severity"


class AlertState(Enum):
    INACTIVE = "inactive"  # resolved: `resolved_at_ms` says when
    PENDING = "pending"
    FIRING = "firing"


def fingerprint(labels: Labels) -> str:
    """A stable 16-hex-digit id of a label set (sorted pairs), as Alertmanager's fingerprint."""
    h = hashlib.blake2b(digest_size=8)
    for name, value in sorted(labels):
        h.update(name.encode())
        h.update(b"\xff")
        h.update(value.encode())
        h.update(b"\xff")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance: a label set of one rule, in one state."""

    #: Sorted (name, value) pairs; include `alertname`; never `__name__`.
    labels: Labels
    annotations: Labels
    state: AlertState
    #: The value of the expression (or KPI) at the last evaluation.
    value: float
    #: When the condition became true (Prometheus `activeAt`).
    active_at_ms: int
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    #: "rule" for Prometheus alerting rules, "kpi" for KPI alert rules.
    source: str = "rule"
    #: The rule that produced it: "<file>;<group>;<alert>" or "kpi:<kpi>:<alert>".
    rule_id: str = ""
    #: A link back to where the alert can be understood (relative URL, e.g. /kpis/mrr).
    generator_url: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return dict(self.labels).get(ALERT_NAME, "")

    @property
    def severity(self) -> str:
        return dict(self.labels).get(SEVERITY, "")


class AlertSink(Protocol):
    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        """Firing alerts and alerts resolved recently (state INACTIVE, `resolved_at_ms` set),
        as Prometheus sends them to Alertmanager: the same alert may arrive again every
        evaluation, so a sink must treat repeats as updates, not as new alerts."""
        ...


class AlertSource(Protocol):
    def active_alerts(self) -> list[Alert]:
        """Alerts pending or firing now."""
        ...


class AlertHub:
    """Fans producers' alerts out to sinks; lists the active alerts of every source."""

    def __init__(self) -> None:
        self._sources: list[AlertSource] = []
        self._sinks: list[AlertSink] = []
        self._lock = threading.Lock()

    def add_source(self, source: AlertSource) -> None:
        with self._lock:
            self._sources.append(source)

    def add_sink(self, sink: AlertSink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        if not alerts:
            return
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            sink.send(alerts, at_ms)

    def active_alerts(self) -> list[Alert]:
        with self._lock:
            sources = list(self._sources)
        out: list[Alert] = []
        for source in sources:
            out.extend(source.active_alerts())
        return out
