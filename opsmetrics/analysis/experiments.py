"""The readout of an experiment (catalog/experiments.py) from stored events.

Per arm: units exposed (first exposure decides the arm), the SRM check against the planned
split, and for the primary metric and each guardrail the value per arm and, for every
treatment against the control, the effect with CIs and p-value; with `cuped` the
variance-reduced estimate too, with `sequential` the always-valid confidence sequence.
A guardrail is `harmed` when it moves significantly in its bad direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

from opsmetrics.analysis import abtest, power
from opsmetrics.analysis.cuped import cuped
from opsmetrics.analysis.sequential import sequential
from opsmetrics.analysis.stats import Moments, finite
from opsmetrics.catalog.experiments import Experiment, Metric, Part
from opsmetrics.errors import BadDataError
from opsmetrics.storage.base import Storage
from opsmetrics.storage.event_records import EventMatch, FilterOp, PropFilter
from opsmetrics.storage.experiment_records import ArmMoments, ArmMomentsRow, UnitAgg, UnitColumn

CUPED_TEST = "CUPED-adjusted z-test (pre-period covariate, pooled theta)"


def _match(event: str, where: dict[str, str | int | float | bool]) -> EventMatch:
    filters = tuple(PropFilter(k, FilterOp.EQ, (_text(v),)) for k, v in sorted(where.items()))
    return EventMatch(event, filters)


def _text(v: str | int | float | bool) -> str:
    """A property value as event filters compare it (JSON text of numbers and booleans)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _part_column(part: Part, lo: int, hi: int) -> UnitColumn:
    agg = UnitAgg.SUM if part.agg == "sum" else UnitAgg.COUNT
    return UnitColumn(_match(part.event, part.where), agg, lo, hi, part.value)


def metric_columns(m: Metric, pre_ms: int | None) -> tuple[UnitColumn, ...]:
    """Column 0: the metric (ratio: numerator); column 1: ratio denominator or CUPED pre-period."""
    hi = m.within_ms + 1
    if m.kind == "ratio":
        assert m.numerator is not None and m.denominator is not None
        return (_part_column(m.numerator, 0, hi), _part_column(m.denominator, 0, hi))
    assert m.event is not None
    agg = {"proportion": UnitAgg.ANY, "mean": UnitAgg.SUM if m.agg == "sum" else UnitAgg.COUNT}
    match = _match(m.event, m.where)
    cols = [UnitColumn(match, agg[m.kind], 0, hi, m.value)]
    if pre_ms:
        cols.append(UnitColumn(match, agg[m.kind], -pre_ms, 0, m.value))
    return tuple(cols)


def _moments(row: ArmMomentsRow, i: int, width: int) -> Moments:
    """The moments of columns i (y) and, when width is 2, i + 1 (x) of one arm."""
    p = row.products
    if width == 1:
        return Moments(row.n, row.sums[i], p[(i, i)])
    j = i + 1
    return Moments(row.n, row.sums[i], p[(i, i)], row.sums[j], p[(j, j)], p[(i, j)])


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int
    end_ms: int


def window(exp: Experiment, now_ms: int) -> Window:
    start = int(exp.start.timestamp() * 1000) if exp.start else 0
    end = int(exp.end.timestamp() * 1000) if exp.end else now_ms
    return Window(start, min(end, now_ms))


def all_moments(
    storage: Storage, exp: Experiment, metrics: list[Metric], w: Window
) -> list[dict[str, Moments]]:
    """Per metric, per arm: its moments — all metrics from one storage query."""
    columns: list[UnitColumn] = []
    spans: list[tuple[int, int]] = []
    for m in metrics:
        pre = exp.cuped.pre_period_ms if exp.cuped and m.kind != "ratio" else None
        cols = metric_columns(m, pre)
        spans.append((len(columns), len(cols)))
        columns += cols
    q = ArmMoments(
        _match(exp.exposure.event, exp.exposure_where()),
        exp.exposure.variant_prop,
        w.start_ms,
        w.end_ms,
        tuple(columns),
    )
    rows = storage.arm_moments(q)
    return [{row.variant: _moments(row, i, width) for row in rows} for i, width in spans]


def _comparison(exp: Experiment, m: Metric, c: Moments, t: Moments) -> abtest.Comparison:
    if m.kind == "proportion":
        return abtest.proportion_test(c.n, round(c.sum_y), t.n, round(t.sum_y), exp.alpha)
    if m.kind == "mean":
        return abtest.mean_test_moments(c, t, exp.alpha)
    return abtest.ratio_test(c, t, exp.alpha)


def _cuped_comparison(exp: Experiment, c: Moments, t: Moments) -> dict[str, object]:
    adj = cuped([c, t])
    ca, ta = adj.arms
    se = math.sqrt(ca.variance + ta.variance)
    z = (ta.estimate - ca.estimate) / se if se > 0 else 0.0
    p = float(2 * sps.norm.sf(abs(z)))
    comp = abtest.compare(ca, ta, exp.alpha, CUPED_TEST, p, z)
    return comp.to_dict() | adj.to_dict()


def _harmed(m: Metric, comp: abtest.Comparison) -> bool:
    if not comp.significant:
        return False
    worse = (
        comp.absolute_effect < 0 if m.direction == "higher_is_better" else comp.absolute_effect > 0
    )
    return worse


def metric_readout(exp: Experiment, m: Metric, arms: dict[str, Moments]) -> dict[str, object]:
    names = [v.name for v in exp.variants]
    out: dict[str, object] = {"name": m.name, "kind": m.kind, "direction": m.direction}
    out["arms"] = {
        v: {"units": arms[v].n if v in arms else 0, "value": _arm_value(m, arms.get(v))}
        for v in names
    }
    comparisons: list[dict[str, object]] = []
    c = arms.get(exp.control)
    for v in names[1:]:
        t = arms.get(v)
        if c is None or t is None or c.n < 2 or t.n < 2:
            comparisons.append({"variant": v, "error": "not enough exposed units in both arms"})
            continue
        try:
            comp = _comparison(exp, m, c, t)
        except BadDataError as exc:
            comparisons.append({"variant": v, "error": exc.message})
            continue
        item: dict[str, object] = {"variant": v} | comp.to_dict()
        item["harmed"] = _harmed(m, comp)
        if exp.cuped and m.kind != "ratio":
            item["cuped"] = _cuped_comparison(exp, c, t)
        if exp.sequential:
            item["sequential"] = sequential(comp, c.n + t.n, exp.sequential_tuning_n).to_dict()
        comparisons.append(item)
    out["comparisons"] = comparisons
    return out


def _arm_value(m: Metric, arm: Moments | None) -> float | None:
    if arm is None or arm.n == 0:
        return None
    if m.kind == "ratio":
        return finite(arm.sum_y / arm.sum_x) if arm.sum_x else None
    return finite(arm.mean_y)


def _plan(exp: Experiment, primary: dict[str, object], units: dict[str, int]) -> dict[str, object]:
    """Units per arm the planned MDE needs at the control's observed rate (proportions)."""
    plan: dict[str, object] = {"mde": exp.mde, "alpha": exp.alpha, "power": exp.power}
    arms = primary["arms"]
    assert isinstance(arms, dict)
    base = arms[exp.control]["value"]
    if exp.mde is None or base is None or exp.primary.kind != "proportion":
        return plan
    try:
        need = power.proportion_sample_size(base, exp.mde, exp.alpha, exp.power)
    except BadDataError as exc:
        return plan | {"error": exc.message}
    fewest = min(units.values()) if units else 0
    return plan | {"per_arm_needed": need, "progress": min(fewest / need, 1.0)}


def readout(storage: Storage, exp: Experiment, now_ms: int) -> dict[str, object]:
    w = window(exp, now_ms)
    metrics = [exp.primary, *exp.guardrails]
    moments = all_moments(storage, exp, metrics, w)
    primary = metric_readout(exp, exp.primary, moments[0])
    arms = primary["arms"]
    assert isinstance(arms, dict)
    units = {v: int(a["units"]) for v, a in arms.items()}
    srm: dict[str, object] | None = None
    if sum(units.values()) > 0:
        srm = abtest.srm_test(list(units.values()), exp.split).to_dict()
    warnings: list[str] = []
    if srm and srm["mismatch"]:
        warnings.append(
            "sample ratio mismatch: the split differs from the plan; "
            "do not trust the effects until the assignment is fixed"
        )
    unknown = {v: m.n for v, m in moments[0].items() if v not in units}
    if unknown:
        warnings.append(f"exposures with variants not in the definition were left out: {unknown}")
    return {
        "experiment": {
            "name": exp.name,
            "title": exp.title,
            "hypothesis": exp.hypothesis,
            "control": exp.control,
            "variants": [v.name for v in exp.variants],
            "expected_split": exp.split,
            "start_ms": w.start_ms,
            "end_ms": w.end_ms,
            "sequential": exp.sequential,
            "cuped": exp.cuped.pre_period if exp.cuped else None,
        },
        "exposures": units,
        "srm": srm,
        "primary": primary,
        "guardrails": [
            metric_readout(exp, g, arms)
            for g, arms in zip(exp.guardrails, moments[1:], strict=True)
        ],
        "plan": _plan(exp, primary, units),
        "warnings": warnings,
    }
