"""A batch of a SQL source's rows converted column by column (ingest/sql_rows.py converts row
by row): each column's values are checked by their types once per batch, and a column of the
plain types a driver returns (str, int, float, datetime, None) passes without a call per value.

Every result is the one the row-by-row functions give, to the bit: the same timestamps
(float seconds rounded as `as_ts_ms` rounds them), the same ids. A value of another type goes
through the row-by-row function of its field; a value that one refuses raises here too, and the
caller converts the batch again row by row, so that the error names the first bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import TypeVar

import numpy as np

from opsmetrics.catalog.sources import EventsEmit, template_columns
from opsmetrics.ingest.sql_rows import (
    Columns,
    Row,
    as_number,
    as_prop,
    as_text,
    as_ts_ms,
    replace_fields,
    row_event_converter,
)
from opsmetrics.model import Event, Scalar
from opsmetrics.storage.external import SourceQueryError

T = TypeVar("T")
Values = Sequence[object]
NAIVE_EPOCH = datetime(1970, 1, 1)
SECOND = timedelta(seconds=1)
#: Milliseconds that an int64 holds with room to spare.
LIMIT = 2.0**62
PROP_TYPES = frozenset({str, int, float, bool, type(None)})
NUMBER_TYPES = frozenset({int, float})


def _each(
    convert: Callable[[object, str, int], T], values: Values, column: str, first: int
) -> list[T]:
    return [convert(v, column, n) for n, v in enumerate(values, first)]


def ts_ms_column(values: Values, column: str, first: int) -> list[int]:
    """`as_ts_ms` of every value: datetimes and Unix seconds at once, anything else one by one."""
    kinds = set(map(type, values))
    out = None
    if kinds == {datetime}:
        out = _datetimes_ms(values)
    elif kinds <= NUMBER_TYPES:
        out = _seconds_ms(values)
    return _each(as_ts_ms, values, column, first) if out is None else out


def _datetimes_ms(values: Values) -> list[int] | None:
    """From each value's float seconds, as `as_ts_ms` computes them: `timestamp()` of an aware
    datetime, the seconds since the epoch of a naive one (UTC); a mix is left to `as_ts_ms`."""
    zones = {v.tzinfo for v in values}  # type: ignore[attr-defined]
    if None not in zones:
        return _ms(list(map(datetime.timestamp, values)))  # type: ignore[arg-type]
    if len(zones) == 1:  # timedelta / timedelta divides as timestamp() does
        return _ms([(v - NAIVE_EPOCH) / SECOND for v in values])  # type: ignore[operator]
    return None


def _seconds_ms(values: Values) -> list[int] | None:
    return _ms(list(map(float, values)))  # type: ignore[arg-type]


def _ms(seconds: list[float]) -> list[int] | None:
    """round(s * 1000) of each (numpy rounds half to even, as round() does); None for a NaN,
    an infinity or a number past int64, left to `as_ts_ms` to say what happens to it."""
    with np.errstate(over="ignore", invalid="ignore"):  # an infinity is checked right below
        ms = np.round(np.array(seconds, dtype=np.float64) * 1000.0)
    if len(ms) and not (np.isfinite(ms).all() and np.abs(ms).max() < LIMIT):
        return None
    return list(ms.astype(np.int64).tolist())


def text_column(values: Values, column: str, first: int) -> list[str]:
    """`as_text` of every value."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return list(values)  # type: ignore[arg-type]
    if kinds == {int}:
        return list(map(str, values))
    return _each(as_text, values, column, first)


def number_column(values: Values, column: str, first: int) -> list[float | None]:
    """None for a NULL, else `as_number` of the value."""
    kinds = set(map(type, values))
    if kinds <= NUMBER_TYPES:
        return list(map(float, values))  # type: ignore[arg-type]
    if kinds <= NUMBER_TYPES | {type(None)}:
        return [None if v is None else float(v) for v in values]  # type: ignore[arg-type]
    return [None if v is None else as_number(v, column, n) for n, v in enumerate(values, first)]


def prop_column(values: Values, column: str, first: int) -> list[Scalar]:
    """`as_prop` of every value."""
    if set(map(type, values)) <= PROP_TYPES:
        return list(values)  # type: ignore[arg-type]
    return _each(as_prop, values, column, first)


class IdTemplate:
    """An event id template such as "order-{id}-{status}", filled for a whole batch."""

    def __init__(self, template: str) -> None:
        self.template = template
        fields = template_columns(template)
        #: Each column once, in the order the row-by-row `_event_id` replaces them.
        self.columns = list(dict.fromkeys(fields))
        self._order = [self.columns.index(f) for f in fields]
        literals, at = [], 0
        for field in fields:  # findall's matches, left to right: the same places as index()
            start = template.index("{" + field + "}", at)
            literals.append(template[at:start])
            at = start + len(field) + 2
        literals.append(template[at:])
        self._format = "%s".join(p.replace("%", "%%") for p in literals)

    def fill(self, texts: Sequence[list[str]]) -> list[str]:
        """The ids, given each column's texts (`as_text`) in the order of `columns`."""
        if len(self.columns) > 1 and any("{" in s or "}" in s for s in map("".join, texts)):
            return [self._replace(row) for row in zip(*texts, strict=True)]
        ordered = [texts[i] for i in self._order]
        return [self._format % row for row in zip(*ordered, strict=True)]

    def _replace(self, row: tuple[str, ...]) -> str:
        return replace_fields(self.template, zip(self.columns, row, strict=True))


def event_converter(
    emit: EventsEmit, columns: Columns
) -> Callable[[Sequence[Row], int], list[Event]]:
    """A function turning a batch of rows into events column by column; a batch holding a
    value its field refuses is converted again row by row, to raise the error of its first
    bad row (the column, the row and the type expected)."""
    by_rows = row_event_converter(emit, columns)  # first: it names a missing column
    by_columns = _EventColumns(emit, columns)

    def convert(rows: Sequence[Row], first: int) -> list[Event]:
        try:
            return by_columns.convert(rows, first)
        except (SourceQueryError, ValueError, OverflowError):
            return by_rows(rows, first)

    return convert


def _at(columns: Columns, column: str | None, field: str) -> tuple[int, str] | None:
    return None if column is None else (columns.index(column, field), column)


class _EventColumns:
    """Where each field of the events is in the rows, looked up once per result."""

    def __init__(self, emit: EventsEmit, columns: Columns) -> None:
        self._name = emit.name
        self._ts = (columns.index(emit.ts, "emit.events.ts"), emit.ts)
        self._entity = _at(columns, emit.entity, "emit.events.entity")
        self._value = _at(columns, emit.value, "emit.events.value")
        self._props = [(columns.index(c, "emit.events.props"), c) for c in emit.props]
        self._id = None if emit.id is None else IdTemplate(emit.id)
        id_columns = self._id.columns if self._id is not None else []
        self._id_at = [(columns.index(c, "emit.events.id"), c) for c in id_columns]
        fields = [self._ts, self._entity, self._value, *self._props, *self._id_at]
        self._read = sorted({f[0] for f in fields if f is not None})

    def convert(self, rows: Sequence[Row], first: int) -> list[Event]:
        if not rows:
            return []
        # One list per column read: zip(*rows) would make an iterator per row, 10,000 objects
        # more per batch for the garbage collector, whose full passes were a tenth of a run.
        cols = {at: list(map(itemgetter(at), rows)) for at in self._read}
        n = len(rows)
        ts = ts_ms_column(cols[self._ts[0]], self._ts[1], first)
        entity: Iterable[str] = repeat("", n)
        if self._entity is not None:
            entity = text_column(cols[self._entity[0]], self._entity[1], first)
        value: Iterable[float | None] = repeat(None, n)
        if self._value is not None:
            value = number_column(cols[self._value[0]], self._value[1], first)
        ids: Iterable[str | None] = repeat(None, n)
        if self._id is not None:
            ids = self._id.fill([text_column(cols[at], c, first) for at, c in self._id_at])
        props = self._props_of(cols, n, first)
        return list(map(Event, repeat(self._name, n), ts, entity, value, props, ids))

    def _props_of(
        self, cols: dict[int, list[object]], n: int, first: int
    ) -> list[dict[str, Scalar]]:
        if not self._props:
            return [{} for _ in range(n)]
        names = [c for _, c in self._props]
        values = [prop_column(cols[at], c, first) for at, c in self._props]
        # Key by key, the first column's dicts filled from the others: dict(zip()) per row
        # costs five times more (the same keys in the same order as {c: ... for c}).
        props = [{names[0]: v} for v in values[0]]
        for name, column in zip(names[1:], values[1:], strict=True):
            for one, v in zip(props, column, strict=True):
                one[name] = v
        return props


def ordered_cursor(
    values: Values, previous: datetime | int | None, kind: type[datetime] | type[int]
) -> datetime | int | None:
    """The last value, when every one is a cursor of `kind` already (an aware datetime, or an
    int) and none goes back; None leaves the batch to the row-by-row check and its error."""
    if set(map(type, values)) != {kind} or (previous is not None and type(previous) is not kind):
        return None
    if kind is datetime and None in {v.tzinfo for v in values}:  # type: ignore[attr-defined]
        return None
    chain = list(values) if previous is None else [previous, *values]
    if any(b < a for a, b in zip(chain, chain[1:], strict=False)):  # type: ignore[operator]
        return None
    return values[-1]  # type: ignore[return-value]
