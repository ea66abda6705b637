"""KPI reviews in both state stores (DuckDB and PostgreSQL, the `open_state` fixture of
tests/state_contract.py), a server on PostgreSQL state, and the cadence arithmetic."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from opsmetrics.catalog.kpi_model import Cadence
from opsmetrics.reports.reviews import due_after, human_duration
from opsmetrics.storage.postgres import PostgresStateStore
from opsmetrics.storage.review_records import KpiReview
from tests.conftest import FIXED_NOW
from tests.postgres_server import pg_state_url, postgres_url  # noqa: F401 - fixtures
from tests.server import ServerProcess
from tests.state_contract import T0, StateOpener, open_state  # noqa: F401 - a fixture
from tests.test_reviews import write_config

DAY = 86_400_000


def rev(
    id_: str, kpi: str, at: int, version: int | None = 2, value: float | None = 1.5
) -> KpiReview:
    return KpiReview(id_, kpi, at, "ana", f"note ü {id_}", version, "warning", value)


def test_reviews_come_back_newest_first_and_survive_reopening(
    open_state: StateOpener,  # noqa: F811
) -> None:
    store = open_state()
    assert store.kpi_reviews("mrr", 10) == [] and store.latest_reviews(["mrr"]) == {}
    rows = [rev("a", "mrr", T0), rev("c", "mrr", T0 + DAY), rev("b", "mrr", T0 + DAY),
            rev("d", "churn", T0 + 5, None, None)]  # fmt: skip
    for r in rows:
        store.record_review(r)
    with pytest.raises(ValueError, match="'a' is stored already"):
        store.record_review(rev("a", "other", T0))
    store.close()
    again = open_state()
    try:
        # Same ms: the larger id first, on both backends.
        assert [r.id for r in again.kpi_reviews("mrr", 10)] == ["c", "b", "a"]
        assert [r.id for r in again.kpi_reviews("mrr", 2)] == ["c", "b"]
        assert again.kpi_reviews("mrr", 10)[-1] == rows[0]
        latest = again.latest_reviews(["mrr", "churn", "nps"])
        assert latest == {"mrr": rows[1], "churn": rows[3]}
        assert again.latest_reviews([]) == {}
        assert again.kpi_reviews("other", 10) == []  # the refused one wrote nothing
    finally:
        again.close()


def test_a_server_on_postgresql_state_keeps_reviews(
    tmp_path: Path,
    pg_state_url: str,  # noqa: F811
) -> None:
    config = write_config(tmp_path)
    env = {"OPSMETRICS_STATE_URL": pg_state_url}
    srv = ServerProcess(tmp_path / "data", config_dir=config, env=env, now_ms=FIXED_NOW)
    srv.start(timeout=120)
    try:
        body = json.dumps({"author": "pg", "note": "on postgres"})
        r = httpx.post(f"{srv.url}/api/v1/kpis/orphan/reviews", content=body, timeout=30)
        assert r.status_code == 200, r.text
        got = httpx.get(f"{srv.url}/api/v1/kpis/orphan/reviews", timeout=30).json()["data"]
        assert [(x["author"], x["note"]) for x in got["reviews"]] == [("pg", "on postgres")]
        assert got["state"] == "reviewed"
    finally:
        srv.stop()
    # The review is in PostgreSQL, not in the data directory's DuckDB file.
    store = PostgresStateStore(pg_state_url, now_ms=FIXED_NOW)
    try:
        assert [r.author for r in store.kpi_reviews("orphan", 5)] == ["pg"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("start", "cadence", "due"),
    [
        ("2027-01-31T10:00:00+00:00", Cadence.MONTHLY, "2027-02-28T10:00:00+00:00"),
        ("2028-01-31T10:00:00+00:00", Cadence.MONTHLY, "2028-02-29T10:00:00+00:00"),
        ("2027-11-30T23:00:00+00:00", Cadence.QUARTERLY, "2028-02-29T23:00:00+00:00"),
        ("2027-12-31T23:59:00+00:00", Cadence.DAILY, "2028-01-01T23:59:00+00:00"),
        ("2027-03-25T12:00:00+00:00", Cadence.WEEKLY, "2027-04-01T12:00:00+00:00"),
    ],
)
def test_a_review_falls_due_one_calendar_period_later(
    start: str, cadence: Cadence, due: str
) -> None:
    ms = round(datetime.fromisoformat(start).timestamp() * 1000)
    assert due_after(ms, cadence) == round(datetime.fromisoformat(due).timestamp() * 1000)


def test_durations_read_as_plain_words() -> None:
    hour = 3_600_000
    assert human_duration(DAY + 60_000) == "1 day"
    assert human_duration(DAY + 4 * hour) == "1 day 4 h"
    assert human_duration(5 * DAY + 4 * hour) == "5 days"
    assert human_duration(2 * hour + 5 * 60_000) == "2 h 5 min"
    assert human_duration(5_000) == "1 min"


def test_a_weekly_review_keeps_its_wall_clock_time_across_dst() -> None:
    before = round(datetime.fromisoformat("2027-03-25T11:00:00+00:00").timestamp() * 1000)
    after = due_after(before, Cadence.WEEKLY, "Europe/Berlin")  # 12:00 CET → 12:00 CEST
    assert after - before == 7 * DAY - 3_600_000
