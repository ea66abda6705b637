"""Serve long-range window functions from the 5-minute and 1-hour rollups.

A call `f(selector[W])` with f in ROLLUP_FUNCTIONS reads rollup buckets instead of raw samples
when the selector's range W and every window end (the step time after `offset` and `@`) are
multiples of a rollup width w (the largest of 1h and 5m that fits). Buckets are left-open,
(b, b + w], like PromQL windows, so each window is exactly W / w whole buckets. Steps whose
window is not wholly inside `Storage.rollup_spans()`, and series with NaN or ±Inf samples in the
buckets read, are evaluated from the raw samples by the ordinary function implementation, so
PromQL's special-value rules stay exact. docs/promql.md ("Rollups") lists the tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import promql_parser as pp

from opsmetrics.model import Int64Array, Labels, Series
from opsmetrics.query.promql.functions._common import build_vector
from opsmetrics.query.promql.nodes import call_args, duration_field_ms
from opsmetrics.query.promql.rollup_windows import (
    BucketGrid,
    GridResult,
    Windows,
    extrapolated,
    over_time,
)
from opsmetrics.query.promql.selection import raw_range, select_matching, selector_times
from opsmetrics.query.promql.values import (
    FUNCTIONS,
    BoolArray,
    CallInfo,
    EvalContext,
    InstantVector,
    drop_name,
)
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS

OVER_TIME = frozenset(
    {
        "sum_over_time",
        "count_over_time",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "last_over_time",
    }
)
EXTRAPOLATED = frozenset({"rate", "increase", "delta"})
ROLLUP_FUNCTIONS = OVER_TIME | EXTRAPOLATED


@dataclass(frozen=True, slots=True)
class RollupPlan:
    name: str
    selector: pp.MatrixSelector
    width_ms: int
    range_ms: int
    ends: Int64Array  # window end per step
    covered: BoolArray  # steps whose whole window lies inside the rollup spans


def try_rollups(node: pp.Call, ctx: EvalContext) -> InstantVector | None:
    """The call's value computed from rollups, or None when rollups cannot serve it."""
    plan = plan_call(node, ctx)
    if plan is None:
        return None
    return _evaluate(plan, ctx)


def plan_call(node: pp.Call, ctx: EvalContext) -> RollupPlan | None:
    name = node.func.name
    args = call_args(node)
    if not ctx.use_rollups or name not in ROLLUP_FUNCTIONS or len(args) != 1:
        return None
    selector = args[0]
    if not isinstance(selector, pp.MatrixSelector) or len(ctx.steps) == 0:
        return None
    range_ms = duration_field_ms(selector, "range")
    ends = selector_times(selector.vector_selector, ctx)
    width = _width(range_ms, ends)
    if width is None:
        return None
    covered = _covered(ctx.storage.rollup_spans(), ends - range_ms + 1, ends)
    if not covered.any():
        return None
    return RollupPlan(name, selector, width, range_ms, ends, covered)


def _width(range_ms: int, ends: Int64Array) -> int | None:
    """The widest rollup width dividing the range and every window end."""
    for width in sorted(ROLLUP_WIDTHS_MS, reverse=True):
        if range_ms >= width and range_ms % width == 0 and not (ends % width).any():
            return width
    return None


def _covered(spans: list[tuple[int, int]], first: Int64Array, last: Int64Array) -> BoolArray:
    """Whether each [first, last] lies inside one run of contiguous [start, end) spans."""
    runs: list[list[int]] = []
    for start, end in sorted(spans):
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    if not runs:
        return np.zeros(len(first), dtype=bool)
    starts = np.array([r[0] for r in runs], dtype=np.int64)
    stops = np.array([r[1] for r in runs], dtype=np.int64)
    run = np.searchsorted(starts, first, side="right") - 1
    safe = np.maximum(run, 0)
    inside: BoolArray = (run >= 0) & (last < stops[safe])
    return inside


def _evaluate(plan: RollupPlan, ctx: EvalContext) -> InstantVector:
    vs = plan.selector.vector_selector
    start, end = int(plan.ends.min()) - plan.range_ms + 1, int(plan.ends.max())
    series = select_matching(vs, ctx, start, end)
    keep_name = plan.name == "last_over_time"
    labels = [s.labels if keep_name else drop_name(s.labels) for s in series]
    steps = len(plan.ends)
    values = np.zeros((len(series), steps))
    present = np.zeros((len(series), steps), dtype=bool)
    odd = np.zeros(len(series), dtype=bool)
    if series:
        vals, ok, odd = _from_rollups(plan, series, ctx)
        values[:, plan.covered], present[:, plan.covered] = vals, ok & ~odd[:, None]
    raw_parts = [
        (series, ~plan.covered),
        ([s for s, o in zip(series, odd, strict=True) if o], plan.covered),
    ]
    for subset, mask in raw_parts:
        if subset and mask.any():
            part = _from_raw(plan, subset, mask, ctx)
            _place(part, mask, labels, values, present)
    rows = [values[i] for i in range(len(labels))]
    return build_vector(labels, rows, [present[i] for i in range(len(labels))], steps)


def _from_rollups(
    plan: RollupPlan, series: list[Series], ctx: EvalContext
) -> tuple[np.ndarray, BoolArray, BoolArray]:
    """Values and presence at the covered steps, and which series need the raw samples."""
    width, ends = plan.width_ms, plan.ends[plan.covered]
    origin = int(ends.min()) - plan.range_ms
    buckets = (int(ends.max()) - origin) // width
    ids = np.array([s.id for s in series], dtype=np.int64)
    rows = ctx.storage.read_rollups(ids.tolist(), origin, origin + (buckets - 1) * width, width)
    ctx.count_samples(len(rows))
    ctx.check_deadline()
    order = np.argsort(ids, kind="stable")
    row_of = order[np.searchsorted(ids[order], rows.series_ids)]
    col_of = (rows.bucket - origin) // width
    grid = BucketGrid.build(rows, row_of, col_of, (len(series), buckets))
    windows = Windows(
        (ends - plan.range_ms - origin) // width, plan.range_ms // width, ends, plan.range_ms
    )
    with np.errstate(all="ignore"):
        result: GridResult = (
            over_time(plan.name, grid, windows)
            if plan.name in OVER_TIME
            else extrapolated(plan.name, grid, windows)
        )
    odd: BoolArray = np.asarray(grid.nonfinite.any(axis=1), dtype=bool)
    return result[0], result[1], odd


def _from_raw(
    plan: RollupPlan, series: list[Series], mask: BoolArray, ctx: EvalContext
) -> InstantVector:
    """The ordinary implementation over raw samples, for `series` at the steps in `mask`."""
    rv = raw_range(ctx, series, plan.range_ms, plan.ends[mask])
    sub = EvalContext(
        ctx.storage,
        ctx.steps[mask],
        ctx.start_ms,
        ctx.end_ms,
        ctx.step_ms,
        ctx.lookback_ms,
        ctx.max_samples,
        ctx.deadline,
        ctx.samples_loaded,
        use_rollups=False,
    )
    value = FUNCTIONS[plan.name].impl([rv], CallInfo(plan.name, [plan.selector]), sub)
    ctx.samples_loaded = sub.samples_loaded
    assert isinstance(value, InstantVector)
    return value


def _place(
    part: InstantVector,
    mask: BoolArray,
    labels: list[Labels],
    values: np.ndarray,
    present: np.ndarray,
) -> None:
    """Copy a raw result (at the steps in `mask`) into the rows with the same labels."""
    row_of: dict[Labels, int] = {}
    for i, lab in enumerate(labels):
        row_of.setdefault(lab, i)
    cols = np.flatnonzero(mask)
    for lab, vals, ok in zip(part.labels, part.values, part.present, strict=True):
        i = row_of[lab]
        values[i, cols] = np.where(ok, vals, values[i, cols])
        present[i, cols] |= ok
