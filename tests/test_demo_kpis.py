"""The demo's KPIs are plausible and agree with each other.

Twelve days of demo history (five-minute steps) go into a real DuckDB data directory with the
demo's own config; the KPIs are evaluated as the dashboards show them (the last complete period)
and checked against the counters and gauges beside them: MRR against the `saas_mrr_eur` gauge,
orders × average order value against revenue, churn, growth, LTV and CAC in sane ranges.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import opsmetrics.demo
from opsmetrics.alerting.kpi_conditions import read
from opsmetrics.catalog.kpi_alert_files import kpi_alert_rules
from opsmetrics.catalog.sources import load_sources
from opsmetrics.clock import FakeClock
from opsmetrics.demo.incidents import Plan
from opsmetrics.demo.runner import DemoRunner
from opsmetrics.demo.shop import EVENT_SAMPLE
from opsmetrics.demo.shop_db import FILE
from opsmetrics.ingest.sql_sources import SourceRunner
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

#: Thursday 2026-11-05 06:00 UTC.
NOW = 1_793_858_400_000
HOUR = 3_600_000
DAY = 24 * HOUR
MIDNIGHT = NOW - NOW % DAY
DAYS = 12
CONFIG = Path(opsmetrics.demo.__file__).parent / "config"
#: KPIs the demo has no input for (no factory, no stock levels, entered by hand): "No data".
#: probe_* KPIs read series the live probes write; the demo history has none.
NO_DEMO_INPUT = {
    "oee",
    "inventory_turns",
    "market_share",
    "probe_availability",
    "probe_latency_p95",
}


@dataclass
class Demo:
    services: Services
    kpis: KpiEvaluator
    plan: Plan

    def value(self, name: str) -> float:
        got = self.kpis.current(name).value
        assert got is not None and math.isfinite(got), name
        return got

    def promql(self, expr: str, at_ms: int) -> float:
        got = evaluate_instant(self.services.storage, expr, at_ms)
        assert isinstance(got, InstantVector) and len(got) == 1, expr
        return float(got.values[0, 0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("kpis"), config_dir=CONFIG)
    clock = FakeClock(NOW)
    services = open_services(settings, clock)
    runner = DemoRunner(services, days=DAYS, step_s=300)
    plan = runner.prepare()
    runner.load_history()
    # What the server's collector does on its first run: read the shop database into events.
    source = load_sources(CONFIG).named("shop_refunds")
    assert source is not None
    run = SourceRunner(
        source, services.storage, services.ingestor.write, clock, {}, settings.data_dir
    ).run()
    assert run.error == "" and run.rows > 0, run
    yield Demo(services, KpiEvaluator(services.storage, services.catalog, clock), plan)
    services.close()


def _dashboard_kpis() -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "kpi" and isinstance(value, str):
                    found.add(value)
                elif key == "kpis" and isinstance(value, list):
                    found.update(str(v) for v in value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted((CONFIG / "dashboards").glob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    return found


def test_every_kpi_with_demo_input_has_a_finite_current_value(demo: Demo) -> None:
    used = _dashboard_kpis()
    assert {"revenue", "mrr", "arr_growth", "customer_churn_rate", "orders"} <= used
    names = demo.services.catalog.names()
    missing = [n for n in names if n not in NO_DEMO_INPUT and demo.kpis.current(n).value is None]
    assert missing == []
    assert used - NO_DEMO_INPUT <= set(names)


def test_mrr_matches_the_gauge_and_arr_is_twelve_times_it(demo: Demo) -> None:
    mrr = demo.value("mrr")
    gauge = demo.promql("sum(saas_mrr_eur)", MIDNIGHT - 1)
    assert abs(mrr / gauge - 1) < 0.1, (mrr, gauge)
    assert demo.value("arr") == pytest.approx(12 * mrr)
    customers = demo.value("active_customers")
    active = demo.promql("sum(saas_subscriptions_active)", MIDNIGHT - 1)
    assert abs(customers / active - 1) < 0.1, (customers, active)


def test_orders_times_aov_is_revenue_and_orders_match_the_event_sample(demo: Demo) -> None:
    orders, revenue = demo.value("orders"), demo.value("revenue")
    assert abs(orders * demo.value("average_order_value") / revenue - 1) < 0.15
    assert 40 < demo.value("average_order_value") < 80
    # The sampled purchase events of the same day, scaled up, count about as many orders.
    day = demo.services.storage.read_events("purchase", MIDNIGHT - DAY, MIDNIGHT)
    assert abs(len(day) / EVENT_SAMPLE / orders - 1) < 0.25, (len(day), orders)
    buyers = demo.value("buyers")
    assert 0.9 * orders < buyers <= orders


def test_saas_rates_are_plausible(demo: Demo) -> None:
    churn = demo.value("customer_churn_rate")
    assert 0.002 < churn < 0.08
    assert -0.05 < demo.value("arr_growth") < 0.2
    ltv, cac = demo.value("ltv"), demo.value("cac")
    assert 300 < cac < 2000, cac
    assert ltv > cac
    assert demo.value("ltv_cac") == pytest.approx(ltv / cac)
    assert 0.9 < demo.value("gross_revenue_retention") <= 1
    assert 0 < demo.value("signup_to_purchase_retention") < 0.6


def test_revenue_drop_compares_like_with_like(demo: Demo) -> None:
    """Against the 24 hours before, weekends and the days after campaigns look like drops;
    the rule compares with the same 24 hours a week earlier and stays quiet (where that
    baseline lies inside the history and holds no campaign)."""
    rules = kpi_alert_rules(demo.services.catalog, CONFIG)
    spec = next(r for r in rules if r.name == "RevenueDrop")
    revenue = "sum(increase(shop_revenue_eur_total[1d]))"
    judged, naive = 0, []
    for at in range(NOW - 5 * DAY, NOW + 1, 3 * HOUR):
        naive.append(demo.promql(revenue, at) / demo.promql(revenue, at - DAY) - 1)
        base = (at - 7 * DAY - DAY, at - 7 * DAY)
        if base[0] < demo.plan.origin or any(
            c.span.start < base[1] and c.span.end > base[0] for c in demo.plan.campaigns
        ):
            continue
        (reading,) = read(demo.services.storage, demo.services.catalog, spec, at).values()
        assert reading.value is not None and reading.baseline
        assert reading.value / reading.baseline - 1 > -0.2, at
        judged += 1
    assert judged >= 10
    assert min(naive) < -0.2


def _paid_out_yesterday(demo: Demo) -> int:
    """Refunds paid out in the last complete day, counted in the shop database itself."""
    day = (MIDNIGHT - DAY) // 1000, MIDNIGHT // 1000
    path = demo.services.settings.data_dir / FILE
    with contextlib.closing(sqlite3.connect(path)) as db:
        (n,) = db.execute(
            "SELECT count(*) FROM refunds WHERE status = 'paid_out' "
            "AND unixepoch(updated_at) >= ? AND unixepoch(updated_at) < ?",
            day,
        ).fetchone()
    return int(n)


def test_refunds_read_from_the_shop_database_agree_with_it_and_with_orders(demo: Demo) -> None:
    """The SQL source's events are the database's rows: yesterday's pay-outs, counted both
    ways, are equal; about 1 % of orders are refunded, more after a checkout incident."""
    paid = _paid_out_yesterday(demo)
    assert paid > 100
    assert demo.value("refunds") == paid
    assert 0.005 < demo.value("refund_rate") < 0.03
