"""Archives of samples, events and rollups: what a backend hands over, and the shared shapes.

An archive is a directory of Parquet files, one per data class and UTC day
(`samples/day=2026-11-30/part-0.parquet`, `events/…`, `rollups/…`), and a `manifest.json`
that names each file with its rows and sha256 (storage/archive_files.py writes and checks
them). Export and restore (archive_export.py, archive_restore.py) work over the store
protocols plus the few methods of `ArchiveStore` below, which only a backend can answer
quickly: the stored event keys, the oldest timestamp of each class, and writing rollup buckets
back. Columns travel as numpy arrays (masked where a value is NULL), never as SQL text.

Samples carry their labels, not the source's series ids: a restore maps labels to the target
store's ids (storage/series_id.py on a shared backend, compact ids on DuckDB). A NaN value is
NULL in `value` with its exact bits in `nan_bits`, as the DuckDB store keeps it, so stale
markers survive the round trip bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np

from opsmetrics.errors import ConfigError
from opsmetrics.model import Labels
from opsmetrics.storage.base import DAY_MS, RollupRows, SampleStore, Storage
from opsmetrics.storage.composite import DataStore

#: One column per name; NULLs are masked entries (numpy.ma) or None in object arrays.
Columns = dict[str, np.ndarray]

#: The columns of an events file, in order (the events table's, with props as JSON text).
EVENT_COLUMNS = ("key", "id", "name", "ts", "entity", "value", "props")


#: The aggregate columns of a rollups file → the RollupRows field each holds (after `width_ms`,
#: `metric`, `labels` and `bucket`).
ROLLUP_COLUMNS = {
    "min_v": "min",
    "max_v": "max",
    "sum_v": "sum",
    "n": "count",
    "first_v": "first",
    "first_ts": "first_ts",
    "last_v": "last",
    "last_ts": "last_ts",
    "inc": "increase",
    "nonfinite": "nonfinite",
}
_INTEGER_FIELDS = frozenset({"count", "first_ts", "last_ts", "nonfinite"})


class DataClass(Enum):
    SAMPLES = "samples"
    EVENTS = "events"
    ROLLUPS = "rollups"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start_ms, end_ms), in ms since the epoch."""

    start_ms: int
    end_ms: int

    def days(self) -> Iterator[TimeRange]:
        """The range cut at UTC midnights: one piece per day it touches."""
        day = self.start_ms // DAY_MS * DAY_MS
        while day < self.end_ms:
            yield TimeRange(max(day, self.start_ms), min(day + DAY_MS, self.end_ms))
            day += DAY_MS


class ArchiveStore(Protocol):
    """What a data backend adds so that its data can be archived and restored."""

    def schema_version(self) -> int:
        """The version of the backend's schema (its last migration)."""
        ...

    def oldest_ms(self, kind: DataClass) -> int | None:
        """The oldest timestamp stored of that class (for rollups, a bucket start)."""
        ...

    def export_events(self, start_ms: int, end_ms: int) -> Columns:
        """EVENT_COLUMNS of the events with start <= ts < end, sorted by (ts, key)."""
        ...

    def restore_events(self, columns: Columns) -> int:
        """Insert the events whose key is not stored yet; returns how many were new."""
        ...

    def restore_rollups(self, width_ms: int, rows: RollupRows, spans: Sequence[TimeRange]) -> int:
        """Store buckets of one width, replacing stored ones of the same series and start, and
        mark `spans` as having rollups; returns how many buckets were new.

        The archive's buckets win: they were built from every sample, while a bucket rebuilt
        here may straddle a day whose raw samples had expired before the export."""
        ...


@dataclass(frozen=True, slots=True)
class Archivable:
    """A data store and its ArchiveStore: what export and restore work on."""

    samples: SampleStore
    archive: ArchiveStore
    backend: str


def archivable(storage: Storage | DataStore) -> Archivable:
    """The data store behind `storage`, if its backend can be archived."""
    # Imported here: the backends' archive modules import this one.
    from opsmetrics.storage.clickhouse.archive import ClickHouseArchive
    from opsmetrics.storage.clickhouse.backend import ClickHouseStorage
    from opsmetrics.storage.duckdb.archive import DuckDBArchive
    from opsmetrics.storage.duckdb.backend import DuckDBStorage

    data = getattr(storage, "data", storage)  # SplitStorage: the data half
    if isinstance(data, DuckDBStorage):
        return Archivable(data, DuckDBArchive(data), "duckdb")
    if isinstance(data, ClickHouseStorage):
        return Archivable(data, ClickHouseArchive(data), "clickhouse")
    raise ConfigError(
        f"archives are not supported by this data store ({type(data).__name__}); archive "
        "from a DuckDB or ClickHouse data store"
    )


def rollup_rows(series_ids: np.ndarray, bucket: np.ndarray, columns: Columns) -> RollupRows:
    """RollupRows from the ROLLUP_COLUMNS of a rollups file."""
    fields: dict[str, Any] = {
        attr: np.asarray(columns[col], np.int64 if attr in _INTEGER_FIELDS else np.float64)
        for col, attr in ROLLUP_COLUMNS.items()
    }
    return RollupRows(series_ids=series_ids, bucket=bucket, **fields)


def labels_to_json(labels: Labels) -> str:
    """A series' labels as a JSON object (sorted by name, as Labels are)."""
    return json.dumps(dict(labels), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def labels_from_json(text: str) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in json.loads(text).items()))


def value_columns(values: np.ndarray) -> tuple[np.ma.MaskedArray, np.ndarray]:
    """`value` (NULL where NaN) and `nan_bits` (the NaN's bits, else 0) of float64 values."""
    nan = np.isnan(values)
    bits = np.where(nan, values.view(np.uint64), np.uint64(0))
    return np.ma.MaskedArray(values, mask=nan), bits


def values_from(value: np.ndarray, nan_bits: np.ndarray) -> np.ndarray:
    """Float64 values back bit-exactly from `value_columns`' two columns."""
    out = np.asarray(np.ma.getdata(value), dtype=np.float64).copy()
    mask = np.ma.getmaskarray(value)
    out.view(np.uint64)[mask] = np.asarray(nan_bits, dtype=np.uint64)[mask]
    return out
