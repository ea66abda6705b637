"""Archives (storage/archive*.py): a real DuckDB store exported to Parquet and restored into a
fresh data directory answers PromQL and KPIs exactly as the original; restoring twice adds
nothing; a damaged file is refused with nothing written; the retention hook archives a day
before it deletes it, and deletes nothing when it cannot archive."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opsmetrics.catalog.kpis import Catalog, load_catalog
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError
from opsmetrics.ingest.archive_hook import RetentionArchiver, archived_maintenance
from opsmetrics.model import STALE_NAN_BITS
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.storage.archive import (
    DataClass,
    TimeRange,
    archivable,
    value_columns,
    values_from,
)
from opsmetrics.storage.archive_export import ExportResult, export_archive
from opsmetrics.storage.archive_files import ArchiveError, ParquetFiles, read_manifest, sha256_of
from opsmetrics.storage.archive_restore import restore_archive
from opsmetrics.storage.base import DAY_MS, RetentionPolicy, Storage
from opsmetrics.storage.duckdb.migrations import MIGRATIONS
from tests.archive_data import DAYS, KPIS, NOW, SERIES, T0, filled_store
from tests.stores import open_store

HOUR = 3_600_000
EVERYTHING = TimeRange(0, NOW)
#: Raw samples of the first day expire; its rollups (and every event) stay.
RAW_FROM_DAY_1 = RetentionPolicy(raw_ms=NOW - (T0 + DAY_MS), rollups_ms=1000 * DAY_MS,
                                 events_ms=1000 * DAY_MS)  # fmt: skip


@dataclass
class RoundTrip:
    source: Storage
    restored: Storage
    export: ExportResult
    catalog: Catalog


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    root = tmp_path_factory.mktemp("archive")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "shop.yaml").write_text(KPIS)
    filled = filled_store(root / "source")
    filled.apply_retention(NOW, RAW_FROM_DAY_1)
    filled.close()
    # Opened again: a process that wrote the expired samples still has their series' newest
    # timestamps in memory (storage/index.py); a restored store has what a reopened one has.
    source = open_store(root / "source", NOW)
    ranges = dict.fromkeys(DataClass, EVERYTHING)
    export = export_archive(archivable(source), root / "archive", ranges, now_ms=NOW)
    restored = open_store(root / "restored", NOW)
    restore_archive(archivable(restored), root / "archive", now_ms=NOW)
    try:
        yield RoundTrip(source, restored, export, load_catalog(root / "config"))
    finally:
        source.close()
        restored.close()


def test_the_manifest_lists_one_file_per_day_with_rows_and_checksums(trip: RoundTrip) -> None:
    root = trip.export.directory
    manifest = read_manifest(root)
    by_kind = {k: [f.path for f in manifest.files if f.kind is k] for k in DataClass}
    days = [f"2026-11-{19 + d}" for d in range(DAYS)]
    assert by_kind[DataClass.SAMPLES] == [f"samples/day={d}/part-0.parquet" for d in days[1:]]
    assert by_kind[DataClass.EVENTS] == [f"events/day={d}/part-0.parquet" for d in days]
    # Buckets are left-open: the one holding T0's first sample starts on the day before.
    rollup_days = ["2026-11-18", *days]
    assert by_kind[DataClass.ROLLUPS] == [f"rollups/day={d}/part-0.parquet" for d in rollup_days]
    assert all(sha256_of(root / f.path) == f.sha256 for f in manifest.files)
    assert manifest.rows(DataClass.EVENTS) == 160
    assert manifest.rows(DataClass.SAMPLES) == 2 * 3 * 1440  # two series on days 1..3
    assert manifest.schema_version == MIGRATIONS[-1][0]
    assert manifest.backend == "duckdb"
    assert manifest.ranges[DataClass.SAMPLES] == EVERYTHING
    assert [s.start_ms for s in manifest.rollup_spans] == [T0 + d * DAY_MS for d in range(DAYS)]


def _samples(store: Storage) -> list[tuple[np.ndarray, np.ndarray]]:
    ids = store.lookup_series(list(SERIES))
    out = []
    for sid in ids:
        assert sid is not None
        got = store.read_samples([sid], 0, NOW)
        out.append((got.ts, got.values.view(np.uint64)))
    return out


def test_samples_come_back_bit_for_bit_under_the_target_stores_ids(trip: RoundTrip) -> None:
    before, after = _samples(trip.source), _samples(trip.restored)
    for (ts_a, bits_a), (ts_b, bits_b) in zip(before, after, strict=True):
        assert np.array_equal(ts_a, ts_b) and np.array_equal(bits_a, bits_b)
    assert int((after[1][1] == STALE_NAN_BITS).sum()) == 1  # the stale marker survived
    assert len(after[0][0]) == 3 * 1440 and len(after[2][0]) == 0  # day 0's raw had expired


def test_events_come_back_with_their_ids_values_and_props(trip: RoundTrip) -> None:
    before = trip.source.read_events(None, 0, NOW)
    assert len(before) == 160 and any(e.value is None for e in before)
    assert trip.restored.read_events(None, 0, NOW) == before


def _same(a: object, b: object) -> None:
    assert isinstance(a, InstantVector) and isinstance(b, InstantVector)
    assert a.labels == b.labels
    assert np.array_equal(a.present, b.present)
    assert np.array_equal(a.values[a.present], b.values[b.present])


@pytest.mark.parametrize(
    ("expr", "step"),
    [
        ("http_requests_total", 15 * 60_000),
        ("rate(http_requests_total[5m])", 5 * 60_000),
        ("increase(http_requests_total[1h])", HOUR),  # hour buckets: read from rollups
        ("max_over_time(queue_depth[1h])", HOUR),
        ("max_over_time(http_requests_total[1h])", HOUR),  # day 0: only its rollups are left
        ("avg by (host) (avg_over_time(queue_depth[1d]))", DAY_MS),
    ],
)
def test_promql_range_queries_answer_as_before(trip: RoundTrip, expr: str, step: int) -> None:
    start, end = T0 + HOUR, T0 + DAYS * DAY_MS
    before = evaluate_range(trip.source, expr, start, end, step)
    _same(before, evaluate_range(trip.restored, expr, start, end, step))
    assert isinstance(before, InstantVector) and before.present.any()
    if expr.startswith("max_over_time(http"):  # day 0 answered from rollups in both stores
        assert before.present[:, :23].all()


def test_promql_instant_queries_answer_as_before(trip: RoundTrip) -> None:
    for at in (T0 + DAY_MS + 2 * HOUR, T0 + 3 * DAY_MS + 50 * 60_000):
        for expr in (
            "queue_depth",
            "http_requests_total[10m]",
            "sum(rate(http_requests_total[5m]))",
        ):
            before = evaluate_instant(trip.source, expr, at)
            after = evaluate_instant(trip.restored, expr, at)
            if isinstance(before, InstantVector):
                _same(before, after)
            else:  # a range vector: the raw points
                assert before.labels == after.labels  # type: ignore[union-attr]
                assert [t.tolist() for t in before.ts] == [t.tolist() for t in after.ts]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["orders", "revenue", "buyers", "queue"])
def test_kpi_values_are_the_same(trip: RoundTrip, name: str) -> None:
    def values(store: Storage) -> list[tuple[int, float | None]]:
        kpis = KpiEvaluator(store, trip.catalog, FakeClock(NOW))
        by = ("plan",) if name == "buyers" else ()
        series = kpis.series(name, T0, T0 + DAYS * DAY_MS, by=by)
        return [(p.start_ms, p.value) for p in series.points]

    before = values(trip.source)
    assert before == values(trip.restored)
    assert any(v for _, v in before)


def test_restoring_twice_adds_nothing(trip: RoundTrip) -> None:
    stats = trip.restored.stats()
    again = restore_archive(archivable(trip.restored), trip.export.directory, now_ms=NOW)
    assert (again.samples_added, again.events_added, again.rollups_added) == (0, 0, 0)
    assert again.samples_present == 2 * 3 * 1440 and again.events_present == 160
    trip.restored.compact(NOW)
    after = trip.restored.stats()
    assert (after.samples, after.events, after.series) == (
        stats.samples,
        stats.events,
        stats.series,
    )


def test_a_changed_file_is_refused_by_name_and_nothing_is_written(
    trip: RoundTrip, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(trip.export.directory, damaged)
    victim = damaged / "events" / "day=2026-11-21" / "part-0.parquet"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    fresh = open_store(tmp_path / "fresh", NOW)
    try:
        with pytest.raises(ArchiveError, match="events/day=2026-11-21/part-0.parquet: checksum"):
            restore_archive(archivable(fresh), damaged, now_ms=NOW)
        stats = fresh.stats()
        assert (stats.series, stats.samples, stats.events) == (0, 0, 0)
    finally:
        fresh.close()


def test_an_archive_directory_is_never_overwritten(trip: RoundTrip) -> None:
    with pytest.raises(BadDataError, match="already holds an archive"):
        export_archive(archivable(trip.source), trip.export.directory, {}, now_ms=NOW)


def test_a_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    fresh = open_store(tmp_path / "fresh", NOW)
    try:
        with pytest.raises(ArchiveError, match="no manifest"):
            restore_archive(archivable(fresh), tmp_path, now_ms=NOW)
    finally:
        fresh.close()


# --- the retention hook -------------------------------------------------------------------
#: Raw samples older than two days go: days 0 and 1 of the data.
TWO_DAYS_RAW = RetentionPolicy(raw_ms=NOW - (T0 + 2 * DAY_MS) - HOUR, rollups_ms=1000 * DAY_MS,
                               events_ms=1000 * DAY_MS)  # fmt: skip


def _sample_count(store: Storage) -> int:
    ids = [i for i in store.lookup_series(list(SERIES)) if i is not None]
    return len(store.read_samples(ids, 0, NOW).ts)


def test_retention_archives_the_days_it_deletes_first(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "data")
    registry = CollectorRegistry()
    archiver = RetentionArchiver(tmp_path / "archives", registry)
    try:
        total = _sample_count(store)
        archived_maintenance(store, FakeClock(NOW), TWO_DAYS_RAW, archiver)
        kept = _sample_count(store)
    finally:
        store.close()
    (run,) = list((tmp_path / "archives").iterdir())
    manifest = read_manifest(run)
    days = sorted({f.span.start_ms for f in manifest.files if f.kind is DataClass.SAMPLES})
    assert days == [T0, T0 + DAY_MS]  # the two whole days retention dropped, no more
    assert kept == total - manifest.rows(DataClass.SAMPLES) and kept == 2 * 2 * 1440
    assert registry.get_sample_value("opsmetrics_archive_runs_total", {"outcome": "ok"}) == 1
    back = open_store(tmp_path / "back", NOW)
    try:
        restore_archive(archivable(back), run, now_ms=NOW)
        assert _sample_count(back) == total - kept
    finally:
        back.close()


def test_retention_deletes_nothing_when_the_archive_fails(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "data")
    (tmp_path / "not-a-dir").write_text("a file where the archive directory should be")
    registry = CollectorRegistry()
    archiver = RetentionArchiver(tmp_path / "not-a-dir", registry)
    try:
        total = _sample_count(store)
        archived_maintenance(store, FakeClock(NOW), TWO_DAYS_RAW, archiver)
        assert _sample_count(store) == total
    finally:
        store.close()
    assert registry.get_sample_value("opsmetrics_archive_runs_total", {"outcome": "failed"}) == 1
    held = registry.get_sample_value("opsmetrics_retention_held", {"reason": "io_error"})
    assert held == 1


# --- the manifest and the value columns -----------------------------------------------------
def _edited_copy(trip: RoundTrip, tmp_path: Path, edit: dict[str, object]) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(trip.export.directory, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc.update(edit)
    (copy / "manifest.json").write_text(json.dumps(doc))
    return copy


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"format_version": 2}, "format_version 2: this opsmetrics reads version 1"),
        ({"format": "something-else"}, "format is 'something-else'"),
        ({"files": [{"path": "../../etc/passwd", "kind": "events", "start_ms": 0,
                     "end_ms": 1, "rows": 1, "bytes": 1, "sha256": "0"}]},
         "leaves the archive directory"),
    ],
)  # fmt: skip
def test_a_foreign_or_edited_manifest_is_refused(
    trip: RoundTrip, tmp_path: Path, edit: dict[str, object], message: str
) -> None:
    edited = _edited_copy(trip, tmp_path, edit)
    with pytest.raises(ArchiveError, match=re.escape(message)):
        read_manifest(edited)


#: NaN payloads (the stale marker, quiet and negative NaNs), -0.0 and +Inf, beside any bits.
SPECIAL_BITS = [STALE_NAN_BITS, 0x7FF8000000000000, 0xFFF8000000000001, 2**63, 0x7FF0000000000000]


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(SPECIAL_BITS) | st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_any_float64_bits_survive_a_parquet_file(bits: list[int]) -> None:
    values = np.array(bits, dtype=np.uint64).view(np.float64)
    value, nan_bits = value_columns(values)
    with tempfile.TemporaryDirectory() as tmp:
        files = ParquetFiles(Path(tmp))
        try:
            day = TimeRange(T0, T0 + DAY_MS)
            cols = {"value": value, "nan_bits": nan_bits}
            written = files.write(DataClass.SAMPLES, day, {"x": cols}, "SELECT * FROM x")
            got = files.read(written, "SELECT value, nan_bits FROM {file}")
        finally:
            files.close()
    back = values_from(got["value"], got["nan_bits"])
    assert back.view(np.uint64).tolist() == bits
