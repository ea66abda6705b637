"""SQL sources in process over SQLite files (catalog/sources.py, ingest/sql_sources.py): config
errors with file:line, incremental pulls, type errors naming the column, timeouts, samples.
PostgreSQL and MariaDB, and a real server killed mid-run: tests/test_sql_sources_e2e.py."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsmetrics.catalog.sources import SqlSource, load_sources
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.sql_sources import SourceRunner, SqlSourceCollector
from opsmetrics.model import Matcher
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
DAY = 86_400_000


def refunds_db(path: Path, rows: int, start: int = 1) -> None:
    """A `refunds` table: id, customer, amount in cents, reason, when (SQLite's text format)."""
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE IF NOT EXISTS refunds (id INTEGER PRIMARY KEY, customer TEXT, "
        "amount_cents INTEGER, reason TEXT, created_at TEXT)"
    )
    for i in range(start, start + rows):
        ts = f"2026-12-06 {i // 60 % 24:02d}:{i % 60:02d}:00"
        con.execute(
            "INSERT INTO refunds VALUES (?, ?, ?, ?, ?)", [i, f"c{i % 7}", 100 * i, "late", ts]
        )
    con.commit()
    con.close()


def update(path: Path, *statements: str) -> None:
    """Change rows of the source database between runs (a late update, a planted bad value)."""
    con = sqlite3.connect(path)
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


SOURCE = """\
- name: refunds
  url: sqlite:///shop.db
  interval: 1m
  query: |
    SELECT id, customer, amount_cents, reason, created_at FROM refunds
    WHERE {where} ORDER BY {order}
  cursor: {{column: {column}, initial: {initial}}}
  batch: {batch}
  max_rows: {max_rows}
  emit:
    events: {{name: refund, id: "refund-{{id}}", entity: customer, ts: created_at,
             value: amount_cents, props: [reason, id]}}
"""


def write_source(config: Path, **fields: object) -> SqlSource:
    values = {
        "where": "id > $cursor", "order": "id", "column": "id", "initial": 0, "batch": 10,
        "max_rows": 1000, **fields,
    }  # fmt: skip
    (config / "sources").mkdir(parents=True, exist_ok=True)
    (config / "sources" / "shop.yaml").write_text(SOURCE.format(**values))
    return load_sources(config).sources[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    refunds_db(path / "shop.db", 25)
    return path


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = open_services(Settings(data_dir=tmp_path / "data"), FakeClock(NOW))
    yield services
    services.close()


def runner(svc: Services, source: SqlSource) -> SourceRunner:
    return SourceRunner(source, svc.storage, svc.ingestor.write, svc.clock, {})


def refund_ids(svc: Services) -> list[int]:
    got = svc.storage.kpi_sql(
        "SELECT CAST(props->>'id' AS INTEGER) FROM v_events WHERE name = 'refund' ORDER BY 1", {}
    )
    return [int(str(r[0])) for r in got.rows]


def test_incremental_pulls_store_each_row_once_and_advance_the_cursor(
    svc: Services, config: Path
) -> None:
    source = write_source(config, max_rows=12)
    first = runner(svc, source).run()
    assert (first.rows, first.error) == (12, "")
    assert refund_ids(svc) == list(range(1, 13))
    assert svc.storage.source_cursor("refunds").value == "12"  # type: ignore[union-attr]
    second = runner(svc, source).run()
    assert second.rows == 12 and refund_ids(svc) == list(range(1, 25))
    refunds_db(config / "shop.db", 3, start=26)
    runner(svc, source).run()
    runner(svc, source).run()
    assert refund_ids(svc) == [*range(1, 26), 26, 27, 28]
    (run,) = svc.storage.source_runs()
    assert (run.rows, run.rows_total, run.last_success_ms) == (0, 28, NOW)


def test_a_re_read_from_an_older_cursor_stores_nothing_twice(svc: Services, config: Path) -> None:
    source = write_source(config)
    runner(svc, source).run()
    runner(svc, source).set_cursor(5)  # as if the last batches were read but not stored
    again = runner(svc, source).run()
    assert again.rows == 20  # re-read: the ids make it harmless
    assert refund_ids(svc) == list(range(1, 26))


def test_a_timestamp_cursor_stops_only_after_a_group_of_equal_values(
    svc: Services, config: Path
) -> None:
    update(
        config / "shop.db",
        "UPDATE refunds SET created_at = '2026-12-06 00:00:30' WHERE id BETWEEN 3 AND 8",
        "UPDATE refunds SET created_at = '2026-12-06 00:00:00' WHERE id < 3",
    )
    source = write_source(
        config, where="created_at > $cursor", order="created_at, id", column="created_at",
        initial="2026-12-01T00:00:00Z", max_rows=4, batch=5,
    )  # fmt: skip
    run = runner(svc, source).run()
    assert run.rows == 8  # 4 asked for; the rest of the 00:00:30 group came along
    assert run.lag_ms == NOW - 1_796_515_230_000  # 2026-12-06 00:00:30 UTC
    cursor = svc.storage.source_cursor("refunds")
    assert cursor is not None and cursor.value == "2026-12-06T00:00:30+00:00"
    runs = [runner(svc, source).run().rows for _ in range(6)]
    assert runs == [4, 4, 4, 4, 1, 0]
    assert refund_ids(svc) == list(range(1, 26))


def test_a_wrong_column_type_names_the_column_and_stores_nothing(
    svc: Services, config: Path
) -> None:
    update(config / "shop.db", "UPDATE refunds SET amount_cents = 'twelve' WHERE id = 4")
    run = runner(svc, write_source(config, batch=10)).run()
    assert "column 'amount_cents': expected a number, got str 'twelve' (row 3" in run.error
    assert run.rows == 0 and refund_ids(svc) == []
    assert svc.storage.source_cursor("refunds") is None


def test_a_bad_row_in_a_later_batch_keeps_the_batches_before_it_and_their_cursor(
    svc: Services, config: Path
) -> None:
    """Batch 2 is written while batch 3 is read and converted: batch 3's bad row still leaves
    batch 2 stored with the cursor after it, and the error numbers the row in the whole run."""
    update(config / "shop.db", "UPDATE refunds SET amount_cents = 'twelve' WHERE id = 24")
    run = runner(svc, write_source(config, batch=10)).run()
    assert "column 'amount_cents': expected a number, got str 'twelve' (row 23" in run.error
    assert run.rows == 20 and refund_ids(svc) == list(range(1, 21))
    assert svc.storage.source_cursor("refunds").value == "20"  # type: ignore[union-attr]


def test_rows_out_of_cursor_order_are_refused(svc: Services, config: Path) -> None:
    run = runner(svc, write_source(config, order="id DESC")).run()
    assert "not in order of the cursor column 'id'" in run.error
    assert "ORDER BY id" in run.error


def test_a_missing_column_is_named_with_the_columns_returned(svc: Services, config: Path) -> None:
    source = write_source(config)
    text = (config / "sources" / "shop.yaml").read_text().replace("ts: created_at", "ts: made_at")
    (config / "sources" / "shop.yaml").write_text(text)
    run = runner(svc, load_sources(config).sources[0]).run()
    assert source.name == "refunds"
    assert "emit.events.ts: the query returns no column 'made_at'" in run.error
    assert "id, customer, amount_cents, reason, created_at" in run.error


def test_a_slow_query_is_stopped_at_the_timeout(svc: Services, config: Path) -> None:
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM n WHERE $cursor >= 0"
    )
    (config / "sources" / "slow.yaml").parent.mkdir(exist_ok=True)
    (config / "sources" / "slow.yaml").write_text(
        textwrap.dedent(f"""\
        - name: slow
          url: sqlite:///shop.db
          timeout: 500ms
          query: "{slow}"
          cursor: {{column: i, initial: 0}}
          emit: {{samples: {{metric: n, value: i}}}}
        """)
    )
    run = runner(svc, load_sources(config).named("slow")).run()  # type: ignore[arg-type]
    assert "longer than the statement timeout (0.5s)" in run.error


def test_samples_per_label_column(svc: Services, config: Path) -> None:
    (config / "sources").mkdir(exist_ok=True)
    (config / "sources" / "gauges.yaml").write_text(
        textwrap.dedent("""\
        - name: refund_totals
          url: sqlite:///shop.db
          query: SELECT customer, count(*) AS n, sum(amount_cents) AS cents FROM refunds
                 GROUP BY customer
          emit: {samples: {metric: refunds, value: [n, cents], labels: [customer]}}
        """)
    )
    source = load_sources(config).named("refund_totals")
    assert source is not None
    run = runner(svc, source).run()
    assert (run.rows, run.error) == (7, "")
    series = svc.storage.select_series([Matcher.of("customer", "=", "c0")])
    names = sorted(dict(s.labels)["__name__"] for s in series)
    assert names == ["refunds_cents", "refunds_n"]
    rows = svc.storage.read_samples([s.id for s in series], 0, NOW + 1)
    assert sorted(rows.values.tolist()) == [3.0, (7 + 14 + 21) * 100.0]


def test_the_collector_exports_its_self_metrics(svc: Services, config: Path) -> None:
    source = write_source(config)
    collector = SqlSourceCollector(load_sources(config), svc.storage, svc.ingestor.write, svc.clock)
    run = asyncio.run(collector.run_once(source))
    assert run.rows == 25
    text = {
        (m.name, s.name, s.labels.get("source")): s.value
        for m in collector.metrics.collect()
        for s in m.samples
    }
    assert text[("opsmetrics_source_up", "opsmetrics_source_up", "refunds")] == 1.0
    assert text[("opsmetrics_source_rows", "opsmetrics_source_rows_total", "refunds")] == 25.0
    up = svc.storage.select_series([Matcher.of("__name__", "=", "opsmetrics_source_up")])
    assert [dict(s.labels)["source"] for s in up] == ["refunds"]


def test_a_sqlite_file_in_the_data_directory(svc: Services, config: Path) -> None:
    """sqlite:///{data_dir}/…: the server's data directory (the demo keeps its shop database
    there); a command that knows no data directory says so instead of guessing."""
    write_source(config)
    text = (config / "sources" / "shop.yaml").read_text()
    (config / "sources" / "shop.yaml").write_text(
        text.replace("sqlite:///", "sqlite:///{data_dir}/")
    )
    source = load_sources(config).sources[0]
    data = svc.settings.data_dir
    refunds_db(data / "shop.db", 4, start=100)
    run = SourceRunner(source, svc.storage, svc.ingestor.write, svc.clock, {}, data).run()
    assert (run.rows, run.error) == (4, "")
    assert refund_ids(svc) == [100, 101, 102, 103]
    unknown = runner(svc, source).run()
    assert (
        unknown.error == "sqlite:///{data_dir}/shop.db: no data directory is known to this command"
    )


# --- config errors -------------------------------------------------------------------------


def problems_for(config: Path, text: str) -> list[str]:
    (config / "sources").mkdir(exist_ok=True)
    (config / "sources" / "bad.yaml").write_text(textwrap.dedent(text))
    return [p for p in validate_config_dir(config) if "sources/bad.yaml" in p]


def test_an_inline_password_is_refused_with_the_fix(config: Path) -> None:
    found = problems_for(
        config,
        """\
        - name: shop
          url: postgresql://reporting:hunter2@db.internal/shop
          query: SELECT 1 AS one
          emit: {samples: {metric: one, value: one}}
        """,
    )
    assert len(found) == 1
    assert found[0].endswith(
        "bad.yaml:2: [0].url: the URL holds a password; remove it from the URL and set "
        "password_env: VARIABLE (or password_file: PATH) instead"
    )


def test_config_problems_have_file_line_and_field(config: Path) -> None:
    found = problems_for(
        config,
        """\
        - name: orders
          url: mysql://reader@db/shop
          password_env: DB_PW
          password_file: missing.txt
          query: SELECT id FROM orders WHERE id > 0
          cursor: {column: id, initial: yesterday}
          emit:
            events: {name: order, ts: updated_at, id: "order-{id:>5}"}
        """,
    )
    text = "\n".join(found)
    assert "bad.yaml:6: [0].cursor.initial: 'yesterday' is neither a timestamp" in text
    assert "bad.yaml:8: [0].emit.events.id: {id:>5} is not a column name" in text
    with pytest.raises(ConfigError):
        load_sources(config)


def test_only_a_leading_data_dir_placeholder_is_allowed(config: Path) -> None:
    found = problems_for(
        config,
        """\
        - name: shop
          url: sqlite:///db/{data}/shop.db
          query: SELECT 1 AS one
          emit: {samples: {metric: one, value: one}}
        """,
    )
    assert [p.split(": ", 1)[1] for p in found] == [
        "[0].url: only a leading {data_dir}/ is replaced: sqlite:///{data_dir}/file.db"
    ]


def test_cursor_and_placeholder_go_together(config: Path) -> None:
    found = problems_for(
        config,
        """\
        - name: orders
          url: sqlite:///shop.db
          password_env: DB_PW
          password_file: missing.txt
          query: SELECT id, ts FROM orders
          cursor: {column: id, initial: 0}
          emit: {events: {name: order, ts: ts}}
        """,
    )
    text = "\n".join(found)
    assert "bad.yaml:5: [0].query: a source with a cursor compares it in the query" in text
    assert "bad.yaml:4: [0].password_file: give password_env or password_file, not both" in text
