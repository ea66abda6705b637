"""Rows of a SQL source (storage/external) into events or samples, every column's type checked:
a wrong type is an error naming the column, the row and the type expected."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from opsmetrics.catalog.sources import EventsEmit, SamplesEmit, template_columns
from opsmetrics.model import METRIC_NAME, Event, SampleBatchBuilder, Scalar, make_labels
from opsmetrics.storage.external import SourceQueryError

Row = tuple[object, ...]


def _type_error(column: str, expected: str, value: object, row: int) -> SourceQueryError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return SourceQueryError(
        f"column {column!r}: expected {expected}, got {type(value).__name__} {shown} (row "
        f"{row} of the batch); cast it in the query (e.g. CAST({column} AS ...))",
        reason="source_type",
    )


def as_datetime(value: object, column: str, row: int) -> datetime:
    """A timestamp: datetime (naive is UTC), date, or ISO text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _type_error(column, "a timestamp", value, row) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise _type_error(column, "a timestamp", value, row)


def as_ts_ms(value: object, column: str, row: int) -> int:
    """Milliseconds: from a timestamp, or a number of Unix seconds."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return round(float(value) * 1000)
    return round(as_datetime(value, column, row).timestamp() * 1000)


def as_number(value: object, column: str, row: int) -> float:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    raise _type_error(column, "a number", value, row)


def as_int(value: object, column: str, row: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise _type_error(column, "an integer", value, row)


def as_prop(value: object, column: str, row: int) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise _type_error(column, "text, a number, a boolean or a timestamp", value, row)


def as_text(value: object, column: str, row: int) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float | bool | datetime | date):
        return str(value)
    raise _type_error(column, "text or a number", value, row)


class Columns:
    """The position of each column the source's emit reads, checked once per result."""

    def __init__(self, returned: Sequence[str]) -> None:
        self.returned = list(returned)
        self._at = {name: i for i, name in enumerate(returned)}

    def index(self, column: str, field: str) -> int:
        at = self._at.get(column)
        if at is None:
            raise SourceQueryError(
                f"{field}: the query returns no column {column!r} (it returns "
                f"{', '.join(self.returned) or 'no columns'}); select it or fix the name",
                reason="source_column",
            )
        return at


def row_event_converter(
    emit: EventsEmit, columns: Columns
) -> Callable[[Sequence[Row], int], list[Event]]:
    """A function turning rows into events one row at a time (the reference that
    ingest/sql_columns.py matches, and whose errors name the first bad row)."""
    ts_at = columns.index(emit.ts, "emit.events.ts")
    entity_at = None if emit.entity is None else columns.index(emit.entity, "emit.events.entity")
    value_at = None if emit.value is None else columns.index(emit.value, "emit.events.value")
    props = [(c, columns.index(c, "emit.events.props")) for c in emit.props]
    id_fields = [(c, columns.index(c, "emit.events.id")) for c in id_columns(emit)]

    def convert(rows: Sequence[Row], first: int) -> list[Event]:
        out = []
        for n, row in enumerate(rows, first):
            value = row[value_at] if value_at is not None else None
            out.append(
                Event(
                    name=emit.name,
                    ts=as_ts_ms(row[ts_at], emit.ts, n),
                    entity=""
                    if entity_at is None
                    else as_text(row[entity_at], str(emit.entity), n),
                    value=None if value is None else as_number(value, str(emit.value), n),
                    props={c: as_prop(row[i], c, n) for c, i in props},
                    id=None if emit.id is None else _event_id(emit.id, id_fields, row, n),
                )
            )
        return out

    return convert


def id_columns(emit: EventsEmit) -> list[str]:
    """The id template's columns, each once, in the order they are replaced."""
    return list(dict.fromkeys(template_columns(emit.id))) if emit.id else []


def replace_fields(template: str, texts: Iterable[tuple[str, str]]) -> str:
    """The template with each `{column}` replaced by its text in turn (so a text holding a
    later column's `{column}` is replaced again: ids have always been built this way)."""
    out = template
    for column, text in texts:
        out = out.replace("{" + column + "}", text)
    return out


def _event_id(template: str, fields: list[tuple[str, int]], row: Row, n: int) -> str:
    return replace_fields(template, ((c, as_text(row[at], c, n)) for c, at in fields))


def sample_converter(
    emit: SamplesEmit, columns: Columns
) -> Callable[[Sequence[Row], int, int, SampleBatchBuilder], int]:
    """A function adding rows' samples to a builder (stamped `now_ms` without a ts column)."""
    values = emit.value_columns()
    several = len(values) > 1
    names = [(f"{emit.metric}_{c}" if several else emit.metric) for c in values]
    value_at = [columns.index(c, "emit.samples.value") for c in values]
    label_at = [(c, columns.index(c, "emit.samples.labels")) for c in emit.labels]
    ts_at = None if emit.ts is None else columns.index(emit.ts, "emit.samples.ts")

    def add(rows: Sequence[Row], first: int, now_ms: int, out: SampleBatchBuilder) -> int:
        added = 0
        for n, row in enumerate(rows, first):
            ts = now_ms if ts_at is None else as_ts_ms(row[ts_at], str(emit.ts), n)
            labels = {c: as_text(row[i], c, n) for c, i in label_at}
            for name, at, column in zip(names, value_at, values, strict=True):
                if row[at] is None:
                    continue
                value = as_number(row[at], column, n)
                out.add(make_labels({**labels, METRIC_NAME: name}), ts, value)
                added += 1
        return added

    return add
