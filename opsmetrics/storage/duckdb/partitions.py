"""Sample partitions: closed time ranges rewritten sorted by (series, ts), one table each.

A partition table stores `sts = series_id * partition_ms + (ts - start_ms)` instead of `ts`:
sorted by (series, ts), sts is one rising sequence with a steady step even across series
boundaries, which DuckDB's delta bit-packing stores in almost nothing (plain ts jumps back at
every series change and costs ~2 bytes/sample). The `samples_all` view decodes it. Tables
written before this layout (with a `ts` column) are still read as they are.

Readers always go through the `samples_all` view, which each change below replaces in the same
transaction, so a query sees either the old layout or the new one, never a mix. Every step is
one transaction, so a crash leaves either the old partition or the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import duckdb

from opsmetrics.storage.duckdb.sql import first_row, scalar

COLUMNS = "series_id, ts, value, nan_bits"


def table_name(start_ms: int) -> str:
    # start_ms is an integer we computed, never user input.
    return f'"samples_p{int(start_ms)}"'


def decoded(start_ms: int, end_ms: int, table: str, encoded: bool = True) -> str:
    """SELECT of COLUMNS from a partition table (all values are integers we computed)."""
    if not encoded:
        return f"SELECT {COLUMNS} FROM {table}"
    span, start = int(end_ms) - int(start_ms), int(start_ms)
    return (
        f"SELECT series_id, sts - CAST(series_id AS BIGINT) * {span} + {start} AS ts, "
        f"value, nan_bits FROM {table}"
    )


def encoded_select(start_ms: int, end_ms: int, source: str) -> str:
    """SELECT of the stored partition columns from a query yielding COLUMNS, sorted."""
    span, start = int(end_ms) - int(start_ms), int(start_ms)
    return (
        f"SELECT series_id, CAST(series_id AS BIGINT) * {span} + (ts - {start}) AS sts, "
        f"value, nan_bits FROM ({source}) ORDER BY sts"
    )


def _plain_tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    """Partition tables written in the older layout, with a plain `ts` column."""
    rows = cur.execute(
        "SELECT table_name FROM duckdb_columns() WHERE column_name = 'ts' "
        "AND table_name LIKE 'samples_p%' AND database_name = current_database()"
    ).fetchall()
    return {str(r[0]) for r in rows}


def replace_view(cur: duckdb.DuckDBPyConnection) -> None:
    spans = cur.execute("SELECT start_ms, end_ms FROM partitions ORDER BY start_ms").fetchall()
    plain = _plain_tables(cur)
    selects = [f"SELECT {COLUMNS} FROM samples_head"]
    selects += [
        decoded(s, e, table_name(s), table_name(s).strip('"') not in plain) for s, e in spans
    ]
    cur.execute("CREATE OR REPLACE VIEW samples_all AS " + " UNION ALL ".join(selects))


def overlapping(
    cur: duckdb.DuckDBPyConnection, start_ms: int, end_ms: int
) -> tuple[tuple[int, int, int, int], ...]:
    """Rows (start, end, row_count, compacted) of the partitions that overlap [start, end]."""
    rows = cur.execute(
        "SELECT start_ms, end_ms, row_count, compacted_ms FROM partitions "
        "WHERE end_ms > ? AND start_ms <= ? ORDER BY start_ms",
        [start_ms, end_ms],
    ).fetchall()
    return tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in rows)


def plain_tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    return _plain_tables(cur)


def range_source(
    cur: duckdb.DuckDBPyConnection,
    min_sid: int,
    max_sid: int,
    start_ms: int,
    end_ms: int,
    *,
    spans: Sequence[tuple[int, ...]] | None = None,
    plain: AbstractSet[str] | None = None,
    head: bool = True,
) -> str:
    """A SELECT of COLUMNS over only the partitions that overlap [start, end].

    Inside a partition rows are sorted by sts, so bounding sts by the wanted series ids lets
    DuckDB skip whole row groups by their min/max. Everything interpolated is an integer.
    `spans` (from `overlapping`) and `plain` (from `plain_tables`) save their queries when the
    caller has them; `head=False` leaves out the head when it holds nothing in the range.
    """
    if spans is None:
        spans = overlapping(cur, start_ms, end_ms)
    if plain is None:
        plain = _plain_tables(cur)
    selects = []
    if head:
        selects.append(
            f"SELECT {COLUMNS} FROM samples_head "
            f"WHERE ts >= {int(start_ms)} AND ts <= {int(end_ms)}"
        )
    for s, e, *_ in spans:
        selects.append(_partition_select(int(s), int(e), plain, min_sid, max_sid, start_ms, end_ms))
    if not selects:  # nothing can hold rows in the range: an empty SELECT of COLUMNS
        return f"SELECT {COLUMNS} FROM samples_head WHERE false"
    return " UNION ALL ".join(selects)


def _partition_select(
    s: int, e: int, plain: AbstractSet[str], min_sid: int, max_sid: int, start_ms: int, end_ms: int
) -> str:
    table = table_name(s)
    if table.strip('"') in plain:
        return decoded(s, e, table, encoded=False)
    span = e - s
    lo = min_sid * span + max(0, start_ms - s)
    hi = max_sid * span + min(span - 1, end_ms - s)
    return f"{decoded(s, e, table)} WHERE sts BETWEEN {int(lo)} AND {int(hi)}"


def closed_partitions_in_head(
    cur: duckdb.DuckDBPyConnection, cutoff_ms: int, partition_ms: int
) -> list[int]:
    """Starts of partitions that end before the cutoff and still have rows in the head."""
    boundary = (cutoff_ms // partition_ms) * partition_ms
    rows = cur.execute(
        "SELECT DISTINCT CAST(floor(ts / ?) AS BIGINT) * ? AS start FROM samples_head "
        "WHERE ts < ? ORDER BY start",
        [partition_ms, partition_ms, boundary],
    ).fetchall()
    return [int(r[0]) for r in rows]


def compact_partition(
    cur: duckdb.DuckDBPyConnection, start_ms: int, partition_ms: int, now_ms: int
) -> int:
    """Move one partition's head rows into its sorted table (merging with what is there).

    Returns the partition's end (exclusive)."""
    known = cur.execute("SELECT end_ms FROM partitions WHERE start_ms = ?", [start_ms]).fetchall()
    # An existing partition keeps its span, even if the configured partition size changed.
    end_ms = int(known[0][0]) if known else start_ms + partition_ms
    name = table_name(start_ms)
    in_range = f"FROM samples_head WHERE ts >= {int(start_ms)} AND ts < {int(end_ms)}"
    source = f"SELECT {COLUMNS} {in_range}"
    if known:
        encoded = name.strip('"') not in _plain_tables(cur)
        source += " UNION ALL " + decoded(start_ms, end_ms, name, encoded)
        tmp = name[:-1] + '_new"'
        cur.execute(f"CREATE TABLE {tmp} AS {encoded_select(start_ms, end_ms, source)}")
        cur.execute(f"DROP VIEW samples_all; DROP TABLE {name}")
        cur.execute(f"ALTER TABLE {tmp} RENAME TO {name}")
    else:
        cur.execute(f"CREATE TABLE {name} AS {encoded_select(start_ms, end_ms, source)}")
    cur.execute(f"DELETE {in_range}")
    rows = int(scalar(cur, f"SELECT count(*) FROM {name}"))
    cur.execute(
        "INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?)", [start_ms, end_ms, rows, now_ms]
    )
    replace_view(cur)
    return end_ms


def drop_expired(cur: duckdb.DuckDBPyConnection, cutoff_ms: int) -> tuple[int, int]:
    """Drop partitions wholly older than the cutoff and head rows before it."""
    expired = cur.execute(
        "SELECT start_ms, row_count FROM partitions WHERE end_ms <= ?", [cutoff_ms]
    ).fetchall()
    if expired:
        cur.execute("DROP VIEW samples_all")
    for start, _ in expired:
        cur.execute(f"DROP TABLE {table_name(int(start))}")
        cur.execute("DELETE FROM partitions WHERE start_ms = ?", [start])
    head = int(scalar(cur, "DELETE FROM samples_head WHERE ts < ?", [cutoff_ms]) or 0)
    if expired:  # rewriting an unchanged view would grow the WAL on every maintenance pass
        replace_view(cur)
    return len(expired), sum(int(r[1]) for r in expired) + head


def row_counts(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    head = scalar(cur, "SELECT count(*) FROM samples_head")
    part = first_row(cur, "SELECT coalesce(sum(row_count), 0), count(*) FROM partitions")
    return int(head), int(part[0]), int(part[1])
