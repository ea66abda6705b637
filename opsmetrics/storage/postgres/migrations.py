"""Numbered schema migrations of the PostgreSQL state store, applied at open.

All pending migrations run in one transaction that first takes a transaction-scoped advisory
lock, so nodes starting at once apply each migration exactly once: the second waits for the
first, then finds nothing left to do. Never edit a released migration: add the next number.

Text keys sort with COLLATE "C" (byte order), as DuckDB sorts strings, so the log and the
silences come back in the same order from either backend whatever the database's locale.
"""

from __future__ import annotations

from opsmetrics.errors import StorageUnavailableError
from opsmetrics.storage.postgres.database import Connection
from opsmetrics.storage.postgres.report_log import REPORT_TABLES
from opsmetrics.storage.postgres.review_log import REVIEW_TABLES
from opsmetrics.storage.postgres.source_log import SOURCE_TABLES

#: The advisory lock key held while migrating: "opsmetr1" as a big-endian int64.
MIGRATION_LOCK = 0x6F70736D65747231

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tokens (
            id text COLLATE "C" PRIMARY KEY,
            name text NOT NULL,
            scope text NOT NULL,
            hash text NOT NULL,                -- sha256 of the secret; the secret is never stored
            created_ms bigint NOT NULL,
            revoked_ms bigint
        );
        -- Every recorded version of a KPI definition (catalog/kpi_versions.py).
        CREATE TABLE kpi_versions (
            name text COLLATE "C" NOT NULL,
            version integer NOT NULL,
            hash text NOT NULL,
            definition json NOT NULL,          -- json, not jsonb: kept byte for byte
            diff text NOT NULL,
            author text NOT NULL,
            recorded_ms bigint NOT NULL,
            PRIMARY KEY (name, version)
        );
        -- Values entered by people for `manual:` KPIs; the latest entry for a moment wins,
        -- and among entries recorded at the same ms the one inserted last (seq).
        CREATE TABLE manual_kpi_values (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kpi text COLLATE "C" NOT NULL,
            ts bigint NOT NULL,
            value double precision NOT NULL,
            author text NOT NULL,
            note text NOT NULL,
            recorded_ms bigint NOT NULL
        );
        CREATE INDEX manual_kpi_values_kpi_ts ON manual_kpi_values (kpi, ts);
        -- One row per notification to one channel, written before sending (alerting/outbox.py).
        CREATE TABLE alert_notifications (
            id text COLLATE "C" PRIMARY KEY,
            group_key text NOT NULL,
            group_hash text NOT NULL,
            route text NOT NULL,
            channel text NOT NULL,
            kind text NOT NULL,                -- notify | escalation | acknowledge
            content_hash text NOT NULL,
            fingerprints text[] NOT NULL,
            alertnames text[] NOT NULL,
            batch json NOT NULL,               -- what the notifier was given
            created_ms bigint NOT NULL
        );
        CREATE INDEX alert_notifications_created ON alert_notifications (created_ms, id);
        -- Outcomes, appended as in the DuckDB backend; no row yet = pending; the newest wins.
        CREATE TABLE alert_notification_outcomes (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            status text NOT NULL,              -- delivered | failed
            attempts integer NOT NULL,
            http_status integer,
            detail text NOT NULL,
            finished_ms bigint NOT NULL
        );
        CREATE INDEX alert_notification_outcomes_id
            ON alert_notification_outcomes (id, finished_ms, seq);
        CREATE TABLE alert_silences (
            id text COLLATE "C" PRIMARY KEY,
            matchers json NOT NULL,            -- [{name, value, isRegex, isEqual}]
            starts_ms bigint NOT NULL,
            ends_ms bigint NOT NULL,
            created_by text NOT NULL,
            comment text NOT NULL,
            updated_ms bigint NOT NULL
        );
        CREATE TABLE alert_acks (
            fingerprint text COLLATE "C" PRIMARY KEY,
            acked_by text NOT NULL,
            comment text NOT NULL,
            at_ms bigint NOT NULL
        );
        -- Who runs the rule evaluator and notifier among the nodes (store.py hold_lease).
        CREATE TABLE leases (
            name text COLLATE "C" PRIMARY KEY,
            holder text NOT NULL,
            expires_ms bigint NOT NULL
        );
        """,
    ),
    (
        2,
        """
        -- Publishable keys (scope events, auth.py): the page origins they are accepted from,
        -- space-separated, and their rate per client address. NULL for every other token.
        ALTER TABLE tokens ADD COLUMN IF NOT EXISTS origins text;
        ALTER TABLE tokens ADD COLUMN IF NOT EXISTS rate_per_min integer;
        """,
    ),
    (
        3,
        """
        -- Every alert instance's history (alerting/timeline.py); ids are derived from what
        -- happened, so an entry recorded again is not stored twice.
        CREATE TABLE alert_timeline (
            id text COLLATE "C" PRIMARY KEY,
            fingerprint text COLLATE "C" NOT NULL,
            started_ms bigint NOT NULL,        -- the instance: when it started firing
            at_ms bigint NOT NULL,
            kind text NOT NULL,
            actor text NOT NULL,
            detail json NOT NULL
        );
        CREATE INDEX alert_timeline_fingerprint ON alert_timeline (fingerprint, at_ms);
        CREATE INDEX alert_timeline_kind ON alert_timeline (kind, at_ms);
        -- Protocol actions, claimed before they are sent (alerting/protocols.py).
        CREATE TABLE alert_actions (
            key text COLLATE "C" PRIMARY KEY,  -- the Idempotency-Key sent with the request
            fingerprint text NOT NULL,
            started_ms bigint NOT NULL,
            action text NOT NULL,
            status text NOT NULL,              -- claimed | succeeded | failed
            claimed_ms bigint NOT NULL,
            finished_ms bigint
        );
        """,
    ),
    (
        4,
        """
        -- Improvement initiatives created with POST /api/v1/initiatives (catalog/initiatives.py).
        CREATE TABLE initiatives (
            name text COLLATE "C" PRIMARY KEY,
            definition json NOT NULL,
            created_ms bigint NOT NULL,
            created_by text NOT NULL
        );
        """,
    ),
    # The scheduled reports' delivery log (storage/postgres/report_log.py).
    (5, REPORT_TABLES),
    # Owners' KPI reviews (storage/postgres/review_log.py).
    (6, REVIEW_TABLES),
    # SQL source cursors and last runs (storage/postgres/source_log.py).
    (7, SOURCE_TABLES),
]


def apply_migrations(conn: Connection, now_ms: int) -> int:
    """Bring the schema up to date in one locked transaction; returns the version in force."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, applied_ms bigint NOT NULL)"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise StorageUnavailableError(
                f"the PostgreSQL state database has schema version {current}, newer than this "
                f"opsmetrics ({latest}); upgrade opsmetrics on this node"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", [version, now_ms])
                current = version
    return current
