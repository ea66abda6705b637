"""ClickHouse storage for samples and events, shared by several nodes.

Tables (ddl.py): `samples` (ReplacingMergeTree by (metric, series_id, ts), daily partitions),
`series` (ReplacingMergeTree by (metric, id), labels as a Map), `metadata`, `annotations`,
`rollups_300s`/`rollups_3600s`, `sample_partitions` (compaction records) and the event tables
of `ClickHouseEvents`. Series ids are `series_id(labels)`, so nodes agree without asking each
other; writes are idempotent without reads (deduplication tokens, ReplacingMergeTree, FINAL
reads). There are no cross-table transactions: `write` checks the batch first, then inserts
table by table (series before samples), and a failed write is repaired by writing it again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from opsmetrics.model import (
    Annotation,
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
    ROLLUP_WIDTHS_MS,
    RetentionPolicy,
    RetentionResult,
    RollupRows,
    StorageStats,
    WriteBatch,
)
from opsmetrics.storage.clickhouse import partitions as parts
from opsmetrics.storage.clickhouse import quality_queries, rollups, samples
from opsmetrics.storage.clickhouse.connect import ClickHouse
from opsmetrics.storage.clickhouse.ddl import rollups_table, ttl_statements
from opsmetrics.storage.clickhouse.events import ClickHouseEvents
from opsmetrics.storage.clickhouse.heads import HeadCache
from opsmetrics.storage.clickhouse.schema import apply_migrations
from opsmetrics.storage.clickhouse.series import (
    SeriesCache,
    matcher_sql,
    rows_to_series,
)
from opsmetrics.storage.quality_records import NameCount
from opsmetrics.storage.series_id import series_id


class ClickHouseStorage(ClickHouseEvents):
    """The DataStore protocol over one ClickHouse database: the SampleStore here, the
    EventStore inherited from ClickHouseEvents (events.py) on the same client."""

    def __init__(self, ch: ClickHouse, *, now_ms: int, late_window_ms: int = 3_600_000) -> None:
        self._ch = ch
        self._late_window_ms = late_window_ms
        super().__init__(ch.client)
        self._series = SeriesCache()
        self._heads = HeadCache()
        self._ttl_applied: list[str] = []
        self._lock = threading.Lock()
        apply_migrations(ch, ClickHouseEvents.schema(), now_ms)

    @property
    def idempotent_writes(self) -> bool:
        return True

    def close(self) -> None:
        self._ch.close()

    def sample_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        return quality_queries.sample_counts(self._ch.client, start_ms, end_ms, width_ms)

    # --- series -------------------------------------------------------------------------
    def lookup_series(self, labels: Sequence[Labels]) -> list[int | None]:
        missing = [series_id(lbl) for lbl in labels if self._series.id_of(lbl) is None]
        self._series.fill(self._ch, missing)
        return [self._series.id_of(lbl) for lbl in labels]

    def allocate_series_ids(self, labels: Sequence[Labels]) -> list[int]:
        return [series_id(lbl) for lbl in labels]

    def series_count(self, metric: str) -> int:
        sql = "SELECT uniqExact(id) FROM series WHERE metric = {m:String}"
        return int(self._ch.command(sql, parameters={"m": metric}))

    def labels_of(self, series_id: int) -> Labels:
        (labels,) = self.labels_of_many([series_id])
        return labels

    def labels_of_many(self, series_ids: Sequence[int]) -> list[Labels]:
        self._series.fill(self._ch, series_ids)
        out = []
        for i in series_ids:
            labels = self._series.labels_of(int(i))
            if labels is None:
                raise KeyError(i)
            out.append(labels)
        return out

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        params: dict[str, Any] = {}
        where = matcher_sql(matchers, params)
        sql = f"SELECT DISTINCT id, labels FROM series WHERE {where}"
        if start_ms is not None and end_ms is not None:
            params.update(lo=start_ms, hi=end_ms)
            in_range = (
                "SELECT DISTINCT series_id FROM samples "
                f"WHERE {matcher_sql(matchers, params, metric_only=True)} "
                "AND ts >= {lo:Int64} AND ts <= {hi:Int64} "
                f"AND series_id IN (SELECT id FROM series WHERE {where})"
            )
            sql += f" AND id IN ({in_range})"
        found = rows_to_series(self._ch.query(sql + " ORDER BY id", parameters=params).result_rows)
        self._series.add(found)
        return found

    def label_names(self) -> list[str]:
        rows = self._ch.query(
            "SELECT DISTINCT arrayJoin(mapKeys(labels)) AS k FROM series ORDER BY k"
        ).result_rows
        return [str(r[0]) for r in rows]

    def label_values(self, name: str) -> list[str]:
        rows = self._ch.query(
            "SELECT DISTINCT labels[{n:String}] AS v FROM series "
            "WHERE mapContains(labels, {n:String}) AND v != '' ORDER BY v",
            parameters={"n": name},
        ).result_rows
        return [str(r[0]) for r in rows]

    def series_heads(self, series_ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        ids = np.asarray(series_ids, dtype=np.int64)
        unknown = self._heads.unknown(ids)
        if len(unknown):
            got = samples.read_heads(self._ch, self._metrics(unknown.tolist()), unknown.tolist())
            values = samples.values_from(got["value"], got["nan_bits"])
            self._heads.update(got["series_id"], got["ts"], values)
        return self._heads.get(ids)

    def _metrics(self, ids: Sequence[int]) -> list[str] | None:
        """The metrics of these series, for the samples' order key; None if one is unknown."""
        self._series.fill(self._ch, ids)
        names = [self._series.metric_of(int(i)) for i in ids]
        return None if any(n is None for n in names) else [n for n in names if n is not None]

    # --- writing ------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            return
        metrics = self._check(batch)
        self._insert_series(batch.new_series)
        if len(batch.ts):
            samples.insert(self._ch, metrics, batch.series_ids, batch.ts, batch.values)
        self._insert_metadata(batch.metadata)
        self._insert_annotations(batch.annotations)
        if batch.events:
            self.insert_events(batch.events)
        self._series.add(batch.new_series)
        if len(batch.ts):
            self._heads.advance(batch.series_ids, batch.ts, batch.values)

    def _check(self, batch: WriteBatch) -> list[str]:
        """The metric of every sample row; ValueError before anything is written if a new
        series has an id that is not its label hash or a sample names an unknown series."""
        for s in batch.new_series:
            if s.id != series_id(s.labels):
                raise ValueError(f"series {s.id} is not the id of its labels {s.labels}")
        if not len(batch.ts):
            return []
        known = {s.id: metric_name(s.labels) for s in batch.new_series}
        unique = np.unique(batch.series_ids).tolist()
        self._series.fill(self._ch, [i for i in unique if i not in known])
        for i in unique:
            if i not in known:
                name = self._series.metric_of(i)
                if name is None:
                    raise ValueError(f"samples for series {i}, which is not stored or new")
                known[i] = name
        return [known[i] for i in batch.series_ids.tolist()]

    def _insert_series(self, series: list[Series]) -> None:
        if not series:
            return
        ids = [s.id for s in series]
        self._ch.insert(
            "series",
            [ids, [metric_name(s.labels) for s in series], [dict(s.labels) for s in series]],
            column_names=["id", "metric", "labels"],
            column_oriented=True,
            settings={"insert_deduplication_token": samples.content_token("series", ids)},
        )

    def _insert_metadata(self, meta: list[MetricMetadata]) -> None:
        if meta:
            latest = {m.metric: m for m in meta}
            rows = [[m.metric, m.type.value, m.help, m.unit] for m in latest.values()]
            self._ch.insert("metadata", rows, column_names=["metric", "type", "help", "unit"])

    def _insert_annotations(self, annotations: list[Annotation]) -> None:
        if annotations:
            latest = {a.id: a for a in annotations}
            rows = [[a.id, a.ts, a.end, a.title, list(a.tags), a.text] for a in latest.values()]
            names = ["id", "ts", "end_ts", "title", "tags", "text"]
            self._ch.insert("annotations", rows, column_names=names)

    # --- reading samples ----------------------------------------------------------------
    def existing_samples(
        self, series_ids: Int64Array, ts: Int64Array
    ) -> tuple[np.ndarray, Float64Array]:
        found = np.zeros(len(ts), dtype=bool)
        values = np.full(len(ts), np.nan)
        if not len(ts):
            return found, values
        ids = np.unique(series_ids).tolist()
        got = samples.read_points(self._ch, self._metrics(ids), series_ids, ts)
        stored = samples.values_from(got["value"], got["nan_bits"])
        at = {
            (s, t): k
            for k, (s, t) in enumerate(
                zip(got["series_id"].tolist(), got["ts"].tolist(), strict=True)
            )
        }
        for i, key in enumerate(zip(series_ids.tolist(), ts.tolist(), strict=True)):
            k = at.get(key)
            if k is not None:
                found[i], values[i] = True, stored[k]
        return found, values

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        ids = sorted({int(i) for i in series_ids})
        if not ids:
            return SampleRows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        got = samples.read(self._ch, self._metrics(ids), ids, start_ms, end_ms)
        return SampleRows(
            got["series_id"], got["ts"], samples.values_from(got["value"], got["nan_bits"])
        )

    def metadata(self, metric: str | None = None) -> list[MetricMetadata]:
        sql = "SELECT metric, type, help, unit FROM metadata FINAL"
        if metric is not None:
            sql += " WHERE metric = {m:String}"
        rows = self._ch.query(sql + " ORDER BY metric", parameters={"m": metric or ""})
        return [MetricMetadata(r[0], MetricType(r[1]), r[2], r[3]) for r in rows.result_rows]

    def read_annotations(self, start_ms: int, end_ms: int) -> list[Annotation]:
        rows = self._ch.query(
            "SELECT id, ts, title, end_ts, tags, text FROM annotations FINAL "
            "WHERE ts <= {hi:Int64} AND coalesce(end_ts, ts) >= {lo:Int64} ORDER BY ts, id",
            parameters={"lo": start_ms, "hi": end_ms},
        ).result_rows
        return [
            Annotation(id=r[0], ts=r[1], title=r[2], end=r[3], tags=list(r[4]), text=r[5])
            for r in rows
        ]

    # --- maintenance --------------------------------------------------------------------
    def compact(self, now_ms: int) -> int:
        """OPTIMIZE … FINAL each closed partition that is new or changed, then rebuild its
        rollups from the merged rows; returns how many partitions that was."""
        todo = parts.to_compact(self._ch, now_ms - self._late_window_ms)
        for part in todo:
            parts.compact(self._ch, part, now_ms)
            rollups.rebuild(self._ch, part.start_ms, part.end_ms)
        return len(todo)

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        return rollups.read(self._ch, series_ids, start_ms, end_ms, width_ms)

    def rollup_spans(self) -> list[tuple[int, int]]:
        return parts.covered_spans(parts.states(self._ch))

    def apply_retention(self, now_ms: int, policy: RetentionPolicy) -> RetentionResult:
        """Set the tables' TTLs from the policy, then drop the partitions it expires now."""
        self._set_ttl(now_ms, policy)
        dropped, deleted = parts.drop_before(self._ch, "samples", "ts", now_ms - policy.raw_ms)
        expired_rollups = sum(
            parts.drop_before(self._ch, rollups_table(w), "bucket", now_ms - policy.rollups_ms)[1]
            for w in ROLLUP_WIDTHS_MS
        )
        events = self.delete_events_before(now_ms - policy.events_ms)
        return RetentionResult(deleted, events, dropped, expired_rollups)

    def _set_ttl(self, now_ms: int, policy: RetentionPolicy) -> None:
        server_ms = int(self._ch.command("SELECT toUnixTimestamp64Milli(now64(3))"))
        statements = ttl_statements(policy, skew_ms=server_ms - now_ms)
        with self._lock:
            if statements == self._ttl_applied:
                return
            for sql in statements:
                # The drops below remove what expired; no rewrite of every part now.
                self._ch.command(sql, settings={"materialize_ttl_after_modify": 0})
            self._ttl_applied = statements

    def stats(self) -> StorageStats:
        states = parts.states(self._ch)
        compacted = [p for p in states if p.compacted_block is not None]
        head = sum(p.rows for p in states if not p.clean)
        size = self._ch.command(
            "SELECT sum(bytes_on_disk) FROM system.parts "
            "WHERE database = currentDatabase() AND active"
        )
        return StorageStats(
            bytes_on_disk=int(size or 0),
            wal_bytes=0,
            series=int(self._ch.command("SELECT uniqExact(id) FROM series")),
            samples=sum(p.rows for p in states),
            samples_head=head,
            events=self.count_events(),
            annotations=int(self._ch.command("SELECT count() FROM annotations FINAL")),
            partitions=len(compacted),
        )
