"""Standard technical and operational KPIs.

Service KPIs are PromQL over the Prometheus conventions the demo follows
(`http_requests_total{code}`, `http_request_duration_seconds_bucket{le}`, `up`); incident,
delivery and production KPIs read events.
"""

from __future__ import annotations

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
    promql,
    selector,
    text,
)
from opsmetrics.catalog.kpi_model import EventAgg, Formula, RatioFormula, StateAgg, StateFormula

MATCHERS = Param(
    "matchers", ParamKind.MATCHERS, 'label matchers without braces, e.g. service="checkout"', ""
)
WINDOW = Param("window", ParamKind.DURATION, "the rate window of the PromQL", "5m")
REQUESTS = Param("metric", ParamKind.TEXT, "the request counter", "http_requests_total")
HISTOGRAM = Param(
    "histogram", ParamKind.TEXT, "the latency histogram's name", "http_request_duration_seconds"
)


def _sel(p: Params, metric: str, *extra: str) -> str:
    return selector(metric, str(p.get("matchers", "")), *extra)


def _rate(p: Params, metric: str, *extra: str) -> str:
    return f"sum(rate({_sel(p, metric, *extra)}[{text(p, 'window')}]))"


def availability(p: Params) -> Formula:
    return promql(f"avg(avg_over_time({_sel(p, text(p, 'metric'))}[{text(p, 'window')}]))")


def error_rate(p: Params) -> Formula:
    metric = text(p, "metric")
    errors = _rate(p, metric, f'{text(p, "code_label")}=~"{text(p, "error_codes")}"')
    return promql(f"{errors} / {_rate(p, metric)}")


def _latency(quantile: float) -> Callable[[Params], Formula]:
    def build(p: Params) -> Formula:
        buckets = _sel(p, f"{text(p, 'histogram')}_bucket")
        return promql(
            f"histogram_quantile({quantile:g}, sum by (le) (rate({buckets}[{text(p, 'window')}])))"
        )

    return build


def throughput(p: Params) -> Formula:
    return promql(_rate(p, text(p, "metric")))


def apdex(p: Params) -> Formula:
    hist = text(p, "histogram")
    satisfied = _rate(p, f"{hist}_bucket", f'le="{text(p, "satisfied_le")}"')
    tolerating = _rate(p, f"{hist}_bucket", f'le="{text(p, "tolerating_le")}"')
    return promql(f"({satisfied} + {tolerating}) / 2 / {_rate(p, f'{hist}_count')}")


def mean_time(p: Params) -> Formula:
    return events(text(p, "event"), EventAgg.AVG, field(p, "field"))


def deployment_frequency(p: Params) -> Formula:
    env_prop = str(p.get("environment_prop", ""))
    where = (eq(env_prop, text(p, "environment")),) if env_prop else ()
    return events(text(p, "event"), EventAgg.COUNT, None, *where)


def _share(flag: str, flag_value: str) -> Callable[[Params], Formula]:
    def build(p: Params) -> Formula:
        name = text(p, "event")
        hits = events(name, EventAgg.COUNT, None, eq(text(p, flag), text(p, flag_value)))
        return RatioFormula(hits, events(name))

    return build


def oee(p: Params) -> Formula:
    name, prop = text(p, "event"), text(p, "measure_prop")
    bound = {
        m: events(name, EventAgg.SUM, None, eq(prop, text(p, f"{m}_measure")))
        for m in ("planned", "run", "total", "good")
    }
    cycle = number(p, "ideal_cycle_seconds")
    return expr(f"(run / planned) * ({cycle:g} * total / run) * (good / total)", **bound)


def inventory_turns(p: Params) -> Formula:
    cogs = events(text(p, "cogs_event"), EventAgg.SUM, field(p, "cogs_field"))
    stock = StateFormula(
        text(p, "inventory_event"), field(p, "inventory_field"), field(p, "sku"), StateAgg.SUM
    )
    return RatioFormula(cogs, stock)


def _incident(event: str) -> tuple[Param, ...]:
    return (
        Param("event", ParamKind.TEXT, "the incident event carrying the duration", event),
        Param("field", ParamKind.FIELD, "what holds the duration in seconds", "value"),
    )


def _flag(event: str, prop: str, value: str, what: str) -> tuple[Param, ...]:
    return (
        Param("event", ParamKind.TEXT, f"the {what} event", event),
        Param("flag_prop", ParamKind.TEXT, "the property marking a hit", prop),
        Param("flag_value", ParamKind.TEXT, "its value for a hit", value),
    )


def _measure(name: str, default: str) -> Param:
    return Param(f"{name}_measure", ParamKind.TEXT, f"measure_prop value of {name}", default)


TECH: tuple[StandardKpi, ...] = (
    StandardKpi(
        name="availability",
        title="Availability",
        unit="percent",
        formula="avg(avg_over_time(up{matchers}[window])): the share of scrapes that found the "
        "targets up",
        params=(Param("metric", ParamKind.TEXT, "the 0/1 health gauge", "up"), MATCHERS, WINDOW),
        build=availability,
        example="{matchers: 'service=\"checkout\"', window: 1h}",
        worked="Two instances, four scrapes each: 1,1,1,1 and 1,0,0,1: 6 ÷ 8 = 0.75.",
    ),
    StandardKpi(
        name="error_rate",
        title="Error rate",
        unit="percent",
        formula='sum(rate(metric{code=~"5.."}[window])) ÷ sum(rate(metric[window]))',
        params=(
            REQUESTS,
            MATCHERS,
            WINDOW,
            Param("code_label", ParamKind.TEXT, "the status-code label", "code"),
            Param("error_codes", ParamKind.TEXT, "regex of error codes", "5.."),
        ),
        build=error_rate,
        example="{matchers: 'service=\"checkout\"'}",
        worked="In 5 minutes 3000 requests, 30 of them code 500: 30 ÷ 3000 = 0.01.",
    ),
    StandardKpi(
        name="latency_p95",
        title="p95 latency",
        unit="seconds",
        formula="histogram_quantile(0.95, sum by (le) (rate(histogram_bucket[window])))",
        params=(HISTOGRAM, MATCHERS, WINDOW),
        build=_latency(0.95),
        example="{matchers: 'service=\"api\"'}",
        worked="100 requests in 5 minutes: 80 ≤ 0.1 s, 100 ≤ 0.5 s: the 95th lies in "
        "(0.1, 0.5]: 0.1 + 0.4 × 15/20 = 0.4 s.",
    ),
    StandardKpi(
        name="latency_p99",
        title="p99 latency",
        unit="seconds",
        formula="histogram_quantile(0.99, sum by (le) (rate(histogram_bucket[window])))",
        params=(HISTOGRAM, MATCHERS, WINDOW),
        build=_latency(0.99),
        example="{matchers: 'service=\"api\"'}",
        worked="With the p95 buckets: 0.1 + 0.4 × 19/20 = 0.48 s.",
    ),
    StandardKpi(
        name="throughput",
        title="Throughput",
        unit="per_second",
        formula="sum(rate(metric{matchers}[window]))",
        params=(REQUESTS, MATCHERS, WINDOW),
        build=throughput,
        example="{matchers: 'service=\"search\"'}",
        worked="3000 requests in 5 minutes: 10 per second.",
    ),
    StandardKpi(
        name="apdex",
        title="Apdex",
        unit="ratio",
        formula="(satisfied + tolerating ÷ 2) ÷ all = (bucket{le=T} + bucket{le=4T}) ÷ 2 ÷ count, "
        "as rates over window",
        params=(
            HISTOGRAM,
            MATCHERS,
            WINDOW,
            Param("satisfied_le", ParamKind.TEXT, "le label of T, as the series write it", "0.25"),
            Param("tolerating_le", ParamKind.TEXT, "le label of 4T", "1.0"),
        ),
        build=apdex,
        example="{satisfied_le: '0.25', tolerating_le: '1.0'}",
        worked="100 requests: 70 ≤ 0.25 s, 90 ≤ 1 s: (70 + 90) ÷ 2 ÷ 100 = 0.80 "
        "(70 satisfied + 20 tolerating ÷ 2).",
    ),
    StandardKpi(
        name="mttr",
        title="Mean time to restore",
        unit="seconds",
        formula="average of the restore time carried by incident_resolved events in the period",
        params=_incident("incident_resolved"),
        build=mean_time,
        example="{event: incident_resolved, field: value}",
        worked="Incidents resolved after 600 s, 1800 s and 3600 s: 2000 s.",
    ),
    StandardKpi(
        name="mtta",
        title="Mean time to acknowledge",
        unit="seconds",
        formula="average of the time to acknowledge carried by incident_acknowledged events",
        params=_incident("incident_acknowledged"),
        build=mean_time,
        example="{event: incident_acknowledged}",
        worked="Acknowledged after 60 s, 120 s and 300 s: 160 s.",
    ),
    StandardKpi(
        name="deployment_frequency",
        title="Deployment frequency",
        unit="count",
        formula="number of deploy events in the period (optionally one environment)",
        params=(
            Param("event", ParamKind.TEXT, "the deploy event", "deploy"),
            Param("environment_prop", ParamKind.TEXT, "property naming the environment", ""),
            Param("environment", ParamKind.TEXT, "the environment counted", "production"),
        ),
        build=deployment_frequency,
        example="{event: deploy, environment_prop: env, environment: production}",
        worked="3 production deploys and 1 staging deploy on a day: 3.",
    ),
    StandardKpi(
        name="change_failure_rate",
        title="Change failure rate",
        unit="percent",
        formula="deploys marked failed ÷ all deploys in the period",
        params=_flag("deploy", "failed", "true", "deploy"),
        build=_share("flag_prop", "flag_value"),
        example="{event: deploy, flag_prop: failed, flag_value: 'true'}",
        worked="4 deploys, 1 with failed: true: 0.25.",
    ),
    StandardKpi(
        name="oee",
        title="Overall equipment effectiveness",
        unit="percent",
        formula="availability × performance × quality = (run ÷ planned) × (ideal cycle × total "
        "÷ run) × (good ÷ total), from `production` events whose measure_prop names the measure",
        params=(
            Param("event", ParamKind.TEXT, "the production report event", "production"),
            Param("measure_prop", ParamKind.TEXT, "the property naming the measure", "measure"),
            Param("ideal_cycle_seconds", ParamKind.NUMBER, "ideal seconds per unit"),
            _measure("planned", "planned_seconds"),
            _measure("run", "run_seconds"),
            _measure("total", "total_units"),
            _measure("good", "good_units"),
        ),
        build=oee,
        example="{ideal_cycle_seconds: 30}",
        worked="Planned 28800 s, run 25200 s, 720 units of which 684 good, ideal 30 s/unit: "
        "0.875 × 0.857 × 0.95 = 0.7125.",
    ),
    StandardKpi(
        name="on_time_delivery",
        title="On-time delivery",
        unit="percent",
        formula="deliveries marked on time ÷ all deliveries in the period",
        params=_flag("delivery", "on_time", "true", "delivery"),
        build=_share("flag_prop", "flag_value"),
        example="{event: delivery}",
        worked="5 deliveries, 4 with on_time: true: 0.80.",
    ),
    StandardKpi(
        name="inventory_turns",
        title="Inventory turns",
        unit="ratio",
        formula="cost of goods sold in the period ÷ inventory value at the period end (Σ over "
        "SKUs of their latest inventory_level)",
        params=(
            Param("cogs_event", ParamKind.TEXT, "the event carrying cost of goods sold", "cogs"),
            Param("cogs_field", ParamKind.FIELD, "what holds the cost", "value"),
            Param(
                "inventory_event", ParamKind.TEXT, "the stock valuation event", "inventory_level"
            ),
            Param("inventory_field", ParamKind.FIELD, "what holds the stock value", "value"),
            Param("sku", ParamKind.FIELD, "what identifies a stock item", "entity"),
        ),
        build=inventory_turns,
        example="{cogs_event: cogs, inventory_event: inventory_level}",
        worked="COGS 600.00 + 300.00 in the period; stock of sku A 200.00 (was 500.00), "
        "sku B 100.00: 900 ÷ 300 = 3.",
    ),
)
