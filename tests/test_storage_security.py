"""Hostile label names and values round-trip exactly and never reach SQL text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsmetrics.model import Labels, Matcher, Series
from opsmetrics.storage import WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.duckdb.backend import DB_FILE

T0 = 1_767_225_600_000
NASTY = [
    "'; DROP TABLE series; --",
    '"; DROP TABLE samples_head; --',
    "a'b\"c`d\\e",
    "nul\x00byte",
    "\x00",
    "ünïcødé ✓ 指标 🔥",
    "\u202eright-to-left",
    "x" * 10_000,
    "$1 ? %s {0} :name",
    "samples_all",
]
TABLES = {
    "annotations",
    "events",
    "metadata",
    "leases",
    "partitions",
    "samples_head",
    "schema_migrations",
    "series",
    "tokens",
    "rollups_300s",
    "rollups_3600s",
    "rollup_spans",
    "rollup_backlog",
    "kpi_versions",
    "manual_kpi_values",
    "alert_notifications",
    "alert_notification_outcomes",
    "alert_silences",
    "alert_acks",
    "alert_timeline",
    "alert_actions",
    "initiatives",
    "kpi_reviews",
    "source_cursors",
    "source_runs",
    "report_runs",
    "report_deliveries",
    "report_schedules",
}
hostile = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=300))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStorage]:
    s = DuckDBStorage(tmp_path / "data", now_ms=T0)
    yield s
    s.close()


def write_one(store: DuckDBStorage, labels: Labels, value: float) -> int:
    (sid,) = store.allocate_series_ids([labels])
    store.write(
        WriteBatch(
            new_series=[Series(sid, labels)],
            series_ids=np.array([sid], np.int64),
            ts=np.array([T0], np.int64),
            values=np.array([value]),
        )
    )
    return sid


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {str(r[0]) for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=hostile.filter(lambda n: n != "__name__"), value=hostile)
def test_hostile_labels_round_trip(store: DuckDBStorage, name: str, value: str) -> None:
    labels = tuple(sorted({"__name__": "hostile", name: value}.items()))
    known = store.lookup_series([labels])[0]
    sid = known if known is not None else write_one(store, labels, 1.0)
    found = store.select_series([Matcher.of(name, "=", value)])
    assert sid in [s.id for s in found]
    assert all(s.labels == labels for s in found if s.id == sid)
    assert value in store.label_values(name)
    assert name in store.label_names()
    assert store.labels_of(sid) == labels
    assert store.read_samples([sid], T0, T0).values.tolist() == [1.0]
    assert table_names(store._cursor()) >= TABLES


def test_hostile_labels_survive_reopen_and_schema_is_intact(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0)
    written = {}
    for i, text in enumerate(NASTY):
        labels = tuple(sorted({"__name__": text, f"l{i}": text, "v": text}.items()))
        written[write_one(store, labels, float(i))] = labels
    store.close()
    store = DuckDBStorage(tmp_path / "data", now_ms=T0)
    try:
        assert {sid: store.labels_of(sid) for sid in written} == written
        assert store.label_values("v") == sorted(NASTY)
        for sid, labels in written.items():
            matchers = [Matcher.of(n, "=", v) for n, v in labels]
            assert [s.id for s in store.select_series(matchers)] == [sid]
    finally:
        store.close()
    con = duckdb.connect(str(tmp_path / "data" / DB_FILE), read_only=True)
    try:
        assert table_names(con) == TABLES
        assert con.execute("SELECT count(*) FROM series").fetchall() == [(len(NASTY),)]
    finally:
        con.close()
