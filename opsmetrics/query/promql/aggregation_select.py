"""Aggregations that pick input series (topk, bottomk, limitk, limit_ratio) and count_values."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import promql_parser as pp

from opsmetrics.model import Float64Array, Int64Array, Labels
from opsmetrics.query.promql.aggregation import group_key_function, group_rows
from opsmetrics.query.promql.values import BoolArray, InstantVector, QueryError

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def k_param(param: Float64Array, n_rows: int) -> Int64Array:
    """The per-step count of topk/bottomk/limitk, truncated toward zero as Go converts it."""
    if np.isnan(param).any():
        raise QueryError("Parameter value is NaN")
    k: Int64Array = np.trunc(np.clip(param, -1, n_rows)).astype(np.int64)
    return k


def _rank_rows(v: Float64Array, p: BoolArray, descending: bool) -> Int64Array:
    """Each row's rank per step: present before absent, numbers before NaN, then by value."""
    nan = np.isnan(v)
    key = np.where(nan, 0.0, -v if descending else v)
    order = np.lexsort((key, nan, ~p), axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(v.shape[0])[:, None], axis=0)
    return rank


def _pick(
    vec: InstantVector, modifier: pp.AggModifier | None, chosen: BoolArray, rank: Int64Array
) -> InstantVector:
    """Keep the chosen (row, step) cells, rows of one group ordered by rank on the first step."""
    rows = np.flatnonzero(chosen.any(axis=1))
    if vec.values.shape[1] == 1 and len(rows):
        key = group_key_function(modifier)
        first: dict[Labels, int] = {}
        group_of = [first.setdefault(key(vec.labels[i]), len(first)) for i in rows]
        rows = rows[np.lexsort((rank[rows, 0], group_of))]
    return InstantVector(
        [vec.labels[i] for i in rows],
        np.where(chosen[rows], vec.values[rows], np.nan),
        chosen[rows],
    )


def topk(
    vec: InstantVector, param: Float64Array, modifier: pp.AggModifier | None, top: bool
) -> InstantVector:
    k = k_param(param, len(vec))
    chosen = np.zeros_like(vec.present)
    rank = np.zeros(vec.present.shape, dtype=np.int64)
    for rows in group_rows(vec, modifier).values():
        idx = np.array(rows)
        r = _rank_rows(vec.values[idx], vec.present[idx], top)
        rank[idx] = r
        chosen[idx] = vec.present[idx] & (r < k[None, :])
    return _pick(vec, modifier, chosen, rank)


def limitk(
    vec: InstantVector, param: Float64Array, modifier: pp.AggModifier | None
) -> InstantVector:
    k = k_param(param, len(vec))
    chosen = np.zeros_like(vec.present)
    for rows in group_rows(vec, modifier).values():
        idx = np.array(rows)
        p = vec.present[idx]
        chosen[idx] = p & (np.cumsum(p, axis=0) <= k[None, :])
    return _pick(vec, modifier, chosen, np.zeros(vec.present.shape, dtype=np.int64))


def _label_offset(labels: Labels) -> float:
    """A stable pseudo-random number in [0, 1) per label set."""
    text = "\xff".join(f"{n}\xff{v}" for n, v in labels).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(2**64)


def limit_ratio(vec: InstantVector, param: Float64Array) -> InstantVector:
    if np.isnan(param).any():
        raise QueryError("Ratio value is NaN")
    ratio = np.clip(param, -1.0, 1.0)
    offsets = np.array([_label_offset(ls) for ls in vec.labels])[:, None]
    keep = np.where(ratio >= 0, offsets < ratio, offsets >= 1.0 + ratio)
    chosen = vec.present & keep
    return _pick(vec, None, chosen, np.zeros(vec.present.shape, dtype=np.int64))


def format_value(f: float) -> str:
    """A float as Go's strconv.FormatFloat(f, 'f', -1, 64) writes it."""
    if np.isnan(f):
        return "NaN"
    if np.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return np.format_float_positional(f, trim="-")


def count_values(vec: InstantVector, label: str, modifier: pp.AggModifier | None) -> InstantVector:
    if not _LABEL_NAME.match(label):
        raise QueryError(f"invalid label name {label!r}")
    key = group_key_function(modifier)
    out: dict[Labels, Float64Array] = {}
    for rows in group_rows(vec, modifier).values():
        idx = np.array(rows)
        v, p = vec.values[idx], vec.present[idx]
        base = dict(key(vec.labels[idx[0]]))
        for text, hits in _value_hits(v, p).items():
            labels = tuple(sorted({**base, label: text}.items()))
            counts = hits.sum(axis=0).astype(np.float64)
            out[labels] = out[labels] + counts if labels in out else counts
    steps = vec.values.shape[1]
    if not out:
        return InstantVector.empty(steps)
    counts = np.stack(list(out.values()))
    return InstantVector(list(out), counts, counts > 0)


def _value_hits(v: Float64Array, p: BoolArray) -> dict[str, BoolArray]:
    """For each distinct value's text, where in the group it occurs."""
    hits: dict[str, BoolArray] = {}
    nan = np.isnan(v) & p
    if nan.any():
        hits["NaN"] = nan
    for u in np.unique(v[p & ~np.isnan(v)]):
        hits[format_value(float(u))] = p & (v == u)
    return hits
