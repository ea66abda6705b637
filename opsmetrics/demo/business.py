"""Business events (shop and SaaS) and the counters and gauges derived from them.

Checkout conversion depends on checkout health: during a latency incident most would-be buyers
give up, which is the link later analysis should find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.incidents import INCIDENT_CONVERSION_FACTOR
from opsmetrics.demo.topology import Kind
from opsmetrics.model import Event, Float64Array, Int64Array, Scalar, make_labels

#: Per minute at a load factor of 1 (about 15k cart views a day).
CART_VIEWS_PER_MIN = 16.0
SIGNUPS_PER_MIN = 0.14
SUBSCRIPTION_CHANGES_PER_MIN = 0.04
NPS_PER_MIN = 0.025
TICKETS_PER_MIN = 0.04
BASE_CONVERSION = 0.036
AVG_ORDER_MINOR = 4800

SOURCES = ("organic", "ads", "email", "social", "direct")
SOURCE_WEIGHTS = (0.38, 0.27, 0.12, 0.08, 0.15)
DEVICES = ("desktop", "mobile", "tablet")
DEVICE_WEIGHTS = (0.42, 0.5, 0.08)
DEVICE_CONVERSION = (1.3, 0.75, 1.0)
PLANS = ("starter", "pro", "business")
PLAN_PRICE_MINOR = (2900, 9900, 29900)
CHANGES = ("new", "expansion", "contraction", "churn")
CHANGE_WEIGHTS = (0.45, 0.2, 0.1, 0.25)
TICKET_CATEGORIES = ("billing", "bug", "how-to", "account")
BASE_MRR_EUR = 84_000.0
BASE_SUBSCRIPTIONS = 1_150.0


def _series(name: str, kind: Kind = Kind.TOTAL, initial: float = 0.0) -> SeriesSpec:
    return SeriesSpec(make_labels({"__name__": name, "job": "shop"}), kind, initial)


def series() -> list[SeriesSpec]:
    return [
        _series("shop_cart_views_total"),
        _series("shop_orders_total"),
        _series("shop_revenue_eur_total"),
        _series("saas_signups_total"),
        # Running totals too: each step adds the (possibly negative) net change.
        _series("saas_mrr_eur", initial=BASE_MRR_EUR),
        _series("saas_subscriptions_active", initial=BASE_SUBSCRIPTIONS),
    ]


@dataclass(slots=True)
class BusinessStep:
    events: list[Event]
    #: Columns in the order of `series()`: per-step changes.
    columns: Float64Array


class _Ids:
    """Deterministic event ids: the chunk's first timestamp plus a running number."""

    def __init__(self, chunk_ts: int) -> None:
        self._prefix = f"demo-{chunk_ts}-"
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"


def simulate(step: Step) -> BusinessStep:
    ids = _Ids(int(step.ts[0]))
    n = len(step)
    cols = np.zeros((n, 6))
    events = _shop(step, ids, cols)
    events += _signups(step, ids, cols)
    events += _subscriptions(step, ids, cols)
    events += _nps(step, ids)
    events += _tickets(step, ids)
    return BusinessStep(events, cols)


def _arrivals(step: Step, per_min: float | Float64Array) -> tuple[Int64Array, Int64Array]:
    """Poisson arrivals per step; returns (step index, timestamp) of each arrival."""
    counts = step.rng.poisson(per_min * step.load * step.dt_s / 60.0)
    idx = np.repeat(np.arange(len(step)), counts)
    back = np.floor(step.rng.random(len(idx)) * step.dt_s[idx] * 1000).astype(np.int64)
    return idx, step.ts[idx] - back


def _pick(rng: np.random.Generator, n: int, weights: tuple[float, ...]) -> Int64Array:
    out: Int64Array = rng.choice(len(weights), size=n, p=np.array(weights) / sum(weights))
    return out


def _shop(step: Step, ids: _Ids, cols: Float64Array) -> list[Event]:
    rng = step.rng
    idx, ts = _arrivals(step, CART_VIEWS_PER_MIN)
    users = rng.integers(1, 60_000, size=len(idx))
    source = _pick(rng, len(idx), SOURCE_WEIGHTS)
    device = _pick(rng, len(idx), DEVICE_WEIGHTS)
    p = BASE_CONVERSION * np.array(DEVICE_CONVERSION)[device]
    p = np.where(step.incident[idx], p * INCIDENT_CONVERSION_FACTOR, p)
    bought = rng.random(len(idx)) < p
    # The purchase follows the view within the same step, so counters and events agree.
    delay = np.floor(rng.random(len(idx)) * (step.ts[idx] - ts + 1)).astype(np.int64)
    values = np.round(rng.lognormal(np.log(AVG_ORDER_MINOR), 0.6, size=len(idx)))
    np.add.at(cols[:, 0], idx, 1.0)
    np.add.at(cols[:, 1], idx[bought], 1.0)
    np.add.at(cols[:, 2], idx[bought], values[bought] / 100.0)
    columns = zip(
        ts.tolist(),
        (ts + delay).tolist(),
        users.tolist(),
        source.tolist(),
        device.tolist(),
        bought.tolist(),
        values.tolist(),
        strict=True,
    )
    events = []
    for when, paid_at, user, src, dev, buys, value in columns:
        props: dict[str, Scalar] = {"source": SOURCES[src], "device": DEVICES[dev]}
        events.append(Event("cart_view", when, f"u{user}", None, props, ids.next()))
        if buys:
            paid: dict[str, Scalar] = {"currency": "EUR", **props}
            events.append(Event("purchase", paid_at, f"u{user}", value, paid, ids.next()))
    return events


def _signups(step: Step, ids: _Ids, cols: Float64Array) -> list[Event]:
    idx, ts = _arrivals(step, SIGNUPS_PER_MIN)
    source = _pick(step.rng, len(idx), SOURCE_WEIGHTS)
    users = step.rng.integers(60_000, 10_000_000, size=len(idx))
    np.add.at(cols[:, 3], idx, 1.0)
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


def _subscriptions(step: Step, ids: _Ids, cols: Float64Array) -> list[Event]:
    idx, ts = _arrivals(step, SUBSCRIPTION_CHANGES_PER_MIN)
    change = _pick(step.rng, len(idx), CHANGE_WEIGHTS)
    plan = _pick(step.rng, len(idx), (0.55, 0.35, 0.1))
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
        cols[idx[i], 4] += mrr / 100.0
        cols[idx[i], 5] += {"new": 1.0, "churn": -1.0}.get(kind, 0.0)
    return events


#: Score probabilities 0..10 in normal times and during incidents (more detractors).
NPS_CALM = (0.01, 0.01, 0.01, 0.02, 0.02, 0.04, 0.06, 0.12, 0.2, 0.25, 0.26)
NPS_UPSET = (0.06, 0.05, 0.06, 0.08, 0.08, 0.1, 0.1, 0.12, 0.13, 0.11, 0.11)


def _nps(step: Step, ids: _Ids) -> list[Event]:
    idx, ts = _arrivals(step, NPS_PER_MIN)
    calm = _pick(step.rng, len(idx), NPS_CALM)
    upset = _pick(step.rng, len(idx), NPS_UPSET)
    score = np.where(step.incident[idx], upset, calm)
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


def _tickets(step: Step, ids: _Ids) -> list[Event]:
    rate = np.where(step.incident, TICKETS_PER_MIN * 5, TICKETS_PER_MIN)
    idx, ts = _arrivals(step, rate)
    category = _pick(step.rng, len(idx), (0.3, 0.3, 0.3, 0.1))
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
