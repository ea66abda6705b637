"""The data-quality monitors on a schedule: results as samples, problems as alerts.

On the node holding the alerting lease, every `interval` of config/quality.yaml, the monitors
judge every source (analysis/quality_assess.py). The results are written through the ingestor
(`opsmetrics_quality_status{source,kind,monitor}`: 0 ok, 1 warning, 2 critical;
`opsmetrics_source_age_seconds{source,kind}`; `opsmetrics_source_expected_freshness_seconds`),
and each monitor in warning or critical is an alert of source "quality" that goes through the
same hub, routing and notifiers as every other alert: `SourceStale` (critical),
`SourceVolumeAnomaly`, `SourceIncomplete`, `SourceSchemaDrift` (warning). An alert fires at
the first pass that finds the problem (the monitors have their own tolerance: the expected
freshness, the volume threshold) and resolves at the first pass that no longer does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opsmetrics.alerting.alert_state import RESOLVED_RETENTION_MS
from opsmetrics.alerting.evaluator import write_rows
from opsmetrics.alerting.model import ALERT_NAME, SEVERITY, Alert, AlertHub, AlertState
from opsmetrics.alerting.schedule import GroupResult, GroupScheduler, ImmediateTicks
from opsmetrics.analysis.quality import STATUS_VALUES, QualityReport, SourceReport, Status
from opsmetrics.analysis.quality_assess import QualityAssessor
from opsmetrics.catalog.quality import Monitor
from opsmetrics.clock import Clock
from opsmetrics.ingest.pipeline import Ingestor
from opsmetrics.model import Labels
from opsmetrics.storage.lease import Lease
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
SOURCE = "quality"
ALERT_NAMES = {
    Monitor.FRESHNESS: "SourceStale",
    Monitor.VOLUME: "SourceVolumeAnomaly",
    Monitor.COMPLETENESS: "SourceIncomplete",
    Monitor.SCHEMA_DRIFT: "SourceSchemaDrift",
    Monitor.DUPLICATES: "SourceDuplicates",
}
ALERTING = (Status.WARNING, Status.CRITICAL)


@dataclass(frozen=True, slots=True)
class _Active:
    active_at_ms: int
    value: float
    detail: str
    severity: str


class QualityMonitor:
    """Runs the assessor on its interval; `active_alerts()` makes it an AlertSource."""

    def __init__(
        self,
        assessor: QualityAssessor,
        clock: Clock,
        ingestor: Ingestor | None = None,
        hub: AlertHub | None = None,
        telemetry: Telemetry | None = None,
        lease: Lease | None = None,
    ) -> None:
        self._assessor = assessor
        self._clock = clock
        self._ingestor = ingestor
        self._hub = hub
        self._lock = threading.RLock()
        self._latest: QualityReport | None = None
        self._active: dict[Labels, _Active] = {}
        self._resolved: list[Alert] = []
        self._written: set[Labels] = set()
        self._scheduler: GroupScheduler[QualityMonitor] = GroupScheduler(
            "opsmetrics-quality", clock, self._evaluate, self._after_pass, telemetry, lease
        )
        self._scheduler.add(self, ImmediateTicks(assessor.config.interval_ms), SOURCE, SOURCE)

    async def start(self) -> None:
        await self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()

    def evaluate_all(self) -> int:
        return len(self._scheduler.evaluate_all())

    def report(self) -> QualityReport:
        """The last pass's results while they are recent, else a new assessment (a node without
        the alerting lease, or before the first pass)."""
        now = self._clock.now_ms()
        with self._lock:
            latest = self._latest
            if latest is None or now - latest.at_ms > self._assessor.config.interval_ms:
                latest = self._latest = self._assessor.assess(now)
            return latest

    # --- a pass ---------------------------------------------------------------------------
    def _evaluate(self, _: QualityMonitor, now: int) -> GroupResult:
        started = time.perf_counter()
        try:
            with self._lock:
                report = self._latest = self._assessor.assess(now)
                self._update_alerts(report, now)
            samples = self._write(report, now)
        except Exception:  # a failing pass must not stop the schedule
            log.exception("data-quality monitors failed")
            return GroupResult(time.perf_counter() - started, failures=1, rules=1)
        return GroupResult(time.perf_counter() - started, samples, rules=1)

    def _after_pass(self, _: Sequence[QualityMonitor], now: int) -> None:
        if self._hub is None:
            return
        try:
            self._hub.send(self.to_send(now), now)
        except Exception:  # a sink's failure must not stop evaluation
            log.exception("sending data-quality alerts failed")

    def _write(self, report: QualityReport, now: int) -> int:
        if self._ingestor is None:
            return 0
        rows = quality_rows(report)
        self._written = write_rows(self._ingestor, SOURCE, rows, now, self._written)
        return len(rows)

    # --- alerts ---------------------------------------------------------------------------
    def _update_alerts(self, report: QualityReport, now: int) -> None:
        found: dict[Labels, _Active] = {}
        for source in report.sources:
            for check in source.checks:
                if check.status in ALERTING and check.judged_at is None:
                    labels = alert_labels(source, check.monitor, check.status)
                    since = self._active[labels].active_at_ms if labels in self._active else now
                    value = check.value if check.value is not None else float("nan")
                    found[labels] = _Active(since, value, check.detail, check.status.value)
        for labels in self._active.keys() - found.keys():
            self._resolved.append(self._alert(labels, self._active[labels], resolved_ms=now))
        self._active = found

    def active_alerts(self) -> list[Alert]:
        with self._lock:
            return [self._alert(labels, a) for labels, a in sorted(self._active.items())]

    def to_send(self, now_ms: int) -> list[Alert]:
        """Firing alerts and the ones resolved in the last 15 minutes."""
        with self._lock:
            live = set(self._active)
            self._resolved = [
                a
                for a in self._resolved
                if now_ms - (a.resolved_at_ms or 0) < RESOLVED_RETENTION_MS and a.labels not in live
            ]
            return self.active_alerts() + list(self._resolved)

    def _alert(self, labels: Labels, a: _Active, resolved_ms: int | None = None) -> Alert:
        source = dict(labels)["source"]
        return Alert(
            labels=labels,
            annotations=(("description", a.detail), ("summary", f"{source}: {a.detail}")),
            state=AlertState.FIRING if resolved_ms is None else AlertState.INACTIVE,
            value=a.value,
            active_at_ms=a.active_at_ms,
            fired_at_ms=a.active_at_ms,
            resolved_at_ms=resolved_ms,
            source=SOURCE,
            rule_id=f"quality:{source}:{dict(labels)['monitor']}",
            generator_url="/sources",
        )


def alert_labels(source: SourceReport, monitor: Monitor, status: Status) -> Labels:
    severity = "critical" if status is Status.CRITICAL else "warning"
    pairs = {
        ALERT_NAME: ALERT_NAMES[monitor],
        "source": source.id,
        "kind": source.kind,
        "monitor": monitor.value,
        SEVERITY: severity,
    }
    return tuple(sorted(pairs.items()))


def quality_rows(report: QualityReport) -> dict[Labels, float]:
    """The samples one pass writes (see the module docstring)."""
    rows: dict[Labels, float] = {}
    for s in report.sources:
        base = (("kind", s.kind), ("source", s.id))
        for c in s.checks:
            if c.status in STATUS_VALUES:
                labels = (
                    ("__name__", "opsmetrics_quality_status"),
                    *base,
                    ("monitor", c.monitor.value),
                )
                rows[tuple(sorted(labels))] = STATUS_VALUES[c.status]
        if s.last_seen_ms is not None:
            age = max(0, report.at_ms - s.last_seen_ms) / 1000
            rows[tuple(sorted((("__name__", "opsmetrics_source_age_seconds"), *base)))] = age
        if s.expected_ms is not None:
            name = ("__name__", "opsmetrics_source_expected_freshness_seconds")
            rows[tuple(sorted((name, *base)))] = s.expected_ms / 1000
    return rows
