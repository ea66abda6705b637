"""`export_archive`: samples, events and rollups of given ranges into a new archive directory.

Each data class has its own range (retention removes raw samples, rollups and events at
different ages). Every range is cut at UTC midnights into one file per day that has rows.
Samples are read through the SampleStore protocol (the series in label order, their samples
sorted by time), events and rollup spans through ArchiveStore.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsmetrics import __version__
from opsmetrics.errors import BadDataError
from opsmetrics.model import Series, metric_name
from opsmetrics.storage.archive import (
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    Archivable,
    Columns,
    DataClass,
    TimeRange,
    labels_to_json,
    value_columns,
)
from opsmetrics.storage.archive_files import (
    MANIFEST,
    ArchiveFile,
    Manifest,
    ParquetFiles,
    write_manifest,
)
from opsmetrics.storage.base import DAY_MS, ROLLUP_WIDTHS_MS

_SAMPLES_SELECT = (
    "SELECT s.metric, s.labels, x.ts, x.value, x.nan_bits FROM x JOIN s USING (idx) "
    "ORDER BY x.idx, x.ts"
)
_ROLLUP_FIELDS = [
    "min_v",
    "max_v",
    "sum_v",
    "n",
    "first_v",
    "first_ts",
    "last_v",
    "last_ts",
    "inc",
    "nonfinite",
]
_ROLLUPS_SELECT = (
    "SELECT x.width_ms, s.metric, s.labels, x.bucket, "
    + ", ".join(f"x.{c}" for c in ROLLUP_COLUMNS)
    + " FROM x JOIN s USING (idx) ORDER BY x.width_ms, x.idx, x.bucket"
)
_EVENTS_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM x ORDER BY ts, key"


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: Path
    manifest: Manifest


def export_archive(
    store: Archivable,
    target: Path,
    ranges: Mapping[DataClass, TimeRange],
    *,
    now_ms: int,
) -> ExportResult:
    """Write the archive of `ranges` to `target` (a new or empty directory)."""
    _check_target(target)
    target.mkdir(parents=True, exist_ok=True)
    out = ParquetFiles(target)
    try:
        series = store.samples.select_series([])
        files: list[ArchiveFile] = []
        spans = _rollup_spans(store, ranges.get(DataClass.ROLLUPS))
        for kind, wanted in ranges.items():
            files += _export_class(store, out, series, kind, _clamped(store, kind, wanted))
    finally:
        out.close()
    manifest = Manifest(
        opsmetrics_version=__version__,
        backend=store.backend,
        schema_version=store.archive.schema_version(),
        created_ms=now_ms,
        ranges=dict(ranges),
        rollup_spans=spans,
        files=tuple(files),
    )
    write_manifest(target, manifest)
    return ExportResult(target, manifest)


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise BadDataError(f"--to {target}: not a directory; name a new or empty directory")
    if (target / MANIFEST).exists():
        raise BadDataError(
            f"--to {target}: already holds an archive ({MANIFEST}); name a new directory"
        )


def _clamped(store: Archivable, kind: DataClass, wanted: TimeRange) -> TimeRange | None:
    """The wanted range from the day of the oldest stored row on (None: nothing to export)."""
    oldest = store.archive.oldest_ms(kind)
    if oldest is None or oldest >= wanted.end_ms:
        return None
    return TimeRange(max(wanted.start_ms, oldest // DAY_MS * DAY_MS), wanted.end_ms)


def _rollup_spans(store: Archivable, wanted: TimeRange | None) -> tuple[TimeRange, ...]:
    if wanted is None:
        return ()
    spans = (TimeRange(s, e) for s, e in store.samples.rollup_spans())
    return tuple(s for s in spans if s.end_ms > wanted.start_ms and s.start_ms < wanted.end_ms)


def _export_class(
    store: Archivable,
    out: ParquetFiles,
    series: list[Series],
    kind: DataClass,
    wanted: TimeRange | None,
) -> list[ArchiveFile]:
    if wanted is None:
        return []
    files = []
    for day in wanted.days():
        written = _export_day(store, out, series, kind, day)
        if written is not None:
            files.append(written)
    return files


def _export_day(
    store: Archivable, out: ParquetFiles, series: list[Series], kind: DataClass, day: TimeRange
) -> ArchiveFile | None:
    if kind is DataClass.EVENTS:
        events = store.archive.export_events(day.start_ms, day.end_ms)
        if not len(events["ts"]):
            return None
        return out.write(kind, day, {"x": events}, _EVENTS_SELECT)
    if kind is DataClass.SAMPLES:
        rows, select = _sample_rows(store, series, day), _SAMPLES_SELECT
    else:
        rows, select = _rollup_rows(store, series, day), _ROLLUPS_SELECT
    if rows is None:
        return None
    return out.write(kind, day, {"x": rows, "s": series_table(series)}, select)


def series_table(series: list[Series]) -> Columns:
    """idx (the series' position: label order), metric and labels as JSON."""
    return {
        "idx": np.arange(len(series), dtype=np.int64),
        "metric": _strings([metric_name(s.labels) for s in series]),
        "labels": _strings([labels_to_json(s.labels) for s in series]),
    }


def _positions(series: list[Series], ids: np.ndarray) -> np.ndarray:
    order = np.array([s.id for s in series], dtype=np.int64)
    by_id = np.argsort(order)
    return by_id[np.searchsorted(order[by_id], ids)]


def _sample_rows(store: Archivable, series: list[Series], day: TimeRange) -> Columns | None:
    if not series:
        return None
    got = store.samples.read_samples([s.id for s in series], day.start_ms, day.end_ms - 1)
    if not len(got.ts):
        return None
    value, bits = value_columns(got.values)
    idx = _positions(series, got.series_ids)
    return {"idx": idx, "ts": got.ts, "value": value, "nan_bits": bits}


def _rollup_rows(store: Archivable, series: list[Series], day: TimeRange) -> Columns | None:
    parts: list[Columns] = []
    ids = [s.id for s in series]
    for width in ROLLUP_WIDTHS_MS:
        got = store.samples.read_rollups(ids, day.start_ms, day.end_ms - 1, width) if ids else None
        if got is None or not len(got):
            continue
        cols: Columns = {"width_ms": np.full(len(got), width, np.int64)}
        cols["idx"] = _positions(series, got.series_ids)
        cols["bucket"] = got.bucket
        for name, attr in ROLLUP_COLUMNS.items():
            cols[name] = getattr(got, attr)
        parts.append(cols)
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
