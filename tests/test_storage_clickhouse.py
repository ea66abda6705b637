"""The ClickHouse backend on chdb: the SampleStore contract (beside DuckDB), several nodes on
one database, insert deduplication, the DDL and migrations, URLs and errors, the CLI, and
PromQL range queries answered alike over ClickHouse and DuckDB.

One module for all of it: chdb runs one engine path per process, and each module importing
the session fixture `chdb_path` would get its own. The contract also runs through the real
HTTP transport (plain and lz4) on the session's chshim process (tests/chshim_fixture.py).

Not exercised here (chdb cannot): Distributed and Replicated tables, ON CLUSTER — their DDL is
checked as text against golden files — and a real ClickHouse server (chshim is a test double).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from opsmetrics.errors import ConfigError, StorageUnavailableError
from opsmetrics.model import STALE_NAN, Labels, Series
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.storage import RetentionPolicy, WriteBatch
from opsmetrics.storage.base import DAY_MS
from opsmetrics.storage.clickhouse import ClickHouseStorage, ddl
from opsmetrics.storage.clickhouse.connect import ClickHouse, Target, connect, parse_url
from opsmetrics.storage.clickhouse.events import ClickHouseEvents
from opsmetrics.storage.clickhouse.schema import applied_version, apply_migrations
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.series_id import series_id
from tests.chshim_fixture import chshim_port  # noqa: F401
from tests.clickhouse_engine import ch_client, ch_database, chdb_client, chdb_path  # noqa: F401
from tests.golden_files import GOLDEN_DIR, assert_golden
from tests.sample_contract import *  # noqa: F403 - the contract's tests run here
from tests.sample_contract import batch, clickhouse_database, open_clickhouse_at
from tests.storage_contract import NOW, T0, labels


def node(chdb_path: Path, database: str) -> ClickHouseStorage:  # noqa: F811
    """One more backend instance on the database: another node."""
    target = Target("chdb", database, path=str(chdb_path))
    return ClickHouseStorage(ClickHouse(chdb_client(chdb_path, database), target), now_ms=NOW)


def count(client: Client, sql: str) -> int:
    return int(client.command(sql))


# --- several nodes ----------------------------------------------------------------------
def test_two_nodes_name_and_see_series_alike(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
) -> None:
    a, b = node(chdb_path, ch_database), node(chdb_path, ch_database)
    lbl = labels("m", host="x")
    assert a.allocate_series_ids([lbl]) == b.allocate_series_ids([lbl]) == [series_id(lbl)]
    (sid,) = a.allocate_series_ids([lbl])
    a.write(batch([sid], [T0], [1.0], [Series(sid, lbl)]))
    assert b.lookup_series([lbl]) == [sid]
    assert b.labels_of(sid) == lbl
    assert b.series_heads(np.array([sid], np.int64))[0].tolist() == [T0]
    assert [s.id for s in b.select_series([])] == [sid]


def test_concurrent_creation_gives_one_series_row(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
    ch_client: Client,  # noqa: F811
) -> None:
    nodes = [node(chdb_path, ch_database) for _ in range(2)]
    lbl = labels("m", host="y")
    errors: list[BaseException] = []

    def create(n: ClickHouseStorage, value: float) -> None:
        try:
            (sid,) = n.allocate_series_ids([lbl])
            n.write(batch([sid], [T0 + int(value)], [value], [Series(sid, lbl)]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n, float(i))) for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(ch_client, "SELECT count() FROM series FINAL") == 1
    assert {n.lookup_series([lbl])[0] for n in nodes} == {series_id(lbl)}
    assert count(ch_client, "SELECT count() FROM samples FINAL") == 2


def test_a_resent_batch_is_dropped_by_its_token(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
    ch_client: Client,  # noqa: F811
) -> None:
    store = node(chdb_path, ch_database)
    (sid,) = store.allocate_series_ids([labels("m")])
    sent = batch([sid] * 3, [T0, T0 + 1, T0 + DAY_MS], [1.0, 2.0, 3.0], [Series(sid, labels("m"))])
    store.write(sent)
    node(chdb_path, ch_database).write(sent)  # the retry may come from another node
    assert count(ch_client, "SELECT count() FROM samples") == 3  # not even before a merge
    assert count(ch_client, "SELECT count() FROM series") == 1
    store.write(batch([sid], [T0 + 1], [5.0]))  # a changed value: last write wins
    assert store.read_samples([sid], T0, T0 + 1).values.tolist() == [1.0, 5.0]
    assert count(ch_client, "SELECT count() FROM samples FINAL") == 3


def test_a_sample_of_an_unknown_series_is_refused(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
    ch_client: Client,  # noqa: F811
) -> None:
    store = node(chdb_path, ch_database)
    with pytest.raises(ValueError, match="not stored"):
        store.write(batch([42], [T0], [1.0]))
    assert count(ch_client, "SELECT count() FROM samples") == 0


def test_retention_sets_ttls_in_the_callers_time(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
    ch_client: Client,  # noqa: F811
) -> None:
    store = node(chdb_path, ch_database)
    store.apply_retention(NOW, RetentionPolicy(raw_ms=3 * DAY_MS))
    create = str(
        ch_client.command(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = currentDatabase() AND name = 'samples'"
        )
    )
    assert "TTL toDateTime(intDiv(ts, 1000)) + toIntervalHour(" in create
    hours = int(create.split("toIntervalHour(")[1].split(")")[0])
    server_ms = int(ch_client.command("SELECT toUnixTimestamp64Milli(now64(3))"))
    # the TTL's cutoff in server time is the caller's (NOW - 3 days), an hour earlier at most
    assert 0 <= (NOW - 3 * DAY_MS) - (server_ms - hours * 3_600_000) < 3_600_000 + 60_000


# --- schema -----------------------------------------------------------------------------
def test_migrations_are_numbered_and_idempotent(ch_client: Client) -> None:  # noqa: F811
    ch = ClickHouse(ch_client, Target("chdb", "x"))
    assert apply_migrations(ch, ClickHouseEvents.schema(), NOW) == [1, 2, 3]
    assert apply_migrations(ch, ClickHouseEvents.schema(), NOW) == []
    assert applied_version(ch) == 3
    for statement in ddl.schema_statements(ClickHouseEvents.schema()):
        ch_client.command(statement)  # every statement runs again without harm
    tables = ch_client.query(
        "SELECT name, engine, sorting_key FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    engines = {name: (engine, key) for name, engine, key in tables}
    assert engines["samples"] == ("ReplacingMergeTree", "metric, series_id, ts")
    assert engines["series"][0] == "ReplacingMergeTree"
    assert {"rollups_300s", "rollups_3600s", "events", "schema_migrations"} <= set(engines)
    codecs = ch_client.query(
        "SELECT name, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'samples'"
    ).result_rows
    assert dict(codecs)["ts"] == "CODEC(DoubleDelta, ZSTD(1))"
    assert dict(codecs)["value"] == "CODEC(Gorilla(8), ZSTD(1))"


def test_single_node_ddl_matches_its_golden_file() -> None:
    text = ";\n\n".join(ddl.schema_statements(ClickHouseEvents.schema())) + ";\n"
    assert_golden(GOLDEN_DIR / "clickhouse" / "schema.sql", text)


def test_cluster_ddl_matches_its_golden_file() -> None:
    statements = ddl.schema_statements(ClickHouseEvents.schema(), "ops", "metrics")
    assert_golden(GOLDEN_DIR / "clickhouse" / "cluster.sql", ";\n\n".join(statements) + ";\n")
    text = "\n".join(statements)
    assert "ENGINE = Distributed(ops, metrics, samples_local, series_id)" in text
    assert "ENGINE = Distributed(ops, metrics, events_local, cityHash64(entity))" in text
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/samples_local'" in text
    assert "non_replicated_deduplication_window" not in text
    assert all(" ON CLUSTER ops " in s for s in statements)


def test_cluster_ddl_refuses_odd_names() -> None:
    with pytest.raises(ValueError, match="identifier"):
        ddl.schema_statements([], "ops; DROP", "metrics")


# --- URLs and errors --------------------------------------------------------------------
def test_urls_parse_into_targets() -> None:
    t = parse_url("clickhouse://ops:s3cret@ch.example:8124/metrics")
    assert (t.host, t.port, t.username, t.password, t.database) == (
        "ch.example",
        8124,
        "ops",
        "s3cret",
        "metrics",
    )
    assert parse_url("clickhouses://ch.example/x").port == 8443
    assert parse_url("chdb:///var/lib/ops?database=m") == Target("chdb", "m", path="/var/lib/ops")
    with pytest.raises(ConfigError, match="plain identifier"):
        parse_url("clickhouse://h/bad-name")
    assert parse_url("clickhouse://h/x?compress=lz4").compress == "lz4"
    assert parse_url("clickhouse://h/x?compress=none").compress == "none"
    assert parse_url("clickhouse://h/x").compress == ""
    with pytest.raises(ConfigError, match="compress='zip'.*lz4, none"):
        parse_url("clickhouse://h/x?compress=zip")


@pytest.mark.parametrize(("option", "want"), [("none", None), ("lz4", "lz4")])
def test_the_url_chooses_the_http_compression(
    chshim_port: int,  # noqa: F811
    option: str,
    want: str | None,
) -> None:
    client = connect(parse_url(f"clickhouse://127.0.0.1:{chshim_port}/default?compress={option}"))
    try:  # what the HTTP contract variants rely on: bodies both ways use the named codec
        assert (client.compression, client.write_compression) == (want, want)
        assert int(client.command("SELECT 1")) == 1
    finally:
        client.close()


def test_an_unreachable_server_is_named_without_its_password() -> None:
    target = parse_url("clickhouse://ops:s3cret@127.0.0.1:1/metrics")
    with pytest.raises(StorageUnavailableError) as info:
        connect(target)
    assert "127.0.0.1:1" in info.value.message
    assert "s3cret" not in info.value.message


# --- the CLI ----------------------------------------------------------------------------
def test_storage_init_prints_and_creates_the_schema(
    chdb_path: Path,  # noqa: F811
    ch_database: str,  # noqa: F811
    ch_client: Client,  # noqa: F811
) -> None:
    from typer.testing import CliRunner

    from opsmetrics.cli.main import app

    runner = CliRunner()
    url = f"chdb://{chdb_path}?database={ch_database}"
    printed = runner.invoke(app, ["storage", "init", "--print", "--cluster", "ops", "--url", url])
    assert printed.exit_code == 0, printed.output
    assert (
        f"CREATE TABLE IF NOT EXISTS {ch_database}.samples_local ON CLUSTER ops" in printed.output
    )
    assert (
        count(ch_client, "SELECT count() FROM system.tables WHERE database = currentDatabase()")
        == 0
    )
    for _ in range(2):  # idempotent
        created = runner.invoke(app, ["storage", "init", "--url", url])
        assert created.exit_code == 0, created.output
    assert count(ch_client, "SELECT max(version) FROM schema_migrations") == 3
    assert count(ch_client, "SELECT count() FROM schema_migrations") == 3


# --- PromQL over both backends ----------------------------------------------------------
# The same two days of 15 s data (counters with resets, a gauge with NaNs and stale markers)
# go into DuckDB and ClickHouse and are compacted; six more hours stay uncompacted. Each query
# runs through the real engine on both: labels and presence must agree, values within 1e-9
# relative (sums may add in another order), served from rollups and from raw samples.
Q0 = 1_700_006_400_000  # midnight UTC
HOUR, DAY, STEP = 3_600_000, 86_400_000, 15_000
NAMES = ["c1", "c2", "gauge"]


def _labels(instance: str) -> Labels:
    return (("__name__", "m"), ("instance", instance), ("job", "t"))


def _values(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(2):
        c = np.cumsum(rng.random(n) * 7)
        for at in rng.choice(np.arange(1, n), size=4, replace=False):
            c[at:] -= c[at] - rng.random() * 3  # a reset
        out.append(c)
    g = rng.normal(50, 20, n)
    g[rng.choice(n, 5, replace=False)] = np.nan
    g[rng.choice(n, 5, replace=False)] = STALE_NAN
    return [*out, g]


def _fill(store: DataStore, start: int, end: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = np.arange(start, end, STEP, dtype=np.int64)
    ts = ts[rng.random(len(ts)) > 0.05]
    known = store.lookup_series([_labels(n) for n in NAMES])
    new = [i for i, sid in enumerate(known) if sid is None]
    fresh = iter(store.allocate_series_ids([_labels(NAMES[i]) for i in new]))
    ids = [sid if sid is not None else next(fresh) for sid in known]
    store.write(
        WriteBatch(
            new_series=[Series(ids[i], _labels(NAMES[i])) for i in new],
            series_ids=np.repeat(np.array(ids, np.int64), len(ts)),
            ts=np.tile(ts, len(NAMES)),
            values=np.concatenate(_values(rng, len(ts))),
        )
    )


def _load(store: DataStore) -> DataStore:
    _fill(store, Q0, Q0 + 2 * DAY, seed=1)
    assert store.compact(Q0 + 2 * DAY + 2 * HOUR) == 2
    _fill(store, Q0 + 2 * DAY, Q0 + 2 * DAY + 6 * HOUR, seed=2)
    assert store.rollup_spans() == [(Q0, Q0 + DAY), (Q0 + DAY, Q0 + 2 * DAY)]
    assert store.stats().series == 3
    return store


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    chdb_path: Path,  # noqa: F811
) -> Iterator[tuple[DataStore, DataStore]]:
    base = tmp_path_factory.mktemp("promql_both")
    duck = _load(DuckDBStorage(base / "duck", now_ms=Q0))
    ch: ClickHouseStorage = open_clickhouse_at(chdb_path, base / "ch")
    _load(ch)
    yield duck, ch
    duck.close()
    ch.close()
    chdb_client(chdb_path).command(f"DROP DATABASE {clickhouse_database(base / 'ch')} SYNC")


QUERIES = [
    'm{job="t"}',
    'rate(m{instance=~"c.*"}[5m])',
    "increase(m[1h])",
    'sum_over_time(m{instance="gauge"}[1h])',
    "max_over_time(m[1d])",
    'sum by (job) (rate(m{instance!="gauge"}[1h]))',
    'avg_over_time(m{instance!~"c2"}[25m])',
    "count_over_time(m[5m])",
]


@pytest.mark.parametrize("use_rollups", [True, False], ids=["rollups", "raw"])
@pytest.mark.parametrize("expr", QUERIES)
def test_same_answers_on_both_backends(
    stores: tuple[DataStore, DataStore], expr: str, use_rollups: bool
) -> None:
    duck, ch = stores
    args = (expr, Q0 + DAY, Q0 + 2 * DAY + 6 * HOUR, HOUR)
    want = evaluate_range(duck, *args, use_rollups=use_rollups)
    got = evaluate_range(ch, *args, use_rollups=use_rollups)
    assert isinstance(want, InstantVector) and isinstance(got, InstantVector)
    assert len(want.labels) > 0
    assert got.labels == want.labels
    assert (got.present == want.present).all()
    np.testing.assert_allclose(got.values[want.present], want.values[want.present], rtol=1e-9)
