"""A small store for the archive tests: four UTC days of samples (a counter with a reset, a
gauge with a NaN and a stale marker, a series on the first day only), purchase events with
and without ids, compacted into partitions with rollups."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import STALE_NAN, Event, Labels, Series
from opsmetrics.storage.base import DAY_MS, Storage, StoredEvent, WriteBatch
from tests.stores import open_store

T0 = 1_795_046_400_000  # Thursday 2026-11-19 00:00 UTC
DAYS = 4
NOW = T0 + (DAYS + 1) * DAY_MS + 3_600_000  # every day closed and compacted
STEP = 60_000

COUNTER: Labels = (("__name__", "http_requests_total"), ("code", "200"), ("job", "api"))
GAUGE: Labels = (("__name__", "queue_depth"), ("host", "a"))
FIRST_DAY: Labels = (("__name__", "temperature"), ("host", "b"))
SERIES = (COUNTER, GAUGE, FIRST_DAY)

KPIS = """
kpis:
  - {name: orders, title: Orders, unit: count, direction: higher_is_better, owner: shop,
     grain: day, event: {name: purchase, agg: count}}
  - {name: revenue, title: Revenue, unit: count, direction: higher_is_better, owner: shop,
     grain: day, event: {name: purchase, agg: sum}}
  - {name: buyers, title: Buyers, unit: count, direction: higher_is_better, owner: shop,
     grain: day, dimensions: [plan], event: {name: purchase, agg: unique}}
  - {name: queue, title: Queue, unit: count, direction: lower_is_better, owner: sre,
     grain: day, promql: 'avg_over_time(queue_depth[1d])'}
"""


def samples() -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    ts = T0 + np.arange(0, DAYS * DAY_MS, STEP, dtype=np.int64)
    counter = np.cumsum(np.arange(len(ts)) % 7).astype(np.float64)
    counter[len(ts) // 2 :] -= counter[len(ts) // 2]  # a reset
    gauge = np.round(np.sin(np.arange(len(ts)) / 40.0) * 100) / 4
    gauge[[30, 31]] = np.nan
    gauge[3000] = STALE_NAN
    first = ts < T0 + DAY_MS
    return {
        COUNTER: (ts, counter),
        GAUGE: (ts, gauge),
        FIRST_DAY: (ts[first], np.linspace(10, 20, int(first.sum()))),
    }


def events() -> list[Event]:
    out = []
    for i in range(160):
        out.append(
            Event(
                "purchase",
                T0 + i * 2_160_000,  # every 36 minutes over the four days
                f"user-{i % 13}",
                value=None if i % 17 == 0 else float(100 + i),
                props={"plan": "pro" if i % 3 else "free", "n": i},
                id=None if i % 4 == 0 else f"order-{i}",  # content keys as well as ids
            )
        )
    return out


def fill(store: Storage) -> None:
    data = samples()
    ids = store.allocate_series_ids(list(data))
    batch = WriteBatch(
        new_series=[Series(i, labels) for i, labels in zip(ids, data, strict=True)],
        series_ids=np.concatenate(
            [np.full(len(ts), i, np.int64) for i, (ts, _) in zip(ids, data.values(), strict=True)]
        ),
        ts=np.concatenate([ts for ts, _ in data.values()]),
        values=np.concatenate([v for _, v in data.values()]),
        events=[StoredEvent(event_key(e), e) for e in events()],
    )
    store.write(batch)
    store.compact(NOW)


def filled_store(data_dir: Path) -> Storage:
    store = open_store(data_dir, NOW)
    fill(store)
    return store
