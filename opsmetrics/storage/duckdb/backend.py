"""DuckDB storage: the embedded default.

Layout: `series` (label set ↔ id), `samples_head` (recent samples in arrival order) and one
table per closed time partition, `samples_p<start_ms>`, rewritten sorted by (series, ts) so it
compresses and range-scans well. Label names and values only ever reach SQL as parameters or
registered arrays, never as SQL text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from opsmetrics.errors import CorruptDataError, StorageUnavailableError
from opsmetrics.model import (
    Float64Array,
    Int64Array,
    Labels,
    Matcher,
    MetricMetadata,
    MetricType,
    SampleRows,
    Series,
    metric_name,
)
from opsmetrics.storage.base import (
    RetentionPolicy,
    RetentionResult,
    RollupRows,
    StorageStats,
    WriteBatch,
)
from opsmetrics.storage.diskspace import DiskGuard, DiskStatus
from opsmetrics.storage.duckdb import partitions as parts
from opsmetrics.storage.duckdb import rollups
from opsmetrics.storage.duckdb.alert_store import AlertTables
from opsmetrics.storage.duckdb.connection import INSTANCE_SETTINGS, Connection, unreadable
from opsmetrics.storage.duckdb.event_queries import EventQueries
from opsmetrics.storage.duckdb.events import EventTables
from opsmetrics.storage.duckdb.experiment_queries import ExperimentQueries
from opsmetrics.storage.duckdb.initiative_store import InitiativeTables
from opsmetrics.storage.duckdb.kpi_queries import KpiQueries
from opsmetrics.storage.duckdb.kpi_versions import KpiVersionTable
from opsmetrics.storage.duckdb.migrations import apply_migrations
from opsmetrics.storage.duckdb.quality_queries import QualityQueries
from opsmetrics.storage.duckdb.read_cache import ReadCache
from opsmetrics.storage.duckdb.report_store import ReportTables
from opsmetrics.storage.duckdb.review_store import ReviewTables
from opsmetrics.storage.duckdb.sample_reads import head_min, read_ids
from opsmetrics.storage.duckdb.source_store import SourceTables
from opsmetrics.storage.duckdb.sql import first_row
from opsmetrics.storage.duckdb.sql_sandbox import INSTANCE_CONFIG
from opsmetrics.storage.duckdb.timeline_store import TimelineTables
from opsmetrics.storage.index import SeriesIndex
from opsmetrics.storage.spool import SpoolStats

DB_FILE = "opsmetrics.duckdb"


class DuckDBStorage(
    EventTables,
    EventQueries,
    ExperimentQueries,
    KpiVersionTable,
    KpiQueries,
    AlertTables,
    TimelineTables,
    InitiativeTables,
    ReportTables,
    ReviewTables,
    QualityQueries,
    SourceTables,
):
    """The Storage protocol over one DuckDB file in the data directory."""

    #: One writer process: ingest reads before writing and refuses changed values.
    idempotent_writes = False

    def __init__(
        self,
        data_dir: Path,
        *,
        now_ms: int,
        partition_ms: int = 86_400_000,
        late_window_ms: int = 3_600_000,
        disk: DiskGuard | None = None,
        memory_limit: str = "",
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self._partition_ms = partition_ms
        self._late_window_ms = late_window_ms
        self._index = SeriesIndex()
        self._cache = ReadCache()
        # Without a guard (tests, tools): no reserve, but a full disk is still reported.
        guard = disk or DiskGuard(data_dir, 0)
        config = {**INSTANCE_CONFIG, **INSTANCE_SETTINGS}
        if memory_limit:
            config["memory_limit"] = memory_limit
        connect = partial(_connect, config=config)
        self._db = Connection(self.path, connect, guard, self._cache.forget)
        try:
            apply_migrations(self._db.main, now_ms)
            verify_tables(self._db.main)
            self._load_index()
        except duckdb.Error as exc:
            self._db.close()
            raise unreadable(self.path, exc) from exc
        super().__init__(self._cursor)

    # --- connection handling ------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._db.cursor()

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._db.transaction()  # refused on a full disk: see connection.py

    @contextmanager
    def _maintenance(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction changing the head, partitions or rollups: the read cache forgets
        them before the commit (no reader caches the old state after it) and after it (nor
        one read from a snapshot taken just before it)."""
        try:
            with self._transaction() as cur:
                yield cur
                self._cache.forget()
        finally:
            self._cache.forget()

    def close(self) -> None:
        self._db.close()

    @property
    def disk(self) -> DiskGuard:
        return self._db.disk

    def disk_status(self) -> list[DiskStatus]:
        return [self._db.disk.status()]

    # --- series -------------------------------------------------------------------------
    def _load_index(self) -> None:
        rows = self._db.main.execute("SELECT id, labels FROM series").fetchall()
        self._index.add(Series(int(i), _labels_from_json(text)) for i, text in rows)
        heads = self._db.main.execute(
            "SELECT series_id, ts, value, nan_bits FROM samples_all "
            "QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY ts DESC) = 1"
        ).fetchnumpy()
        if len(heads["series_id"]):
            ids = np.asarray(heads["series_id"], dtype=np.int64)
            values = _values_from(heads["value"], heads["nan_bits"])
            self._index.update_heads(ids, np.asarray(heads["ts"], np.int64), values)

    def lookup_series(self, labels: Sequence[Labels]) -> list[int | None]:
        return self._index.lookup(labels)

    def allocate_series_ids(self, labels: Sequence[Labels]) -> list[int]:
        # One process owns the file: compact ids keep the in-memory head arrays dense.
        return self._index.allocate(len(labels))

    def series_count(self, metric: str) -> int:
        return self._index.series_count(metric)

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        found = self._index.select(matchers)
        if start_ms is None or end_ms is None or not found:
            return found
        ids = np.array([s.id for s in found], dtype=np.int64)
        heads, _ = self._index.heads(ids)
        # Series whose newest sample is older than the range cannot have samples in it.
        return [s for s, head in zip(found, heads, strict=True) if head >= start_ms]

    def label_names(self) -> list[str]:
        return self._index.label_names()

    def label_values(self, name: str) -> list[str]:
        return self._index.label_values(name)

    def series_heads(self, series_ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        return self._index.heads(series_ids)

    def labels_of(self, series_id: int) -> Labels:
        return self._index.labels_of(series_id)

    def labels_of_many(self, series_ids: Sequence[int]) -> list[Labels]:
        return [self._index.labels_of(int(i)) for i in series_ids]

    # --- writing ------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            return
        with self._transaction() as cur:
            self._insert_series(cur, batch.new_series)
            self._insert_samples(cur, batch)
            batch.duplicate_events = self.insert_events(cur, batch.events)
            self.insert_annotations(cur, batch.annotations)
            self._upsert_metadata(cur, batch.metadata)
        self._index.add(batch.new_series)
        self._index.update_heads(batch.series_ids, batch.ts, batch.values)

    def _insert_series(self, cur: duckdb.DuckDBPyConnection, series: list[Series]) -> None:
        if not series:
            return
        columns = {
            "id": np.array([s.id for s in series], dtype=np.uint32),
            "metric": _strings([metric_name(s.labels) for s in series]),
            "labels": _strings([_labels_to_json(s.labels) for s in series]),
        }
        cur.register("new_series", columns)
        try:
            cur.execute("INSERT INTO series SELECT id, metric, labels FROM new_series")
        finally:
            cur.unregister("new_series")

    def _insert_samples(self, cur: duckdb.DuckDBPyConnection, batch: WriteBatch) -> None:
        if not len(batch.ts):
            return
        self._cache.head_written(int(batch.ts.min()))  # before the commit: see read_cache.py
        bits = batch.values.view(np.uint64)
        rows = {
            "series_id": batch.series_ids.astype(np.uint32),
            "ts": batch.ts,
            "value": batch.values,  # NaN arrives as NULL, its bits go to nan_bits
            "nan_bits": np.where(np.isnan(batch.values), bits, np.uint64(0)),
        }
        cur.register("new_samples", rows)
        try:
            cur.execute("INSERT INTO samples_head SELECT * FROM new_samples")
        finally:
            cur.unregister("new_samples")

    def _upsert_metadata(self, cur: duckdb.DuckDBPyConnection, meta: list[MetricMetadata]) -> None:
        if not meta:
            return
        latest = {m.metric: m for m in meta}
        cur.executemany(
            "INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?)",
            [(m.metric, m.type.value, m.help, m.unit) for m in latest.values()],
        )

    # --- reading samples ----------------------------------------------------------------
    def existing_samples(
        self, series_ids: Int64Array, ts: Int64Array
    ) -> tuple[np.ndarray, Float64Array]:
        found = np.zeros(len(ts), dtype=bool)
        values = np.full(len(ts), np.nan)
        if not len(ts):
            return found, values
        cur = self._cursor()
        probe = {"i": np.arange(len(ts), dtype=np.int64), "sid": series_ids, "ts": ts}
        cur.register("probe", probe)
        try:
            got = cur.execute(
                "SELECT p.i, s.value, s.nan_bits FROM probe p JOIN samples_all s "
                "ON s.series_id = p.sid AND s.ts = p.ts"
            ).fetchnumpy()
        finally:
            cur.unregister("probe")
        idx = np.asarray(got["i"], dtype=np.int64)
        found[idx] = True
        values[idx] = _values_from(got["value"], got["nan_bits"])
        return found, values

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        if not len(series_ids):
            return _empty_rows()
        ids = np.unique(np.asarray(series_ids, dtype=np.int64))
        cur = self._cursor()
        # One snapshot for the partition list and the read: a compaction committing in
        # between cannot move rows out of our sight.
        cur.execute("BEGIN TRANSACTION")
        try:
            source = self._range_source(cur, ids, start_ms, end_ms)
            got = None if source is None else read_ids(cur, source, ids, start_ms, end_ms)
        finally:
            cur.execute("COMMIT")
        if got is None:
            return _empty_rows()
        return SampleRows(
            np.asarray(got["series_id"], dtype=np.int64),
            np.asarray(got["ts"], dtype=np.int64),
            _values_from(got["value"], got["nan_bits"]),
        )

    def _range_source(
        self, cur: duckdb.DuckDBPyConnection, ids: Int64Array, start_ms: int, end_ms: int
    ) -> str | None:
        """The SELECT over the head (if it reaches the range) and the overlapping partitions;
        None when neither can hold a row of the range."""
        head = end_ms >= self._cache.head_min(lambda: head_min(cur))
        spans = parts.overlapping(cur, start_ms, end_ms)
        if not head and not spans:
            return None
        plain = (
            self._cache.plain_tables(spans, lambda: parts.plain_tables(cur))
            if spans
            else frozenset[str]()
        )
        return parts.range_source(
            cur, int(ids[0]), int(ids[-1]), start_ms, end_ms, spans=spans, plain=plain, head=head
        )

    def metadata(self, metric: str | None = None) -> list[MetricMetadata]:
        sql = "SELECT metric, type, help, unit FROM metadata"
        params: list[Any] = []
        if metric is not None:
            sql += " WHERE metric = ?"
            params.append(metric)
        rows = self._cursor().execute(sql + " ORDER BY metric", params).fetchall()
        return [MetricMetadata(r[0], MetricType(r[1]), r[2], r[3]) for r in rows]

    # --- maintenance --------------------------------------------------------------------
    def compact(self, now_ms: int) -> int:
        cutoff = now_ms - self._late_window_ms
        done = 0
        for start in parts.closed_partitions_in_head(self._cursor(), cutoff, self._partition_ms):
            with self._maintenance() as cur:
                end = parts.compact_partition(cur, start, self._partition_ms, now_ms)
                rollups.rebuild(cur, start, end, now_ms)
            done += 1
        for start, end in rollups.backlog(self._cursor()):
            with self._maintenance() as cur:
                rollups.rebuild(cur, start, end, now_ms)
        return done

    def apply_retention(self, now_ms: int, policy: RetentionPolicy) -> RetentionResult:
        with self._maintenance() as cur:
            dropped, samples = parts.drop_expired(cur, now_ms - policy.raw_ms)
            events = self.delete_events_before(cur, now_ms - policy.events_ms)
            expired_rollups = rollups.drop_expired(cur, now_ms - policy.rollups_ms)
        return RetentionResult(samples, events, dropped, expired_rollups)

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        return rollups.read(self._cursor(), series_ids, start_ms, end_ms, width_ms)

    def rollup_spans(self) -> list[tuple[int, int]]:
        cur = self._cursor()
        spans = self._cache.stored_spans(lambda: rollups.stored_spans(cur))
        oldest = self._cache.head_min(lambda: head_min(cur))
        # Late samples waiting in the head for a compacted partition: see rollups.covered.
        return [(s, e) for s, e in spans if e <= oldest]

    def stats(self) -> StorageStats:
        cur = self._cursor()
        size = first_row(cur, "PRAGMA database_size")
        used = int(size[2]) * int(size[4])
        wal = self.path.with_name(self.path.name + ".wal")
        wal_bytes = os.path.getsize(wal) if wal.exists() else 0
        head, part_rows, partitions = parts.row_counts(cur)
        return StorageStats(
            bytes_on_disk=used,
            wal_bytes=wal_bytes,
            series=self._index.count(),
            samples=head + part_rows,
            samples_head=head,
            events=self.count_events(cur),
            annotations=self.count_annotations(cur),
            partitions=partitions,
        )

    def spool_stats(self) -> SpoolStats:
        return SpoolStats()  # writes go straight to the local file

    def checkpoint(self) -> None:
        self._db.checkpoint()


def _connect(path: Path, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StorageUnavailableError(
                f"{path} is in use by another process (is `opsmetrics serve` running?). "
                "Only the server opens the data file; talk to it over the API instead"
            ) from exc
        raise CorruptDataError(
            f"cannot open {path}: {exc}. Restore the file from a backup or move it away"
        ) from exc
    except duckdb.Error as exc:
        raise CorruptDataError(
            f"cannot open {path}: {exc}. The data file is damaged or not a DuckDB file; "
            "restore it from a backup or move it away to start empty"
        ) from exc


def verify_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every table once, so a damaged block fails now, not mid-query.

    DuckDB checks a block's checksum when it loads the block, which it does lazily; this scan
    makes every block load at start. Table names come from the catalog, never from users.
    """
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    for (name,) in tables:
        quoted = '"' + str(name).replace('"', '""') + '"'
        con.execute(f"SELECT count(*), max(hash(COLUMNS(*))) FROM {quoted}").fetchall()


def _values_from(values: Any, nan_bits: Any) -> Float64Array:
    """Rebuild float64 values bit-exactly: NULL values are NaNs whose bits are in nan_bits."""
    if isinstance(values, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(values)
        out = np.asarray(values.data, dtype=np.float64).copy()
        out.view(np.uint64)[mask] = np.asarray(nan_bits, dtype=np.uint64)[mask]
        return out
    return np.asarray(values, dtype=np.float64)


def _strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _empty_rows() -> SampleRows:
    return SampleRows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def _labels_to_json(labels: Labels) -> str:
    return json.dumps([list(p) for p in labels], ensure_ascii=False, separators=(",", ":"))


def _labels_from_json(text: str) -> Labels:
    return tuple((str(k), str(v)) for k, v in json.loads(text))
