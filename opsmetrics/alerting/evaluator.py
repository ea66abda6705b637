"""How rules read and write: the engine's `evaluate_instant` reduced to (labels, value) rows, and
rows written back at one timestamp with stale markers for the series that went away."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import STALE_NAN, Labels, SampleBatchBuilder
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.query.promql.values import InstantVector, Scalar, Value
from opsmetrics.storage.base import Storage

#: evaluate_instant(storage, expr, at_ms), the PromQL engine's entry point.
Evaluator = Callable[[Storage, str, int], Value]


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
