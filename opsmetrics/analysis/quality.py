"""Data-quality results: per source (an event name, a metric, a scrape job) a status per monitor.

Monitors (catalog/quality.py `Monitor`): freshness (no data for longer than expected), volume
(the last complete hour against its seasonal baseline), completeness (the share of events
carrying each property a KPI reads, against the day before), schema drift (a property gone or
of another type than the day before) and duplicates (events refused as already stored).
analysis/quality_assess.py computes them; alerting/quality_alerts.py runs them on a schedule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsmetrics.catalog.quality import Monitor


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"  # not enough data to judge yet
    DISABLED = "disabled"  # switched off in quality.yaml


#: The value `opsmetrics_quality_status` takes; unknown and disabled are not written.
STATUS_VALUES = {Status.OK: 0.0, Status.WARNING: 1.0, Status.CRITICAL: 2.0}
_SEVERITY = {Status.CRITICAL: 3, Status.WARNING: 2, Status.OK: 1, Status.UNKNOWN: 0}


@dataclass(frozen=True, slots=True)
class Check:
    monitor: Monitor
    status: Status
    detail: str
    value: float | None = None
    #: Judged on another source (a SQL source's volume, on what it writes): shown here, and
    #: alerted on there only, so one problem is one alert.
    judged_at: str | None = None


@dataclass(frozen=True, slots=True)
class PropStat:
    """One property of an event source in the recent window."""

    prop: str
    present: float  # share of events carrying it with a value that is not null
    null: float  # share carrying it as null
    types: tuple[str, ...]
    kpis: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceReport:
    kind: str  # event | metric | scrape | sql
    name: str
    last_seen_ms: int | None
    expected_ms: int | None  # the expected freshness: no data for longer is stale
    checks: tuple[Check, ...]
    kpis: tuple[str, ...] = ()
    props: tuple[PropStat, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def status(self) -> Status:
        judged = [c.status for c in self.checks if c.status in _SEVERITY]
        return max(judged, key=_SEVERITY.__getitem__, default=Status.UNKNOWN)

    def check(self, monitor: Monitor) -> Check | None:
        return next((c for c in self.checks if c.monitor is monitor), None)

    @property
    def stale_since_ms(self) -> int | None:
        """When the source went stale (its last data + the expected freshness), if it is."""
        fresh = self.check(Monitor.FRESHNESS)
        if fresh is None or fresh.status is not Status.CRITICAL or self.last_seen_ms is None:
            return None
        return self.last_seen_ms + (self.expected_ms or 0)


@dataclass(frozen=True, slots=True)
class QualityReport:
    at_ms: int
    sources: tuple[SourceReport, ...]
    #: Metric name → the id of the source it belongs to (a scrape job, or the metric itself).
    metric_sources: dict[str, str] = field(default_factory=dict)

    def get(self, source_id: str) -> SourceReport | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def stale_sources(self, refs: list[tuple[str, str]]) -> list[SourceReport]:
        """The stale ones among (kind, name) references (a KPI's inputs)."""
        ids = [self._source_id(kind, name) for kind, name in refs]
        found = [self.get(i) for i in dict.fromkeys(ids)]
        return [s for s in found if s is not None and s.stale_since_ms is not None]

    def _source_id(self, kind: str, name: str) -> str:
        if kind == "metric":
            return self.metric_sources.get(name, f"metric:{name}")
        return f"{kind}:{name}"


def stale_note(source: SourceReport) -> str:
    """`source event:signup stale since 09:12 UTC` (the time of day, with the date if needed)."""
    since = source.stale_since_ms or 0
    return f"source {source.id} stale since {_when(since)}"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def report_json(report: QualityReport) -> dict[str, Any]:
    """The GET /api/v1/quality payload."""
    return {"time": report.at_ms / 1000, "sources": [source_json(s) for s in report.sources]}


def source_json(s: SourceReport) -> dict[str, Any]:
    return {
        "id": s.id,
        "kind": s.kind,
        "name": s.name,
        "status": s.status.value,
        "last_seen": _seconds(s.last_seen_ms),
        "expected_freshness_seconds": _seconds(s.expected_ms),
        "stale_since": _seconds(s.stale_since_ms),
        "kpis": list(s.kpis),
        "monitors": {c.monitor.value: _check_json(c) for c in s.checks},
        "properties": [_prop_json(p) for p in s.props],
    }


def _check_json(c: Check) -> dict[str, Any]:
    out: dict[str, Any] = {"status": c.status.value, "value": c.value, "detail": c.detail}
    if c.judged_at is not None:
        out["judged_at"] = c.judged_at
    return out


def _prop_json(p: PropStat) -> dict[str, Any]:
    return {
        "name": p.prop,
        "present": round(p.present, 6),
        "null": round(p.null, 6),
        "types": list(p.types),
        "kpis": list(p.kpis),
    }


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000
