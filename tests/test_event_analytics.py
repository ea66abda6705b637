"""Event analytics (query/events.py over storage/duckdb/event_queries.py): aggregations per
calendar bucket, rolling uniques, funnels and retention against hand-computed fixtures written
through the real ingest pipeline, then the HTTP API in process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event
from opsmetrics.query import events as ev
from opsmetrics.query.events import Agg, EventMatch, FilterOp, Grain, PropFilter
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from opsmetrics.web.app import create_app
from opsmetrics.web.routers import events as events_router

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


D0 = ms("2024-03-04T00:00Z")  # a Monday


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, limits=Limits(events_late_window_ms=400 * DAY))
    services = open_services(settings, FakeClock(ms("2024-06-01T00:00Z")))
    try:
        yield services
    finally:
        services.close()


def write(svc: Services, *events: Event) -> None:
    svc.ingestor.write(WriteRequest("t", events=list(events)))


def buckets(svc: Services, q: ev.EventAggregate) -> list[tuple[int, dict[str, str], float, int]]:
    return [(b.start_ms, b.group, b.value, b.sample_size) for b in ev.aggregate(svc.storage, q)]


# --- aggregations ---------------------------------------------------------------------------
def purchases(svc: Services) -> None:
    write(
        svc,
        Event("purchase", D0 + 10 * HOUR, "u1", 100, {"plan": "pro", "country": "de"}),
        Event("purchase", D0 + 11 * HOUR, "u1", 300, {"plan": "pro", "country": "fr"}),
        Event("purchase", D0 + DAY - 1, "u2", 200, {"plan": "free"}),
        Event("purchase", D0 + DAY, "u3", 400, {"plan": "team", "country": "de"}),
        Event("purchase", D0 + DAY + HOUR, "", 500),  # no entity: not a unique entity
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
        (None, Agg.COUNT, [(4.0, 4), (2.0, 2)]),
    ],
)
def test_daily_aggregates(
    svc: Services, name: str | None, agg: Agg, expected: list[tuple[float, int]]
) -> None:
    purchases(svc)
    got = buckets(svc, ev.EventAggregate(name, agg, D0, D0 + 7 * DAY))
    assert got == [(D0, {}, *expected[0]), (D0 + DAY, {}, *expected[1])]


def test_range_end_is_exclusive_and_start_inclusive(svc: Services) -> None:
    purchases(svc)
    got = buckets(svc, ev.EventAggregate("purchase", Agg.COUNT, D0 + 11 * HOUR, D0 + DAY))
    assert got == [(D0, {}, 2.0, 2)]  # 11:00 and 23:59:59.999; 00:00 next day is out


def test_percentiles_interpolate_linearly(svc: Services) -> None:
    write(svc, *(Event("latency", D0 + i * MIN, "u", float(i)) for i in range(1, 11)))
    write(svc, Event("latency", D0 + HOUR, "u"))  # no value: not in the sample
    expected = {Agg.P50: 5.5, Agg.P90: 9.1, Agg.P95: 9.55, Agg.P99: 9.91}
    for agg, value in expected.items():
        [(start, _, got, n)] = buckets(svc, ev.EventAggregate("latency", agg, D0, D0 + DAY))
        assert (start, n) == (D0, 10)
        assert got == pytest.approx(value)


def test_avg_of_no_values_is_nan(svc: Services) -> None:
    write(svc, Event("click", D0, "u1"))
    [b] = ev.aggregate(svc.storage, ev.EventAggregate("click", Agg.AVG, D0, D0 + DAY))
    assert b.value != b.value and b.sample_size == 0
    [s] = ev.aggregate(svc.storage, ev.EventAggregate("click", Agg.SUM, D0, D0 + DAY))
    assert (s.value, s.sample_size) == (0.0, 0)


@pytest.mark.parametrize(
    ("filters", "count", "total"),
    [
        ([PropFilter("plan", FilterOp.EQ, ("pro",))], 2, 400),
        ([PropFilter("plan", FilterOp.NE, ("pro",))], 3, 1100),  # missing counts as different
        ([PropFilter("plan", FilterOp.IN, ("free", "team"))], 2, 600),
        ([PropFilter("plan", FilterOp.NOT_IN, ("free", "team"))], 3, 900),
        ([PropFilter("country", FilterOp.EXISTS)], 3, 800),
        ([PropFilter("country", FilterOp.NOT_EXISTS)], 2, 700),
        (
            [
                PropFilter("plan", FilterOp.EQ, ("pro",)),
                PropFilter("country", FilterOp.EQ, ("de",)),
            ],
            1,
            100,
        ),
    ],
)
def test_where_filters(svc: Services, filters: list[PropFilter], count: int, total: float) -> None:
    purchases(svc)
    q = ev.EventAggregate("purchase", Agg.SUM, D0, D0 + 7 * DAY, Grain.MONTH, where=tuple(filters))
    assert buckets(svc, q) == [(ms("2024-03-01T00:00Z"), {}, total, count)]


def test_filters_compare_numbers_and_booleans_as_json_text(svc: Services) -> None:
    write(svc, Event("order", D0, "u1", props={"items": 5, "vip": True, "rate": 1.5}))
    write(svc, Event("order", D0 + 1, "u2", props={"items": 50, "vip": False, "rate": None}))
    for prop, value in (("items", 5), ("vip", True), ("rate", 1.5)):
        f = PropFilter(prop, FilterOp.EQ, (ev.prop_text(value),))
        q = ev.EventAggregate("order", Agg.UNIQUE, D0, D0 + DAY, where=(f,))
        assert buckets(svc, q) == [(D0, {}, 1.0, 1)], prop
    null_is_missing = PropFilter("rate", FilterOp.EXISTS)
    q = ev.EventAggregate("order", Agg.COUNT, D0, D0 + DAY, where=(null_is_missing,))
    assert buckets(svc, q) == [(D0, {}, 1.0, 1)]


def test_breakdown_by_two_properties(svc: Services) -> None:
    purchases(svc)
    q = ev.EventAggregate(
        "purchase", Agg.SUM, D0, D0 + 7 * DAY, Grain.MONTH, by=("plan", "country")
    )
    march = ms("2024-03-01T00:00Z")
    assert buckets(svc, q) == [
        (march, {"plan": "", "country": ""}, 500.0, 1),
        (march, {"plan": "free", "country": ""}, 200.0, 1),
        (march, {"plan": "pro", "country": "de"}, 100.0, 1),
        (march, {"plan": "pro", "country": "fr"}, 300.0, 1),
        (march, {"plan": "team", "country": "de"}, 400.0, 1),
    ]


def dst_events(svc: Services) -> None:
    """Around the start of summer time in Berlin (2024-03-31 01:00Z, CET → CEST)."""
    write(
        svc,
        Event("tick", ms("2024-03-24T22:30Z"), "d"),  # Sun 24 Mar 23:30 CET
        Event("tick", ms("2024-03-24T23:30Z"), "c"),  # Mon 25 Mar 00:30 CET
        Event("tick", ms("2024-03-31T21:30Z"), "a"),  # Sun 31 Mar 23:30 CEST
        Event("tick", ms("2024-03-31T22:30Z"), "b"),  # Mon 1 Apr 00:30 CEST
    )


def counts(svc: Services, grain: Grain, tz: str) -> dict[int, float]:
    q = ev.EventAggregate("tick", Agg.COUNT, D0, D0 + 60 * DAY, grain, tz)
    return {b.start_ms: b.value for b in ev.aggregate(svc.storage, q)}


def test_weeks_start_monday_in_the_timezone_across_dst(svc: Services) -> None:
    dst_events(svc)
    assert counts(svc, Grain.WEEK, "Europe/Berlin") == {
        ms("2024-03-17T23:00Z"): 1,  # Mon 18 Mar 00:00 CET
        ms("2024-03-24T23:00Z"): 2,  # Mon 25 Mar 00:00 CET
        ms("2024-03-31T22:00Z"): 1,  # Mon 1 Apr 00:00 CEST
    }
    assert counts(svc, Grain.WEEK, "UTC") == {
        ms("2024-03-18T00:00Z"): 2,
        ms("2024-03-25T00:00Z"): 2,
    }


def test_days_in_the_timezone_across_dst(svc: Services) -> None:
    dst_events(svc)
    assert counts(svc, Grain.DAY, "Europe/Berlin") == {
        ms("2024-03-23T23:00Z"): 1,
        ms("2024-03-24T23:00Z"): 1,
        ms("2024-03-30T23:00Z"): 1,  # 31 Mar is 23 hours long ...
        ms("2024-03-31T22:00Z"): 1,  # ... so 1 Apr starts at 22:00Z
    }


def test_month_quarter_year_in_new_york(svc: Services) -> None:
    write(
        svc,
        Event("tick", ms("2024-04-01T02:00Z"), "x"),  # Sun 31 Mar 22:00 EDT
        Event("tick", ms("2024-04-01T05:00Z"), "y"),  # Mon 1 Apr 01:00 EDT
    )
    ny = "America/New_York"
    assert counts(svc, Grain.MONTH, ny) == {ms("2024-03-01T05:00Z"): 1, ms("2024-04-01T04:00Z"): 1}
    assert counts(svc, Grain.QUARTER, ny) == {
        ms("2024-01-01T05:00Z"): 1,
        ms("2024-04-01T04:00Z"): 1,
    }
    assert counts(svc, Grain.YEAR, ny) == {ms("2024-01-01T05:00Z"): 2}
    assert counts(svc, Grain.HOUR, ny) == {ms("2024-04-01T02:00Z"): 1, ms("2024-04-01T05:00Z"): 1}


def test_rolling_unique_counts_each_entity_once_per_window(svc: Services) -> None:
    write(
        svc,
        Event("visit", D0 - DAY + HOUR, "u4"),  # before the range: counts for D0 and D0+1
        Event("visit", D0 + HOUR, "u1"),
        Event("visit", D0 + 2 * HOUR, "u1"),
        Event("visit", D0 + DAY + HOUR, "u1"),
        Event("visit", D0 + 2 * DAY, "u2"),
        Event("visit", D0 + 3 * HOUR, "u3"),
        Event("visit", D0 + 4 * DAY + 5 * HOUR, "u3"),
        Event("other", D0 + 5 * DAY, "u9"),
    )
    q = ev.RollingUnique("visit", 3, D0, D0 + 6 * DAY)
    got = [(b.start_ms, b.value) for b in ev.rolling_unique(svc.storage, q)]
    assert got == [(D0 + i * DAY, n) for i, n in enumerate([3.0, 3.0, 3.0, 2.0, 2.0, 1.0])]
    dau = ev.RollingUnique("visit", 1, D0, D0 + 6 * DAY)
    assert [b.value for b in ev.rolling_unique(svc.storage, dau)] == [2, 1, 1, 0, 1, 0]


def test_rolling_unique_in_a_timezone(svc: Services) -> None:
    dst_events(svc)
    q = ev.RollingUnique(
        "tick", 1, ms("2024-03-30T23:00Z"), ms("2024-04-02T00:00Z"), "Europe/Berlin"
    )
    got = [(b.start_ms, b.value) for b in ev.rolling_unique(svc.storage, q)]
    assert got == [
        (ms("2024-03-30T23:00Z"), 1.0),  # 31 Mar: a
        (ms("2024-03-31T22:00Z"), 1.0),  # 1 Apr: b
        (ms("2024-04-01T22:00Z"), 0.0),  # 2 Apr, 00:00-02:00 local is in the range
    ]


# --- funnels --------------------------------------------------------------------------------
T = D0 + 10 * HOUR


def funnel_events(svc: Services) -> None:
    ads, seo = {"source": "ads"}, {"source": "seo"}
    write(
        svc,
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
        # u4 carts before viewing: out of order, only step 1
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


STEPS = (EventMatch("view"), EventMatch("cart"), EventMatch("buy"))


def step_table(result: ev.FunnelResult) -> list[list[tuple[Any, ...]]]:
    return [
        [(s.entities, s.median_ms_from_previous, s.avg_ms_from_previous) for s in g.steps]
        for g in result.groups
    ]


def test_funnel_counts_conversion_and_time_between_steps(svc: Services) -> None:
    funnel_events(svc)
    result = ev.funnel(svc.storage, ev.Funnel(STEPS, D0, D0 + DAY, HOUR))
    [group] = result.groups
    assert group.breakdown is None
    assert step_table(result) == [
        [(8, None, None), (6, 1_350_000.0, 1_350_000.0), (3, 1_200_000.0, 1_400_000.0)]
    ]
    view, cart, buy = group.steps
    assert (view.name, view.conversion_from_previous, view.drop_off) == ("view", 1.0, 0)
    assert (cart.conversion_from_previous, cart.conversion_from_first) == (0.75, 0.75)
    assert (buy.conversion_from_previous, buy.conversion_from_first) == (0.5, 0.375)
    assert (cart.drop_off, buy.drop_off, buy.drop_off_rate) == (2, 3, 0.5)


def test_funnel_breakdown_by_first_step_property(svc: Services) -> None:
    funnel_events(svc)
    result = ev.funnel(svc.storage, ev.Funnel(STEPS, D0, D0 + DAY, HOUR, breakdown="source"))
    got = {g.breakdown: [s.entities for s in g.steps] for g in result.groups}
    assert got == {"": [1, 0, 0], "ads": [4, 4, 1], "seo": [3, 2, 2]}


def test_funnel_window_and_step_filters(svc: Services) -> None:
    funnel_events(svc)
    two = (EventMatch("view"), EventMatch("buy"))
    assert entities(svc, ev.Funnel(two, D0, D0 + DAY, HOUR)) == [8, 5]
    assert entities(svc, ev.Funnel(two, D0, D0 + DAY, HOUR + 1)) == [8, 6]  # u3 now in
    assert entities(svc, ev.Funnel(two, D0, D0 + DAY, 5 * MIN)) == [8, 1]  # only u8
    gold = (EventMatch("view"), EventMatch("buy", (PropFilter("tier", FilterOp.EQ, ("gold",)),)))
    assert entities(svc, ev.Funnel(gold, D0, D0 + DAY, HOUR)) == [8, 1]
    ads_views = (EventMatch("view", (PropFilter("source", FilterOp.EQ, ("ads",)),)), two[1])
    # u5's second view (ads) starts its attempt now: buy 45 min later
    assert entities(svc, ev.Funnel(ads_views, D0, D0 + DAY, HOUR)) == [5, 3]


def entities(svc: Services, q: ev.Funnel) -> list[int]:
    [group] = ev.funnel(svc.storage, q).groups
    return [s.entities for s in group.steps]


def test_empty_funnel_has_no_groups(svc: Services) -> None:
    assert ev.funnel(svc.storage, ev.Funnel(STEPS, D0, D0 + DAY, HOUR)).groups == []


# --- retention ------------------------------------------------------------------------------
def retention_events(svc: Services) -> None:
    write(
        svc,
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


def matrix(m: ev.RetentionMatrix) -> list[tuple[int, int, list[int | None]]]:
    return [(c.start_ms, c.size, c.counts) for c in m.cohorts]


def test_daily_retention_any_event(svc: Services) -> None:
    retention_events(svc)
    q = ev.Retention(EventMatch("signup"), None, D0, D0 + 3 * DAY, Grain.DAY, 3)
    m = ev.retention(svc.storage, q)
    assert matrix(m) == [(D0, 3, [3, 1, 1, None]), (D0 + DAY, 1, [1, 0, None, None])]
    assert m.cohorts[0].rates == [1.0, 1 / 3, 1 / 3, None]


def test_daily_retention_named_return_event(svc: Services) -> None:
    retention_events(svc)
    q = ev.Retention(EventMatch("signup"), EventMatch("page"), D0, D0 + 3 * DAY, Grain.DAY, 3)
    assert matrix(ev.retention(svc.storage, q)) == [
        (D0, 3, [1, 1, 1, None]),
        (D0 + DAY, 1, [0, 0, None, None]),
    ]


def test_weekly_retention_in_a_timezone_across_dst(svc: Services) -> None:
    write(
        svc,
        Event("signup", ms("2024-03-24T23:30Z"), "u1"),  # Mon 25 Mar 00:30 CET
        Event("page", ms("2024-03-31T21:30Z"), "u1"),  # Sun 31 Mar 23:30 CEST: same week
    )
    start, end = ms("2024-03-18T00:00Z"), ms("2024-04-15T00:00Z")
    berlin = ev.Retention(
        EventMatch("signup"), EventMatch("page"), start, end, Grain.WEEK, 2, "Europe/Berlin"
    )
    assert matrix(ev.retention(svc.storage, berlin)) == [(ms("2024-03-24T23:00Z"), 1, [1, 0, 0])]
    utc = ev.Retention(EventMatch("signup"), EventMatch("page"), start, end, Grain.WEEK, 2)
    assert matrix(ev.retention(svc.storage, utc)) == [(ms("2024-03-18T00:00Z"), 1, [0, 1, 0])]


def test_monthly_retention_periods_follow_the_calendar(svc: Services) -> None:
    write(
        svc,
        Event("signup", ms("2024-01-31T12:00Z"), "u1"),
        Event("page", ms("2024-02-29T12:00Z"), "u1"),  # the next calendar month: period 1
        Event("page", ms("2024-04-01T00:00Z"), "u1"),  # period 3
    )
    q = ev.Retention(
        EventMatch("signup"),
        EventMatch("page"),
        ms("2024-01-01T00:00Z"),
        ms("2024-05-01T00:00Z"),
        Grain.MONTH,
        4,
    )
    assert matrix(ev.retention(svc.storage, q)) == [
        (ms("2024-01-01T00:00Z"), 1, [0, 1, 0, 1, None])
    ]


# --- hostile input --------------------------------------------------------------------------
HOSTILE = "'; DROP TABLE events; --"
INJECT = "' OR '1'='1"


def test_hostile_property_names_and_values_are_data(svc: Services) -> None:
    tricky = {"a.b": "1", "$.a": "2", "x/y": "3", "~t": "4", '"q"': "5", HOSTILE: INJECT}
    write(svc, Event("e", D0, "u1", props=tricky), Event("e", D0 + 1, "u2", props={"a": "1"}))
    for prop, value in tricky.items():
        q = ev.EventAggregate(
            "e", Agg.COUNT, D0, D0 + DAY, where=(PropFilter(prop, FilterOp.EQ, (value,)),)
        )
        assert buckets(svc, q) == [(D0, {}, 1.0, 1)], prop
    for value in ("x", INJECT + " --", "1' OR 1=1 --"):
        q = ev.EventAggregate(
            "e", Agg.COUNT, D0, D0 + DAY, where=(PropFilter(HOSTILE, FilterOp.EQ, (value,)),)
        )
        assert buckets(svc, q) == []
    q = ev.EventAggregate("e", Agg.COUNT, D0, D0 + DAY, by=(HOSTILE,))
    assert [b.group for b in ev.aggregate(svc.storage, q)] == [{HOSTILE: ""}, {HOSTILE: INJECT}]
    q = ev.EventAggregate(INJECT, Agg.COUNT, D0, D0 + DAY)
    assert buckets(svc, q) == []
    steps = (EventMatch("e"), EventMatch(f"e{INJECT}"))
    assert entities(svc, ev.Funnel(steps, D0, D0 + DAY, HOUR, breakdown=HOSTILE + "x")) == [2, 0]
    with pytest.raises(BadDataError, match="unknown timezone"):
        ev.aggregate(
            svc.storage, ev.EventAggregate("e", Agg.COUNT, D0, D0 + DAY, tz=f"UTC{INJECT}")
        )
    assert svc.storage.stats().events == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: ev.funnel(s, ev.Funnel(STEPS[:1], D0, D0 + DAY, HOUR)), "2 to 20 steps"),
        (lambda s: ev.funnel(s, ev.Funnel(STEPS, D0, D0 + DAY, 0)), "window"),
        (lambda s: ev.funnel(s, ev.Funnel(STEPS, D0, D0, HOUR)), "end must be after start"),
        (
            lambda s: ev.aggregate(
                s,
                ev.EventAggregate(
                    "e", Agg.COUNT, D0, D0 + DAY, where=(PropFilter("p", FilterOp.EQ, ("a", "b")),)
                ),
            ),
            "exactly one value",
        ),
        (
            lambda s: ev.aggregate(
                s,
                ev.EventAggregate(
                    "e", Agg.COUNT, D0, D0 + DAY, where=(PropFilter("p", FilterOp.IN),)
                ),
            ),
            "at least one value",
        ),
        (
            lambda s: ev.aggregate(s, ev.EventAggregate("e", Agg.COUNT, D0, D0 + DAY, by=("",))),
            "empty",
        ),
        (
            lambda s: ev.retention(
                s, ev.Retention(EventMatch("a"), None, D0, D0 + DAY, Grain.HOUR)
            ),
            "day, week or month",
        ),
        (lambda s: ev.rolling_unique(s, ev.RollingUnique("a", 0, D0, D0 + DAY)), "1 to 400 days"),
    ],
)
def test_invalid_requests_are_user_errors(svc: Services, call: Any, message: str) -> None:
    with pytest.raises(BadDataError, match=message):
        call(svc.storage)


# --- HTTP -----------------------------------------------------------------------------------
def api(svc: Services, path: str, params: dict[str, Any]) -> httpx.Response:
    app = create_app(svc)
    if not any(getattr(r, "path", "") == "/api/v1/events/funnel" for r in app.routes):
        app.include_router(events_router.router)  # until the lead wires it in web/app.py

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://opsmetrics.test") as c:
            return await c.get(path, params=params)

    return asyncio.run(get())


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def seconds(ms_: int) -> str:
    return str(ms_ / 1000)


def test_api_aggregate_with_where_and_breakdown(svc: Services) -> None:
    purchases(svc)
    where = json.dumps([{"prop": "plan", "op": "in", "values": ["pro", "team"]}])
    data = ok(
        api(
            svc,
            "/api/v1/events/aggregate",
            {
                "name": "purchase",
                "agg": "sum",
                "grain": "day",
                "tz": "Europe/Berlin",
                "start": "2024-03-03T00:00:00Z",
                "end": seconds(D0 + 7 * DAY),
                "where": where,
                "by": "country",
            },
        )
    )
    assert data["agg"] == "sum" and data["by"] == ["country"]
    assert data["buckets"] == [
        {
            "t": "2024-03-04T00:00:00+01:00",
            "start_ms": ms("2024-03-03T23:00Z"),
            "group": {"country": "de"},
            "value": 100.0,
            "sample_size": 1,
        },
        {
            "t": "2024-03-04T00:00:00+01:00",
            "start_ms": ms("2024-03-03T23:00Z"),
            "group": {"country": "fr"},
            "value": 300.0,
            "sample_size": 1,
        },
        {
            "t": "2024-03-05T00:00:00+01:00",
            "start_ms": ms("2024-03-04T23:00Z"),
            "group": {"country": "de"},
            "value": 400.0,
            "sample_size": 1,
        },
    ]


def test_api_rolling_unique(svc: Services) -> None:
    purchases(svc)
    data = ok(
        api(
            svc,
            "/api/v1/events/aggregate",
            {
                "name": "purchase",
                "agg": "unique",
                "rolling": "7d",
                "start": seconds(D0),
                "end": seconds(D0 + 2 * DAY),
            },
        )
    )
    assert [(b["start_ms"], b["value"]) for b in data["buckets"]] == [(D0, 2.0), (D0 + DAY, 3.0)]


def test_api_funnel(svc: Services) -> None:
    funnel_events(svc)
    steps = json.dumps(
        [{"name": "view"}, {"name": "buy", "where": [{"prop": "tier", "value": "gold"}]}]
    )
    data = ok(
        api(
            svc,
            "/api/v1/events/funnel",
            {"steps": steps, "window": "1h", "start": seconds(D0), "end": seconds(D0 + DAY)},
        )
    )
    [group] = data["groups"]
    assert [s["entities"] for s in group["steps"]] == [8, 1]
    assert group["steps"][1]["median_ms_from_previous"] == 30 * MIN
    data = ok(
        api(
            svc,
            "/api/v1/events/funnel",
            {
                "step": ["view", "cart", "buy"],
                "window": "3600",
                "breakdown": "source",
                "start": seconds(D0),
                "end": seconds(D0 + DAY),
            },
        )
    )
    got = {g["breakdown"]: [s["entities"] for s in g["steps"]] for g in data["groups"]}
    assert got == {"": [1, 0, 0], "ads": [4, 4, 1], "seo": [3, 2, 2]}


def test_api_retention(svc: Services) -> None:
    retention_events(svc)
    data = ok(
        api(
            svc,
            "/api/v1/events/retention",
            {
                "start_event": "signup",
                "return_event": "page",
                "grain": "day",
                "periods": "3",
                "start": seconds(D0),
                "end": seconds(D0 + 3 * DAY),
            },
        )
    )
    assert data["cohorts"][0] == {
        "t": "2024-03-04T00:00:00+00:00",
        "start_ms": D0,
        "size": 3,
        "counts": [1, 1, 1, None],
        "rates": [1 / 3, 1 / 3, 1 / 3, None],
    }


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/events/aggregate", {"start": "1", "end": "2", "agg": "median"}, "agg"),
        ("/api/v1/events/aggregate", {"start": "1"}, "required"),
        ("/api/v1/events/aggregate", {"start": "1", "end": "2", "where": "[{"}, "where"),
        (
            "/api/v1/events/aggregate",
            {"start": "1", "end": "2", "where": '[{"prop":"p","op":"~"}]'},
            "op",
        ),
        ("/api/v1/events/aggregate", {"start": "1", "end": "2", "tz": "Mars/Olympus"}, "timezone"),
        ("/api/v1/events/funnel", {"step": "a", "start": "1", "end": "2"}, "2 to 20 steps"),
        (
            "/api/v1/events/funnel",
            {"step": ["a", "b"], "window": "soon", "start": "1", "end": "2"},
            "window",
        ),
        ("/api/v1/events/retention", {"start": "1", "end": "2"}, "start_event"),
    ],
)
def test_api_errors_are_400_in_prometheus_shape(
    svc: Services, path: str, params: dict[str, Any], message: str
) -> None:
    response = api(svc, path, params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert message in body["error"]


def test_api_hostile_where_is_data(svc: Services) -> None:
    write(svc, Event("e", D0, "u1", props={HOSTILE: INJECT}), Event("e", D0, "u2"))
    for value, expected in ((INJECT, 1.0), ("x' OR 1=1 --", None)):
        where = json.dumps([{"prop": HOSTILE, "op": "=", "value": value}])
        data = ok(
            api(
                svc,
                "/api/v1/events/aggregate",
                {
                    "name": "e",
                    "agg": "unique",
                    "where": where,
                    "start": seconds(D0),
                    "end": seconds(D0 + DAY),
                },
            )
        )
        assert [b["value"] for b in data["buckets"]] == ([expected] if expected else [])
    assert svc.storage.stats().events == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [((), "takes exactly one value"), (("fast",), "compares numbers")],
)
def test_numeric_filters_need_one_number(
    svc: Services, values: tuple[str, ...], message: str
) -> None:
    where = (PropFilter("ms", FilterOp.GT, values),)
    q = ev.EventAggregate("page_load", Agg.COUNT, D0, D0 + DAY, where=where)
    with pytest.raises(BadDataError, match=message):
        ev.aggregate(svc.storage, q)
