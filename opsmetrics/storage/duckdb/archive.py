"""What the DuckDB backend adds for archives (storage/archive.py `ArchiveStore`).

Columns go in and out as registered numpy arrays; nothing of the archive ever becomes SQL
text. The files themselves are written and read by storage/archive_files.py: this instance
runs with external access off.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import duckdb
import numpy as np

from opsmetrics.storage.archive import EVENT_COLUMNS, Columns, DataClass, TimeRange
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS, RollupRows
from opsmetrics.storage.duckdb import rollups
from opsmetrics.storage.duckdb.backend import DuckDBStorage
from opsmetrics.storage.duckdb.sql import scalar

_OLDEST = {
    # A partition's start bounds its rows from below: enough for day-sized export pieces.
    DataClass.SAMPLES: "SELECT least((SELECT min(ts) FROM samples_head), "
    "(SELECT min(start_ms) FROM partitions WHERE row_count > 0))",
    DataClass.EVENTS: "SELECT min(ts) FROM events",
    DataClass.ROLLUPS: "SELECT least("
    + ", ".join(f"(SELECT min(bidx) * {w} FROM {rollups.table(w)})" for w in ROLLUP_WIDTHS_MS)
    + ")",
}


class DuckDBArchive:
    """ArchiveStore over a DuckDBStorage: its cursor and its locked transactions."""

    def __init__(self, store: DuckDBStorage) -> None:
        self._store = store

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._store._cursor()

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._store._transaction()

    def _maintenance(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        # Rollup spans are cached by the backend: forget them with the commit.
        return self._store._maintenance()

    def schema_version(self) -> int:
        return int(scalar(self._cursor(), "SELECT max(version) FROM schema_migrations"))

    def oldest_ms(self, kind: DataClass) -> int | None:
        got = scalar(self._cursor(), _OLDEST[kind])
        return None if got is None else int(got)

    def export_events(self, start_ms: int, end_ms: int) -> Columns:
        got = (
            self._cursor()
            .execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
                "WHERE ts >= ? AND ts < ? ORDER BY ts, key",
                [start_ms, end_ms],
            )
            .fetchnumpy()
        )
        return dict(got)

    def restore_events(self, columns: Columns) -> int:
        with self._transaction() as cur:
            cur.register("restored_events", columns)
            try:
                added = scalar(
                    cur,
                    f"INSERT OR IGNORE INTO events SELECT {', '.join(EVENT_COLUMNS)} "
                    "FROM restored_events",
                )
            finally:
                cur.unregister("restored_events")
        return int(added or 0)

    def restore_rollups(self, width_ms: int, rows: RollupRows, spans: Sequence[TimeRange]) -> int:
        target, w = rollups.table(width_ms), int(width_ms)
        with self._maintenance() as cur:
            cur.register("restored_rollups", _rollup_columns(rows))
            try:
                replaced = scalar(
                    cur,
                    f"DELETE FROM {target} t USING restored_rollups r "
                    f"WHERE t.series_id = r.series_id AND t.bidx = r.bucket // {w}",
                )
                written = scalar(
                    cur,
                    f"INSERT INTO {target} SELECT {rollups.encoded_sql(w)} "
                    "FROM restored_rollups ORDER BY series_id, bucket",
                )
            finally:
                cur.unregister("restored_rollups")
            for span in spans:  # built_ms: restored, not built; the span's end stands in
                cur.execute(
                    "INSERT OR IGNORE INTO rollup_spans VALUES (?, ?, ?)",
                    [span.start_ms, span.end_ms, span.end_ms],
                )
        return int(written or 0) - int(replaced or 0)


def _rollup_columns(rows: RollupRows) -> Columns:
    """The aggregates `rollups.encoded_sql` reads, by its names."""
    return {
        "series_id": rows.series_ids.astype(np.uint32),
        "bucket": rows.bucket,
        "min_v": rows.min,
        "max_v": rows.max,
        "sum_v": rows.sum,
        "n": rows.count,
        "first_v": rows.first,
        "first_ts": rows.first_ts,
        "last_v": rows.last,
        "last_ts": rows.last_ts,
        "inc": rows.increase,
        "nonfinite": rows.nonfinite,
    }
