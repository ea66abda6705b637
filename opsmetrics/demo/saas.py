"""The SaaS side: sign-ups, subscription changes (MRR), NPS, support tickets, feature usage,
active users and marketing spend.

Feature usage (`business_feature_usage_total{feature_name, is_new_user, user_tier}`) counts
every interaction; while the broken onboarding release is live, new users use the product a
quarter as much. Marketing spend is a counter per channel plus one `marketing_spend` event per
channel and completed hour (value in cents), so CAC = spend ÷ new customers.
"""

from __future__ import annotations

import numpy as np

from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.incidents import ONBOARDING_BUG_FACTOR
from opsmetrics.demo.sampling import Ids, arrivals, pick, poisson
from opsmetrics.demo.seasonality import HOUR_MS, weekly_factor
from opsmetrics.demo.topology import Kind
from opsmetrics.model import Event, Float64Array, Int64Array, Scalar, make_labels

SIGNUPS_PER_MIN = 0.14
SUBSCRIPTION_CHANGES_PER_MIN = 0.04
NPS_PER_MIN = 0.025
TICKETS_PER_MIN = 0.04
SOURCES = ("organic", "ads", "email", "social", "direct")
SOURCE_WEIGHTS = (0.38, 0.27, 0.12, 0.08, 0.15)
PLANS = ("starter", "pro", "business")
PLAN_PRICE_MINOR = (2900, 9900, 29900)
CHANGES = ("new", "expansion", "contraction", "churn")
CHANGE_WEIGHTS = (0.45, 0.2, 0.1, 0.25)
TICKET_CATEGORIES = ("billing", "bug", "how-to", "account")
BASE_MRR_EUR = 84_000.0
BASE_SUBSCRIPTIONS = 1_150.0
#: Interactions per minute at load 1: (existing users, new users) per feature.
FEATURES = {
    "dashboards": (900.0, 120.0),
    "reports": (300.0, 30.0),
    "alerts": (240.0, 20.0),
    "integrations": (60.0, 25.0),
}
TIERS = ("free", "paid")
TIER_SHARES = (0.6, 0.4)
ACTIVE_WINDOWS = ("5m", "1d", "30d")
#: Spend per hour in cents per channel; a campaign on the channel triples it.
SPEND_PER_HOUR = {"ads": 14_600.0, "social": 7_500.0, "email": 1_250.0, "affiliates": 2_500.0}
CAMPAIGN_SPEND_FACTOR = 3.0


def _spec(name: str, kind: Kind = Kind.TOTAL, initial: float = 0.0, **extra: str) -> SeriesSpec:
    return SeriesSpec(make_labels({"__name__": name, "job": "saas", **extra}), kind, initial)


def _feature_cells() -> list[tuple[str, bool, str]]:
    return [(f, new, tier) for f in FEATURES for new in (False, True) for tier in TIERS]


def series() -> list[SeriesSpec]:
    return [
        _spec("saas_signups_total"),
        # Running totals too: each step adds the (possibly negative) net change.
        _spec("saas_mrr_eur", initial=BASE_MRR_EUR),
        _spec("saas_subscriptions_active", initial=BASE_SUBSCRIPTIONS),
        *(
            _spec(
                "business_feature_usage_total",
                feature_name=f,
                is_new_user=str(new).lower(),
                user_tier=tier,
            )
            for f, new, tier in _feature_cells()
        ),
        *(_spec("business_active_users", Kind.LEVEL, window=w) for w in ACTIVE_WINDOWS),
        *(_spec("marketing_spend_cents_total", channel=c) for c in SPEND_PER_HOUR),
    ]


def simulate(step: Step, ids: Ids) -> tuple[Float64Array, list[Event]]:
    cols = np.zeros((len(step), 3))
    events = _signups(step, ids, cols)
    events += _subscriptions(step, ids, cols)
    events += _nps(step, ids)
    events += _tickets(step, ids)
    spend, spend_events = _marketing(step, ids)
    columns = np.hstack([cols, _feature_usage(step), _active_users(step), spend])
    return columns, events + spend_events


def _signups(step: Step, ids: Ids, cols: Float64Array) -> list[Event]:
    idx, ts = arrivals(step, SIGNUPS_PER_MIN * (1 + 0.4 * step.campaign))
    source = pick(step.rng, len(idx), SOURCE_WEIGHTS)
    users = step.rng.integers(600_000, 10_000_000, size=len(idx))
    np.add.at(cols[:, 0], idx, 1.0)
    return [
        Event("signup", int(t), f"u{u}", None, {"source": SOURCES[s]}, ids.next())
        for t, u, s in zip(ts.tolist(), users.tolist(), source.tolist(), strict=True)
    ]


def _mrr_change(change: int, plan: int) -> int:
    """Change in monthly recurring revenue (minor units) for one subscription change."""
    price = PLAN_PRICE_MINOR[plan]
    match CHANGES[change]:
        case "new":
            return price
        case "expansion":
            return price - PLAN_PRICE_MINOR[max(plan - 1, 0)] or price
        case "contraction":
            return price - PLAN_PRICE_MINOR[min(plan + 1, len(PLANS) - 1)] or -price // 2
        case _:
            return -price


def _subscriptions(step: Step, ids: Ids, cols: Float64Array) -> list[Event]:
    idx, ts = arrivals(step, SUBSCRIPTION_CHANGES_PER_MIN)
    change = pick(step.rng, len(idx), CHANGE_WEIGHTS)
    plan = pick(step.rng, len(idx), (0.55, 0.35, 0.1))
    customers = step.rng.integers(1, 4_000, size=len(idx))
    events = []
    for i in range(len(idx)):
        mrr = _mrr_change(int(change[i]), int(plan[i]))
        kind = CHANGES[change[i]]
        props: dict[str, Scalar] = {
            "plan": PLANS[plan[i]],
            "change": kind,
            "mrr": mrr,
            "currency": "EUR",
        }
        events.append(
            Event("subscription_changed", int(ts[i]), f"c{customers[i]}", mrr, props, ids.next())
        )
        cols[idx[i], 1] += mrr / 100.0
        cols[idx[i], 2] += {"new": 1.0, "churn": -1.0}.get(kind, 0.0)
    return events


#: Score probabilities 0..10 in normal times and during incidents (more detractors).
NPS_CALM = (0.01, 0.01, 0.01, 0.02, 0.02, 0.04, 0.06, 0.12, 0.2, 0.25, 0.26)
NPS_UPSET = (0.06, 0.05, 0.06, 0.08, 0.08, 0.1, 0.1, 0.12, 0.13, 0.11, 0.11)


def _nps(step: Step, ids: Ids) -> list[Event]:
    idx, ts = arrivals(step, NPS_PER_MIN)
    calm = pick(step.rng, len(idx), NPS_CALM)
    upset = pick(step.rng, len(idx), NPS_UPSET)
    score = np.where(step.incident[idx] | step.onboarding[idx], upset, calm)
    customers = step.rng.integers(1, 4_000, size=len(idx))
    return [
        Event(
            "nps_response",
            int(t),
            f"c{c}",
            float(s),
            {"survey": "in-app", "score": int(s)},
            ids.next(),
        )
        for t, c, s in zip(ts.tolist(), customers.tolist(), score.tolist(), strict=True)
    ]


def _tickets(step: Step, ids: Ids) -> list[Event]:
    rate = np.where(step.incident, TICKETS_PER_MIN * 5, TICKETS_PER_MIN)
    idx, ts = arrivals(step, rate)
    category = pick(step.rng, len(idx), (0.3, 0.3, 0.3, 0.1))
    urgent = step.rng.random(len(idx)) < np.where(step.incident[idx], 0.6, 0.1)
    customers = step.rng.integers(1, 4_000, size=len(idx))
    events = []
    for i in range(len(idx)):
        cat = "outage" if step.incident[idx[i]] and urgent[i] else TICKET_CATEGORIES[category[i]]
        props: dict[str, Scalar] = {
            "category": cat,
            "priority": "high" if urgent[i] else "normal",
        }
        events.append(
            Event("support_ticket", int(ts[i]), f"c{customers[i]}", None, props, ids.next())
        )
    return events


def _feature_usage(step: Step) -> Float64Array:
    broken = np.where(step.onboarding, ONBOARDING_BUG_FACTOR, 1.0)
    columns = []
    for feature, new, tier in _feature_cells():
        rate = FEATURES[feature][int(new)] * TIER_SHARES[TIERS.index(tier)]
        columns.append(poisson(step, rate * (broken if new else 1.0)))
    return np.column_stack(columns)


def _active_users(step: Step) -> Float64Array:
    rng = step.rng
    now = 5_200 * step.load * rng.lognormal(0.0, 0.03, size=len(step))
    day = (
        61_000
        * np.sqrt(weekly_factor(step.ts).astype(np.float64))
        * rng.lognormal(0.0, 0.004, size=len(step))
    )
    month = 310_000 * rng.lognormal(0.0, 0.001, size=len(step))
    out: Float64Array = np.column_stack([now, day, month]).astype(np.float64)
    return np.round(out)


def _hourly_spend(step: Step, hour_starts: Int64Array) -> Float64Array:
    """Spend per hour and channel (columns), a deterministic function of the hour."""
    noise = np.abs(np.sin(hour_starts / HOUR_MS * 12.9898) * 43_758.5453) % 1.0
    base = np.array(list(SPEND_PER_HOUR.values()))[None, :] * (0.85 + 0.3 * noise)[:, None]
    for campaign in step.plan.campaigns:
        boosted = campaign.span.mask(hour_starts)[:, None] & (
            np.array(list(SPEND_PER_HOUR)) == campaign.channel
        )
        base = np.where(boosted, base * CAMPAIGN_SPEND_FACTOR, base)
    out: Float64Array = base
    return out


def _marketing(step: Step, ids: Ids) -> tuple[Float64Array, list[Event]]:
    """Counter increments per step, and one event per channel for each hour that ended."""
    ends = step.ts - step.ts % HOUR_MS
    spend = _hourly_spend(step, step.ts - 1 - (step.ts - 1) % HOUR_MS) * (step.dt_s / 3600)[:, None]
    done = ends > step.ts - step.dt_s * 1000
    events = []
    hours = ends[done]
    amounts = np.round(_hourly_spend(step, hours - HOUR_MS))
    for end, row in zip(hours.tolist(), amounts.tolist(), strict=True):
        for channel, amount in zip(SPEND_PER_HOUR, row, strict=True):
            props: dict[str, Scalar] = {"channel": channel, "currency": "EUR"}
            events.append(
                Event("marketing_spend", end, f"channel:{channel}", amount, props, ids.next())
            )
    return spend, events
