"""How rules evaluate PromQL: the engine's `evaluate_instant`, reduced to (labels, value) rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from opsmetrics.errors import BadDataError
from opsmetrics.model import Labels
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
