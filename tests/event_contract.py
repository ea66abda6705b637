"""The contract every EventStore backend passes: DuckDB (the spec) and ClickHouse (on chdb).

`events` is parametrised over BACKENDS; each test writes its events through the backend's own
write path and checks hand-computed answers, so a wrong answer fails on either backend.
ClickHouse runs in this process ("clickhouse") and through clickhouse-connect's real HTTP
transport on the session's chshim process ("clickhouse-http", uncompressed; connected from a
clickhouse:// URL by the product's own connect). A subset (`WITH_LZ4`: inserts with row
counts, reads, the NaN round trip, funnels) runs with lz4 bodies too, to keep the time down.
tests/test_event_stores.py runs these (`from tests.event_contract import *`) and adds the
differential tests (both backends, one data set, identical answers) and the ClickHouse-only
ones. The data mirrors tests/test_event_analytics.py, test_experiments.py and test_kpi_eval.py.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import Event, Scalar
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.base import EventStore
from opsmetrics.storage.clickhouse.connect import connect, parse_url
from opsmetrics.storage.clickhouse.events import ClickHouseEvents
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.event_records import (
    Agg,
    EntityKey,
    EventAggregate,
    EventMatch,
    FilterOp,
    Funnel,
    FunnelRow,
    Grain,
    PropFilter,
    Retention,
    RollingUnique,
    ValueFilter,
)
from opsmetrics.storage.exclusion_records import exclusion_checks
from opsmetrics.storage.experiment_records import ArmMoments, UnitAgg, UnitColumn
from opsmetrics.storage.kpi_records import ConversionQuery, StateCombine, StateQuery
from tests.chshim_fixture import (
    HTTP_VARIANTS,
    SERVER_VARIANTS,
    drop_server_database,
    server_url,
    shim_url,
)

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


D0 = ms("2024-03-04T00:00Z")  # a Monday
NOW = ms("2024-06-01T00:00Z")
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


@dataclass
class Backend:
    """An EventStore and the way its backend stores events."""

    name: str
    store: EventStore
    write_stored: Callable[[list[StoredEvent]], None]

    def write(self, *events: Event) -> None:
        self.write_stored([StoredEvent(event_key(e), e) for e in events])


def open_duckdb(path: Path) -> Generator[Backend, None, None]:
    store = DuckDBStorage(path / "duckdb", now_ms=NOW)
    try:
        yield Backend("duckdb", store, lambda evs: store.write(WriteBatch(events=evs)))
    finally:
        store.close()


def open_clickhouse(client: Client) -> Generator[Backend, None, None]:
    for statement in ClickHouseEvents.schema():
        client.command(statement)
    store = ClickHouseEvents(client)
    yield Backend("clickhouse", store, store.insert_events)


def open_server() -> Generator[Backend, None, None]:
    """ClickHouseEvents on a real server (OPSMETRICS_TEST_CLICKHOUSE_URL), its own database."""
    database = "e_" + uuid.uuid4().hex[:12]
    client = connect(parse_url(server_url(database)))
    try:
        for backend in open_clickhouse(client):
            yield Backend("clickhouse-server", backend.store, backend.write_stored)
    finally:
        client.close()
        drop_server_database(database)


def open_http(port: int, database: str, variant: str) -> Generator[Backend, None, None]:
    """ClickHouseEvents on the shim, over a client the product's connect makes from a URL."""
    client = connect(parse_url(shim_url(port, database, HTTP_VARIANTS[variant])))
    try:
        for backend in open_clickhouse(client):
            yield Backend(variant, backend.store, backend.write_stored)
    finally:
        client.close()


BACKENDS = ("duckdb", "clickhouse", "clickhouse-http", *SERVER_VARIANTS)
#: Marks a test that also runs with lz4-compressed HTTP bodies.
WITH_LZ4 = pytest.mark.parametrize("events", [*BACKENDS, "clickhouse-http-lz4"], indirect=True)


def open_backend(
    name: str, request: pytest.FixtureRequest, path: Path
) -> Generator[Backend, None, None]:
    if name == "duckdb":
        return open_duckdb(path)
    if name in HTTP_VARIANTS:
        port, database = (request.getfixturevalue(f) for f in ("chshim_port", "shim_database"))
        return open_http(port, database, name)
    if name in SERVER_VARIANTS:
        return open_server()
    return open_clickhouse(request.getfixturevalue("ch_client"))


@pytest.fixture(params=BACKENDS)
def events(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Backend, None, None]:
    yield from open_backend(request.param, request, tmp_path)


def buckets(b: Backend, q: EventAggregate) -> list[tuple[int, dict[str, str], float, int]]:
    return [(x.start_ms, x.group, x.value, x.sample_size) for x in b.store.event_aggregate(q)]


# --- read_events ----------------------------------------------------------------------------
@WITH_LZ4
def test_a_large_insert_arrives_whole(events: Backend) -> None:
    """Enough events for several insert blocks, each its own lz4 frame over HTTP: a server
    that read only the first frame would keep a fraction of them without an error."""
    n = 40_000
    props: dict[str, Scalar] = {"plan": "pro", "note": "x" * 40}
    events.write(*(Event("bulk", D0 + i * 1000, f"u{i % 97}", float(i), props) for i in range(n)))
    [total] = buckets(events, EventAggregate("bulk", Agg.COUNT, D0, D0 + DAY, None))
    assert total == (D0, {}, float(n), n)
    [whole] = buckets(events, EventAggregate("bulk", Agg.SUM, D0, D0 + DAY, None))
    assert whole[2:] == (n * (n - 1) / 2, n)
    got = events.store.read_events("bulk", D0, D0 + DAY)
    assert len(got) == n and got[-1] == Event("bulk", D0 + (n - 1) * 1000, "u35", n - 1.0, props)


@WITH_LZ4
def test_read_events_round_trip_in_order(events: Backend) -> None:
    props: dict[str, Scalar] = {
        "plan": "pro",
        "n": 5,
        "rate": 1.5,
        "vip": True,
        "gone": None,
        "ü ~/.": "x'y",
    }
    written = [
        Event("buy", D0 + 2, "u1", 9.5, props, id="order-1"),
        Event("buy", D0, "u2"),
        Event("view", D0 + 1, "", None, {"a": "1"}),
        Event("buy", D0 + DAY, "u3", 1.0),
    ]
    events.write(*written)
    got = events.store.read_events(None, D0, D0 + DAY)
    assert got == [written[1], written[2], written[0], written[3]]  # by ts; end inclusive
    assert events.store.read_events("buy", D0, D0 + 2) == [written[1], written[0]]
    assert events.store.read_events(None, D0, D0 + DAY, limit=2) == [written[1], written[2]]
    assert events.store.read_events("none", D0, D0 + DAY) == []
    [nan] = [Event("tick", D0, "u", math.nan)]
    events.write(nan)
    assert events.store.read_events("tick", D0, D0) == [Event("tick", D0, "u", None)]


# --- aggregations ---------------------------------------------------------------------------
def purchases(b: Backend) -> None:
    b.write(
        Event("purchase", D0 + 10 * HOUR, "u1", 100, {"plan": "pro", "country": "de", "qty": 2}),
        Event("purchase", D0 + 11 * HOUR, "u1", 300, {"plan": "pro", "country": "fr", "qty": 5}),
        Event("purchase", D0 + DAY - 1, "u2", 200, {"plan": "free", "qty": "3"}),
        Event("purchase", D0 + DAY, "u3", 400, {"plan": "team", "country": "de", "qty": 1.5}),
        Event("purchase", D0 + DAY + HOUR, "", 500, {"qty": "many"}),  # no entity
        Event("signup", D0 + 12 * HOUR, "u4"),
    )


@pytest.mark.parametrize(
    ("name", "agg", "expected"),
    [
        ("purchase", Agg.COUNT, [(3.0, 3), (2.0, 2)]),
        ("purchase", Agg.SUM, [(600.0, 3), (900.0, 2)]),
        ("purchase", Agg.UNIQUE, [(2.0, 3), (1.0, 2)]),
        ("purchase", Agg.AVG, [(200.0, 3), (450.0, 2)]),
        ("purchase", Agg.MIN, [(100.0, 3), (400.0, 2)]),
        ("purchase", Agg.MAX, [(300.0, 3), (500.0, 2)]),
        ("purchase", Agg.P50, [(200.0, 3), (450.0, 2)]),
        (None, Agg.COUNT, [(4.0, 4), (2.0, 2)]),
    ],
)
def test_daily_aggregates(
    events: Backend, name: str | None, agg: Agg, expected: list[tuple[float, int]]
) -> None:
    purchases(events)
    got = buckets(events, EventAggregate(name, agg, D0, D0 + 7 * DAY))
    assert got == [(D0, {}, *expected[0]), (D0 + DAY, {}, *expected[1])]


def test_percentiles_interpolate_linearly_and_empty_values(events: Backend) -> None:
    events.write(*(Event("latency", D0 + i * MIN, "u", float(i)) for i in range(1, 11)))
    events.write(Event("latency", D0 + HOUR, "u"), Event("click", D0, "u1"))
    for agg, value in {Agg.P50: 5.5, Agg.P90: 9.1, Agg.P95: 9.55, Agg.P99: 9.91}.items():
        [(start, _, got, n)] = buckets(events, EventAggregate("latency", agg, D0, D0 + DAY))
        assert (start, n) == (D0, 10)
        assert got == pytest.approx(value)
    [avg] = events.store.event_aggregate(EventAggregate("click", Agg.AVG, D0, D0 + DAY))
    assert math.isnan(avg.value) and avg.sample_size == 0
    [total] = buckets(events, EventAggregate("click", Agg.SUM, D0, D0 + DAY))
    assert total == (D0, {}, 0.0, 0)


@pytest.mark.parametrize(
    ("filters", "count", "total"),
    [
        ([PropFilter("plan", FilterOp.EQ, ("pro",))], 2, 400),
        ([PropFilter("plan", FilterOp.NE, ("pro",))], 3, 1100),  # missing counts as different
        ([PropFilter("plan", FilterOp.IN, ("free", "team"))], 2, 600),
        ([PropFilter("plan", FilterOp.NOT_IN, ("free", "team"))], 3, 900),
        ([PropFilter("country", FilterOp.EXISTS)], 3, 800),
        ([PropFilter("country", FilterOp.NOT_EXISTS)], 2, 700),
        ([PropFilter("qty", FilterOp.GT, ("2",))], 2, 500),  # 5 and the string "3"
        ([PropFilter("qty", FilterOp.GTE, ("2",))], 3, 600),
        ([PropFilter("qty", FilterOp.LT, ("2",))], 1, 400),  # "many" is not a number
        ([PropFilter("qty", FilterOp.LTE, ("1.5",))], 1, 400),
        ([PropFilter("qty", FilterOp.GT, ("x",))], 0, 0),  # not a number: matches nothing
        ([PropFilter("qty", FilterOp.EQ, ("1.5",)), PropFilter("plan", FilterOp.EXISTS)], 1, 400),
    ],
)
def test_where_filters(events: Backend, filters: list[PropFilter], count: int, total: int) -> None:
    purchases(events)
    q = EventAggregate("purchase", Agg.SUM, D0, D0 + 7 * DAY, Grain.MONTH, where=tuple(filters))
    expected: list[tuple[int, dict[str, str], float, int]] = (
        [(ms("2024-03-01T00:00Z"), {}, float(total), count)] if count else []
    )
    assert buckets(events, q) == expected


def test_breakdown_value_prop_and_whole_range(events: Backend) -> None:
    purchases(events)
    q = EventAggregate("purchase", Agg.SUM, D0, D0 + 7 * DAY, None, by=("plan", "country"))
    assert buckets(events, q) == [
        (D0, {"plan": "", "country": ""}, 500.0, 1),
        (D0, {"plan": "free", "country": ""}, 200.0, 1),
        (D0, {"plan": "pro", "country": "de"}, 100.0, 1),
        (D0, {"plan": "pro", "country": "fr"}, 300.0, 1),
        (D0, {"plan": "team", "country": "de"}, 400.0, 1),
    ]
    qty = EventAggregate("purchase", Agg.SUM, D0, D0 + 7 * DAY, Grain.WEEK, value_prop="qty")
    assert buckets(events, qty) == [(D0, {}, 11.5, 4)]  # 2 + 5 + "3" + 1.5; "many" has none


def dst_events(b: Backend) -> None:
    """Around the start of summer time in Berlin (2024-03-31 01:00Z, CET → CEST)."""
    b.write(
        Event("tick", ms("2024-03-24T22:30Z"), "d"),  # Sun 24 Mar 23:30 CET
        Event("tick", ms("2024-03-24T23:30Z"), "c"),  # Mon 25 Mar 00:30 CET
        Event("tick", ms("2024-03-31T21:30Z"), "a"),  # Sun 31 Mar 23:30 CEST
        Event("tick", ms("2024-03-31T22:30Z"), "b"),  # Mon 1 Apr 00:30 CEST
    )


def counts(b: Backend, grain: Grain, tz: str) -> dict[int, float]:
    q = EventAggregate("tick", Agg.COUNT, D0, D0 + 60 * DAY, grain, tz)
    return {x.start_ms: x.value for x in b.store.event_aggregate(q)}


def test_weeks_and_days_in_the_timezone_across_dst(events: Backend) -> None:
    dst_events(events)
    assert counts(events, Grain.WEEK, BERLIN) == {
        ms("2024-03-17T23:00Z"): 1,  # Mon 18 Mar 00:00 CET
        ms("2024-03-24T23:00Z"): 2,
        ms("2024-03-31T22:00Z"): 1,  # Mon 1 Apr 00:00 CEST
    }
    assert counts(events, Grain.WEEK, "UTC") == {ms("2024-03-18T00:00Z"): 2, D0 + 21 * DAY: 2}
    assert counts(events, Grain.DAY, BERLIN) == {
        ms("2024-03-23T23:00Z"): 1,
        ms("2024-03-24T23:00Z"): 1,
        ms("2024-03-30T23:00Z"): 1,  # 31 Mar is 23 hours long ...
        ms("2024-03-31T22:00Z"): 1,  # ... so 1 Apr starts at 22:00Z
    }


def test_month_quarter_year_hour_in_new_york(events: Backend) -> None:
    events.write(
        Event("tick", ms("2024-04-01T02:00Z"), "x"),  # Sun 31 Mar 22:00 EDT
        Event("tick", ms("2024-04-01T05:00Z"), "y"),  # Mon 1 Apr 01:00 EDT
    )
    ny = NEW_YORK
    assert counts(events, Grain.MONTH, ny) == {
        ms("2024-03-01T05:00Z"): 1,
        ms("2024-04-01T04:00Z"): 1,
    }
    assert counts(events, Grain.QUARTER, ny) == {
        ms("2024-01-01T05:00Z"): 1,
        ms("2024-04-01T04:00Z"): 1,
    }
    assert counts(events, Grain.YEAR, ny) == {ms("2024-01-01T05:00Z"): 2}
    assert counts(events, Grain.HOUR, ny) == {
        ms("2024-04-01T02:00Z"): 1,
        ms("2024-04-01T05:00Z"): 1,
    }


def test_repeated_local_hour_is_one_bucket_at_its_later_instant(events: Backend) -> None:
    # New York falls back at 2024-11-03 06:00Z: 01:00-02:00 local happens twice
    events.write(
        Event("tick", ms("2024-11-03T05:30Z"), "a"),  # 01:30 EDT
        Event("tick", ms("2024-11-03T06:30Z"), "b"),  # 01:30 EST
        Event("tick", ms("2024-11-03T07:30Z"), "c"),  # 02:30 EST
    )
    q = EventAggregate("tick", Agg.COUNT, ms("2024-11-03T00:00Z"), ms("2024-11-04T00:00Z"))
    hours = EventAggregate(q.name, q.agg, q.start_ms, q.end_ms, Grain.HOUR, NEW_YORK)
    assert buckets(events, hours) == [
        (ms("2024-11-03T06:00Z"), {}, 2.0, 2),
        (ms("2024-11-03T07:00Z"), {}, 1.0, 1),
    ]


# --- rolling uniques ------------------------------------------------------------------------
def test_rolling_unique_counts_each_entity_once_per_window(events: Backend) -> None:
    events.write(
        Event("visit", D0 - DAY + HOUR, "u4"),  # before the range: counts for D0 and D0+1
        Event("visit", D0 + HOUR, "u1"),
        Event("visit", D0 + 2 * HOUR, "u1"),
        Event("visit", D0 + DAY + HOUR, "u1"),
        Event("visit", D0 + 2 * DAY, "u2"),
        Event("visit", D0 + 3 * HOUR, "u3"),
        Event("visit", D0 + 4 * DAY + 5 * HOUR, "u3"),
        Event("visit", D0 + 4 * DAY, "", props={"x": "1"}),  # no entity
        Event("other", D0 + 5 * DAY, "u9"),
    )
    q = RollingUnique("visit", 3, D0, D0 + 6 * DAY)
    got = [(x.start_ms, x.value, x.sample_size) for x in events.store.event_rolling_unique(q)]
    assert got == [(D0 + i * DAY, n, n) for i, n in enumerate([3, 3, 3, 2, 2, 1])]
    dau = events.store.event_rolling_unique(RollingUnique("visit", 1, D0, D0 + 6 * DAY))
    assert [x.value for x in dau] == [2, 1, 1, 0, 1, 0]
    where = (PropFilter("x", FilterOp.NOT_EXISTS),)
    wau = RollingUnique(None, 7, D0 + 2 * DAY, D0 + 4 * DAY, where=where)
    assert [x.value for x in events.store.event_rolling_unique(wau)] == [4, 4]


def test_rolling_unique_in_a_timezone(events: Backend) -> None:
    dst_events(events)
    q = RollingUnique("tick", 1, ms("2024-03-30T23:00Z"), ms("2024-04-02T00:00Z"), BERLIN)
    assert [(x.start_ms, x.value) for x in events.store.event_rolling_unique(q)] == [
        (ms("2024-03-30T23:00Z"), 1.0),  # 31 Mar: a
        (ms("2024-03-31T22:00Z"), 1.0),  # 1 Apr: b
        (ms("2024-04-01T22:00Z"), 0.0),  # 2 Apr, 00:00-02:00 local is in the range
    ]
    week = RollingUnique("tick", 7, ms("2024-03-31T22:00Z"), ms("2024-04-01T22:00Z"), BERLIN)
    assert [x.value for x in events.store.event_rolling_unique(week)] == [2.0]  # 26 Mar-1 Apr
    eight = RollingUnique("tick", 8, week.start_ms, week.end_ms, BERLIN)
    assert [x.value for x in events.store.event_rolling_unique(eight)] == [3.0]  # c, a, b


# --- funnels --------------------------------------------------------------------------------
T = D0 + 10 * HOUR
STEPS = (EventMatch("view"), EventMatch("cart"), EventMatch("buy"))


def funnel_events(b: Backend) -> None:
    ads: dict[str, Scalar] = {"source": "ads"}
    seo: dict[str, Scalar] = {"source": "seo"}
    b.write(
        # u1 converts; u2's purchase lands exactly on the window edge (inclusive)
        Event("view", T, "u1", props=ads),
        Event("cart", T + 10 * MIN, "u1"),
        Event("buy", T + 30 * MIN, "u1", props={"tier": "gold"}),
        Event("view", T, "u2", props=seo),
        Event("cart", T + 20 * MIN, "u2"),
        Event("buy", T + 60 * MIN, "u2"),
        # u3's purchase is 1 ms past the window
        Event("view", T, "u3", props=ads),
        Event("cart", T + 30 * MIN, "u3"),
        Event("buy", T + 60 * MIN + 1, "u3"),
        # u4 carts before viewing: out of order, only step 1 (and no source: breakdown "")
        Event("cart", T - 5 * MIN, "u4"),
        Event("view", T, "u4"),
        Event("buy", T + 10 * MIN, "u4"),
        # u5 repeats steps: the first view starts the attempt, the first cart after it counts
        Event("view", T, "u5", props=seo),
        Event("view", T + 5 * MIN, "u5", props=ads),
        Event("cart", T + 40 * MIN, "u5"),
        Event("cart", T + 45 * MIN, "u5"),
        Event("buy", T + 50 * MIN, "u5"),
        # u6 viewed before the range: not in the funnel
        Event("view", D0 - HOUR, "u6", props=ads),
        Event("cart", T, "u6"),
        # u7 starts late in the range; its cart falls after the range end, inside the window
        Event("view", D0 + DAY - 15 * MIN, "u7", props=ads),
        Event("cart", D0 + DAY + 10 * MIN, "u7"),
        # u8 buys before carting: the purchase does not count after the cart
        Event("view", T, "u8", props=ads),
        Event("buy", T + 5 * MIN, "u8"),
        Event("cart", T + 10 * MIN, "u8"),
        # u9 carts in the same millisecond as the view: a later step must be strictly later
        Event("view", T, "u9", props=seo),
        Event("cart", T, "u9"),
    )


@WITH_LZ4
def test_funnel_counts_and_time_between_steps(events: Backend) -> None:
    funnel_events(events)
    assert events.store.event_funnel(Funnel(STEPS, D0, D0 + DAY, HOUR)) == [
        FunnelRow("", 0, 8, None, None),
        FunnelRow("", 1, 6, 1_350_000.0, 1_350_000.0),
        FunnelRow("", 2, 3, 1_200_000.0, 1_400_000.0),
    ]


@WITH_LZ4
def test_funnel_breakdown_by_first_step_property(events: Backend) -> None:
    funnel_events(events)
    rows = events.store.event_funnel(Funnel(STEPS, D0, D0 + DAY, HOUR, breakdown="source"))
    assert [(r.group, r.step, r.entities) for r in rows] == [
        ("", 0, 1),
        ("", 1, 0),
        ("", 2, 0),
        ("ads", 0, 4),
        ("ads", 1, 4),
        ("ads", 2, 1),
        ("seo", 0, 3),
        ("seo", 1, 2),
        ("seo", 2, 2),
    ]
    assert rows[1].median_ms is None and rows[1].avg_ms is None


def funnel_entities(b: Backend, steps: tuple[EventMatch, ...], window_ms: int) -> list[int]:
    return [r.entities for r in b.store.event_funnel(Funnel(steps, D0, D0 + DAY, window_ms))]


@WITH_LZ4
def test_funnel_window_and_step_filters(events: Backend) -> None:
    funnel_events(events)
    two = (EventMatch("view"), EventMatch("buy"))
    assert funnel_entities(events, two, HOUR) == [8, 5]
    assert funnel_entities(events, two, HOUR + 1) == [8, 6]  # u3 now in
    assert funnel_entities(events, two, 5 * MIN) == [8, 1]  # only u8
    gold = (EventMatch("view"), EventMatch("buy", (PropFilter("tier", FilterOp.EQ, ("gold",)),)))
    assert funnel_entities(events, gold, HOUR) == [8, 1]
    ads_views = (EventMatch("view", (PropFilter("source", FilterOp.EQ, ("ads",)),)), two[1])
    assert funnel_entities(events, ads_views, HOUR) == [5, 3]  # u5's ads view starts its own
    assert events.store.event_funnel(Funnel(STEPS, D0 + 2 * DAY, D0 + 3 * DAY, HOUR)) == []


# --- retention ------------------------------------------------------------------------------
def retention_events(b: Backend) -> None:
    b.write(
        Event("signup", D0 + 10 * HOUR, "u1"),
        Event("page", D0 + 12 * HOUR, "u1"),
        Event("page", D0 + DAY + 9 * HOUR, "u1"),
        Event("page", D0 + 3 * DAY + 9 * HOUR, "u1"),  # at/after the range end: not read
        Event("signup", D0 + 20 * HOUR, "u2"),
        Event("page", D0 + 2 * DAY + HOUR, "u2"),
        Event("signup", D0 + DAY + 5 * HOUR, "u3"),
        Event("signup", D0 - DAY, "u4"),  # first signup before the range: no cohort
        Event("signup", D0 + DAY, "u4"),
        Event("page", D0 + 8 * HOUR, "u5"),  # before its signup: does not count
        Event("signup", D0 + 9 * HOUR, "u5"),
    )


def cohorts(b: Backend, q: Retention) -> list[tuple[int, int, dict[int, int]]]:
    return [(r.cohort_ms, r.size, r.returned) for r in b.store.event_retention(q)]


def test_daily_retention_any_and_named_return_event(events: Backend) -> None:
    retention_events(events)
    anything = Retention(EventMatch("signup"), None, D0, D0 + 3 * DAY, Grain.DAY, 3)
    assert cohorts(events, anything) == [(D0, 3, {0: 3, 1: 1, 2: 1}), (D0 + DAY, 1, {0: 1})]
    page = Retention(EventMatch("signup"), EventMatch("page"), D0, D0 + 3 * DAY, Grain.DAY, 3)
    assert cohorts(events, page) == [(D0, 3, {0: 1, 1: 1, 2: 1}), (D0 + DAY, 1, {})]
    short = Retention(EventMatch("signup"), None, D0, D0 + 3 * DAY, Grain.DAY, 1)
    assert cohorts(events, short)[0] == (D0, 3, {0: 3, 1: 1})


def test_weekly_retention_in_a_timezone_across_dst(events: Backend) -> None:
    events.write(
        Event("signup", ms("2024-03-24T23:30Z"), "u1"),  # Mon 25 Mar 00:30 CET
        Event("page", ms("2024-03-31T21:30Z"), "u1"),  # Sun 31 Mar 23:30 CEST: same week
    )
    start, end = ms("2024-03-18T00:00Z"), ms("2024-04-15T00:00Z")
    signup, page = EventMatch("signup"), EventMatch("page")
    berlin = Retention(signup, page, start, end, Grain.WEEK, 2, BERLIN)
    assert cohorts(events, berlin) == [(ms("2024-03-24T23:00Z"), 1, {0: 1})]
    utc = Retention(signup, page, start, end, Grain.WEEK, 2)
    assert cohorts(events, utc) == [(ms("2024-03-18T00:00Z"), 1, {1: 1})]


def test_monthly_retention_periods_follow_the_calendar(events: Backend) -> None:
    events.write(
        Event("signup", ms("2024-01-31T12:00Z"), "u1"),
        Event("page", ms("2024-02-29T12:00Z"), "u1"),  # the next calendar month: period 1
        Event("page", ms("2024-04-01T00:00Z"), "u1"),  # period 3
    )
    jan, may = ms("2024-01-01T00:00Z"), ms("2024-05-01T00:00Z")
    q = Retention(EventMatch("signup"), EventMatch("page"), jan, may, Grain.MONTH, 4)
    assert cohorts(events, q) == [(jan, 1, {1: 1, 3: 1})]


# --- experiments ----------------------------------------------------------------------------
def experiment_events(b: Backend) -> None:
    b.write(
        Event("exposure", D0, "u1", props={"variant": "a"}),
        Event("exposure", D0 + HOUR, "u1", props={"variant": "b"}),  # the first one counts
        Event("exposure", D0 + 2 * HOUR, "u2"),  # no variant here ...
        Event("exposure", D0 + 3 * HOUR, "u2", props={"variant": "b"}),  # ... so this one
        Event("exposure", D0 + 4 * HOUR, "u3", props={"variant": "b"}),
        Event("exposure", D0 + 5 * DAY, "u4", props={"variant": "a"}),  # after the range
        Event("buy", D0 - HOUR, "u1", 50),  # before exposure: pre-period only
        Event("buy", D0 + 30 * MIN, "u1", 10, {"items": 2}),
        Event("buy", D0 + 2 * HOUR, "u1", 20, {"items": 3}),
        Event("buy", D0 + 2 * HOUR + 30 * MIN, "u2", 5, {"items": "4"}),  # before its t0
        Event("buy", D0 + 5 * HOUR, "u2", None, {"items": 1}),
        Event("buy", D0 + 5 * HOUR, "u3", 7),
    )


def test_arm_moments(events: Backend) -> None:
    experiment_events(events)
    buy = EventMatch("buy")
    cols = (
        UnitColumn(buy, UnitAgg.ANY, -DAY, 0),  # bought in the day before exposure
        UnitColumn(buy, UnitAgg.COUNT, 0, DAY),
        UnitColumn(buy, UnitAgg.SUM, 0, DAY),
        UnitColumn(buy, UnitAgg.SUM, 0, DAY, value_prop="items"),
    )
    q = ArmMoments(EventMatch("exposure"), "variant", D0, D0 + DAY, cols)
    [a, b] = events.store.arm_moments(q)
    # u1 (a): 1, 2, 30, 5;  u2 (b, exposed at 2h): 0, 2, 5, 5;  u3 (b): 0, 1, 7, 0
    assert (a.variant, a.n, a.sums) == ("a", 1, (1.0, 2.0, 30.0, 5.0))
    assert (b.variant, b.n, b.sums) == ("b", 2, (0.0, 3.0, 12.0, 5.0))
    assert a.products == {
        (0, 0): 1.0, (0, 1): 2.0, (0, 2): 30.0, (0, 3): 5.0, (1, 1): 4.0,
        (1, 2): 60.0, (1, 3): 10.0, (2, 2): 900.0, (2, 3): 150.0, (3, 3): 25.0,
    }  # fmt: skip
    assert [b.products[ij] for ij in ((1, 2), (1, 3), (2, 2), (3, 3))] == [17.0, 10.0, 74.0, 25.0]
    none = ArmMoments(EventMatch("exposure"), "variant", D0 + 9 * DAY, D0 + 10 * DAY, cols)
    assert events.store.arm_moments(none) == []


# --- KPI queries ----------------------------------------------------------------------------
def state_events(b: Backend) -> None:
    b.write(
        Event("plan", D0, "u1", 10, {"seats": 3, "org": "o1"}),
        Event("plan", D0 + DAY, "u1", 0, {"seats": 1, "org": "o1"}),
        Event("plan", D0 + HOUR, "u2", 5, {"seats": "x", "org": "o2"}),
        Event("plan", D0 + 2 * DAY, "u2", None, {"org": "o2"}),  # no value: keeps 5
        Event("plan", D0 + 2 * DAY, "u3", 7),  # no org: not a key for org
        Event("other", D0, "u9", 100),
    )


@pytest.mark.parametrize(
    ("combine", "values"),
    [
        (StateCombine.SUM, [None, 15.0, 5.0, 12.0]),
        (StateCombine.COUNT, [None, 2.0, 1.0, 2.0]),
        (StateCombine.AVG, [None, 7.5, 2.5, 4.0]),
        (StateCombine.MIN, [None, 5.0, 0.0, 0.0]),
        (StateCombine.MAX, [None, 10.0, 5.0, 7.0]),
    ],
)
def test_kpi_state(events: Backend, combine: StateCombine, values: list[float | None]) -> None:
    state_events(events)
    ends = (D0, D0 + DAY, D0 + 2 * DAY, D0 + 3 * DAY)  # strictly before each end
    rows = events.store.kpi_state(StateQuery("plan", None, None, combine, ends))
    assert [(r.period, r.value, r.entities) for r in rows] == [
        (1, values[1], 2),
        (2, values[2], 2),
        (3, values[3], 3),
    ]


def test_kpi_state_of_properties(events: Backend) -> None:
    state_events(events)
    ends = (D0 + HOUR + 1, D0 + 3 * DAY)
    seats = StateQuery("plan", "seats", "org", StateCombine.SUM, ends)
    # o1: 3 then 1; o2: "x" is no number, so no value (its entity still has a state)
    assert [(r.period, r.value, r.entities) for r in events.store.kpi_state(seats)] == [
        (0, 3.0, 1),
        (1, 1.0, 1),
    ]
    assert events.store.kpi_state(StateQuery("plan", None, None, StateCombine.SUM, ())) == []


def conversion_events(b: Backend) -> None:
    b.write(
        Event("trial", D0, "u1", props={"src": "ads", "acct": "a1"}),
        Event("trial", D0 + HOUR, "u1", props={"src": "seo", "acct": "a1"}),  # not the first
        Event("paid", D0 + 2 * DAY, "u1", props={"acct": "a1"}),
        Event("trial", D0 + 5 * HOUR, "u2", props={"src": "seo", "acct": "a2"}),
        Event("paid", D0 + 5 * HOUR, "u2", props={"acct": "a2"}),  # not strictly after
        Event("trial", D0 + DAY + HOUR, "u3", props={"src": "ads"}),
        Event("paid", D0 + 9 * DAY, "u3"),  # too late
        Event("trial", D0 + DAY + 2 * HOUR, "u1", props={"acct": "a1"}),  # u1 again, day 2
        Event("paid", D0 + DAY + 3 * HOUR, "u4", props={"acct": "a1"}),
    )


def test_kpi_conversion(events: Backend) -> None:
    conversion_events(events)
    starts, ends = (D0, D0 + DAY), (D0 + DAY, D0 + 2 * DAY)
    q = ConversionQuery("trial", "paid", 7 * DAY, starts, ends, by=("src",))
    got = [(r.period, r.group, r.entered, r.converted) for r in events.store.kpi_conversion(q)]
    assert got == [(0, ("ads",), 1, 1), (0, ("seo",), 1, 0), (1, ("",), 1, 1), (1, ("ads",), 1, 0)]
    by_acct = ConversionQuery("trial", "paid", HOUR, starts, ends, key_prop="acct")
    got = [
        (r.period, r.group, r.entered, r.converted) for r in events.store.kpi_conversion(by_acct)
    ]
    assert got == [(0, (), 2, 0), (1, (), 1, 1)]  # a1 on day 2: u4's paid within the hour
    assert events.store.kpi_conversion(ConversionQuery("trial", "paid", 1, (), ())) == []


def test_newest_event_ms(events: Backend) -> None:
    conversion_events(events)
    assert events.store.newest_event_ms(["trial"]) == D0 + DAY + 2 * HOUR
    assert events.store.newest_event_ms(["trial", "paid"]) == D0 + 9 * DAY
    assert events.store.newest_event_ms(["none"]) is None
    assert events.store.newest_event_ms([]) is None


def test_kpi_sql_reads_v_events_with_parameters(events: Backend) -> None:
    conversion_events(events)
    query = (
        "SELECT count(*) AS n, min(ts) AS first FROM v_events "
        "WHERE name = 'trial' AND ts >= $start_ms AND ts < $end_ms"
    )
    got = events.store.kpi_sql(query, {"start_ms": D0 + HOUR, "end_ms": D0 + 2 * DAY})
    assert (got.columns, got.rows) == (["n", "first"], [(4, D0 + HOUR)])
    assert events.store.kpi_sql("SELECT 1 AS one;", {"start_ms": 5}).rows == [(1,)]


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO v_events VALUES ('x', 1, 'u', 1, '{}')",
        "SELECT 1; DELETE FROM events",
        "SELECT nope FROM v_events",
        "DROP TABLE events",
    ],
)
def test_kpi_sql_refuses_writes_and_bad_queries(events: Backend, query: str) -> None:
    events.write(Event("visit", D0, "u1"))
    with pytest.raises(BadDataError, match=r"^sql: the query failed: "):
        events.store.kpi_sql(query, {})
    assert len(events.store.read_events(None, 0, NOW)) == 1


# --- hostile input --------------------------------------------------------------------------
HOSTILE = "'; DROP TABLE events; --"
INJECT = "' OR '1'='1"


def test_hostile_property_names_and_values_are_data(events: Backend) -> None:
    tricky: dict[str, Scalar] = {
        "a.b": "1",
        "$.a": "2",
        "x/y": "3",
        "~t": "4",
        '"q"': "5",
        HOSTILE: INJECT,
    }
    tricky |= {"{p0:String}": "{p1:String}", "back\\slash": "tab\there"}
    events.write(Event("e", D0, "u1", props=tricky), Event("e", D0 + 1, "u2", props={"a": "1"}))
    for prop, value in tricky.items():
        f = PropFilter(prop, FilterOp.EQ, (str(value),))
        q = EventAggregate("e", Agg.COUNT, D0, D0 + DAY, where=(f,))
        assert buckets(events, q) == [(D0, {}, 1.0, 1)], prop
    for value in ("x", INJECT + " --", "1' OR 1=1 --"):
        f = PropFilter(HOSTILE, FilterOp.EQ, (value,))
        assert buckets(events, EventAggregate("e", Agg.COUNT, D0, D0 + DAY, where=(f,))) == []
    q = EventAggregate("e", Agg.COUNT, D0, D0 + DAY, by=(HOSTILE,))
    assert [x.group for x in events.store.event_aggregate(q)] == [{HOSTILE: ""}, {HOSTILE: INJECT}]
    assert buckets(events, EventAggregate(INJECT, Agg.COUNT, D0, D0 + DAY)) == []
    steps = (EventMatch("e"), EventMatch(f"e{INJECT}"))
    assert funnel_entities(events, steps, HOUR) == [2, 0]
    assert len(events.store.read_events(None, 0, NOW)) == 2


# --- exclusions: which in-scope events an aggregation left out, and why (issue 17) ----------
def surveys(b: Backend) -> None:
    """Ten nps_response events on two days: the score as a property, as the value, as text
    that is not a number, and not at all."""
    b.write(
        Event("nps_response", D0 + HOUR, "u1", None, {"score": 9}),
        Event("nps_response", D0 + 2 * HOUR, "u2", None, {"score": 3, "plan": "pro"}),
        Event("nps_response", D0 + 3 * HOUR, "u3", None, {"score": "ten"}),
        Event("nps_response", D0 + 4 * HOUR, "u4", 10.0),
        Event("nps_response", D0 + 5 * HOUR, "u5", 6.0, {"plan": "pro"}),
        Event("nps_response", D0 + DAY, "u6", 8.0),
        Event("nps_response", D0 + DAY + 1, "u7", None, {"score": "7"}),
        Event("nps_response", D0 + DAY + 2, "u8", 2.0, {"score": 10}),
        Event("nps_response", D0 + DAY + 3, "u9"),
        Event("nps_response", D0 + DAY + 4, "u10", None, {"score": None}),
        Event("other", D0 + HOUR, "u1", 1.0),
    )


Counts = tuple[int, ...]


def exclusions(b: Backend, q: EventAggregate) -> list[tuple[int, dict[str, str], int, Counts]]:
    return [(x.start_ms, x.group, x.rows, x.excluded) for x in b.store.event_exclusions(q)]


def test_exclusions_of_a_numeric_filter_count_missing_wrong_type_and_outside(
    events: Backend,
) -> None:
    surveys(events)
    f = PropFilter("score", FilterOp.GTE, ("9",))
    q = EventAggregate("nps_response", Agg.COUNT, D0, D0 + 7 * DAY, where=(f,))
    assert [c.reason.value for c in exclusion_checks(q)] == [
        "missing_property",
        "wrong_type",
        "outside_filter",
    ]
    # day 1: 9 kept; 3 outside; "ten" wrong type; u4, u5 missing. day 2: 10 kept; "7" outside;
    # u6, u9 and the JSON null missing
    assert exclusions(events, q) == [
        (D0, {}, 5, (2, 1, 1)),
        (D0 + DAY, {}, 5, (3, 0, 1)),
    ]
    assert buckets(events, q) == [(D0, {}, 1.0, 1), (D0 + DAY, {}, 1.0, 1)]


def test_exclusions_of_an_in_filter_have_no_wrong_type(events: Backend) -> None:
    surveys(events)
    f = PropFilter("score", FilterOp.IN, ("9", "10"))
    q = EventAggregate("nps_response", Agg.COUNT, D0, D0 + 7 * DAY, None, where=(f,))
    # in compares text: "ten" and "7" and 3 are outside; five have no score
    assert exclusions(events, q) == [(D0, {}, 10, (5, 3))]


def test_exclusions_of_value_aggregations(events: Backend) -> None:
    surveys(events)
    of_value = EventAggregate("nps_response", Agg.AVG, D0, D0 + 7 * DAY, None)
    assert exclusions(events, of_value) == [(D0, {}, 10, (6,))]  # four carry a value
    of_prop = EventAggregate("nps_response", Agg.SUM, D0, D0 + 7 * DAY, None, value_prop="score")
    assert exclusions(events, of_prop) == [(D0, {}, 10, (5, 1))]  # 9, 3, 10 and "7" are numbers
    [(_, _, total, n)] = buckets(events, of_prop)
    assert (total, n) == (29.0, 4)


def test_value_filters_keep_events_whose_value_is_in_range(events: Backend) -> None:
    surveys(events)
    top = (ValueFilter(FilterOp.GTE, 9.0), ValueFilter(FilterOp.LTE, 10.0))
    q = EventAggregate("nps_response", Agg.COUNT, D0, D0 + 7 * DAY, value_where=top)
    assert buckets(events, q) == [(D0, {}, 1.0, 1)]  # u4's 10
    assert exclusions(events, q) == [(D0, {}, 5, (3, 1, 0)), (D0 + DAY, {}, 5, (3, 2, 0))]
    of_prop = EventAggregate(
        "nps_response", Agg.COUNT, D0, D0 + 7 * DAY, None, value_prop="score", value_where=top
    )
    assert buckets(events, of_prop) == [(D0, {}, 2.0, 2)]  # 9 and 10
    assert exclusions(events, of_prop) == [(D0, {}, 10, (5, 1, 2, 0))]


def test_exclusions_break_down_by_group_and_nothing_in_scope_is_no_bucket(
    events: Backend,
) -> None:
    surveys(events)
    f = PropFilter("score", FilterOp.EXISTS)
    q = EventAggregate("nps_response", Agg.COUNT, D0, D0 + DAY, None, where=(f,), by=("plan",))
    assert exclusions(events, q) == [(D0, {"plan": ""}, 3, (1,)), (D0, {"plan": "pro"}, 2, (1,))]
    plain = EventAggregate("nps_response", Agg.COUNT, D0, D0 + DAY, None)
    assert exclusions(events, plain) == [(D0, {}, 5, ())]
    assert exclusions(events, EventAggregate("none", Agg.COUNT, D0, D0 + DAY)) == []


def keyed(b: Backend) -> None:
    """Six `plan` events on one day: an entity or none, a customer property or none."""
    b.write(
        Event("plan", D0 + HOUR, "u1", 10.0, {"customer": "c1"}),
        Event("plan", D0 + 2 * HOUR, "", 20.0, {"customer": "c2"}),
        Event("plan", D0 + 3 * HOUR, "u3", 30.0, {"customer": ""}),
        Event("plan", D0 + 4 * HOUR, "u4", 40.0),
        Event("plan", D0 + 5 * HOUR, "u5", 50.0, {"customer": None}),
        Event("plan", D0 + 6 * HOUR, "u6", None, {"customer": "c6"}),
    )


def test_an_event_without_the_entity_key_is_left_out_as_missing(events: Backend) -> None:
    keyed(events)
    q = EventAggregate("plan", Agg.COUNT, D0, D0 + DAY, key=EntityKey())
    assert [(c.reason.value, c.field) for c in exclusion_checks(q)] == [
        ("missing_property", "entity")
    ]
    assert exclusions(events, q) == [(D0, {}, 6, (1,))]  # the event with entity ""
    assert buckets(events, q) == [(D0, {}, 5.0, 5)]


def test_an_event_without_the_key_property_is_left_out_before_its_value(events: Backend) -> None:
    keyed(events)
    q = EventAggregate("plan", Agg.SUM, D0, D0 + DAY, key=EntityKey("customer"))
    assert [(c.reason.value, c.field) for c in exclusion_checks(q)] == [
        ("missing_property", "props.customer"),
        ("missing_property", "value"),
    ]
    # "" / missing / JSON null customer: three without the key; u6 has the key but no value
    assert exclusions(events, q) == [(D0, {}, 6, (3, 1))]
    assert buckets(events, q) == [(D0, {}, 30.0, 2)]
