"""The demo's planted story makes the seed's business alert rules fire, and only then.

Fourteen days of history (one-minute steps) go into a real DuckDB data directory; each alert
expression is evaluated with the PromQL engine at one-minute steps over the whole history. The
condition must hold for at least the rule's `for:` inside every planted incident of its kind,
and be false almost everywhere else. "Else" leaves out the rule's look-back window after an
incident ends, where a rate over the window still sees the incident.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.demo.incidents import Plan, Span
from opsmetrics.demo.runner import DemoRunner
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

#: Thursday 2026-11-05 06:00 UTC.
NOW = 1_793_858_400_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DAYS = 14

RATIO = (
    '(sum(rate(business_funnel_step_total{step="order_confirmed"}[1h]))'
    ' / sum(rate(business_funnel_step_total{step="cart_view"}[1h])))'
)
# The four rules of the seed's business alert file, expressions unchanged.
CONVERSION_DROP = f"{RATIO} < 0.02"
REVENUE_BELOW = "sum(rate(business_revenue_cents_total[5m])) * 60 < 50000"
ABANDONMENT = f"1 - {RATIO} > 0.85"
NEW_USERS = (
    'sum(rate(business_feature_usage_total{is_new_user="true"}[24h]))'
    ' / sum(rate(business_feature_usage_total{is_new_user="true"}[24h] offset 7d)) < 0.7'
)


@dataclass
class History:
    services: Services
    plan: Plan
    steps: np.ndarray


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("story"))
    services = open_services(settings, FakeClock(NOW))
    runner = DemoRunner(services, days=DAYS, step_s=60)
    plan = runner.prepare()
    runner.load_history()
    steps = np.arange(plan.origin + HOUR, NOW + 1, MINUTE, dtype=np.int64)
    yield History(services, plan, steps)
    services.close()


def _holds(history: History, expr: str) -> np.ndarray:
    steps = history.steps
    value = evaluate_range(history.services.storage, expr, int(steps[0]), int(steps[-1]), MINUTE)
    assert isinstance(value, InstantVector)
    out: np.ndarray = value.present.any(axis=0) if len(value) else np.zeros(len(steps), bool)
    return out


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for hit in mask.tolist():
        run = run + 1 if hit else 0
        best = max(best, run)
    return best


def _check(history: History, expr: str, spans: list[Span], for_min: int, lookback: int) -> None:
    assert spans, "the story plants at least one incident of this kind"
    holds = _holds(history, expr)
    steps = history.steps
    affected = np.zeros(len(steps), dtype=bool)
    for span in spans:
        inside = (steps >= span.start) & (steps < span.end)
        assert _longest_run(holds[inside]) >= for_min, (expr, span)
        affected |= (steps >= span.start) & (steps < span.end + lookback)
    assert holds[~affected].mean() < 0.03, expr


def test_conversion_rate_drop_fires_in_each_latency_incident(history: History) -> None:
    _check(history, CONVERSION_DROP, history.plan.incidents, for_min=15, lookback=HOUR)


def test_revenue_below_baseline_fires_in_each_latency_incident(history: History) -> None:
    _check(history, REVENUE_BELOW, history.plan.incidents, for_min=10, lookback=5 * MINUTE)


def test_high_cart_abandonment_fires_in_each_latency_incident(history: History) -> None:
    _check(history, ABANDONMENT, history.plan.incidents, for_min=30, lookback=HOUR)


def test_new_user_engagement_drop_fires_during_the_onboarding_bug(history: History) -> None:
    bug = history.plan.onboarding_bug
    assert bug is not None and bug.end - bug.start >= DAY
    _check(history, NEW_USERS, [bug], for_min=60, lookback=DAY)


def test_the_story_is_annotated(history: History) -> None:
    notes = history.services.storage.read_annotations(0, NOW + 1)
    tags = Counter(tag for note in notes for tag in note.tags)
    checkout = [n for n in notes if {"incident", "service:checkout"} <= set(n.tags)]
    assert len(checkout) == len(history.plan.incidents) >= 1
    assert tags["onboarding"] == 1
    assert tags["campaign"] == len(history.plan.campaigns) == 3
    bug = history.plan.onboarding_bug
    assert bug is not None
    assert any("deploy" in n.tags and n.ts == bug.start for n in notes)


def test_campaigns_bring_traffic_from_their_channel(history: History) -> None:
    views = history.services.storage.read_events("page_view", 0, NOW + 1)
    for campaign in history.plan.campaigns:
        span = campaign.span
        during = [e for e in views if span.start <= e.ts < span.end]
        week_before = [e for e in views if span.start - 7 * DAY <= e.ts < span.end - 7 * DAY]
        if not week_before:
            week_before = [e for e in views if span.start + 7 * DAY <= e.ts < span.end + 7 * DAY]
        assert len(during) > 1.4 * len(week_before), campaign.title
        share = sum(e.props["source"] == campaign.channel for e in during) / len(during)
        assert share > 0.4, campaign.title


def test_marketing_spend_events_match_the_counter(history: History) -> None:
    spend = history.services.storage.read_events("marketing_spend", 0, NOW + 1)
    by_channel = Counter[str]()
    first, last = NOW - 3 * DAY, NOW - DAY
    for e in spend:
        if first < e.ts <= last:
            by_channel[str(e.props["channel"])] += e.value or 0.0
    expr = f"sum by (channel) (increase(marketing_spend_cents_total[{2 * DAY // MINUTE}m]))"
    value = evaluate_range(history.services.storage, expr, last, last, MINUTE)
    assert isinstance(value, InstantVector) and len(value) == len(by_channel) == 4
    for labels, row in zip(value.labels, value.values, strict=True):
        channel = dict(labels)["channel"]
        # increase() extrapolates a little at the window's edges.
        assert row[0] == pytest.approx(by_channel[channel], rel=0.02), channel
