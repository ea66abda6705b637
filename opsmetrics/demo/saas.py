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
#: About 4.6 subscription changes a day (mean load 0.57): ~2 new customers, ~1.4
#: cancellations (3–4 % of the customers a month), and some up- and downgrades: MRR grows
#: about 4 % a month.
SUBSCRIPTION_CHANGES_PER_MIN = 0.0056
NPS_PER_MIN = 0.025
TICKETS_PER_MIN = 0.04
SOURCES = ("organic", "ads", "email", "social", "direct")
SOURCE_WEIGHTS = (0.38, 0.27, 0.12, 0.08, 0.15)
PLANS = ("starter", "pro", "business")
PLAN_PRICE_MINOR = (2900, 9900, 29900)
PLAN_WEIGHTS = (0.55, 0.35, 0.1)
#: Cancellations come mostly from the starter plan.
CHURN_PLAN_WEIGHTS = (0.75, 0.22, 0.03)
CHANGES = ("new", "expansion", "contraction", "churn")
CHANGE_WEIGHTS = (0.44, 0.15, 0.1, 0.31)
#: The change kind of the opening balance: the subscriptions that exist when history starts.
OPENING = "opening"
TICKET_CATEGORIES = ("billing", "bug", "how-to", "account")
OPENING_CUSTOMERS = 1_150
#: Share of signups who sign up while shopping (the same user id as their shop session).
SIGNUP_FROM_SHOP = 0.9
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
#: Spend per hour in cents per channel (about EUR 1,030 a day, ~EUR 470 per new customer);
#: a campaign on the channel triples it.
SPEND_PER_HOUR = {"ads": 2_430.0, "social": 1_250.0, "email": 210.0, "affiliates": 420.0}
CAMPAIGN_SPEND_FACTOR = 3.0


def opening_book() -> list[tuple[str, int]]:
    """The subscriptions that exist when history starts: (customer, plan), fixed for all seeds."""
    rng = np.random.default_rng(1_150)
    plans = pick(rng, OPENING_CUSTOMERS, PLAN_WEIGHTS)
    return [(f"c{n + 1}", int(p)) for n, p in enumerate(plans.tolist())]


def opening_mrr_eur() -> float:
    return sum(PLAN_PRICE_MINOR[plan] for _, plan in opening_book()) / 100.0


def opening_events(ts: int) -> list[Event]:
    """The opening balance as `subscription_changed` events (change `opening`) at `ts`, so
    running totals of MRR and customers start where the gauges start."""
    return [
        Event(
            "subscription_changed",
            ts,
            customer,
            float(PLAN_PRICE_MINOR[plan]),
            _subscription_props(plan, OPENING, PLAN_PRICE_MINOR[plan]),
            f"demo-opening-{customer}",
        )
        for customer, plan in opening_book()
    ]


def _subscription_props(plan: int, kind: str, mrr: int) -> dict[str, Scalar]:
    customers = {"new": 1, OPENING: 1, "churn": -1}.get(kind, 0)
    return {
        "plan": PLANS[plan],
        "change": kind,
        "mrr": mrr,
        "currency": "EUR",
        "customers": customers,
    }


def _spec(name: str, kind: Kind = Kind.TOTAL, initial: float = 0.0, **extra: str) -> SeriesSpec:
    return SeriesSpec(make_labels({"__name__": name, "job": "saas", **extra}), kind, initial)


def _feature_cells() -> list[tuple[str, bool, str]]:
    return [(f, new, tier) for f in FEATURES for new in (False, True) for tier in TIERS]


def series() -> list[SeriesSpec]:
    return [
        _spec("saas_signups_total"),
        # Running totals too: each step adds the (possibly negative) net change.
        _spec("saas_mrr_eur", initial=opening_mrr_eur()),
        _spec("saas_subscriptions_active", initial=float(OPENING_CUSTOMERS)),
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


def simulate(
    step: Step, ids: Ids, shoppers: list[tuple[int, str]]
) -> tuple[Float64Array, list[Event]]:
    """`shoppers`: (time, user) of the chunk's sampled add-to-cart events; most sign-ups are
    shoppers creating an account, so sign-ups and purchases share user ids."""
    cols = np.zeros((len(step), 3))
    events = _signups(step, ids, cols, shoppers)
    events += _subscriptions(step, ids, cols)
    events += _nps(step, ids)
    events += _tickets(step, ids)
    spend, spend_events = _marketing(step, ids)
    columns = np.hstack([cols, _feature_usage(step), _active_users(step), spend])
    return columns, events + spend_events


def _signups(
    step: Step, ids: Ids, cols: Float64Array, shoppers: list[tuple[int, str]]
) -> list[Event]:
    idx, ts = arrivals(step, SIGNUPS_PER_MIN * (1 + 0.4 * step.campaign))
    source = pick(step.rng, len(idx), SOURCE_WEIGHTS)
    users = [f"u{u}" for u in step.rng.integers(600_000, 10_000_000, size=len(idx)).tolist()]
    times = ts.tolist()
    # Most sign-ups happen in a shop session: that user, at their add-to-cart time.
    from_shop = step.rng.random(len(idx)) < SIGNUP_FROM_SHOP
    chosen = step.rng.permutation(len(shoppers))[: int(from_shop.sum())].tolist()
    for i, k in zip(np.flatnonzero(from_shop).tolist(), chosen, strict=False):
        times[i], users[i] = shoppers[k]
    np.add.at(cols[:, 0], idx, 1.0)
    return [
        Event("signup", t, u, None, {"source": SOURCES[s]}, ids.next())
        for t, u, s in zip(times, users, source.tolist(), strict=True)
    ]


def _mrr_change(change: int, plan: int) -> int:
    """Change in monthly recurring revenue (minor units) for one subscription change: an
    upgrade to `plan` from the plan below, a downgrade from `plan` to the one below (on the
    top and bottom plans: half the price more or less seats)."""
    price = PLAN_PRICE_MINOR[plan]
    match CHANGES[change]:
        case "new":
            return price
        case "expansion":
            return price - PLAN_PRICE_MINOR[max(plan - 1, 0)] or price // 2
        case "contraction":
            return PLAN_PRICE_MINOR[max(plan - 1, 0)] - price or -price // 2
        case _:
            return -price


def _subscriptions(step: Step, ids: Ids, cols: Float64Array) -> list[Event]:
    idx, ts = arrivals(step, SUBSCRIPTION_CHANGES_PER_MIN)
    change = pick(step.rng, len(idx), CHANGE_WEIGHTS)
    churned = change == CHANGES.index("churn")
    plan = np.where(
        churned,
        pick(step.rng, len(idx), CHURN_PLAN_WEIGHTS),
        pick(step.rng, len(idx), PLAN_WEIGHTS),
    )
    # New customers get fresh ids; changes pick an existing-looking one.
    known = step.rng.integers(1, OPENING_CUSTOMERS + 1, size=len(idx))
    fresh = step.rng.integers(10_000, 10_000_000, size=len(idx))
    customers = np.where(change == CHANGES.index("new"), fresh, known)
    events = []
    for i in range(len(idx)):
        mrr = _mrr_change(int(change[i]), int(plan[i]))
        kind = CHANGES[change[i]]
        props = _subscription_props(int(plan[i]), kind, mrr)
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
