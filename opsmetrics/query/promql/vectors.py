"""Helpers over instant vectors: dropping empty rows, merging rows that share a label set."""

from __future__ import annotations

import json
import re

import numpy as np

from opsmetrics.model import METRIC_NAME, Labels
from opsmetrics.query.promql.values import InstantVector, QueryExecutionError

_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def format_labels(labels: Labels) -> str:
    """Labels as Prometheus prints them in messages: {__name__="a", job="b"}."""
    parts = []
    for name, value in labels:
        shown = name if _LEGACY_NAME.match(name) else json.dumps(name)
        parts.append(f"{shown}={json.dumps(value, ensure_ascii=False)}")
    return "{" + ", ".join(parts) + "}"


def compact(vec: InstantVector) -> InstantVector:
    """Drop rows that have no value at any step."""
    keep = vec.present.any(axis=1)
    if keep.all():
        return vec
    idx = np.flatnonzero(keep)
    ts = None if vec.sample_ts is None else vec.sample_ts[idx]
    return InstantVector([vec.labels[i] for i in idx], vec.values[idx], vec.present[idx], ts)


def merge_same_labels(vec: InstantVector) -> InstantVector:
    """Join rows with equal labels; two of them with a value at one step is an error."""
    vec = compact(vec)
    first: dict[Labels, int] = {}
    dups: list[tuple[int, int]] = []
    for i, labels in enumerate(vec.labels):
        j = first.setdefault(labels, i)
        if j != i:
            dups.append((j, i))
    if not dups:
        return vec
    values, present = vec.values.copy(), vec.present.copy()
    ts = None if vec.sample_ts is None else vec.sample_ts.copy()
    for j, i in dups:
        if (present[j] & present[i]).any():
            raise QueryExecutionError("vector cannot contain metrics with the same labelset")
        take = present[i]
        values[j, take] = values[i, take]
        present[j] |= take
        if ts is not None:
            ts[j, take] = ts[i, take]
    keep = sorted(first.values())
    out_ts = None if ts is None else ts[keep]
    return InstantVector([vec.labels[i] for i in keep], values[keep], present[keep], out_ts)


def without_name(vec: InstantVector) -> InstantVector:
    """The same vector with `__name__` dropped from every row (then merged)."""
    labels = [tuple(p for p in ls if p[0] != METRIC_NAME) for ls in vec.labels]
    return merge_same_labels(InstantVector(labels, vec.values, vec.present))


def keep_labels(labels: Labels, names: frozenset[str]) -> Labels:
    return tuple(p for p in labels if p[0] in names)


def drop_labels(labels: Labels, names: frozenset[str]) -> Labels:
    return tuple(p for p in labels if p[0] not in names)
