"""The PostgreSQL state backend: KPI versions, manual values, tokens, the alert log and leases
in one database that the nodes of a deployment share (OPSMETRICS_STATE_URL=postgresql://…)."""

from opsmetrics.storage.postgres.store import PostgresStateStore

__all__ = ["PostgresStateStore"]
