"""A small shop for the report tests: three weeks of hourly orders by region with a planted
spike (eu-west, Sunday 6 Dec 2026 14:00 Berlin) next to a deploy annotation, refunds, a
signups KPI whose events stopped days before the window, and two alert instances."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from opsmetrics.catalog.reports import CatchUp, ReportSources, ReportSpec
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Annotation, Event
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from opsmetrics.storage.timeline_records import TimelineEntry

HOUR = 3_600_000
DAY = 24 * HOUR
SLOT = 1_796_626_800_000  # Monday 2026-12-07 07:00 UTC = 08:00 Europe/Berlin
WINDOW_START = SLOT - 32 * HOUR  # Sunday 2026-12-06 00:00 Berlin
SPIKE = WINDOW_START + 14 * HOUR  # Sunday 14:00 Berlin (13:00 UTC)
DEPLOY = SPIKE - 5 * 60_000
SIGNUPS_STOP = WINDOW_START - 3 * DAY + 10 * HOUR  # Thursday 3 Dec, 10:00 Berlin

KPIS = """
- {name: orders, title: Orders, owner: shop, level: strategic, unit: count,
   direction: higher_is_better, grain: day, dimensions: [region],
   event: {name: purchase, agg: count}, target: 2000, thresholds: {warning: 1500, critical: 1000},
   tags: [sre]}
- {name: refunds, title: Refunds, owner: shop, level: strategic, unit: count,
   direction: lower_is_better, grain: day, event: {name: refund, agg: count}, target: 30}
- {name: signups, title: Signups, owner: growth, level: strategic, unit: count,
   direction: higher_is_better, grain: day, event: {name: signup, agg: count}}
"""
DASHBOARD = """
title: Shop
time_range: 7d
sections:
  - title: Orders
    widgets:
      - {type: trend_chart, id: trend, kpis: [orders]}
      - {type: bar, id: regions, kpi: orders, by: region}
      - {type: metric_card, id: card, kpi: orders}
"""


def spec(audience: str = "executive", **kw: object) -> ReportSpec:
    fields: dict[str, object] = dict(
        name=f"{audience}-daily", title=f"{audience.title()} summary", audience=audience,
        schedule="0 8 * * *", timezone="Europe/Berlin", window="day",
        compare="previous_period", sources=ReportSources(),
        formats=frozenset({"html", "pdf", "csv"}), deliver=(),
        catch_up=CatchUp("latest", DAY),
    )  # fmt: skip
    fields.update(kw)
    return ReportSpec(**fields)  # type: ignore[arg-type]


def _orders(rng: np.random.Generator) -> list[Event]:
    out = []
    for ts in range(SLOT - 21 * DAY, SLOT, HOUR):
        hour = (ts // HOUR) % 24
        level = 40 + 25 * np.sin(2 * np.pi * (hour - 8) / 24)
        for region, share in (("eu-west", 0.5), ("us-east", 0.5)):
            n = int(rng.poisson(level * share))
            if ts == SPIKE and region == "eu-west":
                n += 260
            out += [Event("purchase", ts + 60_000 + i, f"c{i}", props={"region": region})
                    for i in range(n)]  # fmt: skip
    return out


def _others(rng: np.random.Generator) -> list[Event]:
    hours = range(SLOT - 14 * DAY, SLOT, HOUR)
    refunds = [Event("refund", t + 1000 + i, "r") for t in hours for i in range(rng.poisson(1.5))]
    signups = [Event("signup", ts, "s") for ts in range(SLOT - 14 * DAY, SIGNUPS_STOP + 1, HOUR)]
    return refunds + signups


def _alerts() -> list[TimelineEntry]:
    def entry(fp: str, at: int, kind: str, detail: Mapping[str, object]) -> TimelineEntry:
        return TimelineEntry(f"{fp}-{kind}", fp, SPIKE, at, kind, "opsmetrics", json.dumps(detail))

    down = {"alertname": "CheckoutErrors", "severity": "critical", "summary": "checkout 5xx"}
    slow = {"alertname": "SlowSearch", "severity": "warning", "summary": "search p95 high"}
    return [entry("f1", SPIKE, "fired", down), entry("f2", SPIKE, "fired", slow),
            entry("f2", SPIKE + 2 * HOUR, "resolved", {})]  # fmt: skip


def open_shop(root: Path) -> Services:
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "k.yaml").write_text(KPIS)
    (root / "config" / "dashboards").mkdir()
    (root / "config" / "dashboards" / "shop.yaml").write_text(DASHBOARD)
    limits = Limits(events_late_window_ms=60 * DAY, samples_late_window_ms=60 * DAY)
    settings = Settings(data_dir=root / "data", config_dir=root / "config", limits=limits)
    services = open_services(settings, FakeClock(SLOT + 5 * 60_000))
    deploy = Annotation("d1", DEPLOY, "v1.42", tags=["deploy"])
    rng = np.random.default_rng(7)
    events = _orders(rng) + _others(rng)
    services.ingestor.write(WriteRequest("t", None, events, [deploy]))
    services.storage.record_timeline(_alerts())
    return services
