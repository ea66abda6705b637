"""What the ClickHouse backend adds for archives (storage/archive.py `ArchiveStore`).

Samples go through the SampleStore protocol as on DuckDB. Events come out with their stored
keys and go back in through the backend's own insert (props maps and numbers rebuilt from the
JSON), only under keys not stored yet; rollup buckets are inserted into the ReplacingMergeTree
tables, where they replace buckets of the same (series, bucket). ClickHouse has no table of
rollup spans (they follow from the sample partitions, clickhouse/partitions.py), so restored
spans are not recorded: a day restored with rollups but without raw samples is read raw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from opsmetrics.model import Event
from opsmetrics.storage.archive import (
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    Columns,
    DataClass,
    TimeRange,
)
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS, RollupRows, StoredEvent
from opsmetrics.storage.clickhouse.backend import ClickHouseStorage
from opsmetrics.storage.clickhouse.ddl import rollups_table
from opsmetrics.storage.clickhouse.schema import applied_version

_MS = "toUnixTimestamp64Milli(ts)"
#: min() of an empty table is NULL with this setting (else 0).
_NULL_FOR_EMPTY = {"aggregate_functions_null_for_empty": 1}
_OLDEST = {
    DataClass.SAMPLES: ["SELECT min(ts) FROM samples"],
    DataClass.EVENTS: [f"SELECT min({_MS}) FROM events"],
    DataClass.ROLLUPS: [f"SELECT min(bucket) FROM {rollups_table(w)}" for w in ROLLUP_WIDTHS_MS],
}
#: Columns of the rollups tables → the RollupRows field each is inserted from.
_ROLLUP_FIELDS = {"series_id": "series_ids", "bucket": "bucket", **ROLLUP_COLUMNS}


class ClickHouseArchive:
    """ArchiveStore over a ClickHouseStorage (its client)."""

    def __init__(self, store: ClickHouseStorage) -> None:
        self._store = store
        self._ch = store._ch

    def schema_version(self) -> int:
        return applied_version(self._ch)

    def oldest_ms(self, kind: DataClass) -> int | None:
        found = [self._ch.command(sql, settings=_NULL_FOR_EMPTY) for sql in _OLDEST[kind]]
        known = [int(v) for v in found if v is not None and str(v) != "\\N"]
        return min(known) if known else None

    def export_events(self, start_ms: int, end_ms: int) -> Columns:
        rows = self._ch.query(
            f"SELECT key, id, name, {_MS}, entity, value, props_json FROM events FINAL "
            "WHERE ts >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
            "AND ts < fromUnixTimestamp64Milli({hi:Int64}, 'UTC') ORDER BY ts, key",
            parameters={"lo": start_ms, "hi": end_ms},
        ).result_columns
        if not rows:
            rows = [[] for _ in EVENT_COLUMNS]
        return _event_columns(rows)

    def restore_events(self, columns: Columns) -> int:
        keys = np.asarray(columns["key"], dtype=np.uint64)
        if not len(keys):
            return 0
        stored = self._stored_keys(columns)
        new = [i for i, k in enumerate(keys.tolist()) if k not in stored]
        self._store.insert_events([_stored_event(columns, i) for i in new])
        return len(new)

    def _stored_keys(self, columns: Columns) -> set[int]:
        ts = np.asarray(columns["ts"], dtype=np.int64)
        rows = self._ch.query(
            "SELECT DISTINCT key FROM events WHERE ts >= fromUnixTimestamp64Milli({lo:Int64}, "
            "'UTC') AND ts <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
            parameters={"lo": int(ts.min()), "hi": int(ts.max())},
        ).result_rows
        return {int(r[0]) for r in rows}

    def restore_rollups(self, width_ms: int, rows: RollupRows, spans: Sequence[TimeRange]) -> int:
        table = rollups_table(width_ms)
        stored = self._ch.query(
            f"SELECT series_id, bucket FROM {table} FINAL "
            "WHERE bucket >= {lo:Int64} AND bucket <= {hi:Int64}",
            parameters={"lo": int(rows.bucket.min()), "hi": int(rows.bucket.max())},
        ).result_rows
        known = {(int(s), int(b)) for s, b in stored}
        pairs = zip(rows.series_ids.tolist(), rows.bucket.tolist(), strict=True)
        added = sum(1 for p in pairs if p not in known)
        data = [getattr(rows, attr).tolist() for attr in _ROLLUP_FIELDS.values()]
        self._ch.insert(table, data, column_names=list(_ROLLUP_FIELDS), column_oriented=True)
        return added


def _event_columns(rows: Sequence[Sequence[object]]) -> Columns:
    key, ids, name, ts, entity, value, props = rows
    return {
        "key": np.asarray(key, dtype=np.uint64),
        "id": _objects(ids),
        "name": _objects(name),
        "ts": np.asarray(ts, dtype=np.int64),
        "entity": _objects(entity),
        "value": np.ma.MaskedArray(
            [np.nan if v is None else v for v in value], mask=[v is None for v in value]
        ),
        "props": _objects(props),
    }


def _objects(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _cell(columns: Columns, name: str, i: int) -> object:
    """Row i of a column; None where it is NULL (masked, or None in an object array)."""
    got = columns[name][i]
    return None if got is np.ma.masked else got


def _stored_event(columns: Columns, i: int) -> StoredEvent:
    value, event_id = _cell(columns, "value", i), _cell(columns, "id", i)
    event = Event(
        name=str(columns["name"][i]),
        ts=int(columns["ts"][i]),
        entity=str(columns["entity"][i]),
        value=None if value is None else float(value),  # type: ignore[arg-type]
        props=json.loads(str(columns["props"][i])),
        id=None if event_id is None else str(event_id),
    )
    return StoredEvent(int(columns["key"][i]), event)
