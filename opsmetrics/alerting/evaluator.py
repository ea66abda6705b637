"""How rules read and write: the engine's `evaluate_instant` reduced to (labels, value) rows, and
rows written back at one timestamp with stale markers for the series that went away.

A group evaluation collects its rules' rows in one `GroupBatch` and writes them in one ingestor
request at the end. A rule that may read what an earlier rule of the group produced (one of its
selectors matches a row not yet written) has the batch written first, and the group's shared
reads forgotten, so it sees that output as it would have with a write per rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import promql_parser as pp

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import STALE_NAN, Labels, Matcher, SampleBatchBuilder
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.query.promql.nodes import aggregate_param, call_args, matcher_groups, parse_expr
from opsmetrics.query.promql.reads import SeriesReader, SharedReads
from opsmetrics.query.promql.values import InstantVector, QueryError, Scalar, Value

#: evaluate_instant(reader, expr, at_ms), the PromQL engine's entry point.
Evaluator = Callable[[SeriesReader, str, int], Value]
#: Every matcher group of every selector of an expression; None when it cannot be parsed.
Selectors = list[list[Matcher]] | None


def default_evaluator() -> Evaluator:
    return evaluate_instant


def vector_rows(value: Value) -> list[tuple[Labels, float]]:
    """An instant result as rows; a scalar is one row with no labels (as Prometheus)."""
    if isinstance(value, Scalar):
        return [((), float(value.values[0]))]
    if not isinstance(value, InstantVector):
        raise BadDataError("rule result is not a vector or scalar")
    if not len(value):
        return []
    rows = np.flatnonzero(value.present[:, 0]).tolist()
    return [(value.labels[i], float(value.values[i, 0])) for i in rows]


def write_rows(
    ingestor: Ingestor,
    source: str,
    rows: Mapping[Labels, float],
    at_ms: int,
    previous: set[Labels],
) -> set[Labels]:
    """Write `rows` at `at_ms` and a stale marker for each of `previous` that is not among
    them; returns the series written (the next call's `previous`)."""
    builder = SampleBatchBuilder()
    for labels, value in rows.items():
        builder.add(labels, at_ms, value)
    for labels in previous - rows.keys():
        builder.add(labels, at_ms, STALE_NAN)
    if len(builder):
        request = WriteRequest(source, samples=DecodedSamples(builder.build()))
        ingestor.submit(request).result()
    return set(rows)


class GroupBatch:
    """The rows of one group evaluation, written in one request by `flush`."""

    def __init__(self, ingestor: Ingestor, source: str, reads: SharedReads) -> None:
        self._ingestor = ingestor
        self._source = source
        self._reads = reads
        self._builder = SampleBatchBuilder()
        self._pending: list[Labels] = []
        self.requests = 0

    def add(self, rows: Mapping[Labels, float], at_ms: int, previous: set[Labels]) -> set[Labels]:
        """Queue `rows` and stale markers as `write_rows` writes them; returns the series."""
        for labels, value in rows.items():
            self._builder.add(labels, at_ms, value)
            self._pending.append(labels)
        for labels in previous - rows.keys():
            self._builder.add(labels, at_ms, STALE_NAN)
            self._pending.append(labels)
        return set(rows)

    def before_reading(self, selectors: Selectors) -> None:
        """Write what is queued if a rule with these selectors could read any of it."""
        if self._pending and _may_read(selectors, self._pending):
            self.flush()

    def flush(self) -> None:
        if not len(self._builder):
            return
        batch, self._builder, self._pending = self._builder.build(), SampleBatchBuilder(), []
        self._ingestor.submit(WriteRequest(self._source, samples=DecodedSamples(batch))).result()
        self.requests += 1
        self._reads.forget()


def _may_read(selectors: Selectors, pending: list[Labels]) -> bool:
    if selectors is None:
        return True
    return any(
        all(m.matches_labels(labels) for m in group) for group in selectors for labels in pending
    )


def expr_selectors(expr: str) -> Selectors:
    """The matcher groups of every selector in `expr` (None if it does not parse)."""
    try:
        node = parse_expr(expr)
    except QueryError:
        return None
    return [group for selector in _selectors(node) for group in matcher_groups(selector)]


def _selectors(node: pp.Expr) -> Iterator[pp.VectorSelector]:
    match node:
        case pp.VectorSelector():
            yield node
        case pp.MatrixSelector():
            yield node.vector_selector
        case pp.ParenExpr() | pp.UnaryExpr() | pp.SubqueryExpr():
            yield from _selectors(node.expr)
        case pp.BinaryExpr():
            yield from _selectors(node.lhs)
            yield from _selectors(node.rhs)
        case pp.AggregateExpr():
            param = aggregate_param(node)
            yield from _selectors(node.expr)
            if param is not None:
                yield from _selectors(param)
        case pp.Call():
            for arg in call_args(node):
                yield from _selectors(arg)
