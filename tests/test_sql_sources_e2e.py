"""SQL sources against real databases: PostgreSQL 15 and MariaDB started from Debian's packages
(tests/postgres_server.py, tests/mariadb_server.py), and a real opsmetrics server SIGKILLed in
the middle of a run, and watching a source database that goes away and comes back."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from opsmetrics.catalog.sources import SqlSource, load_sources
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.sql_sources import SourceRunner
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.duckdb.backend import DuckDBStorage
from opsmetrics.storage.postgres.store import PostgresStateStore
from opsmetrics.storage.source_records import SourceCursor, SourceRun
from tests.mariadb_server import PASSWORD as MARIA_PASSWORD
from tests.mariadb_server import MariaDBServer, mariadb_server  # noqa: F401 - a fixture
from tests.postgres_server import PASSWORD as PG_PASSWORD
from tests.postgres_server import PostgresServer, create_database
from tests.server import ServerProcess, wait_until

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
T0 = NOW - 3_600_000  # the orders' updated_at: one a second from here
ROWS = 60
#: A column that takes `seconds` per row to compute (its argument depends on the row, so
#: PostgreSQL calls pg_sleep for each row rather than once).
SLOW = ", (SELECT orders.id FROM pg_sleep({seconds} + 0 * orders.id)) AS slow"
ENV = {"SHOP_PG_PASSWORD": PG_PASSWORD, "SHOP_MARIA_PASSWORD": MARIA_PASSWORD}


def at(i: int) -> datetime:
    return datetime.fromtimestamp((T0 + i * 1000) / 1000, UTC)


@pytest.fixture(scope="module")
def source_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own (one test stops it) with an `orders` table."""
    server = PostgresServer().init().start()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    with psycopg.connect(server.url("shop"), autocommit=True) as conn:
        # The status an enum, as shops' often are: psycopg reads it as text in text format
        # only (a binary cursor gives bytes for it, so storage/external/postgres.py has none).
        conn.execute("CREATE TYPE order_status AS ENUM ('paid', 'refunded')")
        conn.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id text, total_cents bigint, "
            "status order_status, updated_at timestamptz NOT NULL)"
        )
        # As a source table should have: the cursor column indexed, so rows stream in order
        # (without it PostgreSQL sorts, and computes every row before returning the first).
        conn.execute("CREATE INDEX orders_updated_at ON orders (updated_at)")
        add_orders(conn, 1, ROWS)
    try:
        yield server
    finally:
        server.remove()


def add_orders(conn: psycopg.Connection[Any], first: int, last: int) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, 'paid', %s)",
            [(i, f"cust-{i % 9}", 250 * i, at(i)) for i in range(first, last + 1)],
        )


def pg_source(server: PostgresServer, *, select: str = "", timeout: str = "30s") -> str:
    query = (
        f"SELECT id, customer_id, total_cents, status, updated_at{select} FROM orders "
        "WHERE updated_at > $cursor ORDER BY updated_at"
    )
    return textwrap.dedent(f"""\
        - name: shop_orders
          url: postgresql://postgres@127.0.0.1:{server.port}/shop
          password_env: SHOP_PG_PASSWORD
          interval: 1s
          timeout: {timeout}
          batch: 5
          query: "{query}"
          cursor: {{column: updated_at, initial: 2026-12-06T00:00:00Z}}
          emit:
            events: {{name: order, id: "order-{{id}}-{{status}}", entity: customer_id,
                     ts: updated_at, value: total_cents, props: [status, id]}}
        """)


KPIS = """\
- name: order_count
  title: Orders
  owner: sales
  unit: count
  direction: higher_is_better
  grain: day
  event: {name: order, agg: count}
"""


def config_with(tmp: Path, text: str, rules: str = "") -> Path:
    config = tmp / "config"
    (config / "sources").mkdir(parents=True, exist_ok=True)
    (config / "sources" / "shop.yaml").write_text(text)
    (config / "kpis").mkdir(exist_ok=True)
    (config / "kpis" / "shop.yaml").write_text(KPIS)
    if rules:
        (config / "rules").mkdir(exist_ok=True)
        (config / "rules" / "sources.yaml").write_text(rules)
    return config


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = open_services(Settings(data_dir=tmp_path / "data"), FakeClock(NOW))
    yield services
    services.close()


def runner(svc: Services, source: SqlSource) -> SourceRunner:
    return SourceRunner(source, svc.storage, svc.ingestor.write, svc.clock, ENV)


def order_ids(storage: Any) -> list[int]:
    got = storage.kpi_sql(
        "SELECT CAST(props->>'id' AS INTEGER) FROM v_events WHERE name = 'order' ORDER BY 1", {}
    )
    return [int(str(r[0])) for r in got.rows]


# --- PostgreSQL, in process ----------------------------------------------------------------------


def test_postgres_pull_reads_after_the_timestamp_cursor(
    svc: Services, source_pg: PostgresServer, tmp_path: Path
) -> None:
    (source,) = load_sources(config_with(tmp_path, pg_source(source_pg))).sources
    run = runner(svc, source).run()
    assert (run.rows, run.error) == (ROWS, "")
    assert order_ids(svc.storage) == list(range(1, ROWS + 1))
    cursor = svc.storage.source_cursor("shop_orders")
    assert cursor is not None and cursor.value == at(ROWS).isoformat()
    assert run.lag_ms == NOW - (T0 + ROWS * 1000)
    assert runner(svc, source).run().rows == 0


def test_postgres_statement_timeout_stops_a_slow_query(
    svc: Services, source_pg: PostgresServer, tmp_path: Path
) -> None:
    text = pg_source(source_pg, select=SLOW.format(seconds=0.4), timeout="1s")
    (source,) = load_sources(config_with(tmp_path, text)).sources
    run = runner(svc, source).run()
    assert "longer than the statement timeout (1s) and the source database stopped it" in run.error
    # The first batch (5 rows, 2 s) is past the timeout: nothing stored, the cursor unmoved.
    assert run.rows == 0 and svc.storage.source_cursor("shop_orders") is None


def test_postgres_wrong_type_names_the_column(
    svc: Services, source_pg: PostgresServer, tmp_path: Path
) -> None:
    text = pg_source(source_pg).replace("total_cents, status", "status AS total_cents, status")
    (source,) = load_sources(config_with(tmp_path, text)).sources
    run = runner(svc, source).run()
    assert "column 'total_cents': expected a number, got str 'paid' (row 0" in run.error


def test_postgres_session_is_read_only(
    svc: Services, source_pg: PostgresServer, tmp_path: Path
) -> None:
    with psycopg.connect(source_pg.url("shop"), autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION sneaky() RETURNS bigint LANGUAGE sql AS "
            "'DELETE FROM orders WHERE id > 1000000 RETURNING id'"
        )
    text = textwrap.dedent(f"""\
        - name: sneaky
          url: postgresql://postgres@127.0.0.1:{source_pg.port}/shop
          password_env: SHOP_PG_PASSWORD
          query: "SELECT sneaky() AS n"
          emit: {{samples: {{metric: deleted, value: n}}}}
        """)
    (source,) = load_sources(config_with(tmp_path, text)).sources
    run = runner(svc, source).run()
    assert "cannot execute DELETE in a read-only transaction" in run.error


# --- MariaDB, in process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maria(mariadb_server: MariaDBServer) -> MariaDBServer:  # noqa: F811
    con = mariadb_server.admin()
    with con.cursor() as cur:
        cur.execute(
            "CREATE TABLE shop.refunds (id BIGINT PRIMARY KEY, customer VARCHAR(20), "
            "amount DECIMAL(10, 2), created_at DATETIME(3) NOT NULL)"
        )
        cur.executemany(
            "INSERT INTO shop.refunds VALUES (%s, %s, %s, %s)",
            [(i, f"c{i % 4}", f"{i}.50", at(i).replace(tzinfo=None)) for i in range(1, 31)],
        )
    con.close()
    return mariadb_server


def maria_source(server: MariaDBServer, query: str, timeout: str = "30s") -> str:
    return textwrap.dedent(f"""\
        - name: refunds
          url: {server.url()}
          password_env: SHOP_MARIA_PASSWORD
          timeout: {timeout}
          batch: 7
          max_rows: 20
          query: "{query}"
          cursor: {{column: created_at, initial: 2026-12-06T00:00:00Z}}
          emit:
            events: {{name: order, id: "refund-{{id}}", entity: customer, ts: created_at,
                     value: amount, props: [id]}}
        """)


MARIA_QUERY = (
    "SELECT id, customer, amount, created_at FROM refunds WHERE created_at > $cursor "
    "ORDER BY created_at"
)


def test_mariadb_incremental_pulls_in_two_runs(
    svc: Services, maria: MariaDBServer, tmp_path: Path
) -> None:
    (source,) = load_sources(config_with(tmp_path, maria_source(maria, MARIA_QUERY))).sources
    first, second, third = (runner(svc, source).run() for _ in range(3))
    assert (first.rows, second.rows, third.rows, first.error) == (20, 10, 0, "")
    assert order_ids(svc.storage) == list(range(1, 31))
    got = svc.storage.kpi_sql("SELECT sum(value) FROM v_events", {})
    assert got.rows == [(sum(i + 0.5 for i in range(1, 31)),)]


def test_mariadb_max_statement_time_stops_a_slow_query(
    svc: Services, maria: MariaDBServer, tmp_path: Path
) -> None:
    slow = MARIA_QUERY.replace("FROM refunds", "FROM refunds, (SELECT SLEEP(3) AS s) AS slow")
    text = maria_source(maria, slow, timeout="500ms")
    (source,) = load_sources(config_with(tmp_path, text)).sources
    run = runner(svc, source).run()
    assert "longer than the statement timeout (0.5s)" in run.error
    assert run.rows == 0


def test_mariadb_wrong_type_names_the_column(
    svc: Services, maria: MariaDBServer, tmp_path: Path
) -> None:
    query = MARIA_QUERY.replace(
        "SELECT id, customer, amount", "SELECT id, customer, customer AS amount"
    )
    (source,) = load_sources(config_with(tmp_path, maria_source(maria, query))).sources
    run = runner(svc, source).run()
    assert "column 'amount': expected a number, got str 'c1' (row 0" in run.error


# --- a real server -------------------------------------------------------------------------------

RULES = """\
groups:
  - name: sources
    interval: 1s
    rules:
      - alert: SqlSourceDown
        expr: opsmetrics_source_up == 0
        labels: {severity: critical}
        annotations: {summary: "SQL source {{ $labels.source }} is down"}
"""


def api(srv: ServerProcess, path: str) -> Any:
    response = httpx.get(srv.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def source_state(srv: ServerProcess) -> dict[str, Any]:
    (source,) = api(srv, "/api/v1/sources")
    return dict(source)


def cursor_id(srv: ServerProcess) -> int:
    """How many orders the stored cursor is past (ids are one a second from T0)."""
    cursor = source_state(srv)["cursor"]
    if cursor is None:
        return 0
    return (round(datetime.fromisoformat(cursor["value"]).timestamp() * 1000) - T0) // 1000


def test_sigkill_mid_run_then_restart_stores_every_row_once(
    source_pg: PostgresServer, tmp_path: Path
) -> None:
    # Each row takes 0.05 s to read: a run of 60 rows lasts 3 s, and the kill lands while a
    # batch is being read, after some batches were stored and before the rest.
    slow = pg_source(source_pg, select=SLOW.format(seconds=0.05))
    config = config_with(tmp_path, slow)
    data = tmp_path / "data"
    srv = ServerProcess(data, config, env=ENV, now_ms=NOW).start()
    try:
        wait_until(lambda: 10 <= cursor_id(srv) < ROWS - 10, "the run to be part way")
    finally:
        srv.kill()
    again = ServerProcess(data, config, env=ENV, now_ms=NOW + 60_000).start()
    try:
        wait_until(lambda: cursor_id(again) == ROWS, "the run to finish after the restart")
        state = source_state(again)
        assert state["up"] is True and state["error"] is None
        assert state["tables"] == ["orders"] and "@" not in state["url"]
        lineage = api(again, "/api/v1/kpis/order_count")["lineage"]
        assert lineage["sources"] == [
            {
                "input": "order",
                "source": "shop_orders",
                "driver": "postgresql",
                "tables": ["orders"],
            }
        ]
    finally:
        again.stop()
    store = DuckDBStorage(data, now_ms=NOW + 120_000)
    try:
        assert order_ids(store) == list(range(1, ROWS + 1))  # no gap, no duplicate
    finally:
        store.close()


def test_a_source_database_going_away_alerts_and_resumes_from_the_cursor(
    source_pg: PostgresServer, tmp_path: Path
) -> None:
    config = config_with(tmp_path, pg_source(source_pg), RULES)
    srv = ServerProcess(tmp_path / "data", config, env=ENV, now_ms=NOW).start()
    try:
        wait_until(lambda: cursor_id(srv) == ROWS, "the first pull")
        source_pg.stop()
        try:
            wait_until(lambda: source_state(srv)["up"] is False, "the source to be down")
            assert "source database" in source_state(srv)["error"]
            firing = wait_until(lambda: _firing(srv), "SqlSourceDown to fire")
            assert firing["labels"]["source"] == "shop_orders"
            metrics = httpx.get(srv.url + "/metrics", timeout=10).text
            assert 'opsmetrics_source_up{source="shop_orders"} 0.0' in metrics
        finally:
            source_pg.start()
        with psycopg.connect(source_pg.url("shop"), autocommit=True) as conn:
            add_orders(conn, ROWS + 1, ROWS + 5)
        wait_until(lambda: cursor_id(srv) == ROWS + 5, "the pull to resume", timeout_s=60)
        state = source_state(srv)
        assert state["up"] is True and state["rows_total"] == ROWS + 5
    finally:
        srv.stop()
    store = DuckDBStorage(tmp_path / "data", now_ms=NOW + 120_000)
    try:
        assert order_ids(store) == list(range(1, ROWS + 6))
    finally:
        store.close()


def _firing(srv: ServerProcess) -> dict[str, Any] | None:
    alerts = api(srv, "/api/v1/alerts")["alerts"]
    return next(
        (
            a
            for a in alerts
            if a["labels"]["alertname"] == "SqlSourceDown" and a["state"] == "firing"
        ),
        None,
    )


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_state_stores_keep_cursors_and_sum_runs(
    backend: str, source_pg: PostgresServer, tmp_path: Path
) -> None:
    store: Any
    if backend == "postgres":
        store = PostgresStateStore(create_database(source_pg.url()), now_ms=NOW)
    else:
        store = DuckDBStorage(tmp_path / "data", now_ms=NOW)
    try:
        store.save_source_cursor(SourceCursor("a", "5", NOW))
        store.save_source_cursor(SourceCursor("a", "7", NOW + 1))
        store.record_source_run(SourceRun("a", NOW, NOW + 10, 5, lag_ms=3))
        store.record_source_run(SourceRun("a", NOW + 20, NOW + 30, 2, "down"))
        assert store.source_cursor("a") == SourceCursor("a", "7", NOW + 1)
        assert store.source_cursor("b") is None
        assert store.source_runs() == [
            SourceRun("a", NOW + 20, NOW + 30, 2, "down", None, 7, NOW + 10)
        ]
    finally:
        store.close()
