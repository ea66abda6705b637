"""Numbered schema migrations, applied in order at start, each in its own transaction.

Never edit a released migration: add the next number.
"""

from __future__ import annotations

import duckdb

from opsmetrics.errors import StorageUnavailableError
from opsmetrics.storage.duckdb.alert_store import ALERT_TABLES
from opsmetrics.storage.duckdb.initiative_store import INITIATIVE_TABLES
from opsmetrics.storage.duckdb.report_store import REPORT_TABLES
from opsmetrics.storage.duckdb.review_store import REVIEW_TABLES
from opsmetrics.storage.duckdb.source_store import SOURCE_TABLES
from opsmetrics.storage.duckdb.sql import scalar
from opsmetrics.storage.duckdb.timeline_store import TIMELINE_TABLES

#: Migration 7's rollup columns without width_ms (migration 9 has a table per width).
_ROLLUP_COLUMNS = (
    "series_id UINTEGER NOT NULL, bidx BIGINT NOT NULL, min_v DOUBLE, max_v DOUBLE, "
    "sum_v DOUBLE NOT NULL, n INTEGER NOT NULL, first_v DOUBLE NOT NULL, "
    "first_dt INTEGER NOT NULL, last_v DOUBLE NOT NULL, last_dt INTEGER NOT NULL, inc DOUBLE, "
    "nonfinite INTEGER NOT NULL"
)

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
    (
        4,
        """
        -- Rollup buckets become left-open, (bucket, bucket + width], to match PromQL windows, and
        -- gain first_ts and a count of NaN/Inf samples. Old rows are dropped; every compacted
        -- partition goes back on the backlog so the next maintenance rebuilds its rollups.
        DROP TABLE rollups;
        CREATE TABLE rollups (
            width_ms BIGINT NOT NULL,
            series_id UINTEGER NOT NULL,
            bucket BIGINT NOT NULL,            -- holds samples with bucket < ts <= bucket + width
            min_v DOUBLE NOT NULL,             -- aggregates of the finite samples (NaN if none)
            max_v DOUBLE NOT NULL,
            sum_v DOUBLE NOT NULL,
            n BIGINT NOT NULL,                 -- finite samples
            first_v DOUBLE NOT NULL,
            first_ts BIGINT NOT NULL,
            last_v DOUBLE NOT NULL,
            last_ts BIGINT NOT NULL,
            inc DOUBLE NOT NULL,               -- counter increase inside the bucket
            nonfinite BIGINT NOT NULL          -- NaN (not stale) and ±Inf samples left out
        );
        DELETE FROM rollup_spans;
        DELETE FROM rollup_backlog;
        INSERT INTO rollup_backlog SELECT start_ms, end_ms FROM partitions;
        """,
    ),
    (
        5,
        """
        -- Every recorded version of a KPI definition (catalog/kpi_versions.py).
        CREATE TABLE kpi_versions (
            name VARCHAR NOT NULL,
            version INTEGER NOT NULL,          -- 1, 2, … per KPI
            hash VARCHAR NOT NULL,             -- sha256 of the canonical JSON definition
            definition JSON NOT NULL,          -- the canonical JSON definition
            diff VARCHAR NOT NULL,             -- unified diff from the previous version
            author VARCHAR NOT NULL,
            recorded_ms BIGINT NOT NULL,
            PRIMARY KEY (name, version)
        );
        """,
    ),
    (
        6,
        """
        -- Values entered by people for `manual:` KPIs (POST /api/v1/kpis/{name}/values).
        CREATE TABLE manual_kpi_values (
            kpi VARCHAR NOT NULL,
            ts BIGINT NOT NULL,                -- the moment the value is for, ms
            value DOUBLE NOT NULL,
            author VARCHAR NOT NULL,
            note VARCHAR NOT NULL,
            recorded_ms BIGINT NOT NULL        -- when it was entered; the latest entry wins
        );
        -- The documented views `sql:` KPIs read (docs/kpi_evaluation.md). They read through
        -- samples_all, which compaction replaces, so they always see every partition.
        CREATE VIEW v_events AS
            SELECT name, ts, entity, value, CAST(props AS JSON) AS props FROM events;
        CREATE VIEW v_samples AS
            SELECT s.metric,
                   to_json(map_from_entries(list_transform(CAST(s.labels AS VARCHAR[][]),
                       lambda x: struct_pack(k := x[1], v := x[2])))) AS labels,
                   a.ts, a.value
            FROM samples_all a JOIN series s ON s.id = a.series_id;
        CREATE VIEW v_manual_kpi_values AS
            SELECT kpi, ts, value, author, note, recorded_ms FROM manual_kpi_values;
        """,
    ),
    (
        7,
        """
        -- Rollups take less room (storage/duckdb/rollups.py says how each column is decoded):
        -- the bucket as its index, first/last ts as offsets in the bucket, and min, max and inc
        -- as NULL when they equal first, last and last - first. Old rows are dropped; every
        -- compacted partition goes back on the backlog so the next maintenance rebuilds them.
        DROP TABLE rollups;
        CREATE TABLE rollups (
            width_ms BIGINT NOT NULL,
            series_id UINTEGER NOT NULL,
            bidx BIGINT NOT NULL,              -- bucket start / width_ms
            min_v DOUBLE,                      -- NULL: the same as first_v
            max_v DOUBLE,                      -- NULL: the same as last_v
            sum_v DOUBLE NOT NULL,
            n INTEGER NOT NULL,                -- finite samples
            first_v DOUBLE NOT NULL,
            first_dt INTEGER NOT NULL,         -- first_ts - bucket start (0 when n = 0)
            last_v DOUBLE NOT NULL,
            last_dt INTEGER NOT NULL,          -- last_ts - bucket start (0 when n = 0)
            inc DOUBLE,                        -- counter increase; NULL: last_v - first_v
            nonfinite INTEGER NOT NULL         -- NaN (not stale) and ±Inf samples left out
        );
        DELETE FROM rollup_spans;
        DELETE FROM rollup_backlog;
        INSERT INTO rollup_backlog SELECT start_ms, end_ms FROM partitions;
        """,
    ),
    # Notification log, silences and acknowledgements (storage/duckdb/alert_store.py).
    (8, ALERT_TABLES),
    (
        9,
        f"""
        -- One rollup table per width (storage/duckdb/rollups.py `table`), with the columns of
        -- migration 7 but width_ms: in one table the two widths' bucket indexes shared row
        -- groups, so no scan could skip a row group by time. Rows are kept, in time order.
        CREATE TABLE rollups_300s ({_ROLLUP_COLUMNS});
        CREATE TABLE rollups_3600s ({_ROLLUP_COLUMNS});
        INSERT INTO rollups_300s SELECT * EXCLUDE (width_ms)
            FROM rollups WHERE width_ms = 300000 ORDER BY bidx, series_id;
        INSERT INTO rollups_3600s SELECT * EXCLUDE (width_ms)
            FROM rollups WHERE width_ms = 3600000 ORDER BY bidx, series_id;
        DROP TABLE rollups;
        """,
    ),
    (
        10,
        """
        -- Who runs the rule evaluator and notifier (storage/duckdb/alert_store.py hold_lease).
        CREATE TABLE leases (
            name VARCHAR PRIMARY KEY,
            holder VARCHAR NOT NULL,
            expires_ms BIGINT NOT NULL
        );
        """,
    ),
    (
        11,
        """
        -- Publishable keys (scope events, auth.py): the page origins they are accepted from,
        -- space-separated, and their rate per client address. NULL for every other token.
        ALTER TABLE tokens ADD COLUMN IF NOT EXISTS origins VARCHAR;
        ALTER TABLE tokens ADD COLUMN IF NOT EXISTS rate_per_min INTEGER;
        """,
    ),
    # Incident timelines and protocol action claims (storage/duckdb/timeline_store.py).
    (12, TIMELINE_TABLES),
    # Improvement initiatives created through the API (storage/duckdb/initiative_store.py).
    (13, INITIATIVE_TABLES),
    # The scheduled reports' delivery log (storage/duckdb/report_store.py).
    (14, REPORT_TABLES),
    # Owners' KPI reviews (storage/duckdb/review_store.py).
    (15, REVIEW_TABLES),
    # SQL source cursors and last runs (storage/duckdb/source_store.py).
    (16, SOURCE_TABLES),
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
