"""The words of a KPI alert: summary and description with values in the KPI's unit."""

from __future__ import annotations

from datetime import UTC, datetime

from opsmetrics.alerting.kpi_conditions import Reading, Verdict
from opsmetrics.catalog.kpi_alerts import Condition, KpiAlertSpec
from opsmetrics.catalog.kpi_model import Direction, KpiDefinition, Unit

_SUFFIX = {
    Unit.MS: " ms",
    Unit.SECONDS: " s",
    Unit.MINUTES: " min",
    Unit.HOURS: " h",
    Unit.DAYS: " d",
    Unit.BYTES: " B",
    Unit.PER_SECOND: "/s",
    Unit.PER_MINUTE: "/min",
}


def format_value(value: float | None, kpi: KpiDefinition | None) -> str:
    """`3.50 %`, `EUR 1,234.50`, `1,200`, `250 ms`; `–` without a value."""
    if value is None:
        return "–"
    unit = kpi.unit if kpi is not None else None
    decimals = kpi.display.decimals if kpi is not None else None
    if unit is Unit.PERCENT:
        return f"{value * 100:,.{2 if decimals is None else decimals}f} %"
    if unit is Unit.CURRENCY and kpi is not None:
        code = kpi.display.currency or ""
        return f"{code} {value:,.{2 if decimals is None else decimals}f}".strip()
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 2 if abs(value) >= 1 else 4
    return f"{value:,.{decimals}f}{_SUFFIX.get(unit, '') if unit else ''}"


def format_duration(ms: int) -> str:
    """`45 min`, `2 h 10 min`, `3 d 4 h`."""
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def alert_annotations(
    spec: KpiAlertSpec, kpi: KpiDefinition | None, r: Reading, v: Verdict
) -> dict[str, str]:
    """summary, description and the numbers behind them (value, threshold, baseline, change)."""
    what = kpi.title if kpi is not None else spec.promql or spec.name
    out: dict[str, str] = {}
    if spec.condition is Condition.NO_DATA:
        after = format_duration(int(v.limit or 0))
        if r.age_ms is None or r.never:
            out["summary"] = f"{what}: no data at all"
            out["description"] = (
                f"{what} has had no input data since alert evaluation started; "
                f"the rule fires after {after}."
            )
            return out
        age = format_duration(r.age_ms)
        out["summary"] = f"{what}: no new data for {age}"
        out["description"] = (
            f"The newest input of {what} is {age} old; the rule fires after {after} without data."
        )
        return out
    value = format_value(r.value, kpi)
    out["value"] = value
    if spec.condition is Condition.FORECAST:
        return out | _forecast(spec, kpi, r, v, what, value)
    if spec.condition is Condition.ANOMALY:
        return out | _anomaly(r, v, what, value)
    if spec.condition is Condition.CHANGE:
        change = "–" if r.change is None else f"{r.change * 100:+.1f} %"
        limit = "–" if v.limit is None else f"{v.limit * 100:+.1f} %"
        baseline = format_value(r.baseline, kpi)
        out |= {"baseline": baseline, "change": change, "threshold": limit}
        out["summary"] = f"{what} changed {change} vs {spec.compare.value.replace('_', ' ')}"
        out["description"] = (
            f"{what} is {value} against a baseline of {baseline} ({change}); the rule's limit "
            f"is {spec.op or ''} {limit}."
        )
    else:
        limit = format_value(v.limit, kpi)
        out["threshold"] = limit
        out["summary"] = f"{what} is {value} (threshold {limit})"
        out["description"] = f"{what} is {value}; the threshold is {limit}."
    if r.volume is not None:
        out["volume"] = f"{r.volume:,.0f}"
    return out


def _forecast(
    spec: KpiAlertSpec, kpi: KpiDefinition | None, r: Reading, v: Verdict, what: str, value: str
) -> dict[str, str]:
    limit = format_value(v.limit, kpi)
    horizon = format_duration(spec.horizon_ms or 0)
    op = spec.op or _direction_op(kpi)
    when = None
    if r.outlook is not None and v.limit is not None and op is not None:
        when = r.outlook.first(op, v.limit)
    at = (
        ""
        if when is None
        else datetime.fromtimestamp(when / 1000, UTC).strftime(" around %Y-%m-%d %H:%M UTC")
    )
    return {
        "threshold": limit,
        "summary": f"{what} is forecast to cross {limit} within {horizon}{at}",
        "description": (
            f"{what} is {value} now; its forecast over the next {horizon} reaches "
            f"{format_value(v.measure, kpi)} against the line at {limit}."
        ),
    }


def _anomaly(r: Reading, v: Verdict, what: str, value: str) -> dict[str, str]:
    """The detector's explanation, e.g. `1,240 vs expected 1,900–2,300 for Tuesday 14:00 UTC`."""
    if r.score is None:
        return {"summary": f"{what}: no anomaly verdict", "description": r.explanation}
    score = f"{r.score:+.1f}"
    unusual = "unusually low" if r.score < 0 else "unusually high"
    return {
        "score": score,
        "threshold": f"{v.limit:g}" if v.limit is not None else "–",
        "explanation": r.explanation,
        "summary": f"{what} is {unusual}: {r.explanation}",
        "description": (
            f"{what} is {value} in its last complete period: {r.explanation} "
            f"(anomaly score {score}, threshold {v.limit:g})."
            if v.limit is not None
            else f"{what} is {value}: {r.explanation}."
        ),
    }


def _direction_op(kpi: KpiDefinition | None) -> str | None:
    if kpi is None or kpi.direction is Direction.TARGET_IS_BEST:
        return None
    return "<" if kpi.direction is Direction.HIGHER_IS_BETTER else ">"
