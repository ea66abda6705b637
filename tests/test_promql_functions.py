"""PromQL function library, called directly on hand-built values (expectations from Prometheus)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import promql_parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

import opsmetrics.query.promql.functions  # noqa: F401  (registers the functions)
from opsmetrics.query.promql.functions.window_sums import (
    loop_window_mean,
    loop_window_sum,
    window_mean,
    window_sum,
)
from opsmetrics.query.promql.values import (
    FUNCTIONS,
    CallInfo,
    EvalContext,
    InstantVector,
    QueryError,
    RangeVector,
    Scalar,
    StringValue,
    Value,
)

MIN = 60_000


def ctx_at(*steps_ms: int) -> EvalContext:
    steps = np.array(steps_ms, dtype=np.int64)
    return EvalContext(cast(Any, None), steps, int(steps[0]), int(steps[-1]), 0)


def call(name: str, args: list[Value], ctx: EvalContext, exprs: list[Any] | None = None) -> Value:
    return FUNCTIONS[name].impl(args, CallInfo(name, exprs or []), ctx)


def series(interval_ms: int, values: list[float], start: int = 0) -> tuple[Any, Any]:
    ts = np.arange(len(values), dtype=np.int64) * interval_ms + start
    return ts, np.array(values, dtype=np.float64)


def rng(data: dict[str, tuple[Any, Any]], range_ms: int, ctx: EvalContext) -> RangeVector:
    labels = [lab(k) for k in data]
    ts = [d[0] for d in data.values()]
    vals = [d[1] for d in data.values()]
    return RangeVector.of_series(labels, ts, vals, range_ms, ctx.steps.copy())


def lab(text: str) -> tuple[tuple[str, str], ...]:
    """'name{a="b"}' → Labels."""
    name, _, rest = text.partition("{")
    pairs = {"__name__": name} if name else {}
    for part in filter(None, rest.rstrip("}").split(",")):
        k, v = part.split("=", 1)
        pairs[k.strip()] = v.strip().strip('"')
    return tuple(sorted(pairs.items()))


def inst(rows: dict[str, float], steps: int = 1) -> InstantVector:
    values = np.array([[v] * steps for v in rows.values()], dtype=np.float64).reshape(-1, steps)
    return InstantVector([lab(k) for k in rows], values, np.ones(values.shape, dtype=bool))


def result(value: Value, step: int = 0) -> dict[str, float]:
    assert isinstance(value, InstantVector)
    out = {}
    for i, labels in enumerate(value.labels):
        if value.present[i, step]:
            text = ",".join(f"{k}={v}" for k, v in labels)
            out[text] = float(value.values[i, step])
    return out


def approx(expected: dict[str, float]) -> Any:
    return pytest.approx(expected, rel=1e-9, nan_ok=True)


def one(value: Value, step: int = 0) -> float:
    vals = list(result(value, step).values())
    assert len(vals) == 1
    return vals[0]


# --- resets / changes -------------------------------------------------------------------------


HTTP = {
    'http_requests{path="/foo"}': series(5 * MIN, [1, 2, 3, 0, 1, 0, 0, 1, 2, 0]),
    'http_requests{path="/bar"}': series(5 * MIN, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]),
    'http_requests{path="/biz"}': series(5 * MIN, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
}


@pytest.mark.parametrize(
    ("range_min", "expected"),
    [(5, None), (10, (0, 0, 0)), (20, (1, 0, 0)), (32, (2, 1, 0)), (50, (3, 1, 0))],
)
def test_resets(range_min: int, expected: tuple[int, ...] | None) -> None:
    ctx = ctx_at(50 * MIN)
    out = result(call("resets", [rng(HTTP, range_min * MIN, ctx)], ctx))
    if expected is None:
        assert out == {}
    else:
        assert sorted(out.values()) == sorted(float(x) for x in expected)
        assert all("__name__" not in k for k in out)


@pytest.mark.parametrize(
    ("range_min", "expected"), [(6, (0, 0, 0)), (20, (2, 2, 0)), (50, (7, 8, 1))]
)
def test_changes(range_min: int, expected: tuple[int, ...]) -> None:
    ctx = ctx_at(50 * MIN)
    out = call("changes", [rng(HTTP, range_min * MIN, ctx)], ctx)
    assert [result(out)[k] for k in sorted(result(out))] == [float(expected[i]) for i in (1, 2, 0)]


def test_changes_treats_nan_as_equal_to_nan() -> None:
    ctx = ctx_at(15 * MIN)
    data = {
        'x{a="b"}': series(5 * MIN, [math.nan] * 3),
        'x{a="c"}': series(5 * MIN, [0, math.nan, 0]),
    }
    assert result(call("changes", [rng(data, 20 * MIN, ctx)], ctx)) == {"a=b": 0.0, "a=c": 2.0}


# --- increase / rate / delta ------------------------------------------------------------------


def counters() -> dict[str, tuple[Any, Any]]:
    return {
        'c{path="/foo"}': series(5 * MIN, [10 * i for i in range(11)]),
        'c{path="/bar"}': series(5 * MIN, [18 * i for i in range(6)] + [18 * i for i in range(6)]),
        'c{path="/dings"}': series(5 * MIN, [10 + 10 * i for i in range(11)]),
        'c{path="/bumms"}': series(5 * MIN, [1 + 10 * i for i in range(11)]),
    }


def test_increase_extrapolates_and_stops_at_zero() -> None:
    ctx = ctx_at(50 * MIN)
    got = result(call("increase", [rng(counters(), 50 * MIN, ctx)], ctx))
    assert got == approx(
        {"path=/foo": 100, "path=/bar": 160, "path=/dings": 100, "path=/bumms": 100}
    )
    got = result(call("increase", [rng(counters(), 100 * MIN, ctx)], ctx))
    assert got == approx(
        {"path=/foo": 100, "path=/bar": 162, "path=/dings": 105, "path=/bumms": 101}
    )


def test_increase_counter_reset_adds_previous_value() -> None:
    ctx = ctx_at(30 * MIN)
    data = {"c": series(5 * MIN, [0, 1, 2, 3, 2, 3, 4])}
    assert one(call("increase", [rng(data, 30 * MIN, ctx)], ctx)) == pytest.approx(7)


def test_rate_zero_cutoff() -> None:
    data = {
        f'z{{start="{m}m"}}': series(4 * MIN, [60 * m + 240 * i for i in range(11)])
        for m in range(6)
    }
    ctx = ctx_at(10 * MIN)
    got = result(call("rate", [rng(data, 20 * MIN, ctx)], ctx))
    assert sorted(got.values()) == pytest.approx([0.5, 0.55, 0.6, 0.6, 0.6, 0.6])
    ctx = ctx_at(50 * MIN)
    assert list(result(call("rate", [rng(data, 20 * MIN, ctx)], ctx)).values()) == pytest.approx(
        [0.6] * 6
    )


def test_rate_reset_in_the_middle_and_single_point_window() -> None:
    ctx = ctx_at(50 * MIN)
    middle = {"m": series(5 * MIN, [27 * i for i in range(5)] + [27 * i for i in range(6)])}
    assert one(call("rate", [rng(middle, 50 * MIN, ctx)], ctx)) == pytest.approx(0.08)
    end = {"e": series(5 * MIN, [10 * i for i in range(10)] + [0, 10])}
    assert result(call("rate", [rng(end, 5 * MIN, ctx)], ctx)) == {}
    assert one(call("rate", [rng(end, 6 * MIN, ctx)], ctx)) == 0


def test_delta_is_not_a_counter() -> None:
    ctx = ctx_at(20 * MIN)
    data = {
        'h{p="foo"}': series(5 * MIN, [0, 50, 100, 150, 200]),
        'h{p="bar"}': series(5 * MIN, [200, 150, 100, 50, 0]),
    }
    assert result(call("delta", [rng(data, 20 * MIN, ctx)], ctx)) == approx(
        {"p=foo": 200, "p=bar": -200}
    )


def test_irate_and_idelta_use_last_two_points() -> None:
    ctx = ctx_at(0, 5 * MIN, 10 * MIN, 15 * MIN, 20 * MIN)
    data = {"n": series(5 * MIN, [1, math.nan, math.nan, 5, 11])}
    window = 15 * MIN + 1000
    irate = call("irate", [rng(data, window, ctx)], ctx)
    assert [result(irate, j).get("", None) for j in range(5)][0] is None
    assert math.isnan(one(irate, 3)) and one(irate, 4) == pytest.approx(0.02)
    assert one(call("idelta", [rng(data, window, ctx)], ctx), 4) == 6
    ctx = ctx_at(30 * MIN)
    reset = {"r": series(5 * MIN, [0, 10, 20, 30, 40, 50, 0])}
    assert one(call("irate", [rng(reset, 50 * MIN, ctx)], ctx)) == 0


# --- deriv / predict_linear -------------------------------------------------------------------


RESET_MIDDLE = {"t": series(5 * MIN, [0, 10, 20, 30, 40, 0, 10, 20, 30, 40, 50])}


def test_deriv_and_predict_linear() -> None:
    ctx = ctx_at(50 * MIN)
    assert one(call("deriv", [rng(RESET_MIDDLE, 100 * MIN, ctx)], ctx)) == pytest.approx(
        0.010606060606060607
    )
    hour = Scalar(np.array([3600.0]))
    assert one(
        call("predict_linear", [rng(RESET_MIDDLE, 50 * MIN, ctx), hour], ctx)
    ) == pytest.approx(70)


def test_predict_linear_intercept_is_the_evaluation_time() -> None:
    # `[55m] @ 3000`: the window is fixed, the evaluation time moves.
    for at_min, expected in (
        (50, 76.81818181818181),
        (10, 51.36363636363637),
        (70, 89.54545454545455),
    ):
        ctx = ctx_at(at_min * MIN)
        rv = rng(RESET_MIDDLE, 55 * MIN, ctx)
        rv.window_end = np.array([3_000_000], dtype=np.int64)
        got = one(call("predict_linear", [rv, Scalar(np.array([3600.0]))], ctx))
        assert got == pytest.approx(expected)


def test_deriv_with_infinities_is_nan() -> None:
    ctx = ctx_at(100 * MIN)
    data = {"i": series(5 * MIN, [-math.inf] + [80 * i for i in range(11)] + [math.inf])}
    assert math.isnan(one(call("deriv", [rng(data, 100 * MIN, ctx)], ctx)))


# --- *_over_time --------------------------------------------------------------------------------


def over(
    name: str, values: list[float], at_ms: int, range_ms: int, interval: int = 10_000
) -> float:
    ctx = ctx_at(at_ms)
    return one(call(name, [rng({"m": series(interval, values)}, range_ms, ctx)], ctx))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3, 4, 5], 3),
        ([1, 2, 3, 4, math.inf], math.inf),
        ([1, 2, 3, math.inf, -math.inf], math.nan),
        ([math.inf, 0, math.inf], math.inf),
        ([9.988465674311579e307] * 2, 9.988465674311579e307),
        ([-9.988465674311579e307] * 3, -9.988465674311579e307),
        ([-9.988465674311579e307, 9.988465674311579e307], 0),
        ([1, 1e100, 1, -1e100, 0], 0.4),
    ],
)
def test_avg_over_time(values: list[float], expected: float) -> None:
    assert over("avg_over_time", values, 55_000, MIN) == pytest.approx(expected, nan_ok=True)


def test_avg_over_time_extreme_magnitudes() -> None:
    values = [1.78264e50, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 458.90154]
    assert over("avg_over_time", values, 55_000, MIN, 5000) == pytest.approx(3.76333333333333e219)
    assert over("avg_over_time", [52.0] * 101, 10 * MIN, 130_000) == 52


def test_sum_over_time_is_compensated_and_keeps_precision() -> None:
    assert over("sum_over_time", [1, 1e100, 1, -1e100], MIN, 2 * MIN) == 2
    assert over("sum_over_time", [1.0] * 4001, 4000, 1001, 1) == 1001
    assert over("sum_over_time", [9.988465674311579e307] * 2, 55_000, MIN) == math.inf


def test_stdvar_stddev_mad_quantile() -> None:
    assert over("stdvar_over_time", [0, 8, 8, 2, 3], MIN, 2 * MIN) == pytest.approx(10.56)
    assert over("stddev_over_time", [0, 8, 8, 2, 3], MIN, 2 * MIN) == pytest.approx(
        3.249615, rel=1e-6
    )
    assert over("stdvar_over_time", [1.5990505637277868] * 3, 55_000, MIN) == 0
    assert over("mad_over_time", [4, 6, 2, 1, 999, 1, 2], 70_000, 70_000) == 1
    assert over("mad_over_time", [1, 2, 3, 4, 5], 40_000, 50_000) == 1
    assert math.isnan(over("mad_over_time", [1, 2, math.nan, 4], 30_000, 40_000))
    ctx = ctx_at(MIN)
    data = {'d{t="two"}': series(10_000, [0, 1]), 'd{t="uneven"}': series(10_000, [0, 1, 4])}
    for q, exp in (
        (0.5, {"t=two": 0.5, "t=uneven": 1}),
        (0.8, {"t=two": 0.8, "t=uneven": 2.8}),
        (-1, {"t=two": -math.inf, "t=uneven": -math.inf}),
    ):
        out = call("quantile_over_time", [Scalar(np.array([q])), rng(data, 2 * MIN, ctx)], ctx)
        assert result(out) == approx(exp)


def test_min_max_count_last_present_and_timestamps() -> None:
    vals = [1, 2, 3, 0, 5, 6, 2, 1, 4]
    assert over("ts_of_min_over_time", vals, 90_000, 90_000, 10_053) == pytest.approx(30.159)
    assert over("ts_of_max_over_time", vals, 90_000, 90_000, 10_053) == pytest.approx(50.265)
    assert over("min_over_time", [5, math.nan, 3, 1], MIN, MIN) == 1
    assert over("max_over_time", [5, math.nan, 3, 1], MIN, MIN) == 3
    assert over("count_over_time", [5, math.nan, 3, 1], MIN, MIN) == 3
    ctx = ctx_at(MIN)
    rv = rng({'m{a="b"}': series(10_000, [1, 2])}, MIN, ctx)
    assert result(call("last_over_time", [rv], ctx)) == {"__name__=m,a=b": 2.0}
    assert result(call("present_over_time", [rv], ctx)) == {"a=b": 1.0}


def test_double_exponential_smoothing() -> None:
    ctx = ctx_at(8000_000)
    data = {
        'h{i="0"}': series(
            10_000, [10 * i for i in range(1001)] + [100 + 30 * i for i in range(1001)]
        )
    }
    args: list[Value] = [rng(data, MIN, ctx), Scalar(np.array([0.01])), Scalar(np.array([0.1]))]
    assert result(call("double_exponential_smoothing", args, ctx)) == approx({"i=0": 8000})
    with pytest.raises(QueryError):
        call("double_exponential_smoothing", [args[0], Scalar(np.array([1.0])), args[2]], ctx)


# --- math ---------------------------------------------------------------------------------------


CLAMP = {'t{src="a"}': -50.0, 't{src="b"}': 0.0, 't{src="c"}': 100.0}


def test_clamp_family() -> None:
    ctx = ctx_at(0)
    s = lambda v: Scalar(np.array([v]))  # noqa: E731
    assert result(call("clamp_max", [inst(CLAMP), s(75)], ctx)) == {
        "src=a": -50,
        "src=b": 0,
        "src=c": 75,
    }
    assert result(call("clamp_min", [inst(CLAMP), s(-25)], ctx)) == {
        "src=a": -25,
        "src=b": 0,
        "src=c": 100,
    }
    assert result(call("clamp", [inst(CLAMP), s(-25), s(75)], ctx)) == {
        "src=a": -25,
        "src=b": 0,
        "src=c": 75,
    }
    assert all(
        math.isnan(v) for v in result(call("clamp", [inst(CLAMP), s(0), s(math.nan)], ctx)).values()
    )
    assert result(call("clamp", [inst(CLAMP), s(5), s(-5)], ctx)) == {}


def test_simple_math_drops_name_and_maps_values() -> None:
    ctx = ctx_at(0)
    vec = inst({'x{a="1"}': -2.5})
    assert result(call("abs", [vec], ctx)) == {"a=1": 2.5}
    assert result(call("ceil", [vec], ctx)) == {"a=1": -2.0}
    assert result(call("floor", [vec], ctx)) == {"a=1": -3.0}
    assert result(call("round", [vec], ctx)) == {"a=1": -2.0}
    assert result(call("round", [inst({"x": 7.3}), Scalar(np.array([5.0]))], ctx)) == {"": 5.0}
    assert result(call("sgn", [inst({'s{a="1"}': -math.inf, 's{a="2"}': 0.0})], ctx)) == {
        "a=1": -1,
        "a=2": 0,
    }
    assert math.isnan(one(call("ln", [inst({"x": -1.0})], ctx)))
    assert one(call("exp", [inst({"x": 0.0})], ctx)) == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("sin", 1.0, 0.8414709848078965),
        ("cos", 1.0, 0.5403023058681398),
        ("tan", 1.0, 1.5574077246549023),
        ("asin", 1.0, 1.5707963267948966),
        ("acos", 0.5, 1.0471975511965979),
        ("atan", 1.0, 0.7853981633974483),
        ("sinh", 1.0, 1.1752011936438014),
        ("cosh", 1.0, 1.5430806348152437),
        ("tanh", 1.0, 0.7615941559557649),
        ("asinh", 1.0, 0.881373587019543),
        ("acosh", 2.0, 1.3169578969248166),
        ("atanh", 0.5, 0.5493061443340548),
        ("deg", math.pi, 180.0),
        ("rad", 180.0, math.pi),
    ],
)
def test_trig(name: str, value: float, expected: float) -> None:
    assert one(call(name, [inst({"x": value})], ctx_at(0))) == pytest.approx(expected)


# --- labels and sorting ------------------------------------------------------------------------


def _strs(*values: str) -> list[Value]:
    return [StringValue(v) for v in values]


TESTMETRIC = {
    'testmetric{src="source-value-10",dst="original-destination-value"}': 0.0,
    'testmetric{src="source-value-20",dst="original-destination-value"}': 1.0,
}


@pytest.mark.parametrize(
    ("args", "dst_values"),
    [
        (
            ("dst", "destination-value-$1", "src", "source-value-(.*)"),
            ["destination-value-10", "destination-value-20"],
        ),
        (("dst", "destination-value-$1", "src", "value-(.*)"), ["original-destination-value"] * 2),
        (("dst", "$1-value-$2", "src", "(.*)-value-(.*)"), ["source-value-10", "source-value-20"]),
        (("dst", "value-$1", "nonexistent-src", "(.*)"), ["value-", "value-"]),
        (("dst", "${1}x$1x", "src", "source-value-(.*)"), ["10x", "20x"]),
        (("dst", "$name-$$", "src", "(?P<name>source)-.*"), ["source-$"] * 2),
        (("dst", "", "dst", ".*"), [None, None]),
    ],
)
def test_label_replace(args: tuple[str, ...], dst_values: list[str | None]) -> None:
    out = call("label_replace", [inst(TESTMETRIC), *_strs(*args)], ctx_at(0))
    assert isinstance(out, InstantVector)
    assert [dict(lab).get("dst") for lab in out.labels] == dst_values
    assert all(dict(lab)["__name__"] == "testmetric" for lab in out.labels)


def test_label_replace_errors() -> None:
    with pytest.raises(QueryError):
        call("label_replace", [inst(TESTMETRIC), *_strs("dst", "v", "src", "(.*")], ctx_at(0))
    with pytest.raises(QueryError, match="same labelset"):
        call("label_replace", [inst(TESTMETRIC), *_strs("src", "", "", "")], ctx_at(0))


def test_label_join() -> None:
    vec = inst({'t{src="a",src1="b",src2="c",dst="orig"}': 0.0})
    out = call("label_join", [vec, *_strs("dst", "-", "src", "src3", "src1")], ctx_at(0))
    assert isinstance(out, InstantVector) and dict(out.labels[0])["dst"] == "a--b"
    out = call("label_join", [vec, *_strs("dst", ", ")], ctx_at(0))
    assert isinstance(out, InstantVector) and "dst" not in dict(out.labels[0])
    dup = inst({'dup{label="a",this="a"}': 1.0, 'dup{label="b",this="a"}': 1.0})
    with pytest.raises(QueryError, match="same labelset"):
        call("label_join", [dup, *_strs("label", "", "this")], ctx_at(0))


def _order(value: Value, label: str) -> list[str]:
    assert isinstance(value, InstantVector)
    return [dict(lab).get(label, "") for lab in value.labels]


def test_sort_and_sort_desc_put_nan_last() -> None:
    vec = inst({'h{i="a"}': 3.0, 'h{i="b"}': math.nan, 'h{i="c"}': 1.0, 'h{i="d"}': 2.0})
    assert _order(call("sort", [vec], ctx_at(0)), "i") == ["c", "d", "a", "b"]
    assert _order(call("sort_desc", [vec], ctx_at(0)), "i") == ["a", "d", "c", "b"]


def test_sort_by_label_is_natural_and_breaks_ties_by_labels() -> None:
    cpus = inst({f'cpu{{cpu="{c}"}}': 1.0 for c in ("10", "2", "100", "1", "21")})
    assert _order(call("sort_by_label", [cpus, *_strs("cpu")], ctx_at(0)), "cpu") == [
        "1",
        "2",
        "10",
        "21",
        "100",
    ]
    rel = inst({f'n{{release="{r}"}}': 1.0 for r in ("1.111.3", "1.2.3", "1.11.3")})
    assert _order(call("sort_by_label", [rel, *_strs("release")], ctx_at(0)), "release") == [
        "1.2.3",
        "1.11.3",
        "1.111.3",
    ]
    vec = inst({'h{g="p",i="0"}': 1.0, 'h{g="c",i="1"}': 1.0, 'h{g="c",i="0"}': 1.0})
    assert _order(call("sort_by_label", [vec, *_strs("i")], ctx_at(0)), "g") == ["c", "p", "c"]
    assert _order(call("sort_by_label_desc", [vec, *_strs("i")], ctx_at(0)), "g") == ["c", "p", "c"]


# --- histograms ---------------------------------------------------------------------------------


def buckets(prefix: str, les: dict[str, float], extra: str = "") -> dict[str, float]:
    return {f'{prefix}{{le="{le}"{extra}}}': v for le, v in les.items()}


def test_histogram_quantile_classic() -> None:
    ctx = ctx_at(50 * MIN)
    vec = inst(
        buckets("b", {"0.1": 50, ".2": 70, "1e0": 110, "+Inf": 120}, ',start="positive"')
        | buckets("b", {"-.2": 10, "-0.1": 20, "0.3": 20, "+Inf": 30}, ',start="negative"')
    )
    q = lambda v: Scalar(np.array([v]))  # noqa: E731
    assert result(call("histogram_quantile", [q(0), vec], ctx)) == approx(
        {"start=positive": 0, "start=negative": -0.2}
    )
    assert result(call("histogram_quantile", [q(0.5), vec], ctx)) == approx(
        {"start=positive": 0.15, "start=negative": -0.15}
    )
    assert result(call("histogram_quantile", [q(1), vec], ctx)) == approx(
        {"start=positive": 1, "start=negative": 0.3}
    )
    assert result(call("histogram_quantile", [q(-1), vec], ctx)) == approx(
        {"start=positive": -math.inf, "start=negative": -math.inf}
    )
    nan = result(call("histogram_quantile", [q(math.nan), vec], ctx))
    assert len(nan) == 2 and all(math.isnan(v) for v in nan.values())


def test_histogram_quantile_fixes_non_monotonic_buckets_and_needs_inf() -> None:
    ctx = ctx_at(0)
    q = Scalar(np.array([0.5]))
    broken = inst(buckets("b", {"1": 10, "2": 5, "3": 20, "+Inf": 20}))
    # Bucket 2 is lifted to 10; rank 10 lies at the top of the first bucket.
    assert one(call("histogram_quantile", [q, broken], ctx)) == pytest.approx(1)
    no_inf = inst(buckets("b", {"1": 10, "2": 20}))
    assert math.isnan(one(call("histogram_quantile", [q, no_inf], ctx)))
    beyond = inst(buckets("b", {"1": 1, "2": 2, "+Inf": 100}))
    assert one(call("histogram_quantile", [q, beyond], ctx)) == 2


def test_histogram_fraction_classic() -> None:
    ctx = ctx_at(0)
    s = lambda v: Scalar(np.array([v]))  # noqa: E731
    h2 = inst(buckets("h", {"0": 0, "2": 10, "4": 20, "6": 30, "+Inf": 30}))
    assert one(call("histogram_fraction", [s(0), s(4), h2], ctx)) == pytest.approx(2 / 3)
    assert one(call("histogram_fraction", [s(0), s(3.5), h2], ctx)) == pytest.approx(
        0.5833333333333334
    )
    neg = inst(buckets("h", {"-3": 10, "-2": 12, "-1": 15, "+Inf": 100}))
    assert one(call("histogram_fraction", [s(-4), s(-2), neg], ctx)) == pytest.approx(0.02)
    assert one(call("histogram_fraction", [s(-math.inf), s(-1.5), neg], ctx)) == pytest.approx(
        0.135
    )
    pos = inst(buckets("h", {"1": 1, "2": 3, "3": 6, "+Inf": 100}))
    assert one(call("histogram_fraction", [s(0), s(1.5), pos], ctx)) == pytest.approx(0.02)
    assert one(call("histogram_fraction", [s(4), s(5), pos], ctx)) == 0
    assert one(call("histogram_fraction", [s(3), s(2), pos], ctx)) == 0
    assert math.isnan(one(call("histogram_fraction", [s(math.nan), s(1), pos], ctx)))
    assert result(call("histogram_count", [pos], ctx)) == {}


def test_histogram_fraction_counts_the_inf_bucket_when_upper_is_inf() -> None:
    ctx = ctx_at(0)
    s = lambda v: Scalar(np.array([v]))  # noqa: E731
    pos = inst(buckets("h", {"1": 1, "2": 3, "3": 6, "+Inf": 100}))
    assert one(call("histogram_fraction", [s(400), s(math.inf), pos], ctx)) == pytest.approx(0.94)
    assert one(call("histogram_fraction", [s(2), s(math.inf), pos], ctx)) == pytest.approx(0.97)
    assert one(call("histogram_fraction", [s(2), s(400), pos], ctx)) == pytest.approx(0.03)


def test_histogram_quantile_fails_when_two_histograms_share_labels_without_name() -> None:
    ctx = ctx_at(0)
    q = Scalar(np.array([0.5]))
    vec = inst(
        buckets("a_bucket", {"1": 1, "+Inf": 2}, ',job="x"')
        | buckets("b_bucket", {"1": 1, "+Inf": 2}, ',job="x"')
    )
    with pytest.raises(QueryError, match="same labelset"):
        call("histogram_quantile", [q, vec], ctx)


def test_histogram_quantiles_labels_each_quantile() -> None:
    ctx = ctx_at(0)
    x = buckets("b", {"1": 50, "2": 100, "+Inf": 100}, ',job="x"')
    vec = inst(x)
    qs: list[Value] = [Scalar(np.array([v])) for v in (0.5, 1.0, math.nan)]
    got = result(call("histogram_quantiles", [vec, StringValue("q"), *qs], ctx))
    assert got == approx({"job=x,q=0.5": 1.0, "job=x,q=1.0": 2.0, "job=x,q=NaN": math.nan})
    two = inst(x | buckets("b", {"1": 5, "+Inf": 10}, ',job="y"'))
    with pytest.raises(QueryError, match="same labelset"):
        call("histogram_quantiles", [two, StringValue("job"), *qs[:2]], ctx)


# --- absent, scalar, vector, time, timestamp, dates ----------------------------------------------


def test_absent_takes_labels_from_equality_matchers() -> None:
    ctx = ctx_at(50 * MIN)
    empty = InstantVector.empty(1)
    for expr, expected in (
        (
            'nonexistent{job="testjob", instance="testinstance", method=~".x"}',
            {"instance=testinstance,job=testjob": 1.0},
        ),
        ('nonexistent{job="testjob",job="testjob2",foo="bar"}', {"foo=bar": 1.0}),
        ('nonexistent{job="testjob",job=~"testjob2",foo="bar"}', {"foo=bar": 1.0}),
        ('sum(nonexistent{job="testjob"})', {"": 1.0}),
    ):
        arg = promql_parser.parse(expr)
        assert result(call("absent", [empty], ctx, [arg])) == expected
    assert result(call("absent", [inst({"x": 1.0})], ctx, [promql_parser.parse("x")])) == {}


def test_absent_over_time() -> None:
    ctx = ctx_at(MIN, 10 * MIN)
    data = {'x{job="a"}': series(MIN, [1, 1])}
    expr = promql_parser.parse('absent_over_time(x{job="a"}[1m])').args[0]
    out = call("absent_over_time", [rng(data, MIN, ctx)], ctx, [expr])
    assert result(out, 0) == {} and result(out, 1) == {"job=a": 1.0}


def test_scalar_vector_time_timestamp() -> None:
    ctx = ctx_at(5000)
    got = call("scalar", [inst({"a": 3.0})], ctx)
    assert isinstance(got, Scalar) and got.values[0] == 3
    got = call("scalar", [inst({"a": 3.0, "b": 4.0})], ctx)
    assert isinstance(got, Scalar) and math.isnan(got.values[0])
    assert result(call("vector", [Scalar(np.array([1.0]))], ctx)) == {"": 1.0}
    got = call("time", [], ctx)
    assert isinstance(got, Scalar) and got.values[0] == 5
    vec = inst({'m{a="b"}': 1.0})
    assert result(call("timestamp", [vec], ctx)) == {"a=b": 5.0}
    vec.sample_ts = np.array([[0]], dtype=np.int64)
    assert result(call("timestamp", [vec], ctx)) == {"a=b": 0.0}


@pytest.mark.parametrize(
    ("name", "seconds", "expected"),
    [
        ("year", 0, 1970),
        ("month", 0, 1),
        ("day_of_month", 0, 1),
        ("day_of_week", 0, 4),
        ("day_of_year", 0, 1),
        ("hour", 0, 0),
        ("minute", 0, 0),
        ("days_in_month", 0, 31),
        ("year", 1136239445, 2006),
        ("month", 1136239445, 1),
        ("day_of_month", 1136239445, 2),
        ("day_of_week", 1136239445, 1),
        ("hour", 1136239445, 22),
        ("minute", 1136239445, 4),
        ("days_in_month", 1709251199, 29),
        ("day_of_year", 1709251199, 60),
    ],
)
def test_date_functions(name: str, seconds: int, expected: float) -> None:
    ctx = ctx_at(0)
    assert result(call(name, [inst({'x{a="b"}': float(seconds)})], ctx)) == {"a=b": expected}


def test_date_functions_default_to_now() -> None:
    ctx = ctx_at(3600_000)
    assert result(call("hour", [], ctx)) == {"": 1.0}
    assert math.isnan(one(call("year", [inst({"x": math.nan})], ctx)))


# --- query scalars: step, range, start, end, min_of, max_of --------------------------------------


def _scalar(value: Value) -> list[float]:
    assert isinstance(value, Scalar)
    return [float(v) for v in value.values]


def test_query_scalars_in_a_range_query() -> None:
    steps = np.array([100_000, 110_000, 120_000, 130_000], dtype=np.int64)
    ctx = EvalContext(cast(Any, None), steps, 100_000, 130_000, 10_000)
    assert _scalar(call("step", [], ctx)) == [10.0] * 4
    assert _scalar(call("range", [], ctx)) == [30.0] * 4
    assert _scalar(call("start", [], ctx)) == [100.0] * 4
    assert _scalar(call("end", [], ctx)) == [130.0] * 4


def test_query_scalars_in_an_instant_query() -> None:
    ctx = ctx_at(50_000)
    assert _scalar(call("step", [], ctx)) == [0.0]
    assert _scalar(call("range", [], ctx)) == [0.0]
    assert _scalar(call("start", [], ctx)) == _scalar(call("end", [], ctx)) == [50.0]


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [(3, 5, 3, 5), (-2, -5, -5, -2), (4, 4, 4, 4), (math.nan, 3, math.nan, math.nan)],
)
def test_min_of_and_max_of(a: float, b: float, low: float, high: float) -> None:
    ctx = ctx_at(0)
    args: list[Value] = [Scalar(np.array([a])), Scalar(np.array([b]))]
    assert _scalar(call("min_of", args, ctx)) == pytest.approx([low], nan_ok=True)
    assert _scalar(call("max_of", args, ctx)) == pytest.approx([high], nan_ok=True)


# --- vectorised window sums ----------------------------------------------------------------------

_floats = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
_specials = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e100, -1e100, 1.0])


def _windows(n: int, width: int) -> tuple[Any, Any]:
    hi = np.arange(1, n + 1, dtype=np.int64)
    return np.maximum(hi - width, 0), hi


@given(st.lists(_floats, min_size=1, max_size=200), st.integers(1, 80))
def test_window_sum_and_mean_match_the_per_sample_loop(values: list[float], width: int) -> None:
    vals = np.array(values)
    lo, hi = _windows(len(vals), width)
    scale = np.abs(vals).sum() * 1e-12
    assert window_sum(vals, lo, hi) == pytest.approx(loop_window_sum(vals, lo, hi), abs=scale)
    assert window_mean(vals, lo, hi) == pytest.approx(loop_window_mean(vals, lo, hi), abs=scale)


@given(st.lists(st.one_of(_floats, _specials), min_size=1, max_size=60), st.integers(1, 20))
def test_window_sum_special_values_follow_prometheus(values: list[float], width: int) -> None:
    vals = np.array(values)
    lo, hi = _windows(len(vals), width)
    with np.errstate(all="ignore"):
        fast, slow = window_sum(vals, lo, hi), loop_window_sum(vals, lo, hi)
    special = ~np.isfinite(slow) | (np.abs(slow) > 1e200)
    np.testing.assert_array_equal(fast[special], slow[special])


def test_window_sum_over_a_day_at_15s_keeps_small_values_next_to_a_spike() -> None:
    vals = np.ones(5761 * 2)
    vals[10] = 1e100
    vals[20] = -1e100
    lo, hi = _windows(len(vals), 5760)
    sums = window_sum(vals, lo, hi)
    assert sums[-1] == 5760 and sums[5765] == 5758 and sums[100] == 99
    assert window_mean(vals, lo, hi)[-1] == 1
