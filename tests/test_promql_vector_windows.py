"""The range functions over all series at once equal the same functions run one series at a time.

The oracle is `over_series`, which calls a function per series with that series' window
bounds: for the functions rewritten over flat arrays, the per-series code they replaced (kept
here); for those whose window code did not change (padded window matrices: min/max, stddev,
quantile, mad, deriv, predict_linear, ...), that same code one series at a time. Results must
be identical bit for bit (-0.0 and ±Inf included), with the same presence, labels, and error
for series whose labels collide once the metric name is dropped; only NaN payloads may differ
(see `assert_identical`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import opsmetrics.query.promql.functions  # noqa: F401  (registers the functions)
from opsmetrics.model import Float64Array, Int64Array
from opsmetrics.query.promql.functions import over_time_funcs as ot
from opsmetrics.query.promql.functions import rate_funcs as rf
from opsmetrics.query.promql.functions._common import StepResult, over_series
from opsmetrics.query.promql.functions.flat_windows import FlatWindows, segmented_cumsum
from opsmetrics.query.promql.functions.rate_funcs import _extrapolation_factor
from opsmetrics.query.promql.functions.window_sums import window_mean, window_sum
from opsmetrics.query.promql.values import (
    FUNCTIONS,
    CallInfo,
    EvalContext,
    InstantVector,
    QueryExecutionError,
    RangeVector,
    Scalar,
    Value,
)

PerSeries = Callable[[Int64Array, Float64Array, Int64Array, Int64Array], StepResult]


def _pair_counts(flags: Float64Array, lo: Int64Array, hi: Int64Array) -> Float64Array:
    cum = np.concatenate(([0.0], np.cumsum(flags)))
    size = len(flags)
    start = np.minimum(lo + 1, size)
    result: Float64Array = cum[np.maximum(np.minimum(hi, size), start)] - cum[start]
    return result


def _extrapolated(rv: RangeVector, is_counter: bool, is_rate: bool) -> PerSeries:
    starts, ends = rv.window_end - rv.range_ms, rv.window_end

    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        ok = (hi - lo) >= 2
        first, last = np.minimum(lo, max(len(v) - 1, 0)), np.maximum(hi - 1, 0)
        if len(v) == 0:
            return np.zeros(len(lo)), ok
        result = v[last] - v[first]
        if is_counter:
            prev = np.concatenate(([0.0], v[:-1]))
            drops = np.where(np.concatenate(([False], v[1:] < v[:-1])), prev, 0.0)
            result = result + _pair_counts(drops, lo, hi)
        factor = _extrapolation_factor(
            ts[first], ts[last], v[first], result, hi - lo, starts, ends, is_counter
        )
        out = result * factor
        return (out / (rv.range_ms / 1000.0) if is_rate else out), ok

    return per_series


def _instant_change(is_rate: bool) -> PerSeries:
    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        ok = (hi - lo) >= 2
        if len(v) < 2:
            return np.zeros(len(lo)), ok
        last = np.maximum(hi - 1, 1)
        prev = last - 1
        diff = v[last] - v[prev]
        if not is_rate:
            return diff, ok
        diff = np.where(v[last] < v[prev], v[last], diff)
        return diff / ((ts[last] - ts[prev]) / 1000.0), ok

    return per_series


def _pair_flags(changed: bool) -> PerSeries:
    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        cur, prev = v[1:], v[:-1]
        flag = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev)) if changed else cur < prev
        flags = np.concatenate(([0.0], flag.astype(np.float64)))[: len(v)]
        return (_pair_counts(flags, lo, hi) if len(v) else np.zeros(len(lo))), (hi - lo) >= 1

    return per_series


def _edge(last: bool, timestamps: bool) -> PerSeries:
    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        if len(v) == 0:
            return np.zeros(len(lo)), hi > lo
        idx = np.maximum(hi - 1, 0) if last else np.minimum(lo, len(v) - 1)
        return (ts[idx] / 1000.0 if timestamps else v[idx]), hi > lo

    return per_series


def _over(fn: Callable[[Float64Array, Int64Array, Int64Array], Float64Array]) -> PerSeries:
    return lambda ts, v, lo, hi: (fn(v, lo, hi), hi > lo)


def oracle(name: str, rv: RangeVector) -> InstantVector:
    """The per-series implementation of `name` that the vectorised one replaced."""
    table: dict[str, PerSeries] = {
        "rate": _extrapolated(rv, True, True),
        "increase": _extrapolated(rv, True, False),
        "delta": _extrapolated(rv, False, False),
        "irate": _instant_change(True),
        "idelta": _instant_change(False),
        "resets": _pair_flags(False),
        "changes": _pair_flags(True),
        "sum_over_time": _over(window_sum),
        "avg_over_time": _over(window_mean),
        "count_over_time": _over(lambda v, lo, hi: (hi - lo).astype(np.float64)),
        "present_over_time": _over(lambda v, lo, hi: np.ones(len(lo))),
        "last_over_time": _edge(True, False),
        "first_over_time": _edge(False, False),
        "ts_of_last_over_time": _edge(True, True),
        "ts_of_first_over_time": _edge(False, True),
    }
    table |= {
        "min_over_time": ot.extreme_windows(True),
        "max_over_time": ot.extreme_windows(False),
        "ts_of_min_over_time": ot.ts_of_extreme_windows(True),
        "ts_of_max_over_time": ot.ts_of_extreme_windows(False),
        "stdvar_over_time": ot.stdvar_windows,
        "stddev_over_time": ot.stddev_windows,
        "mad_over_time": ot.mad_windows,
        "deriv": rf.deriv_windows,
    }
    keep_name = name in ("last_over_time", "first_over_time")
    return over_series(rv, table[name], keep_name=keep_name)


PADDED = [
    "min_over_time",
    "max_over_time",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "mad_over_time",
    "deriv",
]
NAMES = [
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "resets",
    "changes",
    "sum_over_time",
    "avg_over_time",
    "count_over_time",
    "present_over_time",
    "last_over_time",
    "first_over_time",
    "ts_of_last_over_time",
    "ts_of_first_over_time",
]

_values = st.one_of(
    st.integers(-3, 40).map(float),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e308, -1e308, 1e-300, 1e16]),
)


_gaps = st.lists(st.integers(1, 40_000), min_size=1, max_size=25)


@st.composite
def range_vectors(draw: st.DrawFn) -> RangeVector:
    n = draw(st.integers(0, 5))
    shared = draw(st.sampled_from([None, *draw(st.lists(_gaps, min_size=1, max_size=2))]))
    labels, ts, vals = [], [], []
    for _ in range(n):
        # Few label sets, so some rows coincide once the name is dropped (Prometheus's error).
        name = draw(st.sampled_from(["a", "b"]))
        job = draw(st.sampled_from(["x", "y", "z"]))
        # Series of one scrape share timestamps: the bounds are searched once for them.
        gaps = shared if shared is not None else draw(_gaps)
        labels.append((("__name__", name), ("job", job)))
        start = -50_000 if shared is not None else draw(st.integers(-50_000, 50_000))
        ts.append(np.cumsum(np.array(gaps, dtype=np.int64)) + start)
        vals.append(np.array(draw(st.lists(_values, min_size=len(gaps), max_size=len(gaps)))))
    order = sorted(range(n), key=lambda i: labels[i])
    range_ms = draw(st.integers(1, 150_000))
    step = draw(st.integers(1, 60_000))
    window_end = draw(st.integers(-60_000, 400_000)) + step * np.arange(draw(st.integers(1, 12)))
    return RangeVector.of_series(
        [labels[i] for i in order],
        [ts[i] for i in order],
        [vals[i] for i in order],
        range_ms,
        window_end.astype(np.int64),
    )


def outcome(run: Callable[[], Value]) -> InstantVector | str:
    """The vector `run` returns, or its error's message."""
    try:
        out = run()
    except QueryExecutionError as e:
        return str(e)
    assert isinstance(out, InstantVector)
    return out


def evaluate(name: str, rv: RangeVector) -> InstantVector | str:
    ctx = EvalContext(cast(Any, None), rv.window_end, 0, 0, 0)
    return outcome(lambda: FUNCTIONS[name].impl([rv], CallInfo(name, []), ctx))


def expected(name: str, rv: RangeVector) -> InstantVector | str:
    return outcome(lambda: oracle(name, rv))


def assert_identical(got: InstantVector | str, want: InstantVector | str) -> None:
    if isinstance(want, str) or isinstance(got, str):
        assert got == want
        return
    assert got.labels == want.labels
    assert got.values.shape == want.values.shape
    assert np.array_equal(got.present, want.present)
    # Bit for bit (-0.0 is not 0.0), but a NaN's payload is not compared: numpy may swap the
    # operands of a commutative operation, which picks the other NaN; PromQL shows every NaN
    # alike, and stale markers never reach a function.
    nan = np.isnan(want.values)
    assert np.array_equal(np.isnan(got.values), nan)
    assert np.array_equal(got.values[~nan].view(np.int64), want.values[~nan].view(np.int64))


@settings(max_examples=400, deadline=None)
@given(range_vectors(), st.sampled_from(NAMES + PADDED))
def test_vectorised_range_functions_equal_the_per_series_path(rv: RangeVector, name: str) -> None:
    assert_identical(evaluate(name, rv), expected(name, rv))


@settings(max_examples=100, deadline=None)
@given(range_vectors(), st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, -1.0, 2.0, np.nan])))
def test_quantile_over_time_equals_the_per_series_path(rv: RangeVector, qs: list[float]) -> None:
    q = np.resize(np.array(qs or [0.5]), len(rv.window_end))
    ctx = EvalContext(cast(Any, None), rv.window_end, 0, 0, 0)
    impl = FUNCTIONS["quantile_over_time"].impl
    got = outcome(lambda: impl([Scalar(q), rv], CallInfo("quantile_over_time", []), ctx))
    assert_identical(got, outcome(lambda: over_series(rv, ot.quantile_windows(q))))


def stored_shuffled(rv: RangeVector, order: list[int]) -> RangeVector:
    """`rv` with its series stored in another order (`order[k]` is stored series k), as a
    selector keeps a read sorted by series id."""
    ts, values = [rv.ts[i] for i in order], [rv.values[i] for i in order]
    flat = RangeVector.of_series([rv.labels[i] for i in order], ts, values, 0, rv.window_end)
    stored = np.empty(len(order), dtype=np.int64)
    stored[order] = np.arange(len(order), dtype=np.int64)
    return RangeVector(
        rv.labels, flat.flat_ts, flat.flat_values, flat.offsets, stored, rv.range_ms, rv.window_end
    )


@settings(max_examples=200, deadline=None)
@given(range_vectors(), st.sampled_from(NAMES + PADDED), st.randoms(use_true_random=False))
def test_the_stored_order_of_series_does_not_change_results(
    rv: RangeVector, name: str, rand: Any
) -> None:
    order = list(range(len(rv.labels)))
    rand.shuffle(order)
    shuffled = stored_shuffled(rv, order)
    assert [t.tolist() for t in shuffled.ts] == [t.tolist() for t in rv.ts]
    assert_identical(evaluate(name, shuffled), evaluate(name, rv))


def run_both(name: str, args: list[Value], per_series: PerSeries) -> None:
    """`name` on args (a range vector first) against `over_series` of its per-series code."""
    rv = cast(RangeVector, args[0])
    ctx = EvalContext(cast(Any, None), rv.window_end, 0, 0, 0)
    got = outcome(lambda: FUNCTIONS[name].impl(args, CallInfo(name, []), ctx))
    assert_identical(got, outcome(lambda: over_series(rv, per_series)))


@settings(max_examples=100, deadline=None)
@given(range_vectors(), st.lists(st.floats(-1e5, 1e5), min_size=1), st.floats(0.05, 0.95))
def test_predict_linear_and_smoothing_equal_the_per_series_path(
    rv: RangeVector, durations: list[float], factor: float
) -> None:
    steps = rv.window_end
    duration = np.resize(np.array(durations), len(steps))
    run_both("predict_linear", [rv, Scalar(duration)], rf.predict_linear_windows(steps, duration))
    sf, tf = np.full(len(steps), factor), np.resize(np.array([0.3, factor]), len(steps))
    smoothing = ot.smoothing_windows(sf, tf)
    run_both("double_exponential_smoothing", [rv, Scalar(sf), Scalar(tf)], smoothing)


@settings(max_examples=100, deadline=None)
@given(range_vectors())
def test_window_bounds_are_each_series_own_bounds(rv: RangeVector) -> None:
    fw = FlatWindows.of(rv)
    for i in range(len(rv.labels)):
        lo, hi = rv.bounds(i)
        assert np.array_equal(fw.lo[i], lo + fw.offsets[i])
        assert np.array_equal(fw.hi[i], hi + fw.offsets[i])


_rows = st.lists(st.lists(st.floats(-1e12, 1e12), max_size=70), max_size=6)
_equal_rows = st.integers(0, 40).flatmap(
    lambda n: st.lists(st.lists(st.floats(-1e12, 1e12), min_size=n, max_size=n), max_size=6)
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(_rows, _equal_rows))
def test_segmented_cumsum_is_each_series_own_cumsum(rows: list[list[float]]) -> None:
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    flat = np.array([x for r in rows for x in r], dtype=np.float64)
    got = segmented_cumsum(flat, offsets)
    for i, r in enumerate(rows):
        own = np.concatenate(([0.0], np.cumsum(np.array(r, dtype=np.float64))))
        part = got[offsets[i] + i : offsets[i + 1] + i + 1]
        assert np.array_equal(part.view(np.int64), own.view(np.int64))


@pytest.mark.parametrize("name", ["rate", "increase", "sum_over_time", "avg_over_time"])
def test_a_large_series_does_not_round_away_the_next_ones_small_values(name: str) -> None:
    # Running sums over the whole flat array would carry 1e16s into the second series' sums.
    ts = np.array([1_000, 2_000, 3_000, 4_000], dtype=np.int64)
    rv = RangeVector.of_series(
        [(("job", "a"),), (("job", "b"),)],
        [ts, ts.copy()],
        [np.array([3e16, 1e16, 5e16, 2e16]), np.array([5.3, 0.1, 0.7, 0.2])],
        10_000,
        np.array([3_500, 4_000], dtype=np.int64),
    )
    assert_identical(evaluate(name, rv), expected(name, rv))


def test_timestamps_too_far_apart_for_offset_keys_search_per_series() -> None:
    far = np.array([-(2**61), 2**61], dtype=np.int64)
    rv = RangeVector.of_series(
        [(("job", "a"),), (("job", "b"),)],
        [far, far.copy()],
        [np.array([1.0, 2.0]), np.array([3.0, 4.0])],
        10,
        np.array([2**61], dtype=np.int64),
    )
    fw = FlatWindows.of(rv)
    assert fw.lo.tolist() == [[1], [3]]
    assert fw.hi.tolist() == [[2], [4]]


@pytest.mark.parametrize("name", NAMES + PADDED)
def test_a_range_vector_without_series_gives_an_empty_vector(name: str) -> None:
    rv = RangeVector.empty(60_000, np.array([0, 60_000], dtype=np.int64))
    out = evaluate(name, rv)
    assert isinstance(out, InstantVector)
    assert len(out) == 0
    assert out.values.shape == (0, 2)
