"""The standard KPI library (catalog/kpi_library*.py): parameter checks, the formula each entry
expands to, and each entry evaluated through KpiEvaluator on real DuckDB storage against a
small fixture whose values are computed by hand in the comments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from opsmetrics.catalog.kpi_expr import parse_expr
from opsmetrics.catalog.kpi_library import LIBRARY, STANDARD
from opsmetrics.catalog.kpi_library_base import StandardKpi
from opsmetrics.catalog.kpi_lineage import InputKind, LineageInput, formula_inputs
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    EventAgg,
    EventField,
    EventFormula,
    ExprFormula,
    FieldSource,
    FilterOp,
    Grain,
    LibraryFormula,
    PromqlFormula,
    PropFilter,
    RatioFormula,
    StateAgg,
    StateFormula,
    ValueBound,
)
from opsmetrics.catalog.validate import validate_config_dir, write_starter
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event, SampleBatchBuilder, make_labels
from opsmetrics.query.kpi.evaluator import KpiEvaluator
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "config"
DOCS = ROOT / "docs" / "kpi-library.md"

VALUE = EventField(FieldSource.VALUE)
ENTITY = EventField(FieldSource.ENTITY)
SUB = "subscription_changed"


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


D1 = ms("2026-01-05T00:00Z")  # a Monday


def day(n: int) -> int:
    """Start of fixture day n (day 1 is D1)."""
    return D1 + (n - 1) * DAY


def eq(prop: str, value: object) -> PropFilter:
    return PropFilter(prop, FilterOp.EQ, (value,))  # type: ignore[arg-type]


def sub_sum(kind: str | None = None) -> EventFormula:
    where = (eq("change", kind),) if kind else ()
    return EventFormula(SUB, EventAgg.SUM, VALUE, where)


def sub_count(kind: str) -> EventFormula:
    return EventFormula(SUB, EventAgg.COUNT, None, (eq("change", kind),))


def bound(source: str, **bindings: object) -> ExprFormula:
    return ExprFormula(source, parse_expr(source), tuple(sorted(bindings.items())))  # type: ignore[arg-type]


def expand(name: str, **params: object) -> object:
    return LIBRARY[name].expand(params)  # type: ignore[arg-type]


# --- checking parameters --------------------------------------------------------------------
def test_every_planned_name_is_a_real_entry() -> None:
    names = {
        *(
            [
                "mrr",
                "arr",
                "net_new_mrr",
                "new_mrr",
                "expansion_mrr",
                "contraction_mrr",
                "churned_mrr",
                "arr_growth",
            ]
        ),
        *(
            [
                "customer_churn_rate",
                "gross_revenue_retention",
                "net_revenue_retention",
                "nps",
                "csat",
            ]
        ),
        *(
            [
                "cac",
                "ltv",
                "ltv_cac",
                "conversion_rate",
                "funnel",
                "funnel_conversion",
                "average_order_value",
            ]
        ),
        *(
            [
                "revenue_per_minute",
                "dau",
                "wau",
                "mau",
                "stickiness",
                "cohort_retention",
                "feature_adoption",
            ]
        ),
        *(
            [
                "time_to_convert",
                "availability",
                "error_rate",
                "latency_p95",
                "latency_p99",
                "throughput",
            ]
        ),
        *(["apdex", "mttr", "mtta", "deployment_frequency", "change_failure_rate", "oee"]),
        *(["on_time_delivery", "inventory_turns"]),
    }
    assert set(LIBRARY) == names
    assert all(isinstance(LIBRARY[n], StandardKpi) for n in names)


@pytest.mark.parametrize("entry", STANDARD, ids=lambda e: e.name)
def test_each_docs_example_checks_and_expands(entry: StandardKpi) -> None:
    params = yaml.safe_load(entry.example) or {}
    assert entry.check(params) == []
    assert entry.expand(params) is not None
    assert entry.formula and entry.worked


def test_check_names_the_parameter_and_suggests() -> None:
    assert LIBRARY["mrr"].check({"recordd": "change"}) == [
        "unknown parameter 'recordd'; did you mean 'recorded'?"
    ]
    assert LIBRARY["mrr"].check({"recorded": "monthly"}) == [
        "parameter 'recorded': 'monthly' is not one of change, level"
    ]
    assert LIBRARY["ltv"].check({}) == [
        "ltv needs parameter 'gross_margin': gross margin as a fraction, e.g. 0.8"
    ]
    assert LIBRARY["ltv"].check({"gross_margin": "lots"}) == [
        "parameter 'gross_margin': 'lots' is not a number"
    ]
    assert LIBRARY["conversion_rate"].check({"within": "soon"}) == [
        "parameter 'within': 'soon' is not a duration; use e.g. 30m, 1d or 4w"
    ]
    assert LIBRARY["funnel_conversion"].check({"steps": "a"}) == [
        "parameter 'steps': list at least two names separated by commas"
    ]
    assert LIBRARY["time_to_convert"].check({"event": "x", "field": "props."}) == [
        "parameter 'field': 'props.' is not an event field; use value, entity or props.<name>"
    ]
    assert LIBRARY["ltv"].expand({}) is None


def test_validate_reports_library_parameter_problems(tmp_path: Path) -> None:
    (tmp_path / "kpis").mkdir()
    (tmp_path / "kpis" / "a.yaml").write_text(
        "- name: x\n  title: X\n  owner: o\n  unit: count\n  direction: higher_is_better\n"
        "  use: mrr\n  params: {recordd: change}\n"
    )
    problems = validate_config_dir(tmp_path)
    assert problems == [
        f"{tmp_path}/kpis/a.yaml:7: x.params: unknown parameter 'recordd'; did you mean 'recorded'?"
    ]


# --- the formulas they expand to ------------------------------------------------------------
def test_revenue_entries_expand_to_event_state_and_running_totals() -> None:
    assert expand("mrr") == bound("x / 100", x=CumulativeFormula(sub_sum(), None))
    assert expand("mrr", minor_units=1) == CumulativeFormula(sub_sum(), None)
    assert expand("mrr", recorded="level", field="props.mrr", minor_units=1) == StateFormula(
        SUB, EventField(FieldSource.PROP, "mrr"), ENTITY, StateAgg.SUM
    )
    assert expand("arr") == bound("mrr * 12 / 100", mrr=CumulativeFormula(sub_sum(), None))
    assert expand("net_new_mrr") == bound("x / 100", x=sub_sum())
    assert expand("net_new_mrr", kind="expansion") == bound("x / 100", x=sub_sum("expansion"))
    assert expand("churned_mrr", churned_value="cancel") == bound("x / 100", x=sub_sum("cancel"))
    assert expand("new_mrr") == bound("x / 100", x=sub_sum("new"))
    assert expand("contraction_mrr") == bound("x / 100", x=sub_sum("contraction"))
    assert expand("arr_growth") == bound(
        "delta / (total - delta)", delta=sub_sum(), total=CumulativeFormula(sub_sum(), None)
    )


def _active() -> ExprFormula:
    return bound(
        "new - churned",
        new=CumulativeFormula(sub_count("new"), None),
        churned=CumulativeFormula(sub_count("churn"), None),
    )


def _churn_rate() -> ExprFormula:
    return bound(
        "churned / (active - new + churned)",
        churned=sub_count("churn"),
        new=sub_count("new"),
        active=_active(),
    )


def test_churn_and_retention_expand_to_bound_arithmetic() -> None:
    assert expand("customer_churn_rate") == _churn_rate()
    running = CumulativeFormula(sub_sum(), None)
    assert expand("gross_revenue_retention") == bound(
        "(total - delta + contraction + churned) / (total - delta)",
        delta=sub_sum(),
        total=running,
        contraction=sub_sum("contraction"),
        churned=sub_sum("churn"),
    )
    nrr = expand("net_revenue_retention")
    assert isinstance(nrr, ExprFormula)
    assert [name for name, _ in nrr.bindings] == [
        "churned",
        "contraction",
        "delta",
        "expansion",
        "total",
    ]


def test_customer_voice_entries_filter_on_whole_scores() -> None:
    """Responses are those with a score on the scale: one without a score is excluded (and
    reported), not counted as a passive."""

    def scores(*s: int) -> PropFilter:
        return PropFilter("score", FilterOp.IN, (*s, *(float(x) for x in s)))

    assert expand("nps") == bound(
        "(promoters - detractors) / responses * 100",
        promoters=EventFormula("nps_response", EventAgg.COUNT, None, (scores(9, 10),)),
        detractors=EventFormula("nps_response", EventAgg.COUNT, None, (scores(*range(7)),)),
        responses=EventFormula("nps_response", EventAgg.COUNT, None, (scores(*range(11)),)),
    )
    assert expand("csat") == RatioFormula(
        EventFormula("csat_response", EventAgg.COUNT, None, (scores(4, 5),)),
        EventFormula("csat_response", EventAgg.COUNT, None, (scores(1, 2, 3, 4, 5),)),
    )


def test_score_value_reads_the_events_value_in_the_score_range() -> None:
    def between(low: float, high: float) -> EventFormula:
        bounds = (ValueBound(FilterOp.GTE, low), ValueBound(FilterOp.LTE, high))
        return EventFormula("nps_response", EventAgg.COUNT, VALUE, (), bounds)

    assert expand("nps", score="value") == bound(
        "(promoters - detractors) / responses * 100",
        promoters=between(9, 10),
        detractors=between(0, 6),
        responses=between(0, 10),
    )
    assert LIBRARY["nps"].check({"score": "entity"}) == [
        "parameter 'score': 'entity' is not an event field; use value or props.<name>"
    ]


def test_unit_economics_entries() -> None:
    cac_minor = RatioFormula(
        EventFormula("spend", EventAgg.SUM, VALUE),
        EventFormula(SUB, EventAgg.UNIQUE, ENTITY, (eq("change", "new"),)),
    )
    assert expand("cac", spend_event="spend") == bound("x / 100", x=cac_minor)
    ltv = bound(
        "mrr / customers * 0.8 / churn / 100",
        mrr=CumulativeFormula(sub_sum(), None),
        customers=_active(),
        churn=_churn_rate(),
    )
    assert expand("ltv", gross_margin=0.8) == ltv
    assert expand("ltv_cac", gross_margin=0.8, spend_event="spend") == bound(
        "ltv / cac", ltv=ltv, cac=bound("x / 100", x=cac_minor)
    )


def test_product_entries() -> None:
    assert expand("conversion_rate") == ConversionFormula("cart_view", "purchase", DAY, "user")
    assert expand("funnel_conversion", steps="a, b") == ConversionFormula("a", "b", DAY, "user")
    assert expand("funnel", steps="a,b,c", within="2h") == bound(
        "step1 * step2",
        step1=ConversionFormula("a", "b", 2 * HOUR, "user"),
        step2=ConversionFormula("b", "c", 2 * HOUR, "user"),
    )
    assert expand("average_order_value") == bound(
        "x / 100",
        x=RatioFormula(
            EventFormula("purchase", EventAgg.SUM, VALUE), EventFormula("purchase", EventAgg.COUNT)
        ),
    )
    assert expand("revenue_per_minute", matchers='shop="eu"') == PromqlFormula(
        'sum(rate(shop_revenue_eur_total{shop="eu"}[5m])) * 60'
    )
    unique = EventFormula("visit", EventAgg.UNIQUE, ENTITY)
    assert expand("dau", event="visit") == unique
    assert expand("wau", event="visit") == CumulativeFormula(unique, 7 * DAY)
    assert expand("mau", event="visit") == CumulativeFormula(unique, 30 * DAY)
    assert expand("stickiness", event="visit", window="28d") == RatioFormula(
        unique, CumulativeFormula(unique, 28 * DAY)
    )
    assert expand("cohort_retention", return_event="visit") == ConversionFormula(
        "signup", "visit", 7 * DAY, "user"
    )
    assert expand(
        "feature_adoption",
        feature_event="used",
        active_event="visit",
        feature_prop="feature",
        feature="export",
    ) == RatioFormula(
        EventFormula("used", EventAgg.UNIQUE, ENTITY, (eq("feature", "export"),)), unique
    )
    assert expand("time_to_convert", event="won", stat="avg") == EventFormula(
        "won", EventAgg.AVG, VALUE
    )


def test_service_entries_are_promql() -> None:
    assert expand("availability", matchers='job="api"') == PromqlFormula(
        'avg(avg_over_time(up{job="api"}[5m]))'
    )
    assert expand("error_rate", window="1h") == PromqlFormula(
        'sum(rate(http_requests_total{code=~"5.."}[1h])) / sum(rate(http_requests_total[1h]))'
    )
    assert expand("latency_p99", matchers='service="api"') == PromqlFormula(
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{service="api"}[5m])))'
    )
    assert expand("latency_p95") == PromqlFormula(
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
    )
    assert expand("throughput") == PromqlFormula("sum(rate(http_requests_total[5m]))")
    assert expand("apdex") == PromqlFormula(
        '(sum(rate(http_request_duration_seconds_bucket{le="0.25"}[5m])) + '
        'sum(rate(http_request_duration_seconds_bucket{le="1.0"}[5m]))) / 2 / '
        "sum(rate(http_request_duration_seconds_count[5m]))"
    )


def test_operations_entries() -> None:
    assert expand("mttr") == EventFormula("incident_resolved", EventAgg.AVG, VALUE)
    assert expand("mtta") == EventFormula("incident_acknowledged", EventAgg.AVG, VALUE)
    assert expand("deployment_frequency") == EventFormula("deploy", EventAgg.COUNT)
    assert expand("deployment_frequency", environment_prop="env") == EventFormula(
        "deploy", EventAgg.COUNT, None, (eq("env", "production"),)
    )
    assert expand("change_failure_rate") == RatioFormula(
        EventFormula("deploy", EventAgg.COUNT, None, (eq("failed", "true"),)),
        EventFormula("deploy", EventAgg.COUNT),
    )
    assert expand("on_time_delivery") == RatioFormula(
        EventFormula("delivery", EventAgg.COUNT, None, (eq("on_time", "true"),)),
        EventFormula("delivery", EventAgg.COUNT),
    )

    def measure(m: str) -> EventFormula:
        return EventFormula("production", EventAgg.SUM, VALUE, (eq("measure", m),))

    assert expand("oee", ideal_cycle_seconds=30) == bound(
        "(run / planned) * (30 * total / run) * (good / total)",
        planned=measure("planned_seconds"),
        run=measure("run_seconds"),
        total=measure("total_units"),
        good=measure("good_units"),
    )
    assert expand("inventory_turns", sku="props.sku") == RatioFormula(
        EventFormula("cogs", EventAgg.SUM, VALUE),
        StateFormula("inventory_level", VALUE, EventField(FieldSource.PROP, "sku"), StateAgg.SUM),
    )


def test_lineage_of_a_library_kpi_reads_through_bindings() -> None:
    formula = LibraryFormula("ltv_cac", (("gross_margin", 0.8), ("spend_event", "spend")))
    assert formula_inputs(formula) == [
        LineageInput(InputKind.EVENT, SUB),
        LineageInput(InputKind.EVENT, "spend"),
    ]
    assert formula_inputs(LibraryFormula("apdex")) == [
        LineageInput(InputKind.SERIES, 'http_request_duration_seconds_bucket{le="0.25"}'),
        LineageInput(InputKind.SERIES, 'http_request_duration_seconds_bucket{le="1.0"}'),
        LineageInput(InputKind.SERIES, "http_request_duration_seconds_count"),
    ]


# --- docs and examples ----------------------------------------------------------------------
def test_docs_list_every_entry_with_its_parameters_and_example() -> None:
    from opsmetrics.catalog.kpi_library_docs import library_markdown

    assert DOCS.read_text() == library_markdown(), (
        "docs/kpi-library.md is stale: python -m opsmetrics.catalog.kpi_library_docs"
    )


def test_example_catalog_validates_and_init_copies_it(tmp_path: Path) -> None:
    assert validate_config_dir(EXAMPLES) == []
    written = write_starter(tmp_path / "cfg")
    names = {p.relative_to(tmp_path / "cfg").as_posix() for p in written}
    assert {"kpis/shop.yaml", "kpis/saas.yaml", "kpis/infra.yaml", "kpis/ops.yaml"} <= names
    assert {"retention.yaml", "scrape.yaml", "rules/http.yaml"} <= names
    assert validate_config_dir(tmp_path / "cfg") == []
    assert write_starter(tmp_path / "cfg") == []  # existing files are left alone


# --- evaluated on real storage against hand-computed values ---------------------------------

#: name -> (use, params) of the fixture catalog; every entry of the library once or more.
FIXTURE_KPIS: dict[str, tuple[str, dict[str, object]]] = {
    "mrr": ("mrr", {}),
    "mrr_level": ("mrr", {"event": "plan_level", "recorded": "level"}),
    "arr": ("arr", {}),
    "net_new_mrr": ("net_new_mrr", {}),
    "new_mrr": ("new_mrr", {}),
    "expansion_mrr": ("expansion_mrr", {}),
    "contraction_mrr": ("contraction_mrr", {}),
    "churned_mrr": ("churned_mrr", {}),
    "arr_growth": ("arr_growth", {}),
    "customer_churn_rate": ("customer_churn_rate", {}),
    "gross_revenue_retention": ("gross_revenue_retention", {}),
    "net_revenue_retention": ("net_revenue_retention", {}),
    "nps": ("nps", {}),
    "csat": ("csat", {}),
    "cac": ("cac", {"spend_event": "acquisition_spend"}),
    "ltv": ("ltv", {"gross_margin": 0.8}),
    "ltv_cac": ("ltv_cac", {"gross_margin": 0.8, "spend_event": "acquisition_spend"}),
    "conversion_rate": ("conversion_rate", {}),
    "funnel_conversion": ("funnel_conversion", {"steps": "f_view, f_checkout, f_buy"}),
    "average_order_value": ("average_order_value", {"event": "order"}),
    "revenue_per_minute": ("revenue_per_minute", {}),
    "dau": ("dau", {"event": "active"}),
    "wau": ("wau", {"event": "visit"}),
    "mau": ("mau", {"event": "visit"}),
    "stickiness": ("stickiness", {"event": "visit"}),
    "cohort_retention": (
        "cohort_retention",
        {"start_event": "joined", "return_event": "came_back"},
    ),
    "feature_adoption": (
        "feature_adoption",
        {
            "feature_event": "feature_used",
            "active_event": "session",
            "feature_prop": "feature",
            "feature": "export",
        },
    ),
    "time_to_convert": ("time_to_convert", {"event": "trial_converted"}),
    "time_to_convert_avg": ("time_to_convert", {"event": "trial_converted", "stat": "avg"}),
    "availability": ("availability", {}),
    "error_rate": ("error_rate", {}),
    "latency_p95": ("latency_p95", {}),
    "latency_p99": ("latency_p99", {}),
    "throughput": ("throughput", {}),
    "apdex": ("apdex", {"histogram": "apdex_seconds"}),
    "mttr": ("mttr", {}),
    "mtta": ("mtta", {}),
    "deployment_frequency": (
        "deployment_frequency",
        {"environment_prop": "env", "environment": "production"},
    ),
    "change_failure_rate": ("change_failure_rate", {}),
    "oee": ("oee", {"ideal_cycle_seconds": 30}),
    "on_time_delivery": ("on_time_delivery", {}),
    "inventory_turns": ("inventory_turns", {}),
}


def _subscriptions() -> list[Event]:
    """Day 1: c1, c2, c3 start at 50.00, 30.00, 20.00 (MRR 100.00). Day 2: c4 starts at 40.00,
    c1 upgrades +20.00, c2 downgrades -10.00, c3 cancels -20.00 (MRR 130.00)."""
    rows = [
        (1, 1, "c1", 5000, "new"),
        (1, 2, "c2", 3000, "new"),
        (1, 3, "c3", 2000, "new"),
        (2, 1, "c4", 4000, "new"),
        (2, 2, "c1", 2000, "expansion"),
        (2, 3, "c2", -1000, "contraction"),
        (2, 4, "c3", -2000, "churn"),
    ]
    return [
        Event(SUB, day(d) + h * HOUR, c, v, {"change": k, "plan": "pro"}) for d, h, c, v, k in rows
    ] + [
        # recorded: level — c1 at 50.00 then 70.00, c2 at 30.00: 100.00 at the end of day 2.
        Event("plan_level", day(1) + HOUR, "c1", 5000),
        Event("plan_level", day(1) + HOUR, "c2", 3000),
        Event("plan_level", day(2) + HOUR, "c1", 7000),
        # 200.00 ads + 60.00 sales on day 2, one new customer (c4).
        Event("acquisition_spend", day(2) + 5 * HOUR, "", 20000, {"channel": "ads"}),
        Event("acquisition_spend", day(2) + 6 * HOUR, "", 6000, {"channel": "sales"}),
    ]


def _surveys() -> list[Event]:
    nps = [10, 9, 9.0, 7, 2]  # promoters 10, 9, 9.0; detractor 2: (3 - 1) / 5 * 100 = 40
    csat = [5, 4, 3, 5]  # 3 of 4 at 4 or more: 0.75
    return [
        Event("nps_response", day(2) + i * MIN, f"c{i}", float(s), {"score": s})
        for i, s in enumerate(nps)
    ] + [
        Event("csat_response", day(2) + i * MIN, f"c{i}", float(s), {"score": s})
        for i, s in enumerate(csat)
    ]


def _shop() -> list[Event]:
    out = [Event("cart_view", day(3) + HOUR, f"u{i}") for i in range(1, 5)]
    # Within 1d of the view: u1 (2 h) and u3 (1 min); u2 after 26 h; u4 never: 2 / 4.
    out += [
        Event("purchase", day(3) + 3 * HOUR, "u1", 2000),
        Event("purchase", day(3) + HOUR + MIN, "u3", 5000),
        Event("purchase", day(3) + 27 * HOUR, "u2", 3500),
    ]
    out += [Event("order", day(3) + i * HOUR, "u9", v) for i, v in enumerate((2000, 3500, 5000))]
    # Funnel on day 5: 4 view, u1 and u2 check out, u1 buys: 2/4 * 1/2 = 0.25.
    out += [Event("f_view", day(5) + HOUR, f"u{i}") for i in range(1, 5)]
    out += [Event("f_checkout", day(5) + 2 * HOUR, u) for u in ("u1", "u2")]
    out += [Event("f_buy", day(5) + 3 * HOUR, "u1")]
    return out


def _engagement() -> list[Event]:
    # dau on `active`: day 1 u1 twice and u2 -> 2; day 2 u3 -> 1.
    out = [Event("active", day(1) + h * HOUR, u) for h, u in ((1, "u1"), (2, "u1"), (3, "u2"))]
    out.append(Event("active", day(2) + HOUR, "u3"))
    # visit: u1 day 1, u2 day 3, u1 day 5 -> on day 5: DAU 1, WAU 2, MAU 2, stickiness 0.5.
    out += [Event("visit", day(d) + HOUR, u) for d, u in ((1, "u1"), (3, "u2"), (5, "u1"))]
    # Cohort on day 6: u1..u4 join; u1 back after 2 days, u2 after 10: 1 / 4 within 7d.
    out += [Event("joined", day(6) + HOUR, f"u{i}") for i in range(1, 5)]
    out += [Event("came_back", day(8) + HOUR, "u1"), Event("came_back", day(16) + HOUR, "u2")]
    # Day 7: 4 in session; u1 (twice) and u2 export, u3 imports: 2 / 4.
    out += [Event("session", day(7) + HOUR, f"u{i}") for i in range(1, 5)]
    used = (("u1", "export"), ("u1", "export"), ("u2", "export"), ("u3", "import"))
    out += [Event("feature_used", day(7) + 2 * HOUR, u, None, {"feature": f}) for u, f in used]
    # Day 8: converted after 60 s, 120 s, 600 s: p50 120, avg 260.
    out += [
        Event("trial_converted", day(8) + HOUR, f"u{i}", v) for i, v in enumerate((60, 120, 600))
    ]
    return out


def _operations() -> list[Event]:
    out = [Event("incident_resolved", day(9) + HOUR, "", v) for v in (600, 1800, 3600)]
    out += [Event("incident_acknowledged", day(9) + HOUR, "", v) for v in (60, 120, 300)]
    # 3 production deploys + 1 staging; one production deploy failed: frequency 3, CFR 1 / 4.
    deploys = (("production", True), ("production", False), ("production", False))
    out += [
        Event("deploy", day(9) + i * HOUR, "svc", None, {"env": e, "failed": f})
        for i, (e, f) in enumerate((*deploys, ("staging", False)))
    ]
    # 5 deliveries, 4 on time: 0.8.
    out += [
        Event("delivery", day(9) + i * HOUR, f"o{i}", None, {"on_time": i != 2}) for i in range(5)
    ]
    # Planned 28800 s, run 25200 s, 720 units, 684 good, ideal 30 s: 0.875 * 0.857 * 0.95.
    measures = (("planned_seconds", 28800), ("run_seconds", 25200))
    measures += (("total_units", 720), ("good_units", 684))
    out += [Event("production", day(9) + HOUR, "line1", v, {"measure": m}) for m, v in measures]
    # COGS 900.00 on day 9; stock: A 500.00 on day 8 -> 200.00 on day 9, B 100.00: 900 / 300.
    out += [Event("cogs", day(9) + HOUR, "", v) for v in (60000, 30000)]
    out += [
        Event("inventory_level", day(8) + HOUR, "A", 50000),
        Event("inventory_level", day(9) + HOUR, "A", 20000),
        Event("inventory_level", day(9) + 2 * HOUR, "B", 10000),
    ]
    return out


#: PromQL fixtures end at E, the end of hour 12 of day 10; samples every minute over E-4m..E.
E = day(10) + 12 * HOUR


def _counter(b: SampleBatchBuilder, pairs: dict[str, str], per_second: float) -> None:
    """A counter growing linearly at `per_second` (rate() of a linear counter is its slope)."""
    labels = make_labels(pairs)
    for k in range(5):
        t = E - (4 - k) * MIN
        b.add(labels, t, 10_000 + per_second * (t - (E - 10 * MIN)) / 1000)


def _series() -> DecodedSamples:
    b = SampleBatchBuilder()
    # up: instance a 1,1,1,1 and instance b 1,0,0,1 over E-4m..E-1m: 6 / 8 = 0.75.
    for k, (a, bb) in enumerate(((1, 1), (1, 0), (1, 0), (1, 1))):
        t = E - (4 - k) * MIN
        b.add(make_labels({"__name__": "up", "instance": "a"}), t, a)
        b.add(make_labels({"__name__": "up", "instance": "b"}), t, bb)
    # 9.9/s code 200 and 0.1/s code 500: throughput 10/s, error rate 0.01.
    _counter(b, {"__name__": "http_requests_total", "code": "200"}, 9.9)
    _counter(b, {"__name__": "http_requests_total", "code": "500"}, 0.1)
    # Latency: per 100 requests 80 within 0.1 s, all within 0.5 s:
    # p95 = 0.1 + 0.4 * 15/20 = 0.4; p99 = 0.1 + 0.4 * 19/20 = 0.48.
    hist = "http_request_duration_seconds"
    for le, n in (("0.1", 80), ("0.5", 100), ("+Inf", 100)):
        _counter(b, {"__name__": f"{hist}_bucket", "le": le}, n / 100)
    _counter(b, {"__name__": f"{hist}_count"}, 1.0)
    # Apdex: per 100 requests 70 within T = 0.25 s, 90 within 4T: (70 + 90) / 2 / 100 = 0.8.
    for le, n in (("0.25", 70), ("1.0", 90), ("+Inf", 100)):
        _counter(b, {"__name__": "apdex_seconds_bucket", "le": le}, n / 100)
    _counter(b, {"__name__": "apdex_seconds_count"}, 1.0)
    # Revenue 2 EUR/s: 120 per minute.
    _counter(b, {"__name__": "shop_revenue_eur_total"}, 2.0)
    return DecodedSamples(b.build())


def _write_catalog(config: Path) -> None:
    (config / "kpis").mkdir(parents=True)
    kpis = [
        {
            "name": name,
            "title": name,
            "owner": "test",
            "unit": "count",
            "direction": "higher_is_better",
            "use": use,
            "params": params,
        }
        for name, (use, params) in FIXTURE_KPIS.items()
    ]
    (config / "kpis" / "library.yaml").write_text(yaml.safe_dump(kpis, sort_keys=False))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("library")
    _write_catalog(root / "config")
    settings = Settings(
        data_dir=root / "data",
        config_dir=root / "config",
        limits=Limits(events_late_window_ms=400 * DAY),
    )
    services = open_services(settings, FakeClock(day(30)))
    events = _subscriptions() + _surveys() + _shop() + _engagement() + _operations()
    services.ingestor.write(WriteRequest("t", events=events))
    services.ingestor.write(WriteRequest("t", samples=_series()))
    try:
        yield services
    finally:
        services.close()


def values(svc: Services, name: str, first: int, last: int, grain: Grain = Grain.DAY) -> list:
    """Values of the periods from the start of `first` up to the end of `last`."""
    ev = KpiEvaluator(svc.storage, svc.catalog, svc.clock)
    series = ev.series(name, first, last + 1, grain=grain)
    return [p.value for p in series.points]


def assert_values(got: list, expected: list) -> None:
    """Equal up to float rounding; None (no value) only where None is expected."""
    assert [g is None for g in got] == [e is None for e in expected], got
    pairs = [(g, e) for g, e in zip(got, expected, strict=True) if e is not None]
    assert [g for g, _ in pairs] == pytest.approx([e for _, e in pairs], rel=1e-9, abs=1e-12)


def case(name: str, first: int, last: int, expected: list, *marks: pytest.MarkDecorator) -> object:
    return pytest.param(name, first, last, expected, marks=marks, id=name)


def hour_at_e() -> tuple[int, int]:
    return E - HOUR, E - HOUR


# Day 1 and day 2 are asked together: the running totals start with the data.
EVENT_CASES = [
    case("mrr", day(1), day(2), [100.0, 130.0]),
    case("mrr_level", day(1), day(2), [80.0, 100.0]),
    case("arr", day(1), day(2), [1200.0, 1560.0]),
    case("net_new_mrr", day(2), day(2), [30.0]),
    case("new_mrr", day(1), day(2), [100.0, 40.0]),
    case("expansion_mrr", day(2), day(2), [20.0]),
    case("contraction_mrr", day(2), day(2), [-10.0]),
    case("churned_mrr", day(2), day(2), [-20.0]),
    # Day 1 starts from nothing: growth has no base (division by zero gives no value).
    case("arr_growth", day(1), day(2), [None, 0.3]),
    case("customer_churn_rate", day(1), day(2), [None, 1 / 3]),
    case("gross_revenue_retention", day(1), day(2), [None, 0.7]),
    case("net_revenue_retention", day(1), day(2), [None, 0.9]),
    case("nps", day(2), day(2), [40.0]),
    case("csat", day(2), day(2), [0.75]),
    case("cac", day(2), day(2), [260.0]),
    # ARPA 130 / 3 customers, x 0.8 margin / (1/3 churn) = 104.00.
    case("ltv", day(1), day(2), [None, 104.0]),
    case("ltv_cac", day(1), day(2), [None, 0.4]),
    case("conversion_rate", day(3), day(3), [0.5]),
    case("funnel_conversion", day(5), day(5), [0.25]),
    case("average_order_value", day(3), day(3), [35.0]),
    case("dau", day(1), day(2), [2.0, 1.0]),
    case("wau", day(5), day(5), [2.0]),
    case("mau", day(5), day(5), [2.0]),
    case("stickiness", day(5), day(5), [0.5]),
    case("cohort_retention", day(6), day(6), [0.25]),
    case("feature_adoption", day(7), day(7), [0.5]),
    case("time_to_convert", day(8), day(8), [120.0]),
    case("time_to_convert_avg", day(8), day(8), [260.0]),
    case("mttr", day(9), day(9), [2000.0]),
    case("mtta", day(9), day(9), [160.0]),
    case("deployment_frequency", day(9), day(9), [3.0]),
    case("change_failure_rate", day(9), day(9), [0.25]),
    case("oee", day(9), day(9), [0.7125]),
    case("on_time_delivery", day(9), day(9), [0.8]),
    case("inventory_turns", day(9), day(9), [3.0]),
]


@pytest.mark.parametrize(("name", "first", "last", "expected"), EVENT_CASES)
def test_event_entries_against_hand_computed_values(
    svc: Services, name: str, first: int, last: int, expected: list
) -> None:
    assert_values(values(svc, name, first, last), expected)


# PromQL entries are evaluated at the end of the hour that ends at E.
PROMQL_CASES = [
    case("availability", E - HOUR, E - HOUR, [0.75]),
    case("error_rate", E - HOUR, E - HOUR, [0.01]),
    case("throughput", E - HOUR, E - HOUR, [10.0]),
    case("latency_p95", E - HOUR, E - HOUR, [0.4]),
    case("latency_p99", E - HOUR, E - HOUR, [0.48]),
    case("apdex", E - HOUR, E - HOUR, [0.8]),
    case("revenue_per_minute", E - HOUR, E - HOUR, [120.0]),
]


@pytest.mark.parametrize(("name", "first", "last", "expected"), PROMQL_CASES)
def test_promql_entries_against_hand_computed_values(
    svc: Services, name: str, first: int, last: int, expected: list
) -> None:
    assert_values(values(svc, name, first, last, Grain.HOUR), expected)


def test_every_entry_has_an_evaluation_fixture() -> None:
    used = {use for use, _ in FIXTURE_KPIS.values()}
    assert used | {"funnel"} == set(LIBRARY)
    cases = {p.id for p in (*EVENT_CASES, *PROMQL_CASES)}  # type: ignore[attr-defined]
    assert cases == set(FIXTURE_KPIS)


def test_mrr_asked_for_one_later_day_counts_everything_before_it(svc: Services) -> None:
    assert values(svc, "mrr", day(2), day(2)) == [130.0]
