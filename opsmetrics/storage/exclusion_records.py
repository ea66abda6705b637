"""Why an event aggregation left events out: the checks every backend tests, in one order.

An event is *in scope* of an `EventAggregate` when its name and time match; it is *excluded*
when it then fails one of the checks `exclusion_checks` lists, and it counts under the first
one it fails. The reasons are a property the aggregation needs that the event does not carry
(`missing_property`), one that is there but is not a number where a number is needed
(`wrong_type`), and a filter the event does not pass (`outside_filter`). The event's own value
is the field `value`, a property is `props.<name>`; an event without the key a reader joins on
(`EventAggregate.key`: `entity` or a property) counts as missing that field, before any other
check.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opsmetrics.storage.event_records import (
    EntityKey,
    EventAggregate,
    FilterOp,
    PropFilter,
    ValueFilter,
)

#: Filters an event without the property can never pass: missing it is a missing input.
_NEED_PROPERTY = (FilterOp.EQ, FilterOp.IN, FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)
_NUMERIC = (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)


class Reason(enum.Enum):
    MISSING_PROPERTY = "missing_property"
    WRONG_TYPE = "wrong_type"
    OUTSIDE_FILTER = "outside_filter"


class Test(enum.Enum):
    """What a check tests on an event (the backends compile each to a condition)."""

    MISSING = "missing"  # `prop` absent (prop None: the event has no value)
    NOT_A_NUMBER = "not_a_number"  # `prop` present but not read as a number
    FAILS_FILTER = "fails_filter"  # does not pass `rule`, a PropFilter
    FAILS_VALUE = "fails_value"  # the value read does not pass `rule`, a ValueFilter
    NO_KEY = "no_key"  # the `key` (the entity when `prop` is None) is missing or ""


@dataclass(frozen=True, slots=True)
class ExclusionCheck:
    reason: Reason
    field: str  # "value" or "props.<name>": what the message names
    test: Test
    prop: str | None = None
    rule: PropFilter | ValueFilter | None = None


@dataclass(frozen=True, slots=True)
class ExclusionBucket:
    """One bucket (as `event_aggregate` buckets them) of one breakdown group: the events in
    scope and, per check of `exclusion_checks(q)` in order, how many were left out by it."""

    start_ms: int
    group: dict[str, str]
    rows: int
    excluded: tuple[int, ...]


def exclusion_checks(q: EventAggregate) -> tuple[ExclusionCheck, ...]:
    """The checks an in-scope event of `q` is tested with, in order."""
    checks = [] if q.key is None else [_key_check(q.key)]
    checks += [c for f in q.where for c in _filter_checks(f)]
    if q.reads_value:
        checks += _value_checks(q)
    return tuple(checks)


def _key_check(key: EntityKey) -> ExclusionCheck:
    return ExclusionCheck(Reason.MISSING_PROPERTY, key.field, Test.NO_KEY, key.prop)


def _filter_checks(f: PropFilter) -> list[ExclusionCheck]:
    field = f"props.{f.prop}"
    checks = []
    if f.op in _NEED_PROPERTY:
        checks.append(ExclusionCheck(Reason.MISSING_PROPERTY, field, Test.MISSING, f.prop))
    if f.op in _NUMERIC:
        checks.append(ExclusionCheck(Reason.WRONG_TYPE, field, Test.NOT_A_NUMBER, f.prop))
    checks.append(ExclusionCheck(Reason.OUTSIDE_FILTER, field, Test.FAILS_FILTER, f.prop, f))
    return checks


def _value_checks(q: EventAggregate) -> list[ExclusionCheck]:
    prop = q.value_prop
    field = "value" if prop is None else f"props.{prop}"
    checks = [ExclusionCheck(Reason.MISSING_PROPERTY, field, Test.MISSING, prop)]
    if prop is not None:
        checks.append(ExclusionCheck(Reason.WRONG_TYPE, field, Test.NOT_A_NUMBER, prop))
    checks += [
        ExclusionCheck(Reason.OUTSIDE_FILTER, field, Test.FAILS_VALUE, prop, v)
        for v in q.value_where
    ]
    return checks


def fold_rows(q: EventAggregate, rows: Sequence[Sequence[Any]]) -> list[ExclusionBucket]:
    """Result rows (bucket start, group values…, check number (0: kept), events) of a backend's
    exclusion query, sorted by bucket and group, into buckets."""
    n = len(exclusion_checks(q))
    out: list[ExclusionBucket] = []
    for r in rows:
        start, group = int(r[0]), dict(zip(q.by, (str(g) for g in r[1:-2]), strict=True))
        why, count = int(r[-2]), int(r[-1])
        if not out or out[-1].start_ms != start or out[-1].group != group:
            out.append(ExclusionBucket(start, group, 0, (0,) * n))
        last = out[-1]
        excluded = list(last.excluded)
        if why:
            excluded[why - 1] += count
        out[-1] = ExclusionBucket(start, group, last.rows + count, tuple(excluded))
    return out
