"""The EventStore contract on DuckDB and ClickHouse (tests/event_contract.py), a differential
test that gives both backends one generated data set and compares every query's answers, and
the ClickHouse-only checks: idempotent inserts, row counts, deletion by age, in this process
and through the real HTTP transport (plain and lz4) on the session's chshim process."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import Event
from opsmetrics.storage import StoredEvent
from opsmetrics.storage.clickhouse.connect import connect, parse_url
from opsmetrics.storage.clickhouse.events import ClickHouseEvents
from opsmetrics.storage.event_records import (
    Agg,
    EventAggregate,
    EventMatch,
    FilterOp,
    Funnel,
    Grain,
    PropFilter,
    Retention,
    RollingUnique,
)
from opsmetrics.storage.experiment_records import ArmMoments, UnitAgg, UnitColumn
from opsmetrics.storage.kpi_records import ConversionQuery, StateCombine, StateQuery
from tests.chshim_fixture import HTTP_VARIANTS, chshim_port, shim_database, shim_url  # noqa: F401
from tests.clickhouse_engine import ch_client, ch_database, chdb_path  # noqa: F401
from tests.event_contract import *  # noqa: F403
from tests.event_contract import (
    BERLIN,
    DAY,
    HOUR,
    MIN,
    NEW_YORK,
    Backend,
    ms,
    open_clickhouse,
    open_duckdb,
)

D0 = ms("2024-03-04T00:00Z")

# --- differential: one generated data set, identical answers --------------------------------
START = ms("2024-10-21T00:00Z")  # a Monday, two weeks before New York falls back
SPAN = 35 * DAY
NAMES = ("visit", "signup", "view", "cart", "buy", "plan")


def generated(seed: int = 15, n: int = 1500) -> list[Event]:
    """Events of 40 entities over five weeks, with repeats, ties, missing and odd properties."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        props: dict[str, str | int | float | bool | None] = {}
        if rnd.random() < 0.8:
            props["plan"] = rnd.choice(["free", "pro", "team", ""])
        if rnd.random() < 0.6:
            props["n"] = rnd.choice([1, 2, 3, 2.5, "4", "x", None, True])
        if rnd.random() < 0.5:
            props["variant"] = rnd.choice(["a", "b"])
        ts = START - 3 * DAY + rnd.randrange(SPAN + 6 * DAY) // MIN * MIN
        value = rnd.choice([None, 1.0, 2.5, 10.0, 0.0, float(rnd.randrange(100))])
        entity = "" if rnd.random() < 0.05 else f"u{rnd.randrange(40)}"
        out.append(Event(rnd.choice(NAMES), ts, entity, value, props))
    return out


@pytest.fixture(scope="module")
def data() -> list[Event]:
    return generated()


@pytest.fixture
def pair(tmp_path: Path, ch_client: Client, data: list[Event]) -> Iterator[list[Backend]]:  # noqa: F811
    duck = open_duckdb(tmp_path)
    house = open_clickhouse(ch_client)
    backends = [next(duck), next(house)]
    for b in backends:
        b.write(*data)
    yield backends
    duck.close()


def same(backends: list[Backend], method: str, *args: object) -> object:
    """The answer of `store.method(*args)` on each backend, asserted equal (floats to 1e-6)."""
    answers = [_normal(getattr(b.store, method)(*args)) for b in backends]
    assert answers[0] == answers[1]
    return answers[0]


def _normal(x: object) -> object:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else round(x, 6)
    if isinstance(x, list | tuple):
        return [_normal(v) for v in x]
    if isinstance(x, dict):
        return {k: _normal(v) for k, v in x.items()}
    if hasattr(x, "__slots__"):
        return {s: _normal(getattr(x, s)) for s in x.__slots__ if not s.startswith("__")}
    return x


PLAN = PropFilter("plan", FilterOp.IN, ("pro", "team"))
NUMBER = PropFilter("n", FilterOp.GTE, ("2",))
TZS = ("UTC", BERLIN, NEW_YORK, "Asia/Kolkata")


def test_aggregates_agree(pair: list[Backend]) -> None:
    end = START + SPAN
    for tz in TZS:
        for grain in Grain:
            q = EventAggregate(None, Agg.COUNT, START, end, grain, tz, by=("plan",))
            assert same(pair, "event_aggregate", q)
    for agg in Agg:
        q = EventAggregate("buy", agg, START, end, Grain.WEEK, NEW_YORK, (NUMBER,), ("variant",))
        assert same(pair, "event_aggregate", q)
        v = EventAggregate("plan", agg, START, end, Grain.DAY, BERLIN, (PLAN,), value_prop="n")
        assert same(pair, "event_aggregate", v)


def test_rolling_uniques_agree(pair: list[Backend]) -> None:
    for tz in TZS:
        for window in (1, 7, 28):
            q = RollingUnique("visit", window, START + 3 * HOUR, START + SPAN, tz, (PLAN,))
            assert same(pair, "event_rolling_unique", q)


def test_funnels_agree(pair: list[Backend]) -> None:
    plain = (EventMatch("view"), EventMatch("cart"), EventMatch("buy"))
    filtered = (plain[0], EventMatch("cart", (NUMBER,)), plain[2])
    for steps in (plain, filtered):
        for window in (HOUR, DAY, 7 * DAY):
            for breakdown in (None, "plan", "variant"):
                q = Funnel(steps, START, START + SPAN, window, breakdown)
                assert same(pair, "event_funnel", q)


def test_retention_agrees(pair: list[Backend]) -> None:
    for tz in TZS:
        for grain, periods in ((Grain.DAY, 10), (Grain.WEEK, 4), (Grain.MONTH, 2)):
            for returning in (None, EventMatch("buy")):
                q = Retention(
                    EventMatch("signup"), returning, START, START + SPAN, grain, periods, tz
                )
                assert same(pair, "event_retention", q)


def test_arm_moments_agree(pair: list[Backend]) -> None:
    cols = (
        UnitColumn(EventMatch("buy"), UnitAgg.SUM, 0, 7 * DAY),
        UnitColumn(EventMatch("buy"), UnitAgg.ANY, 0, 7 * DAY),
        UnitColumn(EventMatch("cart", (PLAN,)), UnitAgg.COUNT, HOUR, 3 * DAY),
        UnitColumn(EventMatch("plan"), UnitAgg.SUM, -7 * DAY, 0, value_prop="n"),
    )
    q = ArmMoments(EventMatch("view"), "variant", START, START + 14 * DAY, cols)
    assert same(pair, "arm_moments", q)


def test_kpi_queries_agree(pair: list[Backend]) -> None:
    ends = tuple(START + i * DAY for i in range(0, 36, 5))
    for combine in StateCombine:
        for field, key in ((None, None), ("n", "plan")):
            q = StateQuery("plan", field, key, combine, ends)
            assert same(pair, "kpi_state", q)
    starts = tuple(START + i * 7 * DAY for i in range(5))
    week_ends = tuple(s + 7 * DAY for s in starts)
    for by, key in (((), None), (("plan", "variant"), None), ((), "plan")):
        c = ConversionQuery("signup", "buy", 3 * DAY, starts, week_ends, key, by)
        assert same(pair, "kpi_conversion", c)
    assert same(pair, "newest_event_ms", ["signup", "cart"])
    sql = (
        "SELECT name, count(*) AS n, sum(value) AS total FROM v_events "
        "WHERE ts >= $start_ms AND ts < $end_ms GROUP BY name ORDER BY name"
    )
    params = {"start_ms": START, "end_ms": START + 7 * DAY}
    assert same(pair, "kpi_sql", sql, params)


def test_reads_agree(pair: list[Backend], data: list[Event]) -> None:
    got = same(pair, "read_events", None, 0, START + 60 * DAY)
    assert isinstance(got, list) and len(got) == len({event_key(e) for e in data})
    same(pair, "read_events", "buy", START, START + DAY, 5)


# --- ClickHouse only ------------------------------------------------------------------------
@pytest.fixture(params=["clickhouse", *HTTP_VARIANTS])
def house(request: pytest.FixtureRequest) -> Iterator[tuple[ClickHouseEvents, Client]]:
    if request.param == "clickhouse":
        client: Client = request.getfixturevalue("ch_client")
    else:
        port, database = (request.getfixturevalue(f) for f in ("chshim_port", "shim_database"))
        client = connect(parse_url(shim_url(port, database, HTTP_VARIANTS[request.param])))
    backend = next(open_clickhouse(client))
    assert isinstance(backend.store, ClickHouseEvents)
    yield backend.store, client
    if request.param != "clickhouse":
        client.close()


def stored(*events: Event) -> list[StoredEvent]:
    return [StoredEvent(event_key(e), e) for e in events]


def physical_rows(client: Client) -> int:
    return int(client.query("SELECT count() FROM events").result_rows[0][0])


def test_a_retried_insert_stores_each_event_once(
    house: tuple[ClickHouseEvents, Client],
) -> None:
    store, client = house
    batch = stored(*(Event("buy", D0 + i * HOUR, f"u{i % 3}", float(i)) for i in range(6)))
    store.insert_events(batch)
    assert store.count_events() == 6 and physical_rows(client) == 6
    store.insert_events(batch[::-1])  # the same keys again: the same dedup token, dropped whole
    assert store.count_events() == 6 and physical_rows(client) == 6
    store.insert_events(batch[:2] + stored(Event("buy", D0, "u9", 100.0)))
    assert physical_rows(client) == 9  # a new token: the two repeats get in ...
    assert store.count_events() == 7  # ... and FINAL shows each event once
    [total] = store.event_aggregate(EventAggregate("buy", Agg.SUM, D0, D0 + DAY, None))
    assert (total.value, total.sample_size) == (115.0, 7)
    [unique] = store.event_aggregate(EventAggregate("buy", Agg.UNIQUE, D0, D0 + DAY, None))
    assert unique.value == 4.0
    assert len(store.read_events(None, 0, D0 + DAY)) == 7
    client.command("OPTIMIZE TABLE events FINAL")
    assert physical_rows(client) == 7
    store.insert_events([])
    assert store.count_events() == 7


def test_a_key_repeated_in_one_batch_is_one_event(house: tuple[ClickHouseEvents, Client]) -> None:
    store, client = house
    e = Event("buy", ms("2024-03-04T00:00Z"), "u1", 1.0, id="order-1")
    store.insert_events(stored(e, e, e))
    assert store.count_events() == 1 and physical_rows(client) == 1


def test_delete_events_before_drops_old_days_and_counts(
    house: tuple[ClickHouseEvents, Client],
) -> None:
    store, client = house
    d0 = ms("2024-03-04T00:00Z")
    store.insert_events(stored(*(Event("tick", d0 + i * 6 * HOUR, "u") for i in range(12))))
    assert store.count_events() == 12
    assert store.delete_events_before(d0 + DAY + 7 * HOUR) == 6  # day 1, and two of day 2
    assert store.count_events() == 6
    assert [e.ts for e in store.read_events("tick", 0, d0 + 9 * DAY)][0] == d0 + DAY + 12 * HOUR
    assert store.delete_events_before(d0) == 0
    parts = client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE active AND database = "
        "currentDatabase() AND table = 'events' ORDER BY 1"
    ).result_rows
    assert [p[0] for p in parts] == ["20240305", "20240306"]
