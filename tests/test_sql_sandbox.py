"""The `sql:` KPI sandbox (issue 17, docs/security.md): a KPI query reads the store's tables and
nothing else. Files (through replacement scans, globs and every reader function), the network,
ATTACH, COPY, SET, PRAGMA, LOAD/INSTALL, very long and deeply nested queries, too many rows and
queries that run forever are each refused or stopped with a message that names the KPI and the
fix, and the store answers a normal query afterwards. On both backends: DuckDB (a real file in
a temp dir) and ClickHouse's engine (chdb, in this process), and once through a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from clickhouse_connect.driver.client import Client

from opsmetrics.catalog.kpi_sql import SqlRefusedError, check_read_only
from opsmetrics.catalog.kpis import load_catalog
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError, UserError
from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import Event
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.kpi.sql_run import SqlKpiError
from opsmetrics.storage.base import StoredEvent, WriteBatch
from opsmetrics.storage.clickhouse.events import ClickHouseEvents
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.duckdb.sql_sandbox import run_sandboxed
from opsmetrics.storage.sql_sandbox import (
    SqlAccessError,
    SqlLimits,
    SqlRowLimitError,
    SqlTimeoutError,
)
from tests.clickhouse_engine import ch_client, ch_database, chdb_path  # noqa: F401
from tests.server import ServerProcess

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
HOUR = 3_600_000
#: A normal query; the store must answer it after every refusal.
COUNT = "SELECT count(*) AS value FROM v_events"
SHORT = SqlLimits(max_rows=10, timeout_s=0.5)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory of files the server can see: the sandbox must not read any of them."""
    d = tmp_path / "secret"
    d.mkdir()
    (d / "secret.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    (d / "rows.json").write_text(json.dumps([{"a": 1}, {"a": 2}]))
    (d / "rows.ndjson").write_text('{"a": 1}\n{"a": 2}\n')
    with duckdb.connect() as con:  # an instance of its own, with file access, to write it
        con.execute(f"COPY (SELECT range AS a FROM range(3)) TO '{d}/secret.parquet'")
    return d


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBStorage]:
    store = DuckDBStorage(tmp_path / "data", now_ms=NOW)
    event = Event("visit", NOW - HOUR, "u1")
    store.write(WriteBatch(events=[StoredEvent(event_key(event), event)]))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def clickhouse(ch_client: Client) -> ClickHouseEvents:  # noqa: F811
    for statement in ClickHouseEvents.schema():
        ch_client.command(statement)
    store = ClickHouseEvents(ch_client)
    event = Event("visit", NOW - HOUR, "u1")
    store.insert_events([StoredEvent(event_key(event), event)])
    return store


def still_works(store: DuckDBStorage | ClickHouseEvents) -> None:
    assert store.kpi_sql(COUNT, {}).rows == [(1,)]


# --- DuckDB: files and the network, whatever the query calls them ------------------------------
FILE_READS = [
    "SELECT count(*) AS value FROM '{d}/secret.csv'",
    "SELECT count(*) AS value FROM '{d}/*.csv'",
    "SELECT count(*) AS value FROM '{d}/**/*.csv'",
    "SELECT count(*) AS value FROM read_csv('/etc/passwd', header = false)",
    'SELECT count(*) AS value FROM "{d}/secret.csv"',
    "SELECT count(*) AS value FROM read_csv('{d}/secret.csv')",
    "SELECT count(*) AS value FROM read_csv_auto('{d}/*.csv')",
    "SELECT count(*) AS value FROM read_parquet('{d}/secret.parquet')",
    "SELECT count(*) AS value FROM '{d}/secret.parquet'",
    "SELECT count(*) AS value FROM read_json('{d}/rows.json')",
    "SELECT count(*) AS value FROM read_json_auto('{d}/rows.json')",
    "SELECT count(*) AS value FROM read_ndjson('{d}/rows.ndjson')",
    "SELECT count(*) AS value FROM read_ndjson_auto('{d}/rows.ndjson')",
    "SELECT count(*) AS value FROM read_text('/etc/passwd')",
    "SELECT count(*) AS value FROM read_blob('/etc/passwd')",
    "SELECT count(*) AS value FROM glob('{d}/*')",
    "SELECT count(*) AS value FROM sniff_csv('{d}/secret.csv')",
    "SELECT count(*) AS value FROM parquet_metadata('{d}/secret.parquet')",
    "SELECT count(*) AS value FROM parquet_schema('{d}/secret.parquet')",
    "SELECT count(*) AS value FROM parquet_file_metadata('{d}/secret.parquet')",
    "SELECT count(*) AS value FROM (SELECT * FROM v_events, '{d}/secret.csv')",
    "WITH x AS (SELECT * FROM '{d}/secret.csv') SELECT count(*) AS value FROM x",
    "SELECT count(*) AS value FROM 'http://127.0.0.1:9/x.csv'",
]


@pytest.mark.parametrize("template", FILE_READS)
def test_duckdb_refuses_every_file_and_network_read(
    duck: DuckDBStorage, files: Path, template: str
) -> None:
    with pytest.raises(SqlAccessError, match=r"^sql: the query reads a file, the network") as got:
        duck.kpi_sql(template.format(d=files), {})
    assert "v_events" in got.value.message  # what to read instead
    still_works(duck)


@pytest.mark.parametrize(
    "query",
    [
        "ATTACH '{d}/other.duckdb' AS other",
        "COPY (SELECT 1) TO '{d}/out.csv'",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "PRAGMA enable_profiling",
        "LOAD httpfs",
        "INSTALL httpfs",
        "CALL checkpoint()",
        "EXPORT DATABASE '{d}/dump'",
        "SELECT 1 AS value; COPY (SELECT 1) TO '{d}/out.csv'",
    ],
)
def test_duckdb_statements_other_than_a_select_do_not_run(
    duck: DuckDBStorage, files: Path, query: str
) -> None:
    """Past the checker too: wrapped as a subquery, only a SELECT parses."""
    before = sorted(p.name for p in files.iterdir())
    with pytest.raises(BadDataError, match=r"^sql: "):
        duck.kpi_sql(query.format(d=files), {})
    assert sorted(p.name for p in files.iterdir()) == before
    still_works(duck)


def test_the_instance_configuration_is_locked(duck: DuckDBStorage) -> None:
    got = duck.kpi_sql(
        "SELECT current_setting('enable_external_access') AS ext, "
        "current_setting('lock_configuration') AS locked, "
        "current_setting('autoload_known_extensions') AS autoload",
        {},
    )
    assert got.rows == [(False, True, False)]


# --- DuckDB: limits -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) AS value FROM range(10000000000)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
        "SELECT count(*) AS value FROM r",
        "SELECT count(*) AS value FROM range(100000) a, range(100000) b, range(100000) c",
    ],
)
def test_duckdb_stops_a_query_that_runs_forever(duck: DuckDBStorage, query: str) -> None:
    duck.sql_limits = SHORT
    with pytest.raises(SqlTimeoutError, match=r"ran longer than 0.5 s and was stopped") as got:
        duck.kpi_sql(query, {})
    assert "OPSMETRICS_SQL_KPI_TIMEOUT" in got.value.message
    still_works(duck)
    event = Event("visit", NOW, "u2")  # and it still writes
    duck.write(WriteBatch(events=[StoredEvent(event_key(event), event)]))
    assert duck.kpi_sql(COUNT, {}).rows == [(2,)]


def test_duckdb_refuses_more_rows_than_the_limit(duck: DuckDBStorage) -> None:
    duck.sql_limits = SHORT
    assert len(duck.kpi_sql("SELECT range AS value FROM range(10)", {}).rows) == 10
    with pytest.raises(SqlRowLimitError, match=r"more than 10 rows; aggregate it"):
        duck.kpi_sql("SELECT range AS value FROM range(11)", {})
    still_works(duck)


def test_duckdb_refuses_deep_nesting_with_advice_it_can_follow(duck: DuckDBStorage) -> None:
    deep = "SELECT " + "(" * 10_000 + "1" + ")" * 10_000 + " AS value"
    with pytest.raises(BadDataError, match=r"nests more than 1000 levels deep; flatten") as got:
        duck.kpi_sql(deep, {})
    assert "SET max_expression_depth" not in got.value.message
    still_works(duck)


def test_duckdb_answers_a_megabyte_of_sql(duck: DuckDBStorage) -> None:
    """Past the checker's length limit the engine still copes: a 1 MB IN list."""
    query = f"SELECT count(*) AS value FROM v_events WHERE 1 IN ({', '.join(['1'] * 350_000)})"
    assert len(query) > 1_000_000
    assert duck.kpi_sql(query, {}).rows == [(1,)]


# --- ClickHouse (chdb) --------------------------------------------------------------------------
CH_ACCESS = [
    "SELECT count() AS value FROM file('{d}/secret.csv', 'CSV')",
    "SELECT count() AS value FROM file('/etc/passwd', 'LineAsString')",
    "SELECT count() AS value FROM url('http://127.0.0.1:9/x.csv', 'CSV', 'a String')",
    "SELECT count() AS value FROM remote('127.0.0.1:9', system.one)",
    "SELECT count() AS value FROM s3('http://127.0.0.1:9/bucket/x.csv', 'CSV', 'a String')",
    "SELECT count() AS value FROM executable('cat /etc/passwd', 'TSV', 'x String')",
    "SELECT count() AS value FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT count() AS value FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT count() AS value FROM sqlite('{d}/x.db', 't')",
    "SELECT count() AS value FROM hdfs('hdfs://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT count() AS value FROM file('{d}/secret.csv', 'CSV') SETTINGS readonly = 0",
    # the scalar file() that readonly=1 lets through (it read /etc/passwd), however it is written
    "SELECT length(file('/etc/passwd')) AS value",
    "SELECT length(`file`('/etc/passwd')) AS value",
    "SELECT length(\"file\"('/etc/passwd')) AS value",
    "SELECT length(`\\x66ile`('/etc/passwd')) AS value",
    "SELECT length(file /* x */ ('/etc/passwd')) AS value",
    "SELECT length(file # a comment\n('/etc/passwd')) AS value",
    "SELECT 1 # it's a comment to ClickHouse\n, length(file('/etc/passwd')) AS value -- '",
    "SELECT $$'$$ AS a, length(file('/etc/passwd')) AS value -- '",
    "SELECT 'a\\'' AS a, length(file('/etc/passwd')) AS value -- '",
]


@pytest.mark.parametrize("template", CH_ACCESS)
def test_clickhouse_refuses_table_functions_that_read_files_or_servers(
    clickhouse: ClickHouseEvents, files: Path, template: str
) -> None:
    with pytest.raises(SqlAccessError, match=r"^sql: the query reads a file, the network"):
        clickhouse.kpi_sql(template.format(d=files), {})
    still_works(clickhouse)


def test_clickhouse_stops_a_query_that_runs_forever(clickhouse: ClickHouseEvents) -> None:
    clickhouse.sql_limits = SHORT
    query = "SELECT sum(sipHash64(number)) AS value FROM numbers(1000000000000)"
    with pytest.raises(SqlTimeoutError, match=r"ran longer than 0.5 s and was stopped"):
        clickhouse.kpi_sql(query, {})
    still_works(clickhouse)


def test_clickhouse_refuses_more_rows_than_the_limit(clickhouse: ClickHouseEvents) -> None:
    clickhouse.sql_limits = SHORT
    assert len(clickhouse.kpi_sql("SELECT number AS value FROM numbers(10)", {}).rows) == 10
    with pytest.raises(SqlRowLimitError, match=r"more than 10 rows"):
        clickhouse.kpi_sql("SELECT number AS value FROM numbers(1000)", {})
    still_works(clickhouse)


# --- the early check at config load -----------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT file('/etc/passwd') AS value", r"file\(\) is refused"),  # readonly allows it
        ("SELECT `file`('/etc/passwd') AS value", r"quoted function name is refused"),
        ("SELECT \"file\"('/etc/passwd') AS value", r"quoted function name is refused"),
        ("SELECT file/**/('/etc/passwd') AS value", r"file\(\) is refused"),
        ("SELECT 1 # it's\n, file('/etc/passwd') AS value -- '", r"file\(\) is refused"),
        ("SELECT count() AS value FROM url('http://x/y', 'CSV')", r"url\(\) is refused"),
        ("SELECT count() AS value FROM remote('h', system.one)", r"remote\(\) is refused"),
        ("SELECT count() AS value FROM s3('http://x/b/y')", r"s3\(\) is refused"),
        ("SELECT count() AS value FROM executable('ls', 'TSV', 'x String')", r"executable"),
        ("SELECT count() AS value FROM system.processes", r"system\.\* tables are refused"),
        ("SELECT count(*) AS value FROM read_text('/etc/passwd')", r"read_text\(\) is refused"),
        ("SELECT count(*) AS value FROM glob('/etc/*')", r"glob\(\) is refused"),
        ("ATTACH '/tmp/x.duckdb'", r"ATTACH is refused"),
        ("COPY v_events TO '/tmp/x.csv'", r"COPY is refused"),
        ("SET enable_external_access = true", r"SET is refused"),
        ("PRAGMA version", r"PRAGMA is refused"),
        ("LOAD httpfs", r"LOAD is refused"),
        ("INSTALL httpfs", r"INSTALL is refused"),
        ("SELECT * FROM checkpoint()", r"CHECKPOINT is refused"),
        ("SELECT * FROM force_checkpoint()", r"FORCE_CHECKPOINT is refused"),
        ("SELECT 1 AS value -- " + "x" * 1_000_000, r"longer than 20000; shorten it"),
        ("SELECT " + "(" * 10_000 + "1" + ")" * 10_000, r"longer than 20000"),
        ("SELECT " + "(" * 150 + "1" + ")" * 150, r"nested 150 deep, more than 100; flatten"),
    ],
)
def test_the_checker_refuses_early_with_a_reason(query: str, message: str) -> None:
    with pytest.raises(SqlRefusedError, match=message):
        check_read_only(query)


def test_the_checker_passes_what_kpis_write() -> None:
    check_read_only("SELECT count(*) AS value FROM v_events WHERE props->>'url' = 'x'")
    check_read_only("SELECT " + "(" * 100 + "1" + ")" * 100 + " AS value")
    check_read_only("SELECT format('{}', 1) AS label, count(*) AS value FROM v_events")


# --- through the KPI evaluator: the error names the KPI -----------------------------------------
def kpi_file(config: Path, **queries: str) -> None:
    lines = ["kpis:"]
    for name, sql in queries.items():
        lines.append(
            f"  - {{name: {name}, title: {name}, unit: count, direction: higher_is_better, "
            f"owner: ops, grain: day, sql: {json.dumps(sql)}}}"
        )
    (config / "kpis").mkdir(parents=True, exist_ok=True)
    (config / "kpis" / "sql.yaml").write_text("\n".join(lines) + "\n")


def test_the_evaluator_names_the_kpi_and_the_fix(
    duck: DuckDBStorage, files: Path, tmp_path: Path
) -> None:
    kpi_file(tmp_path / "config", leak=f"SELECT count(*) AS value FROM '{files}/*.csv'", ok=COUNT)
    kpis = KpiEvaluator(duck, load_catalog(tmp_path / "config"), FakeClock(NOW))
    with pytest.raises(SqlKpiError, match=r"^KPI 'leak': sql: the query reads a file") as got:
        kpis.series("leak", NOW - 2 * 24 * HOUR, NOW)
    assert isinstance(got.value, UserError)
    # the normal KPI still evaluates: COUNT has no ts filter, so each day counts the one event
    assert [p.value for p in kpis.series("ok", NOW - 24 * HOUR, NOW).points] == [1.0, 1.0]


# --- end to end: a real server ------------------------------------------------------------------
@pytest.mark.e2e
def test_a_served_kpi_cannot_read_a_csv_file(tmp_path: Path, files: Path) -> None:
    kpi_file(tmp_path / "config", leak=f"SELECT count(*) AS value FROM '{files}/*.csv'", ok=COUNT)
    srv = ServerProcess(tmp_path / "data", tmp_path / "config", now_ms=NOW).start()
    try:
        span = {"from": str((NOW - 2 * 24 * HOUR) // 1000), "to": str(NOW // 1000)}
        got = httpx.get(srv.url + "/api/v1/kpis/leak/series", params=span, timeout=30)
        assert got.status_code == 400, got.text
        body = got.json()
        assert body["errorType"] == "bad_data"
        assert body["error"].startswith("KPI 'leak': sql: the query reads a file"), body
        assert "v_events" in body["error"]
        assert httpx.get(srv.url + "/readyz", timeout=10).status_code == 200
        ok = httpx.get(srv.url + "/api/v1/kpis/ok/series", params=span, timeout=30)
        assert ok.status_code == 200, ok.text
    finally:
        srv.kill()


def test_a_connection_opened_without_the_sandbox_gets_it_before_a_kpi_runs(
    tmp_path: Path, files: Path
) -> None:
    """Should the data file ever be opened without INSTANCE_CONFIG, the first sql: KPI applies it:
    the sandbox does not depend on how the connection was made."""
    with duckdb.connect(str(tmp_path / "plain.duckdb")) as con:
        con.execute("CREATE VIEW v_events AS SELECT 1 AS name")
        assert con.execute(f"SELECT count(*) FROM '{files}/*.csv'").fetchall() == [(3,)]
        with pytest.raises(SqlAccessError):
            run_sandboxed(con, f"SELECT count(*) AS value FROM '{files}/*.csv'", {}, SqlLimits())
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            con.execute(f"SELECT count(*) FROM '{files}/*.csv'")
        assert run_sandboxed(con, COUNT, {}, SqlLimits()).rows == [(1,)]
