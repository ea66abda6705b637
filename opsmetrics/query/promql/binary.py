"""Binary operators: arithmetic, comparisons and set operators, with vector matching."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import promql_parser as pp

from opsmetrics.model import METRIC_NAME, Float64Array, Int64Array, Labels
from opsmetrics.query.promql.values import (
    BoolArray,
    InstantVector,
    QueryError,
    QueryExecutionError,
    Scalar,
    Value,
)
from opsmetrics.query.promql.vectors import (
    drop_labels,
    format_labels,
    keep_labels,
    merge_same_labels,
    without_name,
)

ARITHMETIC: dict[str, np.ufunc] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,
    "^": np.power,
    "atan2": np.arctan2,
}
COMPARISON: dict[str, np.ufunc] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
SET_OPERATORS = frozenset({"and", "or", "unless"})
Signature = Callable[[Labels], Labels]
Cardinality = pp.VectorMatchCardinality


def binary(op: str, lhs: Value, rhs: Value, modifier: pp.BinModifier | None) -> Value:
    return_bool = bool(modifier is not None and modifier.return_bool)
    with np.errstate(all="ignore"):
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(_apply(op, lhs.values, rhs.values, return_bool)[0])
        if isinstance(lhs, InstantVector) and isinstance(rhs, Scalar):
            return vector_scalar(op, lhs, rhs.values[None, :], True, return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, InstantVector):
            return vector_scalar(op, rhs, lhs.values[None, :], False, return_bool)
        if isinstance(lhs, InstantVector) and isinstance(rhs, InstantVector):
            if op in SET_OPERATORS:
                return set_operation(op, lhs, rhs, signature_function(modifier))
            return vector_vector(op, lhs, rhs, modifier, return_bool)
    raise QueryError(f"binary operator {op!r} is not defined between these operand types")


def _apply(
    op: str, left: Float64Array, right: Float64Array, return_bool: bool
) -> tuple[Float64Array, BoolArray]:
    """Values and keep-mask of `left op right` (a comparison keeps the left value)."""
    if op in ARITHMETIC:
        values = ARITHMETIC[op](left, right)
        return values, np.ones(np.shape(values), dtype=bool)
    cond = COMPARISON[op](left, right)
    if return_bool:
        return cond.astype(np.float64), np.ones(np.shape(cond), dtype=bool)
    return np.broadcast_to(left, np.shape(cond)).astype(np.float64), cond


def vector_scalar(
    op: str, vec: InstantVector, scalar: Float64Array, vector_left: bool, return_bool: bool
) -> InstantVector:
    left, right = (vec.values, scalar) if vector_left else (scalar, vec.values)
    values, keep = _apply(op, left, right, return_bool)
    if op in COMPARISON and not return_bool:
        # The vector's own value is kept, on whichever side it stood.
        values = vec.values.copy()
    out = InstantVector(vec.labels, values, vec.present & keep)
    if op in ARITHMETIC or return_bool:
        return without_name(out)
    return merge_same_labels(out)


def signature_function(modifier: pp.BinModifier | None) -> Signature:
    """The labels two rows must share to match: `on (…)`, or all but `ignoring (…)` and name."""
    matching = None if modifier is None else modifier.matching
    if matching is None:
        return lambda labels: drop_labels(labels, frozenset({METRIC_NAME}))
    names = frozenset(matching.labels)
    if matching.type == pp.LabelModifierType.Include:
        return lambda labels: keep_labels(labels, names)
    return lambda labels: drop_labels(labels, names | {METRIC_NAME})


def _present_by_signature(vec: InstantVector, sig: Signature) -> dict[Labels, BoolArray]:
    out: dict[Labels, BoolArray] = {}
    for labels, present in zip(vec.labels, vec.present, strict=True):
        key = sig(labels)
        out[key] = out[key] | present if key in out else present
    return out


def set_operation(op: str, lhs: InstantVector, rhs: InstantVector, sig: Signature) -> InstantVector:
    steps = lhs.values.shape[1]
    none = np.zeros(steps, dtype=bool)
    if op == "or":
        left = _present_by_signature(lhs, sig)
        extra = _masks([left.get(sig(ls), none) for ls in rhs.labels], steps)
        return merge_same_labels(
            InstantVector(
                lhs.labels + rhs.labels,
                np.concatenate([lhs.values, rhs.values]),
                np.concatenate([lhs.present, rhs.present & ~extra]),
            )
        )
    right = _present_by_signature(rhs, sig)
    other = _masks([right.get(sig(ls), none) for ls in lhs.labels], steps)
    mask = other if op == "and" else ~other
    return merge_same_labels(InstantVector(lhs.labels, lhs.values, lhs.present & mask))


def _masks(rows: list[BoolArray], steps: int) -> BoolArray:
    return np.array(rows, dtype=bool).reshape(-1, steps)


def vector_vector(
    op: str,
    lhs: InstantVector,
    rhs: InstantVector,
    modifier: pp.BinModifier | None,
    return_bool: bool,
) -> InstantVector:
    card = Cardinality.OneToOne if modifier is None else modifier.card
    swapped = card == Cardinality.OneToMany
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    sig = signature_function(modifier)
    one_rows = _one_side_rows(one, sig, "left" if swapped else "right")
    pairs = [(i, r) for i, ls in enumerate(many.labels) for r in one_rows.get(sig(ls), ())]
    steps = lhs.values.shape[1]
    if not pairs:
        return InstantVector.empty(steps)
    li = np.array([p[0] for p in pairs])
    ri = np.array([p[1] for p in pairs])
    mv, ov = many.values[li], one.values[ri]
    values, keep = _apply(op, *((ov, mv) if swapped else (mv, ov)), return_bool)
    matched = many.present[li] & one.present[ri]
    present = matched & keep
    drop_name = op in ARITHMETIC or return_bool
    labels = [
        _result_labels(many.labels[i], one.labels[r], card, modifier, drop_name) for i, r in pairs
    ]
    # Prometheus checks for ambiguous matches before a comparison filters any away.
    _check_unique_matches(labels, [sig(many.labels[i]) for i in li], matched, card)
    return merge_same_labels(InstantVector(labels, values, present))


def _one_side_rows(one: InstantVector, sig: Signature, side: str) -> dict[Labels, list[int]]:
    """Rows of the "one" side by signature; two of them present at one step is an error."""
    rows: dict[Labels, list[int]] = {}
    for r, labels in enumerate(one.labels):
        rows.setdefault(sig(labels), []).append(r)
    for key, members in rows.items():
        if len(members) > 1 and (one.present[members].sum(axis=0) > 1).any():
            step = int(np.argmax(one.present[members].sum(axis=0) > 1))
            clash = sorted(one.labels[r] for r in members if one.present[r, step])[:2]
            group = format_labels(key)
            raise QueryExecutionError(
                f"found duplicate series for the match group {group} on the {side} hand-side "
                f"of the operation: [{format_labels(clash[0])}, {format_labels(clash[1])}];"
                "many-to-many matching not allowed: matching labels must be unique on one side"
            )
    return rows


def _is_on(modifier: pp.BinModifier | None) -> bool:
    matching = None if modifier is None else modifier.matching
    return matching is not None and matching.type == pp.LabelModifierType.Include


def _result_labels(
    many: Labels, one: Labels, card: Cardinality, modifier: pp.BinModifier | None, drop_name: bool
) -> Labels:
    out = dict(many)
    if drop_name:
        out.pop(METRIC_NAME, None)
    matching = None if modifier is None else modifier.matching
    if card == Cardinality.OneToOne and matching is not None:
        names = set(matching.labels)
        if _is_on(modifier):
            out = {k: v for k, v in out.items() if k in names}
        else:
            out = {k: v for k, v in out.items() if k not in names}
    if modifier is not None and card != Cardinality.OneToOne:
        one_map = dict(one)
        for name in modifier.group_labels or ():
            if one_map.get(name):
                out[name] = one_map[name]
            else:
                out.pop(name, None)
    return tuple(sorted(out.items()))


def _check_unique_matches(
    labels: list[Labels], sigs: list[Labels], present: BoolArray, card: Cardinality
) -> None:
    counts: dict[Labels | tuple[Labels, Labels], Int64Array] = {}
    for i, (ls, sg) in enumerate(zip(labels, sigs, strict=True)):
        key = sg if card == Cardinality.OneToOne else (sg, ls)
        counts[key] = counts[key] + present[i] if key in counts else present[i].astype(np.int64)
    if not any((c > 1).any() for c in counts.values()):
        return
    if card == Cardinality.OneToOne:
        raise QueryExecutionError(
            "multiple matches for labels: many-to-one matching must be explicit "
            "(group_left/group_right)"
        )
    raise QueryExecutionError(
        "multiple matches for labels: grouping labels must ensure unique matches"
    )
