"""The shop: the funnel page_view → add_to_cart → cart_view → checkout → purchase.

Two views of the same shop, drawn from the same probabilities:

- counters (`business_funnel_step_total{step}`, `business_revenue_cents_total{region}`, and the
  older `shop_*_total`) count *every* session — about 3,000 a minute at the evening peak;
- events record a 0.36 % sample of sessions (EVENT_SAMPLE), as product analytics tools sample, so
  30 days of history stay at tens of thousands of events a day.

During a checkout latency incident fewer carts reach checkout and most payments fail, so
orders per cart view fall from about 28 % to under 1 %. The `checkout_redesign` experiment
splits users 50/50 by id when they add to cart; treatment pays 6 % more often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.incidents import (
    CAMPAIGN_LIFT,
    INCIDENT_CHECKOUT_FACTOR,
    INCIDENT_PAYMENT_FACTOR,
)
from opsmetrics.demo.sampling import Ids, arrivals, pick
from opsmetrics.demo.topology import Kind
from opsmetrics.model import Event, Float64Array, Int64Array, Scalar, make_labels

#: Sessions per minute across the whole shop at a load factor of 1.
SESSIONS_PER_MIN = 3000.0
#: Share of sessions recorded as events.
EVENT_SAMPLE = 0.0036
#: Step-to-step probabilities in normal times.
P_ADD_TO_CART = 0.11
P_CART_VIEW = 0.85
P_CHECKOUT = 0.45
P_PAY = 0.62
STEPS = ("page_view", "add_to_cart", "cart_view", "checkout", "order_confirmed")
AVG_ORDER_MINOR = 4800
ORDER_SIGMA = 0.6
REGIONS = ("eu", "us", "apac")
REGION_SHARES = (0.55, 0.3, 0.15)
SHOP_USERS = 400_000
EXPERIMENT = "checkout_redesign"
#: The treatment's true relative uplift in the probability to pay.
TREATMENT_UPLIFT = 1.06
#: Share of deliveries (one `delivery` event per sampled order) that arrive on time.
ON_TIME_PERCENT = 93

SOURCES = ("organic", "ads", "email", "social", "direct")
SOURCE_WEIGHTS = (0.38, 0.27, 0.12, 0.08, 0.15)
DEVICES = ("desktop", "mobile", "tablet")
DEVICE_WEIGHTS = (0.42, 0.5, 0.08)
#: Relative probability to pay per device (weighted mean 1).
DEVICE_PAY = (1.12, 0.9, 1.0)


def _labels(name: str, **extra: str) -> SeriesSpec:
    return SeriesSpec(make_labels({"__name__": name, "job": "shop", **extra}), Kind.TOTAL)


def series() -> list[SeriesSpec]:
    return [
        *(_labels("business_funnel_step_total", step=s) for s in STEPS),
        *(_labels("business_revenue_cents_total", region=r) for r in REGIONS),
        _labels("shop_cart_views_total"),
        _labels("shop_orders_total"),
        _labels("shop_revenue_eur_total"),
    ]


def variant(user: int) -> str:
    """The experiment arm of a user: a deterministic 50/50 split by id."""
    return "treatment" if _is_treatment(np.array([user]))[0] else "control"


def _is_treatment(users: Int64Array) -> np.ndarray:
    return ((users * 2_654_435_761) % 2**32) >= 2**31


@dataclass(frozen=True, slots=True)
class _Odds:
    """Per-step probabilities to reach checkout (from a cart view) and to pay."""

    checkout: Float64Array
    pay: Float64Array


def _odds(step: Step) -> _Odds:
    checkout = P_CHECKOUT * np.where(step.incident, INCIDENT_CHECKOUT_FACTOR, 1.0)
    pay = (
        P_PAY
        * np.where(step.incident, INCIDENT_PAYMENT_FACTOR, 1.0)
        * step.plan.pay_factor(step.ts)
    )
    return _Odds(checkout, pay)


def simulate(step: Step, ids: Ids) -> tuple[Float64Array, list[Event]]:
    odds = _odds(step)
    return _counters(step, odds), _events(step, odds, ids)


def _counters(step: Step, odds: _Odds) -> Float64Array:
    rng = step.rng
    sessions = rng.poisson(SESSIONS_PER_MIN * step.load * (1 + step.campaign) * step.dt_s / 60)
    added = rng.binomial(sessions, P_ADD_TO_CART)
    carts = rng.binomial(added, P_CART_VIEW)
    checkouts = rng.binomial(carts, odds.checkout)
    # Half the buyers are in the treatment arm of the experiment.
    orders = rng.binomial(checkouts, odds.pay * (1 + (TREATMENT_UPLIFT - 1) / 2))
    by_region = rng.multinomial(orders, REGION_SHARES)
    revenue = _revenue(rng, by_region.astype(np.float64))
    funnel = np.column_stack([sessions, added, carts, checkouts, orders]).astype(np.float64)
    shop = np.column_stack([carts, orders, revenue.sum(axis=1) / 100.0])
    return np.hstack([funnel, revenue, shop])


def _revenue(rng: np.random.Generator, orders: Float64Array) -> Float64Array:
    """Sum of log-normal order values per cell, by the central limit theorem (cents)."""
    mean = AVG_ORDER_MINOR * np.exp(ORDER_SIGMA**2 / 2)
    cv = np.sqrt(np.exp(ORDER_SIGMA**2) - 1)
    spread = rng.normal(0.0, 1.0, size=orders.shape) * cv / np.sqrt(np.maximum(orders, 1))
    out: Float64Array = np.round(orders * mean * np.clip(1 + spread, 0.2, None))
    return out


def _events(step: Step, odds: _Odds, ids: Ids) -> list[Event]:
    rng = step.rng
    idx, ts = arrivals(step, SESSIONS_PER_MIN * EVENT_SAMPLE * (1 + step.campaign))
    n = len(idx)
    users = rng.integers(1, SHOP_USERS, size=n)
    source = _sources(step, ts, pick(rng, n, SOURCE_WEIGHTS))
    device = pick(rng, n, DEVICE_WEIGHTS)
    treated = _is_treatment(users)
    draws = rng.random((n, 4))
    reach = np.cumprod(
        np.column_stack(
            [
                draws[:, 0] < P_ADD_TO_CART,
                draws[:, 1] < P_CART_VIEW,
                draws[:, 2] < odds.checkout[idx],
                draws[:, 3] < _pay_odds(odds, idx, device, treated),
            ]
        ),
        axis=1,
    ).astype(bool)
    # Later steps follow within the step that saw the page view, in order.
    offsets = np.sort(rng.random((n, 4)), axis=1) * (step.ts[idx] - ts)[:, None]
    times = ts[:, None] + np.floor(offsets).astype(np.int64)
    values = np.round(rng.lognormal(np.log(AVG_ORDER_MINOR), ORDER_SIGMA, size=n))
    rows = zip(
        ts.tolist(),
        times.tolist(),
        reach.tolist(),
        users.tolist(),
        source.tolist(),
        device.tolist(),
        treated.tolist(),
        values.tolist(),
        strict=True,
    )
    events: list[Event] = []
    for row in rows:
        events += _session(ids, *row)
    return events


def _pay_odds(
    odds: _Odds, idx: Int64Array, device: Int64Array, treated: np.ndarray
) -> Float64Array:
    lift = np.where(treated, TREATMENT_UPLIFT, 1.0)
    out: Float64Array = odds.pay[idx] * np.array(DEVICE_PAY)[device] * lift
    return out


def _sources(step: Step, ts: Int64Array, source: Int64Array) -> Int64Array:
    """Sessions a campaign brought in come from the campaign's channel."""
    share = CAMPAIGN_LIFT / (1 + CAMPAIGN_LIFT)
    for campaign in step.plan.campaigns:
        brought = campaign.span.mask(ts) & (step.rng.random(len(ts)) < share)
        source = np.where(brought, SOURCES.index(campaign.channel), source)
    return source


def _session(
    ids: Ids,
    viewed_at: int,
    times: list[int],
    reach: list[bool],
    user: int,
    src: int,
    dev: int,
    treated: bool,
    value: float,
) -> list[Event]:
    entity = f"u{user}"
    props: dict[str, Scalar] = {"source": SOURCES[src], "device": DEVICES[dev]}
    out = [Event("page_view", viewed_at, entity, None, props, ids.next())]
    if not reach[0]:
        return out
    arm: dict[str, Scalar] = {
        "experiment": EXPERIMENT,
        "variant": "treatment" if treated else "control",
    }
    out.append(Event("add_to_cart", times[0], entity, None, props, ids.next()))
    out.append(Event("experiment_exposure", times[0], entity, None, arm, ids.next()))
    for name, when, reached in zip(("cart_view", "checkout"), times[1:3], reach[1:3], strict=True):
        if reached:
            out.append(Event(name, when, entity, None, props, ids.next()))
    if reach[3]:
        paid: dict[str, Scalar] = {"currency": "EUR", **props}
        out.append(Event("purchase", times[3], entity, value, paid, ids.next()))
        # The delivery of an earlier order of this user: on time about 93 % of the time.
        on_time = (user * 7_919 + times[3]) % 100 < ON_TIME_PERCENT
        delivered: dict[str, Scalar] = {"on_time": "true" if on_time else "false"}
        out.append(Event("delivery", times[3], entity, None, delivered, ids.next()))
    return out
