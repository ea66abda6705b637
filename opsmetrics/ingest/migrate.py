"""`opsmetrics storage migrate`: copy everything from one set of stores to another.

Samples and events move one day at a time, oldest first; after each day the checkpoint file
records it, so an interrupted run resumes at the day it was in. Where the destination already
holds samples of a series in a day being copied (the day the interruption came in, or a run
again without the checkpoint), the rows it has are left out; a store that dedupes its writes
(ClickHouse) would drop them anyway, and events are deduplicated by key everywhere. At the end
every day's sample and event counts are compared between source and destination.

State (tokens, KPI versions, manual values, the notification log, silences, acks) is small and
copied in one pass, with upserts, so running it twice stores it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import METRIC_NAME, Labels, Matcher, MatchOp, Series
from opsmetrics.storage.alert_records import NotificationFilter, NotificationOutcome
from opsmetrics.storage.base import DAY_MS, StateStore, StoredEvent, WriteBatch
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.timeline_records import KINDS as TIMELINE_KINDS

#: Called as work advances: (phase, done, total).
Progress = Callable[[str, int, int], None]
ALL_SERIES = [Matcher.of(METRIC_NAME, MatchOp.RE, ".+")]
SERIES_CHUNK = 500
FAR_FUTURE = 2**62


@dataclass
class Counts:
    samples: int = 0
    events: int = 0

    def add(self, other: Counts) -> None:
        self.samples += other.samples
        self.events += other.events


@dataclass
class MigrationReport:
    days: int = 0
    series: int = 0
    copied: Counts = field(default_factory=Counts)
    annotations: int = 0
    metadata: int = 0
    state: dict[str, int] = field(default_factory=dict)
    #: Days whose counts differ: (day start ms, source counts, destination counts).
    mismatches: list[tuple[int, Counts, Counts]] = field(default_factory=list)


class Checkpoint:
    """The days already copied, in a JSON file next to the work (resume after a crash)."""

    def __init__(self, path: Path, source: str, destination: str) -> None:
        self.path = path
        self._key = {"from": source, "to": destination}
        self.done: set[int] = set()
        if path.exists():
            saved = json.loads(path.read_text())
            if {k: saved.get(k) for k in self._key} != self._key:
                raise ValueError(
                    f"{path} belongs to a migration from {saved.get('from')} to "
                    f"{saved.get('to')}; remove it or pass another --checkpoint"
                )
            self.done = set(saved.get("days", []))

    def mark(self, day: int) -> None:
        self.done.add(day)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._key, "days": sorted(self.done)}))
        tmp.replace(self.path)


def migrate_data(
    src: DataStore,
    dst: DataStore,
    *,
    since_ms: int,
    until_ms: int,
    checkpoint: Checkpoint,
    progress: Progress,
) -> MigrationReport:
    report = MigrationReport()
    days = list(range(since_ms - since_ms % DAY_MS, until_ms + 1, DAY_MS))
    ids: dict[int, int] = {}  # source series id -> destination series id
    for n, day in enumerate(days, 1):
        if day not in checkpoint.done:
            report.copied.add(_copy_day(src, dst, day, ids))
            checkpoint.mark(day)
        progress("samples and events", n, len(days))
    report.days = len(days)
    report.series = len(ids)
    annotations = src.read_annotations(0, FAR_FUTURE)
    metadata = src.metadata()
    dst.write(WriteBatch(annotations=list(annotations), metadata=list(metadata)))
    report.annotations, report.metadata = len(annotations), len(metadata)
    for n, day in enumerate(days, 1):
        want, got = _day_counts(src, day), _day_counts(dst, day)
        if want != got:
            report.mismatches.append((day, want, got))
        progress("verifying", n, len(days))
    return report


def _copy_day(src: DataStore, dst: DataStore, day: int, ids: dict[int, int]) -> Counts:
    end = day + DAY_MS - 1
    counts = Counts()
    series = src.select_series(ALL_SERIES, day, end)
    for start in range(0, len(series), SERIES_CHUNK):
        chunk = series[start : start + SERIES_CHUNK]
        rows = src.read_samples([s.id for s in chunk], day, end)
        if not len(rows.ts):
            continue
        new = _map_series(dst, chunk, ids)
        dst_ids = np.array([ids[int(i)] for i in rows.series_ids.tolist()], np.int64)
        ts, values = rows.ts, rows.values
        if not dst.idempotent_writes and _holds_rows(dst, chunk, ids, new, day, end):
            found, _ = dst.existing_samples(dst_ids, ts)
            dst_ids, ts, values = dst_ids[~found], ts[~found], values[~found]
        dst.write(WriteBatch(new_series=new, series_ids=dst_ids, ts=ts, values=values))
        counts.samples += len(ts)
    events = src.read_events(None, day, end)
    if events:
        dst.write(WriteBatch(events=[StoredEvent(event_key(e), e) for e in events]))
        counts.events = len(events)
    return counts


def _holds_rows(
    dst: DataStore,
    chunk: Sequence[Series],
    ids: dict[int, int],
    new: list[Series],
    start: int,
    end: int,
) -> bool:
    """Whether the destination has samples of these series in the window already (a run
    interrupted after the destination's commit, or run again without its checkpoint)."""
    fresh = {s.id for s in new}
    known = [ids[s.id] for s in chunk if ids[s.id] not in fresh]
    return bool(known) and len(dst.read_samples(known, start, end).ts) > 0


def _map_series(dst: DataStore, chunk: Sequence[Series], ids: dict[int, int]) -> list[Series]:
    """Destination ids for the chunk's series; the series the destination does not know."""
    todo = [s for s in chunk if s.id not in ids]
    if not todo:
        return []
    known = dst.lookup_series([s.labels for s in todo])
    fresh: list[Labels] = [s.labels for s, k in zip(todo, known, strict=True) if k is None]
    allocated = iter(dst.allocate_series_ids(fresh))
    new: list[Series] = []
    for s, k in zip(todo, known, strict=True):
        if k is None:
            k = next(allocated)
            new.append(Series(k, s.labels))
        ids[s.id] = k
    return new


def _day_counts(store: DataStore, day: int) -> Counts:
    end = day + DAY_MS - 1
    series = store.select_series(ALL_SERIES, day, end)
    samples = 0
    for start in range(0, len(series), SERIES_CHUNK):
        chunk = series[start : start + SERIES_CHUNK]
        samples += len(store.read_samples([s.id for s in chunk], day, end).ts)
    return Counts(samples, len(store.read_events(None, day, end)))


def migrate_state(src: StateStore, dst: StateStore, progress: Progress) -> dict[str, int]:
    """Copy the state: tokens, KPI versions and manual values, silences, acks, the log,
    incident timelines."""
    out: dict[str, int] = {}
    kpis = src.kpi_names()
    have_tokens = {t.id for t in dst.tokens()}
    tokens = [t for t in src.tokens() if t.id not in have_tokens]
    for t in tokens:
        dst.save_token(t)
    out["tokens"] = len(tokens)
    versions = manual = 0
    for name in kpis:
        have = {v.version for v in dst.kpi_versions(name)}
        for v in src.kpi_versions(name):
            if v.version not in have:
                dst.record_kpi_version(v)
                versions += 1
        stored = {(m.ts, m.recorded_ms) for m in dst.manual_kpi_values(name, 0, FAR_FUTURE)}
        for m in src.manual_kpi_values(name, 0, FAR_FUTURE):
            if (m.ts, m.recorded_ms) not in stored:
                dst.record_manual_kpi_value(m)
                manual += 1
    out["kpi_versions"], out["manual_values"] = versions, manual
    progress("state", 1, 3)
    silences, acks = src.silences(), src.acks()
    for s in silences:
        dst.save_silence(s)
    for a in acks:
        dst.save_ack(a)
    out["silences"], out["acks"] = len(silences), len(acks)
    progress("state", 2, 3)
    have_ids = {r.id for r in dst.notifications(NotificationFilter(limit=10**9))}
    log = [r for r in src.notifications(NotificationFilter(limit=10**9)) if r.id not in have_ids]
    log.reverse()  # oldest first
    dst.record_notifications(log)
    dst.finish_notifications(
        [
            NotificationOutcome(
                r.id, r.status, r.attempts, r.http_status, r.detail, r.finished_ms or r.created_ms
            )
            for r in log
            if r.status != "pending"
        ]
    )
    out["notifications"] = len(log)
    # Incident timelines; action claims stay behind (an alert firing during the move may run
    # its `auto` actions again on the new store).
    out["timeline_entries"] = dst.record_timeline(src.timeline_entries(TIMELINE_KINDS, 0))
    progress("state", 3, 3)
    return out
