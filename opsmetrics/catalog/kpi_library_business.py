"""Standard SaaS and revenue KPIs: MRR, ARR, net new MRR, churn, retention, NPS, CSAT, CAC, LTV.

Subscription data is read from `subscription_changed` events by default, as the demo writes
them: `value` is the change in MRR in minor units, `props.change` is new / expansion /
contraction / churn (contraction and churn carry negative values). With `recorded: level`
events carry a customer's new MRR instead, which then holds until the next change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from opsmetrics.catalog.kpi_library_base import (
    Param,
    ParamKind,
    Params,
    StandardKpi,
    eq,
    events,
    expr,
    field,
    number,
    one_of,
    running,
    scaled,
    text,
)
from opsmetrics.catalog.kpi_model import (
    EventAgg,
    EventFormula,
    ExprFormula,
    FieldSource,
    FilterOp,
    Formula,
    RatioFormula,
    StateAgg,
    StateFormula,
    ValueBound,
)

EVENT = Param(
    "event", ParamKind.TEXT, "the event recording subscription changes", "subscription_changed"
)
FIELD = Param("field", ParamKind.FIELD, "what holds the MRR amount (minor units)", "value")
RECORDED = Param(
    "recorded",
    ParamKind.CHOICE,
    "change: each event carries the change in MRR; level: the customer's new MRR",
    "change",
    ("change", "level"),
)
BY = Param("by", ParamKind.FIELD, "what identifies a customer (recorded: level)", "entity")
MINOR = Param(
    "minor_units", ParamKind.NUMBER, "minor units per major unit (100 for cents; 1 if none)", 100
)
CHANGE_PROP = Param(
    "change_prop", ParamKind.TEXT, "the property naming the kind of change", "change"
)
KIND_VALUES = {
    "new": Param("new_value", ParamKind.TEXT, "change_prop value of a new customer", "new"),
    "expansion": Param("expansion_value", ParamKind.TEXT, "value of an upgrade", "expansion"),
    "contraction": Param(
        "contraction_value", ParamKind.TEXT, "value of a downgrade", "contraction"
    ),
    "churned": Param("churned_value", ParamKind.TEXT, "value of a cancellation", "churn"),
}
KINDS = ("all", *KIND_VALUES)
SUBSCRIPTION = (EVENT, FIELD, CHANGE_PROP, *KIND_VALUES.values())


def _changes(p: Params, kind: str) -> Formula:
    """Sum of MRR changes of one kind (all kinds for 'all') in the period."""
    if kind == "all":
        return events(text(p, "event"), EventAgg.SUM, field(p, "field"))
    where = eq(text(p, "change_prop"), text(p, KIND_VALUES[kind].name))
    return events(text(p, "event"), EventAgg.SUM, field(p, "field"), where)


def _count(p: Params, kind: str) -> Formula:
    where = eq(text(p, "change_prop"), text(p, KIND_VALUES[kind].name))
    return events(text(p, "event"), EventAgg.COUNT, None, where)


def _mrr_minor(p: Params) -> Formula:
    if text(p, "recorded") == "level":
        return StateFormula(text(p, "event"), field(p, "field"), field(p, "by"), StateAgg.SUM)
    return running(_changes(p, "all"))


def mrr(p: Params) -> Formula:
    return scaled(_mrr_minor(p), number(p, "minor_units"))


def arr(p: Params) -> Formula:
    return expr(f"mrr * 12 / {number(p, 'minor_units'):g}", mrr=_mrr_minor(p))


def _net_new(kind: str) -> Callable[[Params], Formula]:
    def build(p: Params) -> Formula:
        chosen = text(p, "kind") if kind == "param" else kind
        return scaled(_changes(p, chosen), number(p, "minor_units"))

    return build


def arr_growth(p: Params) -> Formula:
    delta = _changes(p, "all")
    return expr("delta / (total - delta)", delta=delta, total=running(delta))


def _active_customers(p: Params) -> ExprFormula:
    """Customers at the end of the period: all new ones so far minus all churned so far."""
    return expr(
        "new - churned", new=running(_count(p, "new")), churned=running(_count(p, "churned"))
    )


def customer_churn_rate(p: Params) -> Formula:
    churned, new = _count(p, "churned"), _count(p, "new")
    return expr(
        "churned / (active - new + churned)",
        churned=churned,
        new=new,
        active=_active_customers(p),
    )


def _retention(p: Params, source: str) -> Formula:
    delta = _changes(p, "all")
    bound = {k: _changes(p, k) for k in ("expansion", "contraction", "churned") if k in source}
    return expr(source, delta=delta, total=running(delta), **bound)


def gross_revenue_retention(p: Params) -> Formula:
    return _retention(p, "(total - delta + contraction + churned) / (total - delta)")


def net_revenue_retention(p: Params) -> Formula:
    return _retention(p, "(total - delta + expansion + contraction + churned) / (total - delta)")


def _scored(p: Params, low: float, high: float) -> EventFormula:
    """Responses with a score in [low, high]. From a property (`score: props.score`): the
    whole scores (written as 9 or 9.0) a survey records; from the event's value (`score:
    value`): any number in the range. A response without a score is excluded, and reported
    (meta.excluded), rather than counted as a score outside the range."""
    name, score = text(p, "event"), field(p, "score")
    if score.source is FieldSource.VALUE:
        bounds = (ValueBound(FilterOp.GTE, low), ValueBound(FilterOp.LTE, high))
        return EventFormula(name, EventAgg.COUNT, score, (), bounds)
    whole = range(math.ceil(low), math.floor(high) + 1)
    return events(name, EventAgg.COUNT, None, one_of(str(score.prop), (*whole, *map(float, whole))))


def _responses(p: Params) -> EventFormula:
    """The responses with a score on the scale: the denominator."""
    return _scored(p, number(p, "scale_min"), number(p, "scale_max"))


def nps(p: Params) -> Formula:
    top, bottom = number(p, "scale_max"), number(p, "scale_min")
    return expr(
        "(promoters - detractors) / responses * 100",
        promoters=_scored(p, number(p, "promoter_min"), top),
        detractors=_scored(p, bottom, number(p, "detractor_max")),
        responses=_responses(p),
    )


def csat(p: Params) -> Formula:
    satisfied = _scored(p, number(p, "satisfied_min"), number(p, "scale_max"))
    return RatioFormula(satisfied, _responses(p))


def _cac_minor(p: Params) -> Formula:
    spend = events(text(p, "spend_event"), EventAgg.SUM, field(p, "spend_field"))
    new = events(
        text(p, "event"),
        EventAgg.UNIQUE,
        None,
        eq(text(p, "change_prop"), text(p, "new_value")),
    )
    return RatioFormula(spend, new)


def cac(p: Params) -> Formula:
    return scaled(_cac_minor(p), number(p, "minor_units"))


def ltv(p: Params) -> Formula:
    margin = number(p, "gross_margin")
    return expr(
        f"mrr / customers * {margin:g} / churn / {number(p, 'minor_units'):g}",
        mrr=running(_changes(p, "all")),
        customers=_active_customers(p),
        churn=customer_churn_rate(p),
    )


def ltv_cac(p: Params) -> Formula:
    return expr("ltv / cac", ltv=ltv(p), cac=cac(p))


# --- the entries ----------------------------------------------------------------------------

_SUB_EXAMPLE = (
    "Fixture: on day 1 customers c1, c2, c3 start (+50.00, +30.00, +20.00 MRR: MRR 100.00). "
    "On day 2 c4 starts (+40.00), c1 upgrades (+20.00), c2 downgrades (−10.00), c3 cancels "
    "(−20.00)."
)
SPEND_EVENT = Param("spend_event", ParamKind.TEXT, "the event carrying sales and marketing spend")
SPEND_FIELD = Param("spend_field", ParamKind.FIELD, "what holds the spend (minor units)", "value")
MARGIN = Param("gross_margin", ParamKind.NUMBER, "gross margin as a fraction, e.g. 0.8")


def _score(event: str, least: str, threshold: int, low: int, high: int) -> tuple[Param, ...]:
    return (
        Param("event", ParamKind.TEXT, "the survey response event", event),
        Param(
            "score",
            ParamKind.FIELD,
            "where the score is: props.<name> (a property) or value (the event's value)",
            "props.score",
            ("value", "props"),
        ),
        Param(least, ParamKind.NUMBER, f"lowest score that counts ({threshold})", threshold),
        Param("scale_min", ParamKind.NUMBER, f"lowest score of the scale ({low})", low),
        Param("scale_max", ParamKind.NUMBER, f"highest score of the scale ({high})", high),
    )


def _kind_entry(kind: str) -> StandardKpi:
    return StandardKpi(
        name=f"{kind}_mrr",
        title=f"{kind.capitalize()} MRR",
        unit="currency",
        formula=f"Σ MRR changes with change_prop = {KIND_VALUES[kind].default} in the period "
        "÷ minor_units (net_new_mrr with kind: " + kind + ")",
        params=(*SUBSCRIPTION, MINOR),
        build=_net_new(kind),
        example="{}",
        worked=f"{_SUB_EXAMPLE} Day 2: "
        + {"new": "40.00", "expansion": "20.00", "contraction": "−10.00", "churned": "−20.00"}[kind]
        + ".",
    )


BUSINESS: tuple[StandardKpi, ...] = (
    StandardKpi(
        name="mrr",
        title="Monthly recurring revenue",
        unit="currency",
        formula="change: running Σ of MRR changes up to the period end ÷ minor_units; "
        "level: Σ over customers of their latest MRR ÷ minor_units",
        params=(EVENT, FIELD, RECORDED, BY, MINOR),
        build=mrr,
        example="{event: subscription_changed, recorded: change}",
        worked=f"{_SUB_EXAMPLE} MRR: day 1 100.00, day 2 130.00.",
    ),
    StandardKpi(
        name="arr",
        title="Annual recurring revenue",
        unit="currency",
        formula="MRR × 12",
        params=(EVENT, FIELD, RECORDED, BY, MINOR),
        build=arr,
        example="{event: subscription_changed}",
        worked=f"{_SUB_EXAMPLE} ARR on day 2: 130.00 × 12 = 1560.00.",
    ),
    StandardKpi(
        name="net_new_mrr",
        title="Net new MRR",
        unit="currency",
        formula="Σ MRR changes in the period ÷ minor_units = new + expansion + contraction + "
        "churned (contraction and churned are negative); `kind` picks one part",
        params=(
            *SUBSCRIPTION,
            MINOR,
            Param("kind", ParamKind.CHOICE, "which part to show", "all", KINDS),
        ),
        build=_net_new("param"),
        example="{kind: expansion}",
        worked=f"{_SUB_EXAMPLE} Day 2: 40.00 + 20.00 − 10.00 − 20.00 = 30.00; kind expansion: "
        "20.00.",
    ),
    *(_kind_entry(kind) for kind in KIND_VALUES),
    StandardKpi(
        name="arr_growth",
        title="ARR growth",
        unit="percent",
        formula="(ARR at period end − ARR at period start) ÷ ARR at period start, from MRR "
        "changes (the × 12 cancels)",
        params=(EVENT, FIELD),
        build=arr_growth,
        example="{event: subscription_changed}",
        worked=f"{_SUB_EXAMPLE} Day 2: (130.00 − 100.00) ÷ 100.00 = 0.30 (30 %).",
    ),
    StandardKpi(
        name="customer_churn_rate",
        title="Customer churn rate",
        unit="percent",
        formula="churned ÷ customers at period start, where customers at start = customers at "
        "end − new + churned and customers at end = all new so far − all churned so far",
        params=(EVENT, CHANGE_PROP, KIND_VALUES["new"], KIND_VALUES["churned"]),
        build=customer_churn_rate,
        example="{event: subscription_changed, churned_value: churn}",
        worked=f"{_SUB_EXAMPLE} Day 2: 1 churned; customers at end 4 − 1 = 3, at start "
        "3 − 1 + 1 = 3: 1 ÷ 3 = 0.333.",
    ),
    StandardKpi(
        name="gross_revenue_retention",
        title="Gross revenue retention",
        unit="percent",
        formula="(MRR at start + contraction + churned) ÷ MRR at start (changes are negative)",
        params=SUBSCRIPTION,
        build=gross_revenue_retention,
        example="{event: subscription_changed}",
        worked=f"{_SUB_EXAMPLE} Day 2: (100 − 10 − 20) ÷ 100 = 0.70.",
    ),
    StandardKpi(
        name="net_revenue_retention",
        title="Net revenue retention",
        unit="percent",
        formula="(MRR at start + expansion + contraction + churned) ÷ MRR at start",
        params=SUBSCRIPTION,
        build=net_revenue_retention,
        example="{event: subscription_changed}",
        worked=f"{_SUB_EXAMPLE} Day 2: (100 + 20 − 10 − 20) ÷ 100 = 0.90.",
    ),
    StandardKpi(
        name="nps",
        title="Net promoter score",
        unit="score",
        formula="(promoters (score ≥ 9) − detractors (score ≤ 6)) ÷ responses × 100",
        params=(
            *_score("nps_response", "promoter_min", 9, 0, 10),
            Param("detractor_max", ParamKind.NUMBER, "highest detractor score (6)", 6),
        ),
        build=nps,
        example="{event: nps_response, score: props.score}",
        worked="Scores 10, 9, 9, 7, 2: 3 promoters, 1 detractor, 5 responses: "
        "(3 − 1) ÷ 5 × 100 = 40.",
    ),
    StandardKpi(
        name="csat",
        title="Customer satisfaction (CSAT)",
        unit="percent",
        formula="responses with score ≥ satisfied_min ÷ responses",
        params=_score("csat_response", "satisfied_min", 4, 1, 5),
        build=csat,
        example="{event: csat_response, satisfied_min: 4}",
        worked="Scores 5, 4, 3, 5 on a 1–5 scale: 3 of 4 are ≥ 4: 0.75.",
    ),
    StandardKpi(
        name="cac",
        title="Customer acquisition cost",
        unit="currency",
        formula="Σ sales + marketing spend in the period ÷ new customers in the period "
        "÷ minor_units",
        params=(SPEND_EVENT, SPEND_FIELD, EVENT, CHANGE_PROP, KIND_VALUES["new"], MINOR),
        build=cac,
        example="{spend_event: acquisition_spend}",
        worked=f"{_SUB_EXAMPLE} Spend on day 2: 200.00 (ads) + 60.00 (sales) for 1 new "
        "customer: 260.00.",
    ),
    StandardKpi(
        name="ltv",
        title="Customer lifetime value",
        unit="currency",
        formula="ARPA × gross margin ÷ customer churn rate, ARPA = MRR ÷ customers at period end",
        params=(MARGIN, *SUBSCRIPTION, MINOR),
        build=ltv,
        example="{gross_margin: 0.8}",
        worked=f"{_SUB_EXAMPLE} Day 2: ARPA 130.00 ÷ 3 = 43.33; × 0.8 ÷ (1/3) = 104.00.",
    ),
    StandardKpi(
        name="ltv_cac",
        title="LTV:CAC",
        unit="ratio",
        formula="LTV ÷ CAC (parameters of both)",
        params=(MARGIN, SPEND_EVENT, SPEND_FIELD, *SUBSCRIPTION, MINOR),
        build=ltv_cac,
        example="{gross_margin: 0.8, spend_event: acquisition_spend}",
        worked="With the ltv and cac examples: 104.00 ÷ 260.00 = 0.40.",
    ),
)
