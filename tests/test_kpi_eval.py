"""KPI evaluation (query/kpi) against hand-computed fixtures: every formula kind over real
DuckDB storage filled through the real ingest pipeline, calendar periods across DST,
comparisons, status, attainment and Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from opsmetrics.catalog.kpi_model import Direction as D
from opsmetrics.catalog.kpi_model import Grain, Thresholds
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event, SampleBatchBuilder
from opsmetrics.query.kpi import Compare, KpiEvaluator, KpiQueryError, Status
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.stats import wilson
from opsmetrics.query.kpi.status import attainment_of, status_of
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings

HOUR = 3_600_000
DAY = 86_400_000


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


D0 = ms("2024-03-04T00:00Z")  # a Monday
D3 = D0 + 3 * DAY
NOW = ms("2024-06-01T00:00Z")

CATALOG = """
kpis:
  - {name: orders, title: Orders, unit: count, direction: higher_is_better, owner: shop,
     grain: day, dimensions: [plan],
     event: {name: purchase, agg: count}, target: 3, thresholds: {warning: 2, critical: 1}}
  - name: revenue
    title: Revenue
    owner: shop
    unit: count
    direction: higher_is_better
    event: {name: purchase, agg: sum}
    target: [{from: 2024-01-01, value: 300}, {from: 2024-03-05, value: 100}]
    thresholds: {warning: 100, critical: 50}
  - {name: visitors, title: Visitors, unit: count, direction: higher_is_better, owner: shop,
     event: {name: visit, agg: unique}}
  - {name: buyers, title: Buyers, unit: count, direction: higher_is_better, owner: shop,
     event: {name: purchase, agg: unique}}
  - {name: buy_rate, title: Buy rate, direction: higher_is_better, owner: shop, unit: ratio,
     ratio: {numerator: buyers, denominator: visitors}}
  - {name: aov, title: AOV, unit: count, direction: higher_is_better, owner: shop,
     expr: revenue / orders}
  - {name: revenue_7d, title: Revenue 7d, unit: count, direction: higher_is_better,
     owner: shop, cumulative: {of: revenue, window: 7d}}
  - {name: revenue_total, title: Revenue total, unit: count, direction: higher_is_better,
     owner: shop,
     cumulative: {of: revenue, running: true}}
  - {name: orders_total, title: Orders total, unit: count, direction: higher_is_better,
     owner: shop, dimensions: [plan], cumulative: {of: orders, running: true}}
  - {name: load_ms_sum, title: Load ms, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: sum, field: props.ms}}
  - {name: load_ms_avg, title: Load ms avg, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: avg, field: props.ms}}
  - {name: load_ms_max, title: Load ms max, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: max, field: props.ms}}
  - {name: load_ms_p50, title: Load ms p50, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: p50, field: props.ms}}
  - {name: slow_loads, title: Slow loads, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: count, where: {ms: {gte: 250}}}}
  - {name: mid_loads, title: Mid loads, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: count, where: {ms: {gt: 50, lt: 1000}}}}
  - {name: fast_loads, title: Fast loads, unit: count, direction: lower_is_better, owner: sre,
     event: {name: page_load, agg: count, where: {ms: {lte: 100}}}}
  - {name: cart_conversion, title: Cart conversion, direction: higher_is_better, owner: shop,
     unit: percent,
     conversion: {from: cart_view, to: purchase, within: 1d, entity: user}}
  - {name: mrr, title: MRR, direction: higher_is_better, owner: finance, unit: currency,
     currency: EUR,
     state: {event: subscription_changed, field: props.mrr, by: entity, agg: sum}}
  - {name: nps_survey, title: NPS survey, owner: cx, unit: score, direction: target_is_best,
     manual: true, target: 35, thresholds: {warning: 3, critical: 10}}
  - {name: sql_orders, title: SQL orders, unit: count, direction: higher_is_better, owner: shop,
     sql: "SELECT count(*) AS n FROM v_events
           WHERE name = 'purchase' AND ts >= $start_ms AND ts < $end_ms"}
  - {name: sql_revenue, title: SQL revenue, unit: count, direction: higher_is_better, owner: shop,
     sql: "SELECT ts, value FROM v_events WHERE name = 'purchase'"}
  - {name: queue_peak, title: Queue peak, unit: count, owner: sre, direction: lower_is_better,
     promql: "max(max_over_time(queue_depth[1d]))", target: 5,
     thresholds: {warning: 6, critical: 8}}
  - {name: eval_time, title: Evaluation time, unit: count, direction: higher_is_better,
     owner: sre, promql: "time()"}
"""


def purchase(ts: int, entity: str, value: float, plan: str | None = None) -> Event:
    return Event("purchase", ts, entity, value, {"plan": plan} if plan else {})


EVENTS = [
    purchase(D0 + 10 * HOUR, "u1", 100, "pro"),
    purchase(D0 + 12 * HOUR, "u2", 300, "free"),
    purchase(D0 + DAY + 9 * HOUR, "u1", 200, "pro"),
    purchase(D0 - 6 * DAY, "u9", 50),  # Tue 2024-02-27: inside a 7-day window, before Day 0
    purchase(ms("2023-03-06T12:00Z"), "u8", 70),  # 364 days before Day 0: a Monday too
    purchase(ms("2024-03-11T03:30Z"), "u7", 10),  # 2024-03-10 23:30 in New York (EDT)
    *[Event("visit", D0 + HOUR, u) for u in ("u1", "u2", "u3", "u4")],
    *[Event("visit", D0 + DAY + HOUR, u) for u in ("u1", "u3")],
    Event("visit", D0 + 2 * DAY + HOUR, "u5"),
    Event("cart_view", D0 + 8 * HOUR, "u1"),  # purchases at 10:00: converted
    Event("cart_view", D0 + 13 * HOUR, "u2"),  # its purchase was before: not converted
    Event("cart_view", D0 + 14 * HOUR, "u2"),  # a second view: the first one counts
    Event("cart_view", D0 + 20 * HOUR, "u3"),  # never purchases
    Event("cart_view", D0 + DAY + 8 * HOUR, "u1"),  # purchases at 09:00: converted
    *[Event("page_load", D0 + HOUR, "u1", props=p) for p in ({"ms": 100}, {"ms": 300})],
    Event("page_load", D0 + HOUR, "u1", props={"ms": "slow"}),  # not a number: no value
    Event("page_load", D0 + HOUR, "u1"),  # no ms: no value
    *[Event("page_load", D0 + DAY + HOUR, "u2", props={"ms": v}) for v in (50, 250, 1000)],
    Event("subscription_changed", ms("2024-02-01T00:00Z"), "c1", props={"mrr": 100}),
    Event("subscription_changed", D0 + 10 * HOUR, "c2", props={"mrr": 50}),
    Event("subscription_changed", D0 + DAY + 12 * HOUR, "c1", props={"mrr": 150}),
    Event("subscription_changed", D0 + 2 * DAY + 12 * HOUR, "c2", props={"mrr": 0}),
]
QUEUE = [(D0 + 6 * HOUR, 5.0), (D0 + 18 * HOUR, 7.0), (D0 + DAY + 6 * HOUR, 3.0),
         (D0 + DAY + 23 * HOUR, 4.0)]  # fmt: skip


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("kpi")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "shop.yaml").write_text(CATALOG)
    limits = Limits(events_late_window_ms=800 * DAY, samples_late_window_ms=800 * DAY)
    settings = Settings(data_dir=root / "data", config_dir=root / "config", limits=limits)
    services = open_services(settings, FakeClock(NOW))
    b = SampleBatchBuilder()
    for ts, v in QUEUE:
        b.add((("__name__", "queue_depth"), ("host", "a")), ts, v)
    services.ingestor.write(WriteRequest("t", events=EVENTS, samples=DecodedSamples(b.build())))
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def kpis(svc: Services) -> KpiEvaluator:
    return KpiEvaluator(svc.storage, svc.catalog, svc.clock)


def values(kpis: KpiEvaluator, name: str, **kw: object) -> list[float | None]:
    return [p.value for p in kpis.series(name, D0, D3, **kw).points]  # type: ignore[arg-type]


# --- formula kinds --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders", [2, 1, 0]),
        ("revenue", [400, 200, 0]),
        ("visitors", [4, 2, 1]),
        ("buyers", [2, 1, 0]),
        ("buy_rate", [0.5, 0.5, 0.0]),
        ("aov", [200, 200, None]),  # 0 orders on day 2: no average
        ("revenue_7d", [450, 600, 600]),  # day 0's window reaches back to 2024-02-27's 50
        ("revenue_total", [520, 720, 720]),  # from the start of the data: 70 + 50 before D0
        ("load_ms_sum", [400, 1300, 0]),  # 100 + 300; 50 + 250 + 1000
        ("load_ms_avg", [200, 1300 / 3, None]),  # "slow" and a missing ms are no values
        ("load_ms_max", [300, 1000, None]),
        ("load_ms_p50", [200, 250, None]),  # halfway between 100 and 300; the middle one
        ("slow_loads", [1, 2, 0]),  # ms >= 250: 300; 250, 1000
        ("mid_loads", [2, 1, 0]),  # 50 < ms < 1000: 100, 300; 250
        ("fast_loads", [1, 1, 0]),  # ms <= 100: 100; 50 ("slow" never matches)
        ("cart_conversion", [1 / 3, 1.0, None]),
        ("mrr", [150, 200, 150]),  # c1 100 + c2 50; c1 150 + c2 50; c1 150 + c2 0
        ("sql_orders", [2, 1, 0]),
        ("sql_revenue", [400, 200, None]),  # rows with ts: no row, no value
        ("queue_peak", [7, 4, None]),  # max over (end - 1d, end]; day 2 has no samples
    ],
)
def test_formula_kinds(kpis: KpiEvaluator, name: str, expected: list[float | None]) -> None:
    assert values(kpis, name) == pytest.approx(expected)


def test_running_total_counts_from_the_start_of_the_data(kpis: KpiEvaluator) -> None:
    assert values(kpis, "revenue_total", grain=Grain.DAY)[2:] == [720]
    one_day = kpis.series("revenue_total", D0 + 2 * DAY, D3).points
    assert [p.value for p in one_day] == [720]  # 70 + 50 before D0, 400 + 200 from D0 on


def test_running_total_by_dimension_keeps_groups_seen_only_before(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders_total", D0, D3, by=["plan"]).points
    by_plan: dict[str, list[float | None]] = {}
    for p in got:
        by_plan.setdefault(dict(p.group)["plan"], []).append(p.value)
    # the two purchases before D0 carry no plan; pro buys on D0 and D1, free on D0
    assert by_plan == {"": [2, 2, 2], "free": [1, 1, 1], "pro": [1, 2, 2]}


def test_value_aggregations_count_only_numeric_props(kpis: KpiEvaluator) -> None:
    got = kpis.series("load_ms_avg", D0, D3).points
    assert [p.sample_size for p in got] == [2, 3, 0]


def test_manual_values_last_one_per_period_wins(svc: Services, kpis: KpiEvaluator) -> None:
    kpis.record_manual("nps_survey", D0 + 10 * HOUR, 30, "ana", "Q1 survey")
    kpis.record_manual("nps_survey", D0 + 18 * HOUR, 35, "ana", "corrected")
    kpis.record_manual("nps_survey", D0 + 2 * DAY, 40, "bo", "")
    got = kpis.series("nps_survey", D0, D3)
    assert [p.value for p in got.points] == [35, None, 40]
    # target_is_best: distance 0 → ok, attainment 1; distance 5 > warning 3 → warning
    assert [p.status for p in got.points] == [Status.OK, Status.UNKNOWN, Status.WARNING]
    assert got.points[2].attainment == pytest.approx(1 - 5 / 35)
    assert got.freshness_ms == D0 + 2 * DAY
    stored = svc.storage.manual_kpi_values("nps_survey", D0, D3)
    assert [(v.value, v.author, v.recorded_ms) for v in stored] == [
        (30, "ana", NOW), (35, "ana", NOW), (40, "bo", NOW)]  # fmt: skip
    with pytest.raises(BadDataError, match="not a manual KPI"):
        kpis.record_manual("orders", D0, 1, "ana", "")


def test_promql_at_uneven_period_ends_across_dst(kpis: KpiEvaluator) -> None:
    # Berlin days 2024-03-30 (24 h), 03-31 (23 h, DST starts), 04-01: time() at each end
    start = ms("2024-03-30T00:00+01:00")
    got = kpis.series("eval_time", start, start + 2 * DAY, tz="Europe/Berlin")
    ends = [
        ms("2024-03-31T00:00+01:00"),
        ms("2024-04-01T00:00+02:00"),
        ms("2024-04-02T00:00+02:00"),
    ]
    assert [p.end_ms for p in got.points] == ends
    assert [p.value for p in got.points] == [e / 1000 for e in ends]


def test_event_periods_follow_the_timezone(kpis: KpiEvaluator) -> None:
    start = ms("2024-03-10T00:00-05:00")  # New York: DST starts 2024-03-10, a 23-hour day
    got = kpis.series("orders", start, start + 1, tz="America/New_York")
    (point,) = got.points
    assert point.end_ms - point.start_ms == 23 * HOUR
    assert point.value == 1  # 2024-03-11T03:30Z is 23:30 on the 10th in New York
    assert values(kpis, "orders", grain=Grain.WEEK) == [3]  # Mon 4th to Sun 10th, UTC


def test_breakdown_by_a_dimension(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders", D0, D0 + 2 * DAY, by=["plan"])
    assert [(p.start_ms, p.group, p.value) for p in got.points] == [
        (D0, (("plan", "free"),), 1),
        (D0, (("plan", "pro"),), 1),
        (D0 + DAY, (("plan", "free"),), 0),
        (D0 + DAY, (("plan", "pro"),), 1),
    ]
    with pytest.raises(BadDataError, match="no dimension 'country'"):
        kpis.series("orders", D0, D3, by=["country"])


# --- status, targets, comparisons -------------------------------------------------------------
def test_status_and_attainment_higher_is_better(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders", D0, D3)
    assert [p.status for p in got.points] == [Status.OK, Status.WARNING, Status.CRITICAL]
    assert [p.attainment for p in got.points] == pytest.approx([2 / 3, 1 / 3, 0])
    assert got.version == 1
    assert got.freshness_ms == ms("2024-03-11T03:30Z")  # the newest purchase


def test_time_varying_target(kpis: KpiEvaluator) -> None:
    got = kpis.series("revenue", D0, D3)
    assert [p.target for p in got.points] == [300, 100, 100]
    assert [p.attainment for p in got.points] == pytest.approx([4 / 3, 2, 0])
    assert [p.status for p in got.points] == [Status.OK, Status.OK, Status.CRITICAL]


def test_lower_is_better_and_unknown(kpis: KpiEvaluator) -> None:
    got = kpis.series("queue_peak", D0, D3)
    assert [p.status for p in got.points] == [Status.WARNING, Status.OK, Status.UNKNOWN]
    assert [p.attainment for p in got.points] == pytest.approx([5 / 7, 5 / 4, None])
    assert got.freshness_ms == D0 + DAY + 23 * HOUR


def test_compare_previous(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders", D0, D3, compare=Compare.PREVIOUS)
    assert [p.compare for p in got.points] == [0, 2, 1]
    assert [p.change for p in got.points] == pytest.approx([None, -0.5, -1.0])


def test_shared_values_compute_each_kpi_once_for_the_same_periods(kpis: KpiEvaluator) -> None:
    """A caller's get-or-compute (a dashboard's memo) sees every KPI a formula reads, so revenue
    and orders are computed once for aov, revenue and orders together, with the same values."""
    kept: dict[Any, Any] = {}
    computed: list[str] = []

    def shared(key: Any, compute: Any) -> Any:
        if key not in kept:
            computed.append(key[1])
            kept[key] = compute()
        return kept[key]

    aov = kpis.series("aov", D0, D3, shared=shared)
    revenue = kpis.series("revenue", D0, D3, shared=shared)
    orders = kpis.series("orders", D0, D3, compare=Compare.PREVIOUS, shared=shared)
    assert sorted(computed) == ["aov", "orders", "orders", "revenue"]  # orders: also the day before
    assert [p.value for p in aov.points] == pytest.approx(values(kpis, "aov"))
    assert [p.value for p in revenue.points] == pytest.approx(values(kpis, "revenue"))
    assert [p.compare for p in orders.points] == [0, 2, 1]
    by_plan = kpis.series("orders", D0, D3, by=["plan"], shared=shared)
    assert computed[-1] == "orders"  # a breakdown is other values
    assert len(by_plan.points) > len(orders.points)


def test_compare_week_and_weekday_aligned_year(kpis: KpiEvaluator) -> None:
    wow = kpis.series("orders", D0, D3, compare=Compare.WOW)
    assert [p.compare for p in wow.points] == [0, 1, 0]  # 02-26, 02-27 (u9), 02-28
    yoy = kpis.series("orders", D0, D0 + 1, compare=Compare.YOY)
    assert [(p.compare, p.change) for p in yoy.points] == [(1, 1.0)]  # Mon 2023-03-06


def test_compare_month_at_month_grain(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders", D0, D0 + 1, grain=Grain.MONTH, compare=Compare.MOM)
    (p,) = got.points
    assert (p.start_ms, p.value, p.compare, p.change) == (ms("2024-03-01T00:00Z"), 4, 1, 3.0)
    with pytest.raises(KpiQueryError, match="does not apply"):
        kpis.series("orders", D0, D0 + 1, grain=Grain.MONTH, compare=Compare.WOW)


def test_current_is_the_latest_complete_period(kpis: KpiEvaluator) -> None:
    point = kpis.current("mrr")
    assert (point.start_ms, point.end_ms) == (NOW - DAY, NOW)
    assert (point.value, point.compare, point.change) == (150, 150, 0.0)


def test_future_periods_have_no_value(kpis: KpiEvaluator) -> None:
    got = kpis.series("orders", NOW - DAY, NOW + 2 * DAY)
    assert [p.value for p in got.points] == [0, 0, None]


# --- rates and the Wilson interval --------------------------------------------------------------
def test_rate_sample_size_and_wilson_interval(kpis: KpiEvaluator) -> None:
    got = kpis.series("buy_rate", D0, D3)
    assert [p.sample_size for p in got.points] == [4, 2, 1]
    # 2 of 4 by hand: p = .5, z² = 3.841459, 1 + z²/n = 1.9603647, center = .5,
    # half = z·sqrt(.0625 + .0600228) / 1.9603647 = 1.959964 · .3500326 / 1.9603647 = .349961
    assert (got.points[0].ci_low, got.points[0].ci_high) == pytest.approx(
        (0.150039, 0.849961), abs=1e-6
    )
    conv = kpis.series("cart_conversion", D0, D3).points
    assert [p.sample_size for p in conv] == [3, 1, 0]
    # 1 of 3: center = (1/3 + .6402432)/2.2804863 = .426917,
    # half = z·sqrt(.0740741 + .1067072)/2.2804863 = .365425
    assert (conv[0].ci_low, conv[0].ci_high) == pytest.approx((0.0615, 0.7923), abs=1e-4)
    assert (conv[2].ci_low, conv[2].ci_high) == (None, None)


def test_wilson_edges() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(0, 10)  # type: ignore[misc]
    assert low == 0.0
    assert high == pytest.approx(0.2775328, abs=1e-6)  # z²/(n + z²) = 3.841459/13.841459


# --- periods, status rules --------------------------------------------------------------------
def test_day_periods_across_dst_in_berlin() -> None:
    spring = cal.periods(
        ms("2024-03-30T12:00Z"), ms("2024-04-01T12:00Z"), Grain.DAY, "Europe/Berlin"
    )
    assert [p.end_ms - p.start_ms for p in spring] == [24 * HOUR, 23 * HOUR, 24 * HOUR]
    autumn = cal.periods(
        ms("2024-10-27T00:30Z"), ms("2024-10-27T01:00Z"), Grain.DAY, "Europe/Berlin"
    )
    assert [(p.start_ms, p.end_ms - p.start_ms) for p in autumn] == [
        (ms("2024-10-27T00:00+02:00"), 25 * HOUR)
    ]
    hours = cal.periods(ms("2024-03-31T00:00+01:00"), ms("2024-03-31T04:00+02:00"), Grain.HOUR,
                        "Europe/Berlin")  # fmt: skip
    assert len(hours) == 3  # 00:00, 01:00, then 03:00 CEST: 02:00 does not exist


@pytest.mark.parametrize(
    ("grain", "start"),
    [
        (Grain.WEEK, "2024-03-04T00:00+01:00"),  # Monday
        (Grain.MONTH, "2024-03-01T00:00+01:00"),
        (Grain.QUARTER, "2024-01-01T00:00+01:00"),
        (Grain.YEAR, "2024-01-01T00:00+01:00"),
    ],
)
def test_floor_in_timezone(grain: Grain, start: str) -> None:
    assert cal.floor(ms("2024-03-07T15:00Z"), grain, "Europe/Berlin") == ms(start)


def test_quarter_and_month_lengths() -> None:
    q = cal.periods(ms("2024-01-01T00:00Z"), ms("2024-12-31T00:00Z"), Grain.QUARTER, "UTC")
    assert [(p.end_ms - p.start_ms) // DAY for p in q] == [91, 91, 92, 92]


@pytest.mark.parametrize(
    ("value", "direction", "expected"),
    [
        (2.5, D.HIGHER_IS_BETTER, Status.OK),
        (1.5, D.HIGHER_IS_BETTER, Status.WARNING),
        (0.5, D.HIGHER_IS_BETTER, Status.CRITICAL),
        (None, D.HIGHER_IS_BETTER, Status.UNKNOWN),
    ],
)
def test_status_higher(value: float | None, direction: D, expected: Status) -> None:
    assert status_of(value, 3, Thresholds(warning=2, critical=1), direction) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(4, Status.OK), (7, Status.WARNING), (9, Status.CRITICAL)]
)
def test_status_lower(value: float, expected: Status) -> None:
    t = Thresholds(warning=6, critical=8)
    assert status_of(value, 5, t, D.LOWER_IS_BETTER) == expected


def test_status_target_is_best() -> None:
    t = Thresholds(warning=1, critical=3)
    got = [status_of(v, 10, t, D.TARGET_IS_BEST) for v in (10.5, 8.5, 13.5)]
    assert got == [Status.OK, Status.WARNING, Status.CRITICAL]
    assert status_of(10, None, t, D.TARGET_IS_BEST) is Status.UNKNOWN
    assert attainment_of(8, 10, D.TARGET_IS_BEST) == pytest.approx(0.8)
    assert attainment_of(4, 5, D.LOWER_IS_BETTER) == pytest.approx(1.25)


# --- sql safety -----------------------------------------------------------------------------------
def test_sql_runs_read_only(svc: Services) -> None:
    with pytest.raises(BadDataError):
        svc.storage.kpi_sql("INSERT INTO manual_kpi_values VALUES ('x', 1, 1, 'a', '', 1)", {})
    with pytest.raises(BadDataError):
        svc.storage.kpi_sql("SELECT 1; DELETE FROM events", {})
    got = svc.storage.kpi_sql("SELECT count(*) FROM v_events WHERE name = 'visit'", {})
    assert got.rows == [(7,)]
    labels = svc.storage.kpi_sql("SELECT labels->>'host', value FROM v_samples ORDER BY ts", {})
    assert labels.rows[0] == ("a", 5.0)
    assert not math.isnan(float(str(labels.rows[-1][1])))
