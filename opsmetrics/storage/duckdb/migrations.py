"""Numbered schema migrations, applied in order at start, each in its own transaction.

Never edit a released migration: add the next number.
"""

from __future__ import annotations

import duckdb

from opsmetrics.errors import StorageUnavailableError
from opsmetrics.storage.duckdb.sql import scalar

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE series (
            id UINTEGER PRIMARY KEY,
            metric VARCHAR NOT NULL,
            labels VARCHAR NOT NULL            -- JSON array of [name, value], sorted by name
        );
        -- Recent samples in arrival order; closed partitions move to samples_p<start_ms>.
        CREATE TABLE samples_head (
            series_id UINTEGER NOT NULL,
            ts BIGINT NOT NULL,
            value DOUBLE,                      -- NULL when the value is a NaN ...
            nan_bits UBIGINT NOT NULL          -- ... whose exact bits are kept here (else 0)
        );
        CREATE TABLE partitions (
            start_ms BIGINT PRIMARY KEY,
            end_ms BIGINT NOT NULL,
            row_count BIGINT NOT NULL,
            compacted_ms BIGINT NOT NULL
        );
        CREATE TABLE metadata (
            metric VARCHAR PRIMARY KEY,
            type VARCHAR NOT NULL,
            help VARCHAR NOT NULL,
            unit VARCHAR NOT NULL
        );
        CREATE TABLE events (
            key UBIGINT PRIMARY KEY,           -- idempotency key: hash of id, else of content
            id VARCHAR,
            name VARCHAR NOT NULL,
            ts BIGINT NOT NULL,
            entity VARCHAR NOT NULL,
            value DOUBLE,
            props VARCHAR NOT NULL             -- JSON object
        );
        CREATE TABLE annotations (
            id VARCHAR PRIMARY KEY,
            ts BIGINT NOT NULL,
            end_ts BIGINT,
            title VARCHAR NOT NULL,
            tags VARCHAR[] NOT NULL,
            text VARCHAR NOT NULL
        );
        CREATE VIEW samples_all AS SELECT series_id, ts, value, nan_bits FROM samples_head;
        """,
    ),
    (
        2,
        """
        CREATE TABLE tokens (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            scope VARCHAR NOT NULL,
            hash VARCHAR NOT NULL,             -- sha256 of the secret; the secret is never stored
            created_ms BIGINT NOT NULL,
            revoked_ms BIGINT
        );
        """,
    ),
    (
        3,
        """
        -- 5-minute and 1-hour buckets per series (storage/duckdb/rollups.py); NaNs excluded.
        CREATE TABLE rollups (
            width_ms BIGINT NOT NULL,
            series_id UINTEGER NOT NULL,
            bucket BIGINT NOT NULL,            -- bucket start, ms
            min_v DOUBLE NOT NULL,
            max_v DOUBLE NOT NULL,
            sum_v DOUBLE NOT NULL,
            n BIGINT NOT NULL,
            first_v DOUBLE NOT NULL,
            last_v DOUBLE NOT NULL,
            last_ts BIGINT NOT NULL,
            inc DOUBLE NOT NULL                -- counter increase inside the bucket
        );
        -- Partition spans whose rollups are built.
        CREATE TABLE rollup_spans (
            start_ms BIGINT PRIMARY KEY,
            end_ms BIGINT NOT NULL,
            built_ms BIGINT NOT NULL
        );
        -- Partitions compacted before this migration: their rollups are built by maintenance.
        CREATE TABLE rollup_backlog AS SELECT start_ms, end_ms FROM partitions;
        """,
    ),
]


def apply_migrations(con: duckdb.DuckDBPyConnection, now_ms: int) -> int:
    """Bring the schema up to date; returns the version now in force."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)"
    )
    current = int(scalar(con, "SELECT coalesce(max(version), 0) FROM schema_migrations"))
    latest = MIGRATIONS[-1][0]
    if current > latest:
        raise StorageUnavailableError(
            f"the data directory has schema version {current}, newer than this opsmetrics "
            f"({latest}); upgrade opsmetrics"
        )
    for version, sql in MIGRATIONS:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, now_ms])
        con.execute("COMMIT")
        current = version
    return current
