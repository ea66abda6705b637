"""KPI alert rules (catalog/kpi_alerts.py, alerting/kpi_rules.py) over real DuckDB storage
filled through the real ingest pipeline, driven by a FakeClock: thresholds by direction,
changes against baselines, the volume gate, no data, `for`, hysteresis, time windows, the
rule-file form and its errors, what reaches the hub and the ALERTS series."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.alerting.kpi_rules import KpiAlertManager, benchmark_rules
from opsmetrics.alerting.model import Alert, AlertHub, AlertState
from opsmetrics.catalog.kpi_alert_files import kpi_alert_rules
from opsmetrics.catalog.kpi_alerts import Baseline, Condition
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event, SampleBatchBuilder
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from tests.server import ServerProcess, wait_until

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


T0 = ms("2024-06-03T00:00Z")  # a Monday

KPIS = """
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   grain: hour, event: {name: purchase, agg: count}, thresholds: {warning: 10, critical: 5},
   alerts: [{name: FewOrders, condition: threshold}]}
- {name: errors, title: Errors, owner: sre, unit: count, direction: lower_is_better,
   grain: hour, event: {name: error, agg: count}, thresholds: {warning: 10, critical: 20},
   alerts: [{name: ManyErrors, condition: threshold}]}
"""


class Recorder:
    """A sink that keeps what the hub sent."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[Alert]]] = []

    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        self.batches.append((at_ms, list(alerts)))


class Env:
    def __init__(self, services: Services, clock: FakeClock) -> None:
        self.svc = services
        self.clock = clock
        self.sink = Recorder()
        self.hub = AlertHub()
        self.hub.add_sink(self.sink)

    def put(self, events: list[Event]) -> None:
        self.svc.ingestor.write(WriteRequest("test", events=events))

    def gauge(self, name: str, points: list[tuple[int, float]], **labels: str) -> None:
        b = SampleBatchBuilder()
        for ts, v in points:
            b.add((("__name__", name), *sorted(labels.items())), ts, v)
        self.svc.ingestor.write(WriteRequest("test", samples=DecodedSamples(b.build())))

    def manager(self, *, write: bool = False) -> KpiAlertManager:
        specs = kpi_alert_rules(self.svc.catalog, self.svc.settings.config_dir)
        ingestor = self.svc.ingestor if write else None
        return KpiAlertManager(
            specs, self.svc.storage, self.svc.catalog, self.clock, ingestor, self.hub
        )

    def at(self, mgr: KpiAlertManager, t: int) -> dict[str, Alert]:
        """Evaluate every rule at t; the active alerts by `alertname/severity`."""
        self.clock.set(t)
        mgr.evaluate_all()
        return {f"{a.name}/{a.severity}": a for a in mgr.active_alerts()}


Make = Callable[..., Env]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    opened: list[Services] = []

    def build(kpis: str = KPIS, rules: str | None = None, start: int = T0) -> Env:
        config = tmp_path / "config"
        (config / "kpis").mkdir(parents=True)
        (config / "kpis" / "k.yaml").write_text(kpis)
        if rules is not None:
            (config / "rules").mkdir()
            (config / "rules" / "kpi.yaml").write_text(rules)
        limits = Limits(
            future_tolerance_ms=60 * DAY,
            events_late_window_ms=60 * DAY,
            samples_late_window_ms=60 * DAY,
        )
        settings = Settings(data_dir=tmp_path / "data", config_dir=config, limits=limits)
        clock = FakeClock(start)
        services = open_services(settings, clock)
        opened.append(services)
        return Env(services, clock)

    yield build
    for services in opened:
        services.close()


def spread(
    name: str, start: int, count: int, value: float | None = None, span: int = HOUR
) -> list[Event]:
    """`count` events evenly spread over [start, start + span)."""
    step = span // max(count, 1)
    return [Event(name, start + i * step, f"{name}-{start}-{i}", value) for i in range(count)]


def states(alerts: dict[str, Alert]) -> dict[str, str]:
    return {key: a.state.value for key, a in alerts.items()}


# --- threshold ---------------------------------------------------------------------------
def test_threshold_higher_is_better_takes_severity_from_the_kpi(make: Make) -> None:
    env = make()
    env.put(spread("purchase", T0, 20) + spread("purchase", T0 + HOUR, 8))
    env.put(spread("purchase", T0 + 2 * HOUR, 3) + spread("purchase", T0 + 3 * HOUR, 12))
    mgr = env.manager()
    assert env.at(mgr, T0 + HOUR) == {}  # 20 orders in the last hour
    got = env.at(mgr, T0 + 2 * HOUR)  # 8: below the warning line (10)
    assert states(got) == {"FewOrders/warning": "firing"}
    alert = got["FewOrders/warning"]
    assert alert.value == 8
    assert dict(alert.labels) == {"alertname": "FewOrders", "kpi": "orders", "severity": "warning"}
    assert alert.source == "kpi" and alert.rule_id == "kpi:orders:FewOrders"
    assert alert.generator_url == "/kpis/orders"
    assert dict(alert.annotations)["summary"] == "Orders is 8 (threshold 10)"
    got = env.at(mgr, T0 + 3 * HOUR)  # 3: below critical (5)
    assert states(got) == {"FewOrders/critical": "firing"}
    _, sent = env.sink.batches[-1]
    assert {(a.severity, a.state) for a in sent} == {
        ("critical", AlertState.FIRING),
        ("warning", AlertState.INACTIVE),  # the warning alert resolved when it escalated
    }
    assert env.at(mgr, T0 + 4 * HOUR) == {}  # 12: back above 10 by more than 5 %


def test_threshold_lower_is_better(make: Make) -> None:
    env = make()
    env.put(
        spread("error", T0, 5) + spread("error", T0 + HOUR, 25) + spread("error", T0 + 2 * HOUR, 12)
    )
    mgr = env.manager()

    def errors(t: int) -> dict[str, str]:
        return {k: v for k, v in states(env.at(mgr, t)).items() if k.startswith("ManyErrors")}

    assert errors(T0 + HOUR) == {}  # 5 errors
    assert errors(T0 + 2 * HOUR) == {"ManyErrors/critical": "firing"}  # 25 > 20
    assert errors(T0 + 3 * HOUR) == {"ManyErrors/warning": "firing"}  # 12 > 10


QUEUE = """
- {name: queue, title: Queue, owner: sre, unit: count, direction: lower_is_better,
   grain: hour, promql: 'sum(queue_depth)', thresholds: {warning: 100},
   alerts: [{name: QueueSlow, condition: threshold, for: 30m},
            {name: QueueHysteresis, condition: threshold},
            {name: QueueFlappy, condition: threshold, clear_margin: 0},
            {name: QueueClearFor, condition: threshold, clear_margin: 50%, clear_for: 3m,
             severity: page}]}
"""


def by_name(alerts: dict[str, Alert]) -> dict[str, str]:
    return {a.name: a.state.value for a in alerts.values()}


def test_for_keeps_an_alert_pending_until_the_condition_held_long_enough(make: Make) -> None:
    env = make(QUEUE)
    env.gauge("queue_depth", [(T0 + i * MIN, 150) for i in range(60)], host="a")
    env.gauge("queue_depth", [(T0 + i * MIN, 50) for i in range(60, 90)], host="a")
    mgr = env.manager()
    assert by_name(env.at(mgr, T0 + 10 * MIN))["QueueSlow"] == "pending"
    assert by_name(env.at(mgr, T0 + 39 * MIN))["QueueSlow"] == "pending"
    got = env.at(mgr, T0 + 40 * MIN)
    assert got["QueueSlow/warning"].state is AlertState.FIRING
    assert got["QueueSlow/warning"].active_at_ms == T0 + 10 * MIN
    assert got["QueueSlow/warning"].fired_at_ms == T0 + 40 * MIN
    # A condition that ends before `for` drops the pending alert without a resolution.
    env.sink.batches.clear()
    mgr2 = env.manager()
    assert by_name(env.at(mgr2, T0 + 50 * MIN))["QueueSlow"] == "pending"
    assert "QueueSlow" not in by_name(env.at(mgr2, T0 + 70 * MIN))
    sent = [a for _, batch in env.sink.batches for a in batch if a.name == "QueueSlow"]
    assert sent == []


def test_hysteresis_a_value_hovering_at_the_line_fires_once(make: Make) -> None:
    env = make(QUEUE)
    values = [90, 101, 99, 102, 98, 103, 97, 101, 94, 96]
    env.gauge("queue_depth", [(T0 + i * MIN, v) for i, v in enumerate(values)], host="a")
    mgr = env.manager()
    episodes = {"QueueHysteresis": 0, "QueueFlappy": 0}
    seen: dict[str, str] = {}
    for i in range(len(values)):
        now = by_name(env.at(mgr, T0 + i * MIN))
        for name in episodes:
            if now.get(name) == "firing" and seen.get(name) != "firing":
                episodes[name] += 1
        seen = now
    # 5 % margin: resolves only at 94 (<= 95); without a margin each crossing is an alert.
    assert episodes == {"QueueHysteresis": 1, "QueueFlappy": 4}
    for _, batch in env.sink.batches:  # an alert that fired again is not also sent as resolved
        assert len({a.fingerprint for a in batch}) == len(batch)
    assert "QueueHysteresis" not in seen


def test_clear_for_resolves_after_the_value_stayed_back_long_enough(make: Make) -> None:
    env = make(QUEUE)
    values = [120, 90, 90, 90, 90]  # never 50 % below the line, but back below it for 3 min
    env.gauge("queue_depth", [(T0 + i * MIN, v) for i, v in enumerate(values)], host="a")
    mgr = env.manager()
    got = [by_name(env.at(mgr, T0 + i * MIN)).get("QueueClearFor") for i in range(5)]
    assert got == ["firing", "firing", "firing", "firing", None]
    resolved = [a for _, b in env.sink.batches for a in b if a.state is AlertState.INACTIVE]
    assert any(a.name == "QueueClearFor" and a.severity == "page" for a in resolved)


# --- change against a baseline -----------------------------------------------------------
SHOP = """
- {name: revenue, title: Revenue, owner: shop, unit: currency, currency: EUR,
   direction: higher_is_better, grain: hour, event: {name: purchase, agg: sum},
   alerts: [{name: RevenueDrop, condition: change, compare: previous_period, below: -20%,
             window: 1h, severity: critical},
            {name: RevenueGated, condition: change, below: -20%,
             min_volume: {event: cart_view, count: 200}}]}
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   grain: hour, event: {name: purchase, agg: count},
   alerts: [{name: VsPrevious, condition: change, below: -20%},
            {name: VsLastWeek, condition: change, compare: same_hour_last_week, below: -20%},
            {name: VsWeeks, condition: change, compare: same_hour_weeks, weeks: 2,
             below: -60%},
            {name: NoOrders, condition: no_data, for: 2h}]}
"""


def test_change_against_the_previous_period(make: Make) -> None:
    env = make(SHOP)
    env.put(spread("purchase", T0, 10, value=100) + spread("purchase", T0 + HOUR, 10, value=70))
    env.put(spread("purchase", T0 + 2 * HOUR, 10, value=90))
    mgr = env.manager()
    got = env.at(mgr, T0 + 2 * HOUR)  # 700 after 1000: -30 %
    alert = got["RevenueDrop/critical"]
    assert alert.state is AlertState.FIRING
    notes = dict(alert.annotations)
    assert notes["value"] == "EUR 700.00"
    assert notes["baseline"] == "EUR 1,000.00"
    assert notes["change"] == "-30.0 %"
    assert notes["threshold"] == "-20.0 %"
    assert alert.value == 700  # the KPI's value; the change is in the annotations
    assert "VsPrevious/warning" not in got  # the order count did not change (10 → 10)
    assert "RevenueDrop/critical" not in env.at(mgr, T0 + 3 * HOUR)  # 900 after 700: +29 %


def test_change_against_the_same_hour_last_week_and_a_mean_of_weeks(make: Make) -> None:
    env = make(SHOP)
    hour10 = T0 + 10 * HOUR
    env.put(spread("purchase", hour10 - 14 * DAY, 40) + spread("purchase", hour10 - 7 * DAY, 20))
    env.put(spread("purchase", hour10 - HOUR, 10) + spread("purchase", hour10, 10))
    mgr = env.manager()
    got = states(env.at(mgr, hour10 + HOUR))
    # 10 orders: as many as the hour before, half of last week's 20, a third of (20+40)/2.
    assert "VsPrevious/warning" not in got
    assert got["VsLastWeek/warning"] == "firing"
    assert got["VsWeeks/warning"] == "firing"  # -66.7 % is past -60 %


def test_volume_gate_blocks_a_change_on_little_traffic(make: Make) -> None:
    env = make(SHOP)
    env.put(spread("purchase", T0, 10, value=100) + spread("purchase", T0 + HOUR, 10, value=50))
    env.put(spread("cart_view", T0 + HOUR, 50))
    mgr = env.manager()
    got = env.at(mgr, T0 + 2 * HOUR)  # -50 %, but only 50 cart views in the hour
    assert "RevenueGated/warning" not in got and "RevenueDrop/critical" in got
    env.put(spread("cart_view", T0 + HOUR + 1, 250))  # now 300 > 200
    got = env.at(mgr, T0 + 2 * HOUR)
    assert got["RevenueGated/warning"].state is AlertState.FIRING
    assert dict(got["RevenueGated/warning"].annotations)["volume"] == "300"


def test_no_data_fires_when_the_inputs_stop(make: Make) -> None:
    env = make(SHOP)
    env.put([Event("purchase", T0 + 30 * MIN, "u1", 5)])
    mgr = env.manager()
    assert "NoOrders/warning" not in env.at(mgr, T0 + 2 * HOUR)  # 90 min old
    got = env.at(mgr, T0 + 2 * HOUR + 40 * MIN)  # 130 min: over 2h
    alert = got["NoOrders/warning"]
    assert alert.state is AlertState.FIRING
    assert dict(alert.annotations)["summary"] == "Orders: no new data for 2 h 10 min"
    env.put([Event("purchase", T0 + 2 * HOUR + 45 * MIN, "u2", 5)])
    assert "NoOrders/warning" not in env.at(mgr, T0 + 2 * HOUR + 50 * MIN)
    resolved = [a for a in env.sink.batches[-1][1] if a.name == "NoOrders"]
    assert [a.state for a in resolved] == [AlertState.INACTIVE]


# --- time windows ------------------------------------------------------------------------
WINDOWS = """
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   grain: hour, event: {name: purchase, agg: count}, thresholds: {critical: 5},
   alerts: [{name: OfficeHours, condition: threshold,
             active_time_intervals: [{weekdays: ['monday:friday'],
               times: [{start_time: '09:00', end_time: '17:00'}], location: Europe/Berlin}]},
            {name: NotOnWeekends, condition: threshold,
             mute_time_intervals: [{weekdays: [saturday, sunday], location: America/New_York}]}]}
"""


def test_active_and_mute_time_windows_in_time_zones(make: Make) -> None:
    env = make(WINDOWS)  # no orders at all: always below the critical line
    mgr = env.manager()
    saturday = {a.name for a in env.at(mgr, ms("2024-06-08T10:00Z")).values()}
    assert saturday == set()  # outside office hours and muted for the weekend
    # Monday 08:00 UTC is 10:00 in Berlin and 04:00 in New York (a weekday there too).
    monday = {a.name for a in env.at(mgr, ms("2024-06-10T08:00Z")).values()}
    assert monday == {"OfficeHours", "NotOnWeekends"}
    evening = {a.name for a in env.at(mgr, ms("2024-06-10T16:00Z")).values()}  # 18:00 Berlin
    assert evening == {"NotOnWeekends"}
    sent = [a for a in env.sink.batches[-1][1] if a.name == "OfficeHours"]
    assert [a.state for a in sent] == [AlertState.INACTIVE]  # resolved when the window ended
    # Sunday 23:30 in New York is Monday 03:30 UTC: still the weekend there.
    assert "NotOnWeekends" not in {a.name for a in env.at(mgr, ms("2024-06-17T03:30Z")).values()}


# --- the rule-file form ------------------------------------------------------------------
SEED_KPIS = """
- {name: daily_revenue, title: Daily revenue, owner: finance, unit: currency, currency: EUR,
   direction: higher_is_better, grain: day, event: {name: purchase, agg: sum}}
- {name: monthly_churn_rate, title: Monthly churn, owner: cx, unit: percent,
   direction: lower_is_better, grain: month, manual: true}
"""
SEED_RULES = """\
alerts:
  revenue_drop:
    metric: daily_revenue
    condition: percentage_change < -10
    timeframe: 24h
    severity: high
    channels: [email, slack]

  high_error_rate:
    metric: api_error_rate
    condition: value > 5
    timeframe: 5m
    severity: critical
    channels: [pagerduty, slack]

  customer_churn:
    metric: monthly_churn_rate
    condition: value > 8%
    timeframe: 30d
    severity: medium
    channels: [email]
"""


def test_rule_file_form_loads_as_written(make: Make) -> None:
    env = make(SEED_KPIS, SEED_RULES)
    assert validate_config_dir(env.svc.settings.config_dir or Path()) == []
    specs = {s.name: s for s in kpi_alert_rules(env.svc.catalog, env.svc.settings.config_dir)}
    drop = specs["revenue_drop"]
    assert (drop.kpi, drop.condition, drop.compare) == (
        "daily_revenue",
        Condition.CHANGE,
        Baseline.PREVIOUS_PERIOD,
    )
    assert (drop.op, drop.limit, drop.window_ms, drop.severity) == ("<", -0.1, DAY, "high")
    assert drop.channels == ("email", "slack")
    assert drop.source.endswith("rules/kpi.yaml:2")
    lineage = env.svc.catalog.lineage("daily_revenue", [env.manager()])
    assert [(d.kind, d.name) for d in lineage.dependents] == [("alert", "revenue_drop")]
    errors = specs["high_error_rate"]  # not a KPI: a PromQL expression
    assert (errors.kpi, errors.promql, errors.op, errors.limit) == (None, "api_error_rate", ">", 5)
    churn = specs["customer_churn"]
    assert (churn.kpi, churn.limit, churn.severity) == ("monthly_churn_rate", 0.08, "medium")


def test_rule_file_alerts_fire_with_their_labels(make: Make) -> None:
    env = make(SEED_KPIS, SEED_RULES, start=T0 + 2 * DAY)
    env.put(
        spread("purchase", T0, 10, 1000, span=DAY) + spread("purchase", T0 + DAY, 10, 800, span=DAY)
    )
    env.gauge("api_error_rate", [(T0 + 2 * DAY - MIN, 7)], service="api")
    env.gauge("api_error_rate", [(T0 + 2 * DAY - MIN, 2)], service="web")
    got = env.at(env.manager(), T0 + 2 * DAY)
    drop = got["revenue_drop/high"]
    assert dict(drop.labels)["channels"] == "email,slack"
    assert dict(drop.annotations)["change"] == "-20.0 %"
    errors = [a for a in got.values() if a.name == "high_error_rate"]
    assert [dict(a.labels)["service"] for a in errors] == ["api"]  # one alert per series
    assert errors[0].generator_url == "/explore"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: value >> 5\n",
            "rules/kpi.yaml:4: alerts.a.condition: 'value >> 5' is not a condition",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: value > 5\n"
            "    timeframe: soon\n",
            "rules/kpi.yaml:5: alerts.a.timeframe: 'soon' is not a duration",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: forecast\n",
            "rules/kpi.yaml:2: daily_revenue.a: a forecast condition needs a KPI as `metric` "
            "and a `horizon`",
        ),
        (
            "alerts:\n  a:\n    metric: 'sum(('\n    condition: value > 1\n",
            "rules/kpi.yaml:3: alerts.a.metric: 'sum((' is neither a KPI",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: change\n",
            "rules/kpi.yaml:2: daily_revenue.a: a change condition needs `below`",
        ),
        (
            "alerts:\n  a:\n    metric: queue_depth\n    condition: threshold\n",
            "rules/kpi.yaml:2: alerts.a: a metric that is not a KPI has no thresholds",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: threshold\n",
            "rules/kpi.yaml:2: daily_revenue.a: KPI daily_revenue has no thresholds",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: value > 1\n"
            "    min_volume: {count: 3}\n",
            "rules/kpi.yaml:5: alerts.a.min_volume: set one of `event`",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: anomaly\n    threshold: -1\n",
            "rules/kpi.yaml:5: alerts.a.threshold: ",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: anomaly\n"
            "    direction: sideways\n",
            "rules/kpi.yaml:5: alerts.a.direction: ",
        ),
        (
            "alerts:\n  a:\n    metric: monthly_churn_rate\n    condition: anomaly\n",
            "rules/kpi.yaml:2: monthly_churn_rate.a: KPI monthly_churn_rate has grain month",
        ),
        (
            "alerts:\n  a:\n    metric: queue_depth\n    condition: anomaly\n",
            "rules/kpi.yaml:2: alerts.a: an anomaly condition needs a KPI as `metric`",
        ),
        (
            "alerts:\n  a:\n    metric: daily_revenue\n    condition: value < 5\n"
            "    threshold: 3\n",
            "rules/kpi.yaml:2: daily_revenue.a: `threshold` and `direction` are options of the "
            "anomaly condition only",
        ),
    ],
)
def test_rule_file_problems_carry_file_and_line(make: Make, rules: str, expected: str) -> None:
    env = make(SEED_KPIS)
    config = env.svc.settings.config_dir or Path()
    (config / "rules").mkdir()
    (config / "rules" / "kpi.yaml").write_text(rules)
    problems = validate_config_dir(config)
    assert any(expected in p for p in problems), problems


def signups_kpi_problems(make: Make, alert: str) -> list[str]:
    """`opsmetrics validate` problems of a signups KPI (in kpis/more.yaml) with `alert` as its
    one alert (a flow mapping over two lines, so its options sit on line 9)."""
    env = make(SEED_KPIS)
    config = env.svc.settings.config_dir or Path()
    (config / "kpis" / "more.yaml").write_text(
        "- name: signups\n  title: Signups\n  owner: growth\n  unit: count\n"
        "  direction: higher_is_better\n  event: {name: signup}\n"
        f"  alerts:\n    - {alert}\n"
    )
    return validate_config_dir(config)


def test_kpi_alert_problems_carry_file_and_line(make: Make) -> None:
    problems = signups_kpi_problems(
        make, "{name: Drop, condition: change, below: -10%,\n       compare: yesterday}"
    )
    assert any(
        "more.yaml:9: signups.alerts[0].compare: 'yesterday' is not one of" in p for p in problems
    ), problems


# --- ALERTS series and restarts ----------------------------------------------------------
def test_alerts_series_are_written_and_pending_state_survives_a_restart(make: Make) -> None:
    env = make(QUEUE)
    env.gauge("queue_depth", [(T0 + i * MIN, 150) for i in range(60)], host="a")
    first = env.manager(write=True)
    env.at(first, T0 + 10 * MIN)
    series = evaluate_instant(env.svc.storage, 'ALERTS{alertname="QueueSlow"}', T0 + 10 * MIN)
    assert isinstance(series, InstantVector)
    assert [dict(labels)["alertstate"] for labels in series.labels] == ["pending"]
    # A new manager (a restarted server) keeps the pending alert's activeAt.
    second = env.manager(write=True)
    got = env.at(second, T0 + 12 * MIN)
    assert got["QueueSlow/warning"].active_at_ms == T0 + 10 * MIN
    assert env.at(second, T0 + 40 * MIN)["QueueSlow/warning"].state is AlertState.FIRING


def test_a_resolved_alert_is_not_restored_after_a_restart(make: Make) -> None:
    env = make(QUEUE)
    high = [(T0 + i * MIN, 150.0) for i in range(60)] + [
        (T0 + i * MIN, 150.0) for i in range(70, 90)
    ]
    env.gauge("queue_depth", high + [(T0 + i * MIN, 50.0) for i in range(60, 70)], host="a")
    first = env.manager(write=True)
    env.at(first, T0 + 10 * MIN)  # pending since T0+10m
    env.at(first, T0 + 65 * MIN)  # back to 50: dropped, ALERTS_FOR_STATE gets a stale marker
    second = env.manager(write=True)
    got = env.at(second, T0 + 75 * MIN)
    assert got["QueueSlow/warning"].active_at_ms == T0 + 75 * MIN


# --- forecast ----------------------------------------------------------------------------
FORECAST = """
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   grain: day, event: {name: purchase, agg: count}, thresholds: {warning: 40, critical: 10},
   alerts: [{name: OrdersHeadingDown, condition: forecast, horizon: 7d, history: 28d}]}
- {name: signups, title: Signups, owner: growth, unit: count, direction: higher_is_better,
   grain: day, event: {name: signup, agg: count}, thresholds: {warning: 40, critical: 10},
   alerts: [{name: SignupsHeadingDown, condition: forecast, horizon: 7d, history: 28d}]}
"""


def test_forecast_fires_before_the_line_is_crossed(make: Make) -> None:
    env = make(FORECAST, start=T0 + 28 * DAY)
    events: list[Event] = []
    for day in range(28):
        start = T0 + day * DAY
        events += spread("purchase", start, 100 - 2 * day, span=DAY)  # 100 … 46: falling
        events += spread("signup", start, 60 + day % 2, span=DAY)  # flat around 60
    env.put(events)
    got = env.at(env.manager(), T0 + 28 * DAY + HOUR)
    assert set(got) == {"OrdersHeadingDown/warning"}  # 46 now, below 40 in about 3 days
    alert = got["OrdersHeadingDown/warning"]
    assert alert.value == 46  # the last complete day
    notes = dict(alert.annotations)
    assert notes["summary"].startswith("Orders is forecast to cross 40 within 7 d around 2024-07-0")


# --- end to end --------------------------------------------------------------------------
#: The served test's server starts its clock here.
SERVED_NOW = 1_793_578_800_000  # Monday 2026-11-02 00:20 UTC


def _kpi_alerts(
    srv: ServerProcess, want: Callable[[list[dict[str, Any]]], bool], what: str
) -> list[dict[str, Any]]:
    """The `orders` KPI's alerts, polled until `want(them)`."""

    def check() -> tuple[list[dict[str, Any]]] | None:
        got = httpx.get(f"{srv.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        mine = [a for a in got if a["labels"].get("kpi") == "orders"]
        return (mine,) if want(mine) else None  # a tuple: "no alerts" may be what is wanted

    found: tuple[list[dict[str, Any]]] = wait_until(check, what, timeout_s=20)
    return found[0]


@pytest.mark.e2e
def test_served_kpi_alerts_reach_the_alerts_api(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "shop.yaml").write_text(
        "- {name: orders, title: Orders, owner: shop, unit: count, "
        "direction: higher_is_better, event: {name: purchase, agg: count}}\n"
    )
    (config / "rules").mkdir()
    (config / "rules" / "kpi.yaml").write_text(
        "alerts:\n  NoOrders:\n    metric: orders\n    condition: no_data\n"
        "    for: 1s\n    interval: 1s\n    severity: critical\n    channels: [pager]\n"
    )
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=SERVED_NOW).start()
    try:
        firing = _kpi_alerts(srv, bool, "a NoOrders alert")
        assert [a["labels"]["alertname"] for a in firing] == ["NoOrders"]
        assert firing[0]["state"] == "firing"
        assert firing[0]["labels"]["channels"] == "pager"
        assert firing[0]["annotations"]["summary"] == "Orders: no data at all"
        # Stamped with the server's own now, as its time() says: with `for: 1s` the purchase
        # resolves the alert only while it is under a second old.
        answer = httpx.get(f"{srv.url}/api/v1/query", params={"query": "time()"}, timeout=5)
        now_ms = round(float(answer.json()["data"]["result"][1]) * 1000)
        assert now_ms >= SERVED_NOW
        event = {"name": "purchase", "ts": now_ms, "entity": "u1", "value": 5}
        response = httpx.post(f"{srv.url}/api/v1/events", json=[event], timeout=5)
        assert response.status_code < 300, response.text
        assert _kpi_alerts(srv, lambda a: not a, "the NoOrders alert resolved") == []
    finally:
        srv.kill()


def test_benchmark_rules_evaluate_over_any_catalog(make: Make) -> None:
    env = make(SHOP)
    env.put(spread("purchase", T0 - HOUR, 10, value=100))
    mgr = KpiAlertManager(
        benchmark_rules(env.svc.catalog, 7), env.svc.storage, env.svc.catalog, env.clock
    )
    env.clock.set(T0)
    assert mgr.evaluate_all() == 7
    assert [r.last_error for r in mgr.runs] == [""] * 7
    assert {r.spec.condition for r in mgr.runs} == set(Condition) - {
        Condition.FORECAST,
        Condition.ANOMALY,
    }


def test_no_data_on_a_promql_metric_is_absent_with_a_pending_time(make: Make) -> None:
    rules = "alerts:\n  QueueGone:\n    metric: queue_depth\n    condition: no_data\n    for: 2m\n"
    env = make(SEED_KPIS, rules)
    env.gauge("queue_depth", [(T0 + i * MIN, 3) for i in range(6)], host="a")
    mgr = env.manager()
    assert env.at(mgr, T0 + MIN) == {}
    assert states(env.at(mgr, T0 + 20 * MIN)) == {"QueueGone/warning": "pending"}  # > 5m lookback
    assert states(env.at(mgr, T0 + 22 * MIN)) == {"QueueGone/warning": "firing"}


def test_no_data_without_any_data_waits_for_from_the_start(make: Make) -> None:
    env = make(SHOP)  # no events at all
    mgr = env.manager()
    assert "NoOrders/warning" not in env.at(mgr, T0 + HOUR)
    got = env.at(mgr, T0 + 2 * HOUR + MIN)
    assert dict(got["NoOrders/warning"].annotations)["summary"] == "Orders: no data at all"


# --- anomaly -----------------------------------------------------------------------------
ANOMALY = """
- {name: revenue, title: Revenue, owner: shop, unit: count, direction: higher_is_better,
   grain: hour, event: {name: sale, agg: sum},
   alerts: [{name: RevenueUnusual, condition: anomaly},
            {name: RevenueSpike, condition: anomaly, direction: high, threshold: 4,
             severity: critical}]}
"""
WEEKS5 = 35 * DAY


def weekly_sales(hours: int, planted: dict[int, float]) -> list[Event]:
    """One `sale` per hour from T0 with a daily and a weekly season and ±3 % noise; the hours
    in `planted` get their factor applied."""
    rnd = random.Random(7)
    events = []
    for h in range(hours):
        day, hour = divmod(h, 24)
        level = (
            1000 * (1.2 + math.sin((hour - 6) / 24 * 2 * math.pi)) * (0.6 if day % 7 >= 5 else 1)
        )
        value = level * rnd.uniform(0.97, 1.03) * planted.get(h, 1.0)
        events.append(Event("sale", T0 + h * HOUR, f"sale-{h}", value))
    return events


def test_anomaly_fires_on_a_planted_dip_and_not_on_normal_data(make: Make) -> None:
    env = make(ANOMALY, start=T0 + WEEKS5)
    dip, spike = WEEKS5 // HOUR + 13, WEEKS5 // HOUR + 14  # Monday 13:00 and 14:00 of week 6
    env.put(weekly_sales(WEEKS5 // HOUR + 16, {dip: 0.4, spike: 1.8}))
    mgr = env.manager()
    for hour in range(1, 13):  # five weeks of normal hours: nothing
        assert env.at(mgr, T0 + WEEKS5 + hour * HOUR + MIN) == {}, hour
    got = env.at(mgr, T0 + WEEKS5 + 14 * HOUR + MIN)  # judges 13:00–14:00, the dip
    assert set(got) == {"RevenueUnusual/warning"}  # higher_is_better: alerts on low values
    alert = got["RevenueUnusual/warning"]
    assert alert.state is AlertState.FIRING
    notes = dict(alert.annotations)
    assert " vs expected " in notes["explanation"]
    assert notes["explanation"].endswith("for Monday 13:00 UTC")
    assert notes["summary"].startswith("Revenue is unusually low: ")
    assert float(notes["score"]) < -5
    # The spike: the low rule clears (score back below the threshold), the high one fires.
    got = env.at(mgr, T0 + WEEKS5 + 15 * HOUR + MIN)
    assert set(got) == {"RevenueSpike/critical"}
    assert dict(got["RevenueSpike/critical"].annotations)["summary"].startswith(
        "Revenue is unusually high: "
    )
    assert env.at(mgr, T0 + WEEKS5 + 16 * HOUR + MIN) == {}


def test_anomaly_direction_both_and_for(make: Make) -> None:
    kpis = ANOMALY.replace(
        "[{name: RevenueUnusual, condition: anomaly},",
        "[{name: RevenueUnusual, condition: anomaly, direction: both, for: 2h},",
    )
    env = make(kpis, start=T0 + WEEKS5)
    base = WEEKS5 // HOUR
    env.put(weekly_sales(base + 16, {base + 13: 1.8, base + 14: 1.9}))
    mgr = env.manager()
    assert env.at(mgr, T0 + WEEKS5 + 13 * HOUR + MIN) == {}
    got = env.at(mgr, T0 + WEEKS5 + 14 * HOUR + MIN)
    assert states(got) == {"RevenueUnusual/warning": "pending", "RevenueSpike/critical": "firing"}
    got = env.at(mgr, T0 + WEEKS5 + 15 * HOUR + MIN)
    assert states(got)["RevenueUnusual/warning"] == "pending"  # for: 2h not yet
    got = env.at(mgr, T0 + WEEKS5 + 16 * HOUR + MIN)  # 15:00 is normal again
    assert got == {}


def test_anomaly_without_history_is_silent(make: Make) -> None:
    env = make(ANOMALY, start=T0 + DAY)
    env.put(weekly_sales(30, {29: 0.1}))
    assert env.at(env.manager(), T0 + 30 * HOUR + MIN) == {}


def test_anomaly_kpi_alert_option_problem_carries_file_and_line(make: Make) -> None:
    alert = "{name: Odd, condition: anomaly,\n       direction: down}"
    problems = signups_kpi_problems(make, alert)
    assert any(
        "more.yaml:9: signups.alerts[0].direction: 'down' is not one of" in p for p in problems
    ), problems


def test_anomaly_rule_file_form_loads(make: Make) -> None:
    rules = (
        "alerts:\n  odd_revenue:\n    metric: daily_revenue\n    condition: anomaly\n"
        "    threshold: 4.5\n    history: 8w\n    direction: both\n    severity: high\n"
    )
    env = make(SEED_KPIS, rules=rules)
    (spec,) = [
        s
        for s in kpi_alert_rules(env.svc.catalog, env.svc.settings.config_dir)
        if s.condition is Condition.ANOMALY
    ]
    assert (spec.kpi, spec.score_threshold, spec.history_ms) == ("daily_revenue", 4.5, 56 * DAY)
    assert spec.direction is not None and spec.direction.value == "both"
    assert spec.interval_ms == HOUR  # complete periods: at most hourly
    assert spec.source.endswith("rules/kpi.yaml:2")
