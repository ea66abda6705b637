"""Archives and ClickHouse (storage/clickhouse/archive.py), on ClickHouse's own engine (chdb):
a DuckDB store's archive restored into ClickHouse, and ClickHouse's archive restored into a
fresh DuckDB store, keep every sample bit for bit and every event; restoring twice adds
nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.storage.archive import DataClass, TimeRange, archivable
from opsmetrics.storage.archive_export import export_archive
from opsmetrics.storage.archive_restore import restore_archive
from opsmetrics.storage.base import DAY_MS, Storage
from opsmetrics.storage.clickhouse import ClickHouseStorage
from opsmetrics.storage.clickhouse.connect import ClickHouse, Target
from tests.archive_data import DAYS, NOW, SERIES, T0, filled_store
from tests.clickhouse_engine import ch_database, chdb_client, chdb_path  # noqa: F401
from tests.stores import open_store

EVERYTHING = dict.fromkeys(DataClass, TimeRange(0, NOW))


def clickhouse(path: Path, database: str) -> ClickHouseStorage:
    target = Target("chdb", database, path=str(path))
    return ClickHouseStorage(ClickHouse(chdb_client(path, database), target), now_ms=NOW)


def contents(store: Storage) -> tuple[list[list[int]], list[object]]:
    ids = store.lookup_series(list(SERIES))
    bits = []
    for sid in ids:
        assert sid is not None
        got = store.read_samples([sid], 0, NOW)
        bits.append(got.ts.tolist() + got.values.view(np.uint64).tolist())
    return bits, list(store.read_events(None, 0, NOW))


def test_duckdb_to_clickhouse_and_back(
    tmp_path: Path,
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
) -> None:
    source = filled_store(tmp_path / "source")
    ch = clickhouse(chdb_path, ch_database)
    back = open_store(tmp_path / "back", NOW)
    try:
        expected = contents(source)
        export_archive(archivable(source), tmp_path / "from-duckdb", EVERYTHING, now_ms=NOW)
        first = restore_archive(archivable(ch), tmp_path / "from-duckdb", now_ms=NOW)
        assert first.events_added == 160 and first.samples_added == 3 * DAYS * 1440 - 3 * 1440
        assert contents(ch) == expected
        again = restore_archive(archivable(ch), tmp_path / "from-duckdb", now_ms=NOW)
        assert (again.samples_added, again.events_added) == (0, 0)
        # Compaction rebuilt the buckets of the restored days: the archive's replace them.
        assert again.rollups_added == 0 and again.rollups_present == first.rollups_present > 0
        assert contents(ch) == expected

        manifest = export_archive(archivable(ch), tmp_path / "from-ch", EVERYTHING, now_ms=NOW)
        assert manifest.manifest.backend == "clickhouse"
        restore_archive(archivable(back), tmp_path / "from-ch", now_ms=NOW)
        assert contents(back) == expected
        expr, start, end = "rate(http_requests_total[5m])", T0 + 3_600_000, T0 + DAYS * DAY_MS
        a = evaluate_range(source, expr, start, end, 300_000, use_rollups=False)
        b = evaluate_range(back, expr, start, end, 300_000, use_rollups=False)
        assert isinstance(a, InstantVector) and isinstance(b, InstantVector)
        assert a.present.any() and np.array_equal(a.values[a.present], b.values[b.present])
    finally:
        source.close()
        ch.close()
        back.close()


def test_clickhouse_reports_nothing_stored_as_no_oldest_time(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
) -> None:
    ch = clickhouse(chdb_path, ch_database)
    try:
        archive = archivable(ch).archive
        assert [archive.oldest_ms(k) for k in DataClass] == [None, None, None]
    finally:
        ch.close()
