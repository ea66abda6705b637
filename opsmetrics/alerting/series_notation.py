"""promtool's series notation for rule unit tests.

    series: 'http_requests_total{job="api", instance="a:1"}'
    values: '0+10x5 _ stale 3 _x2 1-1x3 7x2'

- `a+bxN` expands to the N+1 values a, a+b, …, a+N·b; `a-bxN` counts down; `axN` repeats a.
- `_` is a missing sample (no scrape at that step); `_xN` is N missing samples.
- `stale` is a staleness marker.
- Numbers may be signed, in scientific notation, `Inf`, `-Inf` or `NaN`.

The i-th value is the sample at `i × interval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.errors import BadDataError
from opsmetrics.model import METRIC_NAME, STALE_NAN, Labels

_NUMBER = r"[-+]?(?:Inf|inf|NaN|nan|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_EXPANDING = re.compile(rf"({_NUMBER})(?:([-+])({_NUMBER}))?x(\d+)")
_SINGLE = re.compile(_NUMBER)
_BLANKS = re.compile(r"_x(\d+)")


@dataclass(frozen=True, slots=True)
class Missing:
    """`_`: no sample at this step."""


MISSING = Missing()
Value = float | Missing


def _number(text: str) -> float:
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def _expand(item: str) -> list[Value]:
    if item == "_":
        return [MISSING]
    if item == "stale":
        return [STALE_NAN]
    if m := _BLANKS.fullmatch(item):
        return [MISSING] * int(m.group(1))
    if m := _EXPANDING.fullmatch(item):
        start, sign, step, times = m.groups()
        delta = _number(step) * (-1 if sign == "-" else 1) if step else 0.0
        return [_number(start) + k * delta for k in range(int(times) + 1)]
    if _SINGLE.fullmatch(item):
        return [_number(item)]
    raise BadDataError(
        f"values: {item!r} is not a value; use a number, a+bxN, a-bxN, axN, _, _xN or stale"
    )


def parse_values(text: str) -> list[Value]:
    """The sample at each step (MISSING where there is none)."""
    out: list[Value] = []
    for item in str(text).split():
        out += _expand(item)
    return out


def parse_series(text: str) -> Labels:
    """`name{a="b"}` or `{__name__="name", a="b"}` as sorted labels (equality matchers only)."""
    try:
        expr = parse_promql(text)
    except ValueError as exc:
        raise BadDataError(f"series {text!r} does not parse: {exc}") from None
    if not isinstance(expr, promql_parser.VectorSelector):
        raise BadDataError(f'series {text!r} must be a metric name with labels, e.g. up{{a="b"}}')
    labels = {METRIC_NAME: expr.name} if expr.name else {}
    for matcher in expr.matchers.matchers:
        if str(matcher.op) != "MatchOp.Equal":
            raise BadDataError(f"series {text!r}: only `=` can be used in a series")
        labels[matcher.name] = matcher.value
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))
