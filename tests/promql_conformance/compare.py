"""Comparing engine results with a case's expectation, the way promqltest compares."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from opsmetrics.model import STALE_NAN, Labels

from .script import EvalCmd
from .series import SeqValue, format_labels

EPSILON = 1e-6
MIN_NORMAL = 2.2250738585072014e-308


class Mismatch(Exception):
    """A result that differs from the expectation: a category plus expected-vs-got detail."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail


def almost_equal(a: float, b: float) -> bool:
    """Prometheus util/almost.Equal: relative tolerance, NaN == NaN, stale only equals stale."""
    a_stale, b_stale = _is_stale(a), _is_stale(b)
    if a_stale or b_stale:
        return a_stale and b_stale
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < MIN_NORMAL:
        return diff < EPSILON * MIN_NORMAL
    return diff / min(abs_sum, sys.float_info.max) < EPSILON


def _is_stale(x: float) -> bool:
    return bool(np.array([x]).view(np.uint64)[0] == np.array([STALE_NAN]).view(np.uint64)[0])


Points = list[tuple[int, float]]
Matrix = list[tuple[Labels, Points]]


def _no_duplicates(labels: Sequence[Labels]) -> None:
    dupes = [lbl for lbl, n in Counter(labels).items() if n > 1]
    if dupes:
        raise Mismatch("duplicate series in result", format_labels(dupes[0]))


def compare_vector(cmd: EvalCmd, rows: list[tuple[Labels, float]]) -> None:
    _no_duplicates([labels for labels, _ in rows])
    expected = {labels: (pos, seq[0]) for pos, (labels, seq) in enumerate(cmd.series)}
    for pos, (labels, value) in enumerate(rows):
        if labels not in expected:
            raise Mismatch("unexpected series", f"{format_labels(labels)} {value!r}")
        want_pos, want = expected.pop(labels)
        if cmd.ordered and want_pos != pos:
            raise Mismatch("wrong order", f"{format_labels(labels)} at {pos}, want {want_pos}")
        if not isinstance(want, float) or not almost_equal(want, value):
            raise Mismatch("wrong value", f"{format_labels(labels)}: want {want!r}, got {value!r}")
    if expected:
        missing = next(iter(expected.items()))
        raise Mismatch("missing series", f"{format_labels(missing[0])} {missing[1][1]!r}")


def _expected_points(cmd: EvalCmd, seq: list[SeqValue]) -> Points:
    points = [(cmd.start_ms + i * cmd.step_ms, v) for i, v in enumerate(seq)]
    if points and points[-1][0] > cmd.end_ms:
        raise Mismatch("test expects more points than steps", f"{len(seq)} values")
    return [(t, v) for t, v in points if isinstance(v, float)]


def _points_differ(want: Points, got: Points) -> bool:
    if [t for t, _ in want] != [t for t, _ in got]:
        return True
    return not all(almost_equal(w, g) for (_, w), (_, g) in zip(want, got, strict=True))


def compare_matrix(cmd: EvalCmd, matrix: Matrix) -> None:
    _no_duplicates([labels for labels, _ in matrix])
    expected = {labels: seq for labels, seq in cmd.series}
    for labels, got in matrix:
        if labels not in expected:
            raise Mismatch("unexpected series", f"{format_labels(labels)} {_fmt_points(got)}")
        want = _expected_points(cmd, expected.pop(labels))
        if _points_differ(want, got):
            category = "wrong value" if len(want) == len(got) else "wrong points"
            detail = (
                f"{format_labels(labels)}:\n  want {_fmt_points(want)}\n  got  {_fmt_points(got)}"
            )
            raise Mismatch(category, detail)
    if expected:
        labels, seq = next(iter(expected.items()))
        raise Mismatch(
            "missing series", f"{format_labels(labels)} {_fmt_points(_expected_points(cmd, seq))}"
        )


def _fmt_points(points: Points) -> str:
    return " ".join(f"{v!r}@{t / 1000:g}s" for t, v in points)


def step_times(cmd: EvalCmd) -> list[int]:
    return list(range(cmd.start_ms, cmd.end_ms + 1, cmd.step_ms)) if cmd.step_ms else [cmd.end_ms]


def _vector_rows(value: Any) -> list[tuple[Labels, float]]:
    present = np.asarray(value.present)[:, 0]
    return [(value.labels[i], float(value.values[i, 0])) for i in np.flatnonzero(present)]


def _raw_matrix(value: Any) -> Matrix:
    out: Matrix = []
    for i, labels in enumerate(value.labels):
        lo, hi = value.bounds(i)
        ts, vals = value.ts[i][lo[0] : hi[0]], value.values[i][lo[0] : hi[0]]
        out.append((labels, [(int(t), float(v)) for t, v in zip(ts, vals, strict=True)]))
    return [(labels, points) for labels, points in out if points]


def stepped_matrix(value: Any, steps: list[int]) -> Matrix:
    """Per-step rows as Prometheus's range evaluation returns them: rows with equal labels
    merge into one series, and two of them at the same step are an error."""
    if result_kind(value) == "Scalar":
        return [((), list(zip(steps, map(float, value.values), strict=True)))]
    if np.shape(value.values)[1:] != (len(steps),):
        raise Mismatch("wrong number of steps", f"{np.shape(value.values)} for {len(steps)}")
    merged: dict[Labels, dict[int, float]] = {}
    for i, labels in enumerate(value.labels):
        points = merged.setdefault(labels, {})
        for j in np.flatnonzero(value.present[i]):
            if steps[j] in points:
                raise Mismatch("duplicate series in result", f"{format_labels(labels)} at {j}")
            points[steps[j]] = float(value.values[i, j])
    return [(labels, sorted(points.items())) for labels, points in merged.items() if points]


def result_kind(value: Any) -> str:
    return type(value).__name__


def compare_instant(cmd: EvalCmd, value: Any) -> None:
    kind = result_kind(value)
    if kind == "StringValue":
        if cmd.string is None or cmd.string != value.value:
            raise Mismatch(
                "wrong result", f"want {_describe_expected(cmd)}, got string {value.value!r}"
            )
    elif kind == "Scalar":
        got = float(value.values[0])
        if cmd.scalar is None or not almost_equal(cmd.scalar, got):
            raise Mismatch("wrong result", f"want {_describe_expected(cmd)}, got scalar {got!r}")
    elif cmd.scalar is not None or cmd.string is not None:
        raise Mismatch("wrong result type", f"want {_describe_expected(cmd)}, got {kind}")
    elif kind == "RangeVector":
        if cmd.ordered:
            raise Mismatch("wrong result type", "want an ordered vector, got a range vector")
        compare_matrix(cmd, _raw_matrix(value))
    else:
        compare_vector(cmd, _vector_rows(value))


def compare_range(cmd: EvalCmd, value: Any) -> None:
    kind = result_kind(value)
    if kind not in ("InstantVector", "Scalar"):
        raise Mismatch("wrong result type", f"a range query returned {kind}")
    if cmd.scalar is not None or cmd.string is not None or cmd.ordered:
        raise Mismatch("wrong result type", f"want {_describe_expected(cmd)}, got a matrix")
    compare_matrix(cmd, stepped_matrix(value, step_times(cmd)))


def _describe_expected(cmd: EvalCmd) -> str:
    if cmd.scalar is not None:
        return f"scalar {cmd.scalar!r}"
    if cmd.string is not None:
        return f"string {cmd.string!r}"
    return f"{len(cmd.series)} series"


def compare_scalar(cmd: EvalCmd, rows: list[tuple[Labels, float]]) -> None:
    got = rows[0][1] if len(rows) == 1 else math.nan
    if cmd.scalar is None or len(rows) != 1 or not almost_equal(cmd.scalar, got):
        raise Mismatch("wrong result", f"want scalar {cmd.scalar!r}, got {rows!r}")
