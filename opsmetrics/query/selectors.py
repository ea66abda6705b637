"""Plain series selectors (`metric{label=~"re"}` and `metric{...}[5m]`), as PromQL defines them.

The full PromQL engine builds on these: selection by matchers, the 5-minute lookback, staleness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import promql_parser

from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.errors import BadDataError
from opsmetrics.model import (
    METRIC_NAME,
    Float64Array,
    Int64Array,
    Labels,
    Matcher,
    MatchOp,
    is_stale,
)
from opsmetrics.storage.base import Storage

LOOKBACK_MS = 5 * 60_000

_OPS = {
    "MatchOp.Equal": MatchOp.EQ,
    "MatchOp.NotEqual": MatchOp.NE,
    "MatchOp.Re": MatchOp.RE,
    "MatchOp.NotRe": MatchOp.NRE,
}


@dataclass(frozen=True, slots=True)
class Selector:
    matchers: list[Matcher]
    range_ms: int | None = None  # set for a range selector `x[5m]`


def parse_selector(text: str, *, field: str = "query") -> Selector:
    try:
        expr = parse_promql(text)
    except ValueError as exc:
        raise BadDataError(f"{field}: cannot parse {text!r}: {exc}") from None
    range_ms = None
    if isinstance(expr, promql_parser.MatrixSelector):
        range_ms = int(expr.range.total_seconds() * 1000)
        expr = expr.vector_selector
    if not isinstance(expr, promql_parser.VectorSelector):
        raise BadDataError(
            f"{field}: {text!r} is not a series selector; this endpoint takes selectors such "
            'as up{job="api"}'
        )
    matchers = [Matcher.of(m.name, _OPS[str(m.op)], m.value) for m in expr.matchers.matchers]
    if expr.name:
        matchers.insert(0, Matcher.of(METRIC_NAME, MatchOp.EQ, expr.name))
    if all(m.matches("") for m in matchers):
        raise BadDataError(
            f"{field}: {text!r} matches every series; add at least one matcher that does not "
            'match the empty string, e.g. a metric name or job="api"'
        )
    return Selector(matchers, range_ms)


@dataclass(frozen=True, slots=True)
class SeriesValues:
    labels: Labels
    ts: Int64Array
    values: Float64Array


def instant_vectors(storage: Storage, selector: Selector, times: Int64Array) -> list[SeriesValues]:
    """For each series, its value at each of `times` (5m lookback; stale markers end it)."""
    if len(times) == 0:
        return []
    start, end = int(times.min()) - LOOKBACK_MS + 1, int(times.max())
    series = storage.select_series(selector.matchers, start, end)
    rows = storage.read_samples([s.id for s in series], start, end)
    out = []
    for s in series:
        lo, hi = np.searchsorted(rows.series_ids, [s.id, s.id + 1])
        ts, values = rows.ts[lo:hi], rows.values[lo:hi]
        pos = np.searchsorted(ts, times, side="right") - 1
        ok = pos >= 0
        ok[ok] &= ts[pos[ok]] > times[ok] - LOOKBACK_MS
        ok[ok] &= ~is_stale(values[pos[ok]])
        if ok.any():
            out.append(SeriesValues(s.labels, times[ok], values[pos[ok]]))
    return out


def range_vectors(storage: Storage, selector: Selector, at_ms: int) -> list[SeriesValues]:
    """Raw samples in the left-open window (at - range, at], stale markers dropped."""
    assert selector.range_ms is not None
    start = at_ms - selector.range_ms + 1
    series = storage.select_series(selector.matchers, start, at_ms)
    rows = storage.read_samples([s.id for s in series], start, at_ms)
    out = []
    for s in series:
        lo, hi = np.searchsorted(rows.series_ids, [s.id, s.id + 1])
        ts, values = rows.ts[lo:hi], rows.values[lo:hi]
        keep = ~is_stale(values)
        if keep.any():
            out.append(SeriesValues(s.labels, ts[keep], values[keep]))
    return out
