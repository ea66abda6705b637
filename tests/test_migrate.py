"""`opsmetrics storage migrate` (ingest/migrate.py): everything moves, an interrupted run
resumes without copying a row twice, and the counts are verified.

DuckDB → DuckDB here; DuckDB → ClickHouse's engine and state → PostgreSQL run in
tests/test_two_nodes.py, which has those backends up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from opsmetrics.ingest.migrate import Checkpoint, migrate_data, migrate_state
from opsmetrics.model import Annotation, Event, MetricMetadata, MetricType, Series
from opsmetrics.storage.alert_records import (
    AckRow,
    NotificationFilter,
    NotificationOutcome,
    NotificationRecord,
    SilenceRow,
)
from opsmetrics.storage.base import DAY_MS, KpiVersion, StoredEvent, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.kpi_records import ManualKpiValue
from tests.storage_contract import NOW, T0, bits, labels

DAYS = 5


def fill(store: DuckDBStorage) -> tuple[int, int]:
    """Three series over five days (with NaN payloads), events each day; returns counts."""
    sets = [labels("http_requests_total", code=c) for c in ("200", "500")] + [labels("up")]
    ids = store.allocate_series_ids(sets)
    rng = np.random.default_rng(3)
    samples = events = 0
    for day in range(DAYS):
        ts = T0 + day * DAY_MS + np.arange(0, DAY_MS, 600_000, dtype=np.int64)
        values = rng.normal(size=len(ts))
        values[::50] = np.nan
        new = [Series(i, s) for i, s in zip(ids, sets, strict=True)] if day == 0 else []
        evs = [
            StoredEvent(day * 100 + k, Event("signup", int(ts[k]), f"u{k}", 1.0, {"d": day}))
            for k in range(7)
        ]
        store.write(
            WriteBatch(
                new_series=new,
                series_ids=np.repeat(np.array(ids, np.int64), len(ts)),
                ts=np.tile(ts, len(ids)),
                values=np.tile(values, len(ids)),
                events=evs,
            )
        )
        samples += len(ts) * len(ids)
        events += len(evs)
    store.write(
        WriteBatch(
            annotations=[Annotation("d1", T0 + 5, "deploy", None, ["api"], "v1")],
            metadata=[MetricMetadata("up", MetricType.GAUGE, "target up", "")],
        )
    )
    return samples, events


def dump(store: DuckDBStorage) -> dict[tuple[tuple[str, str], ...], list[tuple[int, int]]]:
    from opsmetrics.ingest.migrate import ALL_SERIES

    out = {}
    for s in store.select_series(ALL_SERIES):
        rows = store.read_samples([s.id], 0, 2**62)
        out[s.labels] = list(zip(rows.ts.tolist(), bits(rows.values), strict=True))
    return out


class Interrupt(Exception):
    pass


def test_everything_moves_and_an_interrupted_run_resumes(tmp_path: Path) -> None:
    src = DuckDBStorage(tmp_path / "src", now_ms=NOW)
    dst = DuckDBStorage(tmp_path / "dst", now_ms=NOW)
    try:
        samples, events = fill(src)
        cp_path = tmp_path / "cp.json"
        since, until = T0, T0 + DAYS * DAY_MS - 1

        def stop_after_two(phase: str, done: int, total: int) -> None:
            if phase == "samples and events" and done == 2:
                raise Interrupt

        with pytest.raises(Interrupt):
            migrate_data(
                src, dst, since_ms=since, until_ms=until,
                checkpoint=Checkpoint(cp_path, "a", "b"), progress=stop_after_two,
            )  # fmt: skip
        assert Checkpoint(cp_path, "a", "b").done == {T0, T0 + DAY_MS}
        with pytest.raises(ValueError, match="belongs to a migration"):
            Checkpoint(cp_path, "a", "other")
        report = migrate_data(
            src, dst, since_ms=since, until_ms=until,
            checkpoint=Checkpoint(cp_path, "a", "b"), progress=lambda *_: None,
        )  # fmt: skip
        assert report.mismatches == []
        assert report.copied.samples == samples - 2 * samples // DAYS  # the rest, once
        assert dump(dst) == dump(src)  # every sample once, bit-exact
        assert len(dst.read_events(None, 0, 2**62)) == events
        assert [a.id for a in dst.read_annotations(0, 2**62)] == ["d1"]
        assert dst.metadata("up") == src.metadata("up")
    finally:
        src.close()
        dst.close()


def test_a_day_redone_after_a_crash_is_not_doubled(tmp_path: Path) -> None:
    """The crash came after the destination committed a day but before the checkpoint."""
    src = DuckDBStorage(tmp_path / "src", now_ms=NOW)
    dst = DuckDBStorage(tmp_path / "dst", now_ms=NOW)
    try:
        fill(src)
        since, until = T0, T0 + DAYS * DAY_MS - 1
        migrate_data(
            src, dst, since_ms=since, until_ms=until,
            checkpoint=Checkpoint(tmp_path / "one.json", "a", "b"), progress=lambda *_: None,
        )  # fmt: skip
        cp = Checkpoint(tmp_path / "two.json", "a", "b")
        cp.mark(T0)  # resumed: day 2 onwards were "lost" from the checkpoint
        report = migrate_data(
            src, dst, since_ms=since, until_ms=until, checkpoint=cp, progress=lambda *_: None
        )
        assert report.mismatches == []
        assert report.copied.samples == 0  # each redone day found its rows there already
        assert dump(dst) == dump(src)
    finally:
        src.close()
        dst.close()


def test_state_moves_once(tmp_path: Path) -> None:
    src = DuckDBStorage(tmp_path / "src", now_ms=NOW)
    dst = DuckDBStorage(tmp_path / "dst", now_ms=NOW)
    try:
        src.record_kpi_version(KpiVersion("mrr", 1, "h1", "{}", "", "ana", T0))
        src.record_kpi_version(KpiVersion("mrr", 2, "h2", "{}", "+x", "ana", T0 + 1))
        src.record_manual_kpi_value(ManualKpiValue("nps", T0, 41.0, "bo", "survey", T0 + 9))
        src.save_silence(SilenceRow("s1", "[]", T0, T0 + DAY_MS, "bo", "maint", T0))
        src.save_ack(AckRow("fp1", "bo", "on it", T0))
        rec = NotificationRecord(
            "n1", "{}", "g", "default", "ops", "notify", "pending", "c", ("fp1",), ("Down",),
            "{}", T0,
        )  # fmt: skip
        src.record_notifications([rec, rec.__class__(**{**_fields(rec), "id": "n2"})])
        src.finish_notifications([NotificationOutcome("n1", "delivered", 1, 200, "", T0 + 2)])
        for _ in range(2):
            out = migrate_state(src, dst, lambda *_: None)
        assert out["kpi_versions"] == out["notifications"] == out["tokens"] == 0  # second run
        assert [v.version for v in dst.kpi_versions("mrr")] == [1, 2]
        assert [m.value for m in dst.manual_kpi_values("nps", 0, 2**62)] == [41.0]
        assert dst.silences() == src.silences() and dst.acks() == src.acks()
        log = {r.id: r.status for r in dst.notifications(NotificationFilter(limit=10))}
        assert log == {"n1": "delivered", "n2": "pending"}
    finally:
        src.close()
        dst.close()


def _fields(rec: NotificationRecord) -> dict[str, object]:
    return {name: getattr(rec, name) for name in rec.__dataclass_fields__}
