"""A SQL source's batch converted column by column (ingest/sql_columns.py) is exactly what the
row-by-row reference (ingest/sql_rows.py) makes of it: the same events (timestamps to the
millisecond, ids to the character), and for a value a field refuses the same error, naming
the first bad row. Also the props text of the events insert (storage/duckdb/events.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from opsmetrics.catalog.sources import EventsEmit
from opsmetrics.ingest.sql_columns import IdTemplate, event_converter, ordered_cursor
from opsmetrics.ingest.sql_rows import Columns, Row, replace_fields, row_event_converter
from opsmetrics.storage.duckdb.events import _props_json, _props_texts
from opsmetrics.storage.external import SourceQueryError

NAMES = ["id", "customer", "amount", "currency", "status", "updated_at"]
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/Paris")]

texts = st.text(alphabet="ab{}%-_é 0", max_size=6)
aware = st.datetimes(timezones=st.sampled_from(ZONES))
scalars = (
    st.none() | texts | st.integers(-(2**70), 2**70) | st.floats() | st.booleans()
    | st.datetimes() | aware | st.dates() | st.decimals(allow_nan=False, places=2)
    | st.binary(max_size=2)
)  # fmt: skip
#: Most columns hold one type, as a driver returns them; some a mix, to take the slow path.
column_kinds = st.sampled_from(
    [texts, st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.datetimes(), aware]
)


@st.composite
def batches(draw: st.DrawFn) -> list[Row]:
    size = draw(st.integers(0, 12))
    columns = [
        draw(st.lists(draw(column_kinds) | scalars, min_size=size, max_size=size))
        if draw(st.booleans())
        else draw(st.lists(draw(column_kinds), min_size=size, max_size=size))
        for _ in NAMES
    ]
    return list(zip(*columns, strict=True)) if size else []


def source_columns() -> Columns:
    return Columns(NAMES)


def outcome(convert: object, rows: list[Row]) -> object:
    try:
        return repr(convert(rows, 7))  # type: ignore[operator]  # repr: NaN equals NaN
    except SourceQueryError as exc:
        return exc.message
    except (ValueError, OverflowError) as exc:
        return (type(exc), str(exc))


EMITS = [
    EventsEmit(
        name="order", id="order-{id}-{status}", entity="customer", ts="updated_at",
        value="amount", props=["currency", "status"],
    ),
    EventsEmit(name="order", id="{status}{id}{{currency}}%s{id}", ts="amount", props=["id"]),
    EventsEmit(name="bare", ts="updated_at"),
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(rows=batches(), emit=st.sampled_from(EMITS))
def test_columns_convert_as_rows_do(rows: list[Row], emit: EventsEmit) -> None:
    columns = source_columns()
    assert outcome(event_converter(emit, columns), rows) == outcome(
        row_event_converter(emit, columns), rows
    )


def test_a_bad_value_is_named_by_its_first_row_whatever_the_column() -> None:
    """Row 1's amount is wrong and row 0's timestamp later on: row order decides, as before."""
    when = datetime(2026, 12, 6, tzinfo=UTC)
    rows: list[Row] = [
        (1, "c1", 100, "EUR", "paid", "yesterday"),
        (2, "c2", "twelve", "EUR", "paid", when),
    ]
    emit = EMITS[0]
    message = outcome(event_converter(emit, source_columns()), rows)
    assert message == outcome(row_event_converter(emit, source_columns()), rows)
    assert str(message).startswith("column 'updated_at': expected a timestamp, got str")
    assert "(row 7 of the batch)" in str(message)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(texts, texts, texts), max_size=6))
def test_ids_are_the_templates_replaced_in_turn(rows: list[tuple[str, str, str]]) -> None:
    """A text holding "{b}" is replaced again when b comes later: ids stay what they were."""
    template = IdTemplate("x{a}-{b}{{c}}%d{a}")
    assert template.columns == ["a", "b", "c"]
    by_column = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], []]
    expected = [replace_fields(template.template, zip("abc", r, strict=True)) for r in rows]
    assert template.fill(by_column) == expected


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(aware | st.integers(), min_size=1, max_size=6),
    previous=st.none() | aware | st.integers(),
)
def test_an_ordered_cursor_is_trusted_only_when_it_is(
    values: list[datetime | int], previous: datetime | int | None
) -> None:
    for kind in (datetime, int):
        last = ordered_cursor(values, previous, kind)
        if last is None:
            continue
        assert all(type(v) is kind for v in values) and last == values[-1]
        chain = values if previous is None else [previous, *values]
        assert chain == sorted(chain)  # type: ignore[type-var]
    ids = sorted(v for v in values if type(v) is int)
    assert ordered_cursor(ids, None, int) == (ids[-1] if ids else None)


props_values = (
    st.none() | st.text(max_size=4) | st.integers(-(2**70), 2**70) | st.booleans() | st.floats()
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=3), props_values, max_size=4), max_size=5))
def test_props_text_is_what_json_dumps_writes(props: list[dict[str, object]]) -> None:
    assert _props_texts(props) == [_props_json(p) for p in props]


def test_dates_and_decimals_still_convert_through_the_row_functions() -> None:
    rows: list[Row] = [
        (Decimal("1.50"), "c", Decimal(3), "EUR", date(2026, 1, 2), date(2026, 1, 2))
    ]
    emit = EventsEmit(name="e", id="{id}", ts="updated_at", value="amount", props=["status"])
    (event,) = event_converter(emit, source_columns())(rows, 0)
    assert (event.ts, event.value, event.id) == (1_767_312_000_000, 3.0, "1.50")
    assert event.props == {"status": "2026-01-02"}
