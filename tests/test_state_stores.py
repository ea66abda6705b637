"""The StateStore contract against DuckDB and PostgreSQL, plus what only a store that several
nodes share must do: one lease holder among racing nodes, migrations applied once when nodes
start together, and a clear StorageUnavailableError when the server is gone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError, StorageUnavailableError
from opsmetrics.settings import Settings
from opsmetrics.storage.alert_records import NotificationFilter
from opsmetrics.storage.kpi_records import ManualKpiValue
from opsmetrics.storage.open import open_stores
from opsmetrics.storage.postgres import PostgresStateStore
from opsmetrics.storage.postgres.migrations import MIGRATIONS
from tests.postgres_server import (
    PASSWORD,
    PostgresServer,
    create_database,
    drop_database,
    pg_state_url,  # noqa: F401 - a fixture
    postgres_url,  # noqa: F401 - a fixture
)
from tests.server import free_port, wait_until
from tests.state_contract import *  # noqa: F403 - the contract's tests run here
from tests.state_contract import NOW, REFUSED, T0, note, token

R = TypeVar("R")


def race(n: int, attempt: Callable[[int], R]) -> list[R]:
    """`attempt(i)` for i < n, on n threads released at once."""
    start = threading.Barrier(n)

    def run(i: int) -> R:
        start.wait(timeout=30)
        return attempt(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@pytest.fixture
def two_nodes(pg_state_url: str) -> Iterator[tuple[PostgresStateStore, PostgresStateStore]]:  # noqa: F811
    a = PostgresStateStore(pg_state_url, now_ms=NOW)
    b = PostgresStateStore(pg_state_url, now_ms=NOW)
    yield a, b
    a.close()
    b.close()


# --- two nodes on one database ----------------------------------------------------------
def test_one_node_holds_a_lease_that_threads_of_two_nodes_race_for(
    two_nodes: tuple[PostgresStateStore, PostgresStateStore],
) -> None:
    for round_ in range(10):
        name, now = f"lease-{round_}", NOW + round_

        def take(i: int, name: str = name, now: int = now) -> bool:
            return two_nodes[i % 2].hold_lease(name, f"holder-{i}", now, 10_000)

        assert sum(race(8, take)) == 1
    # When it expires, the holder renewing and the others taking over race: one wins.
    got = race(8, lambda i: two_nodes[i % 2].hold_lease("lease-0", f"holder-{i}", NOW + 10_000, 1))
    assert sum(got) == 1


def test_a_notification_id_recorded_by_one_node_is_refused_to_the_other(
    two_nodes: tuple[PostgresStateStore, PostgresStateStore],
) -> None:
    a, b = two_nodes
    first = note("n-1", T0)
    a.record_notifications([first])
    with pytest.raises(REFUSED):
        b.record_notifications([note("n-1", T0 + 5)])
    assert b.notifications(NotificationFilter()) == [first]


def test_what_one_node_writes_the_other_reads(
    two_nodes: tuple[PostgresStateStore, PostgresStateStore],
) -> None:
    a, b = two_nodes
    a.save_token(token("t1", T0))
    assert b.tokens() == [token("t1", T0)]


def test_one_store_serves_many_threads(pg_state_url: str) -> None:  # noqa: F811
    store = PostgresStateStore(pg_state_url, now_ms=NOW)
    try:

        def enter(i: int) -> None:
            for j in range(10):
                store.record_manual_kpi_value(ManualKpiValue("nps", T0 + i * 10 + j, i, "", "", T0))

        race(12, enter)
        assert len(store.manual_kpi_values("nps", T0, T0 + 1000)) == 120
    finally:
        store.close()


# --- migrations -------------------------------------------------------------------------
def versions(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, applied_ms FROM schema_migrations ORDER BY 1")
        return [(int(v), int(t)) for v, t in rows.fetchall()]


def test_nodes_starting_together_apply_each_migration_once(postgres_url: str) -> None:  # noqa: F811
    latest = MIGRATIONS[-1][0]
    for _ in range(3):
        url = create_database(postgres_url)
        try:
            stores = race(4, lambda i, url=url: PostgresStateStore(url, now_ms=NOW + i))
            for s in stores:
                s.close()
            applied = versions(url)
            assert [v for v, _ in applied] == list(range(1, latest + 1))
            assert all(NOW <= t < NOW + 4 for _, t in applied)
        finally:
            drop_database(postgres_url, url)


def test_reopening_applies_nothing_again(pg_state_url: str) -> None:  # noqa: F811
    PostgresStateStore(pg_state_url, now_ms=NOW).close()
    PostgresStateStore(pg_state_url, now_ms=NOW + 1).close()
    assert versions(pg_state_url) == [(v, NOW) for v, _ in MIGRATIONS]


def test_a_schema_newer_than_the_code_is_refused(pg_state_url: str) -> None:  # noqa: F811
    PostgresStateStore(pg_state_url, now_ms=NOW).close()
    with psycopg.connect(pg_state_url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(StorageUnavailableError, match="schema version 999.*upgrade opsmetrics"):
        PostgresStateStore(pg_state_url, now_ms=NOW)


# --- a server that cannot be used -------------------------------------------------------
def assert_clear(err: pytest.ExceptionInfo[Exception], port: int) -> None:
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "Check that PostgreSQL is running" in message
    assert PASSWORD not in message and "wrong-pw" not in message


def test_a_stopped_server_is_storage_unavailable_until_it_is_back() -> None:
    server = PostgresServer().init().start()
    try:
        store = PostgresStateStore(server.url(), now_ms=NOW, timeout_s=1)
        store.save_token(token("t1", T0))
        server.stop()
        calls: list[Callable[[], object]] = [
            store.tokens,
            lambda: store.hold_lease("alerting", "node-a", NOW, 1000),
            lambda: store.record_notifications([note("n-1", T0)]),
        ]
        for call in calls:
            with pytest.raises(StorageUnavailableError) as err:
                call()
            assert_clear(err, server.port)
            assert "Connection refused" in str(err.value)
        with pytest.raises(StorageUnavailableError) as err:
            PostgresStateStore(server.url(), now_ms=NOW)
        assert_clear(err, server.port)

        server.start()
        assert wait_until(lambda: _answers(store), "the store to reconnect") == [token("t1", T0)]
        assert store.notifications(NotificationFilter()) == []  # the failed write left nothing
        store.close()
    finally:
        server.remove()


def test_a_connection_dropped_mid_call_is_storage_unavailable_and_writes_nothing(
    pg_state_url: str,  # noqa: F811
) -> None:
    store = PostgresStateStore(pg_state_url, now_ms=NOW)
    try:
        with (
            psycopg.connect(pg_state_url) as locker,
            psycopg.connect(pg_state_url, autocommit=True) as admin,
            ThreadPoolExecutor(1) as pool,
        ):
            locker.execute("LOCK TABLE alert_notifications IN ACCESS EXCLUSIVE MODE")
            call = pool.submit(store.record_notifications, [note("n-1", T0), note("n-2", T0)])
            blocked = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            pid = wait_until(lambda: admin.execute(blocked).fetchone(), "the insert to wait")[0]
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            with pytest.raises(
                StorageUnavailableError, match="a statement failed: .*closed the connection"
            ) as err:
                call.result(timeout=30)
            assert_clear(err, int(pg_state_url.rsplit(":", 1)[1].split("/")[0]))
            locker.rollback()
        assert store.notifications(NotificationFilter()) == []
        store.record_notifications([note("n-3", T0)])  # the pool replaced the connection
        assert [r.id for r in store.pending_notifications()] == ["n-3"]
    finally:
        store.close()


def _answers(store: PostgresStateStore) -> object:
    try:
        return store.tokens()
    except StorageUnavailableError:
        return None


def test_a_wrong_password_is_refused_with_a_clear_message(postgres_url: str) -> None:  # noqa: F811
    url = postgres_url.replace(PASSWORD, "wrong-pw")
    with pytest.raises(StorageUnavailableError, match="password authentication failed") as err:
        PostgresStateStore(url, now_ms=NOW)
    assert_clear(err, int(url.rsplit(":", 1)[1].split("/")[0]))


def test_nothing_listening_is_storage_unavailable() -> None:
    port = free_port()
    with pytest.raises(StorageUnavailableError) as err:
        PostgresStateStore(f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/db", now_ms=NOW)
    assert_clear(err, port)


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="port 'fivefour' is not a number"):
        PostgresStateStore("postgresql://u:pw@127.0.0.1:fivefour/db", now_ms=NOW)


# --- wiring -----------------------------------------------------------------------------
def test_open_stores_puts_state_in_postgresql(
    pg_state_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", state_url=pg_state_url)
    storage = open_stores(settings, FakeClock(NOW))
    try:
        storage.save_token(token("t1", T0))
    finally:
        storage.close()
    reader = PostgresStateStore(pg_state_url, now_ms=NOW)
    try:
        assert reader.tokens() == [token("t1", T0)]
    finally:
        reader.close()
