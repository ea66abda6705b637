"""A deterministic simulator of an online shop + SaaS business and its infrastructure.

`opsmetrics demo` uses it to fill an empty data directory with 30 days of realistic history
(technical series, business events and counters, deploy and incident annotations) and then to
keep simulating live traffic. Everything is written through the ingest pipeline.
"""

from opsmetrics.demo.runner import DemoRunner, LoadResult, attach_demo, load_history

__all__ = ["DemoRunner", "LoadResult", "attach_demo", "load_history"]
