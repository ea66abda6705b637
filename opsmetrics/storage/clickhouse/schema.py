"""Running the numbered migrations of ddl.py against a database."""

from __future__ import annotations

from collections.abc import Sequence

from opsmetrics.storage.clickhouse.connect import ClickHouse
from opsmetrics.storage.clickhouse.ddl import MIGRATIONS_TABLE, migrations


def applied_version(client: ClickHouse) -> int:
    return int(client.command("SELECT max(version) FROM schema_migrations FINAL") or 0)


def apply_migrations(client: ClickHouse, events_schema: Sequence[str], now_ms: int) -> list[int]:
    """Run the migrations newer than the database's; returns the versions that ran."""
    client.command(MIGRATIONS_TABLE)
    done = applied_version(client)
    ran: list[int] = []
    for m in migrations(events_schema):
        if m.version <= done:
            continue
        for statement in m.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[m.version, m.name, now_ms]],
            column_names=["version", "name", "applied_ms"],
        )
        ran.append(m.version)
    return ran
