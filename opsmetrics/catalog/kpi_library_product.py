"""Standard shop and product KPIs: conversion, funnels, AOV, revenue per minute, active users,
stickiness, retention, feature adoption and time to convert."""

from __future__ import annotations

from opsmetrics.catalog.kpi_library_base import (
    Param,
    ParamKind,
    Params,
    StandardKpi,
    as_list,
    duration_ms,
    eq,
    events,
    expr,
    field,
    number,
    promql,
    scaled,
    selector,
    text,
)
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    EventAgg,
    Formula,
    RatioFormula,
)

DAY_MS = 86_400_000
WITHIN = Param(
    "within", ParamKind.DURATION, "how long after the first step the last may come", "1d"
)
ENTITY = Param("entity", ParamKind.TEXT, "what the entity ids name (user, customer…)", "user")
ACTIVE = Param("event", ParamKind.TEXT, "the event that makes an entity active")
MINOR = Param(
    "minor_units", ParamKind.NUMBER, "minor units per major unit (100 for cents; 1 if none)", 100
)


def _conversion(first: str, last: str, p: Params) -> ConversionFormula:
    return ConversionFormula(first, last, duration_ms(p, "within"), text(p, "entity"))


def conversion_rate(p: Params) -> Formula:
    return _conversion(text(p, "from"), text(p, "to"), p)


def funnel_conversion(p: Params) -> Formula:
    steps = as_list(text(p, "steps"))
    if len(steps) == 2:
        return _conversion(steps[0], steps[1], p)
    names = [f"step{i}" for i in range(1, len(steps))]
    bound = {n: _conversion(a, b, p) for n, a, b in zip(names, steps, steps[1:], strict=False)}
    return expr(" * ".join(names), **bound)


def average_order_value(p: Params) -> Formula:
    name = text(p, "event")
    ratio = RatioFormula(events(name, EventAgg.SUM, field(p, "field")), events(name))
    return scaled(ratio, number(p, "minor_units"))


def revenue_per_minute(p: Params) -> Formula:
    counter = selector(text(p, "counter"), str(p.get("matchers", "")))
    return promql(f"sum(rate({counter}[{text(p, 'window')}])) * 60")


def _unique(p: Params) -> Formula:
    return events(text(p, "event"), EventAgg.UNIQUE)


def dau(p: Params) -> Formula:
    return _unique(p)


def rolling_active(p: Params) -> Formula:
    """Distinct entities over the trailing window ending with each period."""
    return CumulativeFormula(_unique(p), duration_ms(p, "window"))


def stickiness(p: Params) -> Formula:
    return RatioFormula(_unique(p), rolling_active(p))


def cohort_retention(p: Params) -> Formula:
    return ConversionFormula(
        text(p, "start_event"), text(p, "return_event"), duration_ms(p, "within"), text(p, "entity")
    )


def feature_adoption(p: Params) -> Formula:
    feature_prop = str(p.get("feature_prop", ""))
    where = (eq(feature_prop, text(p, "feature")),) if feature_prop else ()
    users = events(text(p, "feature_event"), EventAgg.UNIQUE, None, *where)
    return RatioFormula(users, events(text(p, "active_event"), EventAgg.UNIQUE))


def time_to_convert(p: Params) -> Formula:
    return events(text(p, "event"), EventAgg(text(p, "stat")), field(p, "field"))


def _window(default: str) -> Param:
    return Param("window", ParamKind.DURATION, "the trailing span counted", default)


PRODUCT: tuple[StandardKpi, ...] = (
    StandardKpi(
        name="conversion_rate",
        title="Conversion rate",
        unit="percent",
        formula="entities with a `from` event in the period followed by a `to` event within "
        "`within` ÷ entities with a `from` event in the period",
        params=(
            Param("from", ParamKind.TEXT, "the first event", "cart_view"),
            Param("to", ParamKind.TEXT, "the converting event", "purchase"),
            WITHIN,
            ENTITY,
        ),
        build=conversion_rate,
        example="{from: cart_view, to: purchase, within: 1d}",
        worked="Users u1, u2, u3, u4 view a cart; u1 buys 2 h later, u2 26 h later, u3 at once: "
        "within 1d 2 of 4 convert: 0.50.",
    ),
    StandardKpi(
        name="funnel_conversion",
        title="Funnel conversion",
        unit="percent",
        formula="product of the step-to-step conversion rates (each within `within`); for the "
        "exact ordered funnel with drop-off per step use /api/v1/events/funnel",
        params=(
            Param("steps", ParamKind.LIST, "the steps in order, comma-separated"),
            WITHIN,
            ENTITY,
        ),
        build=funnel_conversion,
        example="{steps: 'cart_view, checkout_start, purchase', within: 1d}",
        worked="4 users view a cart, 2 of them start checkout, 1 of those buys: 2/4 × 1/2 = 0.25.",
    ),
    StandardKpi(
        name="average_order_value",
        title="Average order value",
        unit="currency",
        formula="Σ order value ÷ number of orders ÷ minor_units",
        params=(
            Param("event", ParamKind.TEXT, "the order event", "purchase"),
            Param("field", ParamKind.FIELD, "what holds the order value", "value"),
            MINOR,
        ),
        build=average_order_value,
        example="{event: purchase}",
        worked="Orders of 20.00, 35.00 and 50.00 (2000, 3500, 5000 minor units): 35.00.",
    ),
    StandardKpi(
        name="revenue_per_minute",
        title="Revenue per minute",
        unit="currency",
        formula="sum(rate(counter[window])) × 60 — from a revenue counter in major units",
        params=(
            Param("counter", ParamKind.TEXT, "the revenue counter", "shop_revenue_eur_total"),
            Param("matchers", ParamKind.MATCHERS, 'label matchers, e.g. shop="eu"', ""),
            _window("5m"),
        ),
        build=revenue_per_minute,
        example="{counter: shop_revenue_eur_total, window: 5m}",
        worked="The counter grows 0 → 600 over 5 minutes: rate 2/s × 60 = 120.00 per minute.",
    ),
    StandardKpi(
        name="dau",
        title="Daily active users",
        unit="count",
        formula="distinct entities with `event` in the period (use grain: day)",
        params=(ACTIVE,),
        build=dau,
        example="{event: cart_view}",
        worked="u1 twice and u2 once on Monday, u3 on Tuesday: 2 on Monday, 1 on Tuesday.",
    ),
    StandardKpi(
        name="wau",
        title="Weekly active users",
        unit="count",
        formula="distinct entities with `event` in the trailing `window` (7d) to the period end",
        params=(ACTIVE, _window("7d")),
        build=rolling_active,
        example="{event: cart_view}",
        worked="u1 on day 1, u2 on day 3, u1 again on day 5: 2 on day 5 (u1 counted once).",
    ),
    StandardKpi(
        name="mau",
        title="Monthly active users",
        unit="count",
        formula="distinct entities with `event` in the trailing `window` (30d) to the period end",
        params=(ACTIVE, _window("30d")),
        build=rolling_active,
        example="{event: cart_view}",
        worked="u1 on day 1, u2 on day 3, u1 again on day 5: 2 on day 5.",
    ),
    StandardKpi(
        name="stickiness",
        title="Stickiness (DAU/MAU)",
        unit="percent",
        formula="DAU ÷ MAU (trailing `window`, 30d)",
        params=(ACTIVE, _window("30d")),
        build=stickiness,
        example="{event: cart_view}",
        worked="u1 on day 1, u2 on day 3, u1 again on day 5: day 5 DAU 1 ÷ MAU 2 = 0.50.",
    ),
    StandardKpi(
        name="cohort_retention",
        title="Cohort retention",
        unit="percent",
        formula="entities whose `start_event` falls in the period and who do `return_event` "
        "within `within` ÷ entities whose `start_event` falls in the period; the full matrix "
        "is /api/v1/events/retention",
        params=(
            Param("start_event", ParamKind.TEXT, "the event that starts the cohort", "signup"),
            Param("return_event", ParamKind.TEXT, "the event that counts as coming back"),
            Param("within", ParamKind.DURATION, "how long a return counts", "7d"),
            ENTITY,
        ),
        build=cohort_retention,
        example="{start_event: signup, return_event: cart_view, within: 7d}",
        worked="u1, u2, u3, u4 sign up; u1 returns after 2 days, u2 after 10: within 7d 1 of 4: "
        "0.25.",
    ),
    StandardKpi(
        name="feature_adoption",
        title="Feature adoption",
        unit="percent",
        formula="distinct entities using the feature ÷ distinct active entities, in the period",
        params=(
            Param("feature_event", ParamKind.TEXT, "the event of using the feature"),
            Param("active_event", ParamKind.TEXT, "the event that makes an entity active"),
            Param("feature_prop", ParamKind.TEXT, "property naming the feature (optional)", ""),
            Param("feature", ParamKind.TEXT, "the feature, with feature_prop", ""),
        ),
        build=feature_adoption,
        example="{feature_event: feature_used, feature_prop: feature, feature: export, "
        "active_event: session_start}",
        worked="4 active users; u1 uses export twice, u2 once, u3 uses another feature: "
        "2 ÷ 4 = 0.50.",
    ),
    StandardKpi(
        name="time_to_convert",
        title="Time to convert",
        unit="seconds",
        formula="`stat` (p50 by default) of the elapsed time the converting event carries in "
        "`field` (seconds since the first step); funnel medians per step are in "
        "/api/v1/events/funnel",
        params=(
            Param("event", ParamKind.TEXT, "the converting event, carrying the elapsed time"),
            Param("field", ParamKind.FIELD, "what holds the elapsed seconds", "value"),
            Param(
                "stat",
                ParamKind.CHOICE,
                "the statistic",
                "p50",
                ("avg", "p50", "p90", "p95", "p99"),
            ),
        ),
        build=time_to_convert,
        example="{event: trial_converted, stat: p50}",
        worked="Purchases 60 s, 120 s and 600 s after the first view: p50 120 s, avg 260 s.",
    ),
)
