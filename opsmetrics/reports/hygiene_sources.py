"""Sources gone silent: pushed event names and metrics with no data for much longer than
their usual cadence.

Per source the stores count rows per hour over the last LOOKBACK_MS (the data-quality reads of
storage/quality_records.py). Its usual cadence is the mean spacing of its active hours (an hour
for anything sent continuously, a day for a daily import); it is silent when nothing arrived
for SILENT_FACTOR times that, and at least MIN_SILENCE_MS. A source needs MIN_ACTIVE active
hours in the lookback to have a cadence at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from opsmetrics.alerting.notifiers.base import rfc3339
from opsmetrics.reports.hygiene_model import Finding
from opsmetrics.storage.base import Storage
from opsmetrics.storage.quality_records import NameCount

HOUR_MS = 3_600_000
LOOKBACK_MS = 8 * 24 * HOUR_MS
SILENT_FACTOR = 4
MIN_SILENCE_MS = 3 * HOUR_MS
MIN_ACTIVE = 3


@dataclass(frozen=True, slots=True)
class SourceActivity:
    kind: str  # events | metric
    name: str
    last_ms: int
    #: The mean spacing of its active hours in the lookback.
    cadence_ms: int
    active_hours: int

    def silent_for(self, now_ms: int) -> int:
        return max(0, now_ms - self.last_ms)

    def is_silent(self, now_ms: int) -> bool:
        limit = max(MIN_SILENCE_MS, SILENT_FACTOR * self.cadence_ms)
        return self.active_hours >= MIN_ACTIVE and self.silent_for(now_ms) > limit


def activity(
    kind: str, counts: Iterable[NameCount], newest: Mapping[str, int] | None = None
) -> list[SourceActivity]:
    """Per name (sorted) from hourly counts; `newest` gives exact last timestamps where known
    (else the end of the last active hour)."""
    hours: dict[str, list[int]] = {}
    for c in counts:
        if c.count > 0:
            hours.setdefault(c.name, []).append(c.bucket)
    found = []
    for name in sorted(hours):
        active = sorted(hours[name])
        span = active[-1] - active[0]
        cadence = max(HOUR_MS, span // max(1, len(active) - 1))
        last = (newest or {}).get(name, active[-1] + HOUR_MS)
        found.append(SourceActivity(kind, name, last, cadence, len(active)))
    return found


def source_activity(storage: Storage, now_ms: int) -> list[SourceActivity]:
    """Event names, then metrics, seen in the lookback."""
    start = (now_ms - LOOKBACK_MS) // HOUR_MS * HOUR_MS
    events = storage.event_counts(start, now_ms + 1, HOUR_MS)
    samples = storage.sample_counts(start, now_ms + 1, HOUR_MS)
    newest = storage.event_names_newest()
    return activity("events", events, newest) + activity("metric", samples)


def silent_findings(sources: Iterable[SourceActivity], now_ms: int) -> list[Finding]:
    return [_finding(s, now_ms) for s in sources if s.is_silent(now_ms)]


def _finding(s: SourceActivity, now_ms: int) -> Finding:
    quiet, usual = _hours(s.silent_for(now_ms)), _every(s.cadence_ms)
    since = rfc3339(s.last_ms)
    if s.kind == "events":
        return Finding("source", "silent_events", s.name,
            f"no `{s.name}` events for {quiet} (since {since}); usually {usual}",
            f"check the sender of `{s.name}` events (its SDK key, its job, the ingest log): "
            f"none arrived for {quiet}, where they came {usual}")  # fmt: skip
    return Finding("source", "silent_metric", s.name,
        f"no `{s.name}` samples for {quiet} (since {since}); usually {usual}",
        f"check the scrape target or pusher of `{s.name}` (scrape.yaml, its exporter): "
        f"no samples for {quiet}, where they came {usual}")  # fmt: skip


def _hours(ms: int) -> str:
    hours = ms / HOUR_MS
    if hours >= 48:
        return f"{hours / 24:.0f} days"
    return f"{hours:.0f} h" if hours >= 1.5 else "an hour"


def _every(ms: int) -> str:
    """Plain words: every hour, every 6 h, every 2 days."""
    return "every hour" if ms < 1.5 * HOUR_MS else f"every {_hours(ms)}"
