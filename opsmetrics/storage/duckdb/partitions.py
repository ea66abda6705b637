"""Sample partitions: closed time ranges rewritten sorted by (series, ts), one table each.

Readers always go through the `samples_all` view, which each change below replaces in the same
transaction, so a query sees either the old layout or the new one, never a mix. Every step is
one transaction, so a crash leaves either the old partition or the new one.
"""

from __future__ import annotations

import duckdb

from opsmetrics.storage.duckdb.sql import first_row, scalar

COLUMNS = "series_id, ts, value, nan_bits"


def table_name(start_ms: int) -> str:
    # start_ms is an integer we computed, never user input.
    return f'"samples_p{int(start_ms)}"'


def replace_view(cur: duckdb.DuckDBPyConnection) -> None:
    starts = [int(r[0]) for r in cur.execute("SELECT start_ms FROM partitions").fetchall()]
    selects = [f"SELECT {COLUMNS} FROM samples_head"]
    selects += [f"SELECT {COLUMNS} FROM {table_name(s)}" for s in sorted(starts)]
    cur.execute("CREATE OR REPLACE VIEW samples_all AS " + " UNION ALL ".join(selects))


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
) -> None:
    """Move one partition's head rows into its sorted table (merging with what is there)."""
    end_ms = start_ms + partition_ms
    name = table_name(start_ms)
    in_range = f"FROM samples_head WHERE ts >= {int(start_ms)} AND ts < {int(end_ms)}"
    if scalar(cur, "SELECT count(*) FROM partitions WHERE start_ms = ?", [start_ms]):
        tmp = table_name(start_ms)[:-1] + '_new"'
        cur.execute(
            f"CREATE TABLE {tmp} AS SELECT * FROM (SELECT {COLUMNS} FROM {name} "
            f"UNION ALL SELECT {COLUMNS} {in_range}) ORDER BY series_id, ts"
        )
        cur.execute(f"DROP VIEW samples_all; DROP TABLE {name}")
        cur.execute(f"ALTER TABLE {tmp} RENAME TO {name}")
    else:
        cur.execute(f"CREATE TABLE {name} AS SELECT {COLUMNS} {in_range} ORDER BY series_id, ts")
    cur.execute(f"DELETE {in_range}")
    rows = int(scalar(cur, f"SELECT count(*) FROM {name}"))
    cur.execute(
        "INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?)", [start_ms, end_ms, rows, now_ms]
    )
    replace_view(cur)


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
    replace_view(cur)
    return len(expired), sum(int(r[1]) for r in expired) + head


def row_counts(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    head = scalar(cur, "SELECT count(*) FROM samples_head")
    part = first_row(cur, "SELECT coalesce(sum(row_count), 0), count(*) FROM partitions")
    return int(head), int(part[0]), int(part[1])
