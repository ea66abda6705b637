"""Scheduled reports: content that explains the numbers, rendering, delivery (docs/reports.md)."""
