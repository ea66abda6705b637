"""Queries: PromQL, event analytics, KPI evaluation."""
