"""Range queries served from rollups equal the same queries over raw samples.

Three days of 15 s data (counters with resets and fractional increments, a clean gauge, and a
gauge with NaNs and stale markers) are written through `Storage.write` into a real DuckDB and
compacted; six more hours stay in the open partition. Every query is evaluated twice, with
rollups (the default) and with `use_rollups=False`, and the answers must match: labels, order
and presence exactly; values exactly for count/min/max/last/delta and within 1e-9 relative for
sums, averages, rate and increase (docs/promql.md, "Rollups").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opsmetrics.model import STALE_NAN, SampleRows, Series
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.storage.base import WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

T0 = 1_700_006_400_000  # midnight UTC: partitions and buckets line up
MIN5, HOUR, DAY = 300_000, 3_600_000, 86_400_000
SCRAPE = 15_000
EXACT = {"count_over_time", "min_over_time", "max_over_time", "last_over_time", "delta"}
FUNCTIONS = sorted(
    EXACT | {"sum_over_time", "avg_over_time", "rate", "increase"},
)


def _counter(rng: np.random.Generator, n: int) -> np.ndarray:
    values = np.cumsum(rng.random(n) * 7)
    for at in rng.choice(np.arange(1, n), size=6, replace=False):
        values[at:] -= values[at] - rng.random() * 3  # drop to near zero: a reset
    return values


def _series_values(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    dirty = rng.normal(50, 20, n)
    dirty[rng.choice(n, 5, replace=False)] = np.nan
    dirty[rng.choice(n, 5, replace=False)] = STALE_NAN
    return {
        "c1": _counter(rng, n),
        "c2": _counter(rng, n),
        "clean": rng.normal(0, 1000, n),
        "dirty": dirty,
    }


def _write(store: DuckDBStorage, start: int, end: int, rng: np.random.Generator) -> None:
    ts = np.arange(start, end, SCRAPE, dtype=np.int64)
    keep = rng.random(len(ts)) > 0.05  # scrape gaps
    ts = ts[keep]
    data = _series_values(rng, len(ts))
    sids = store.lookup_series([_labels(name) for name in data])
    new = [i for i, sid in enumerate(sids) if sid is None]
    fresh = iter(store.allocate_series_ids([_labels(list(data)[i]) for i in new]))
    ids = [sid if sid is not None else next(fresh) for sid in sids]
    store.write(
        WriteBatch(
            new_series=[Series(ids[i], _labels(list(data)[i])) for i in new],
            series_ids=np.repeat(np.array(ids, np.int64), len(ts)),
            ts=np.tile(ts, len(data)),
            values=np.concatenate(list(data.values())),
        )
    )


def _labels(instance: str) -> tuple[tuple[str, str], ...]:
    return (("__name__", "m"), ("instance", instance), ("job", "t"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DuckDBStorage:
    path: Path = tmp_path_factory.mktemp("rollup_queries") / "data"
    store = DuckDBStorage(path, now_ms=T0, partition_ms=DAY)
    rng = np.random.default_rng(11)
    _write(store, T0, T0 + 3 * DAY, rng)
    assert store.compact(T0 + 3 * DAY + 2 * HOUR) == 3
    _write(store, T0 + 3 * DAY, T0 + 3 * DAY + 6 * HOUR, rng)  # stays in the open partition
    assert store.rollup_spans() == [(T0 + d * DAY, T0 + (d + 1) * DAY) for d in range(3)]
    return store


def _both(store: Any, expr: str, start: int, end: int, step: int) -> tuple[Any, Any]:
    fast = evaluate_range(store, expr, start, end, step)
    raw = evaluate_range(store, expr, start, end, step, use_rollups=False)
    return fast, raw


def assert_same(fast: Any, raw: Any, exact: bool) -> None:
    assert isinstance(fast, InstantVector) and isinstance(raw, InstantVector)
    assert fast.labels == raw.labels
    assert (fast.present == raw.present).all()
    got, want = fast.values[raw.present], raw.values[raw.present]
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("func", FUNCTIONS)
@pytest.mark.parametrize("window", ["5m", "1h", "1d"])
@pytest.mark.parametrize("step", [MIN5, HOUR, DAY], ids=["step5m", "step1h", "step1d"])
def test_rollups_equal_raw_evaluation(
    store: DuckDBStorage, func: str, window: str, step: int
) -> None:
    # From day 1 (so 1d windows fit) into the open partition (raw for the last steps).
    fast, raw = _both(
        store, f'{func}(m{{job="t"}}[{window}])', T0 + DAY, T0 + 3 * DAY + 6 * HOUR, step
    )
    assert len(raw.labels) == 4
    assert_same(fast, raw, func in EXACT)


@pytest.mark.parametrize(
    "expr",
    [
        'sum_over_time(m{job="t"}[1h] offset 1h)',
        'rate(m{job="t"}[1h] offset -2h)',
        'max_over_time(m{job="t"}[1d] @ 1700179200)',
        "sum by (job) (increase(m[1h])) / 2",
        'avg_over_time(m{instance="clean"}[25m])',  # 25m: not a multiple of 1h, of 5m yes
    ],
)
def test_offset_at_and_enclosing_expressions(store: DuckDBStorage, expr: str) -> None:
    fast, raw = _both(store, expr, T0 + DAY, T0 + 3 * DAY, HOUR)
    assert_same(fast, raw, exact=False)


class RawReads:
    """The real storage, recording the time ranges raw samples were read for."""

    def __init__(self, inner: DuckDBStorage) -> None:
        self.inner = inner
        self.raw_ranges: list[tuple[int, int]] = []
        self.rollup_reads = 0

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        self.raw_ranges.append((start_ms, end_ms))
        return self.inner.read_samples(series_ids, start_ms, end_ms)

    def read_rollups(self, *args: Any) -> Any:
        self.rollup_reads += 1
        return self.inner.read_rollups(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_clean_series_in_closed_partitions_read_no_raw_samples(store: DuckDBStorage) -> None:
    reads = RawReads(store)
    expr = 'avg_over_time(m{instance=~"c1|clean"}[1h])'
    # The step at T0 + 3d would need the sample at T0 + 3d, in the open partition.
    evaluate_range(reads, expr, T0 + HOUR, T0 + 3 * DAY - HOUR, HOUR)  # type: ignore[arg-type]
    assert reads.rollup_reads == 1 and reads.raw_ranges == []


def test_nan_series_and_open_partition_fall_back_to_raw(store: DuckDBStorage) -> None:
    reads = RawReads(store)
    expr = 'sum_over_time(m{instance=~"c1|dirty"}[1h])'
    value = evaluate_range(reads, expr, T0 + HOUR, T0 + 3 * DAY + 2 * HOUR, HOUR)  # type: ignore[arg-type]
    # The open partition's steps (all series) and the NaN series' covered steps are raw.
    assert sorted(reads.raw_ranges) == [
        (T0 + 1, T0 + 3 * DAY - HOUR),
        (T0 + 3 * DAY - HOUR + 1, T0 + 3 * DAY + 2 * HOUR),
    ]
    raw = evaluate_range(store, expr, T0 + HOUR, T0 + 3 * DAY + 2 * HOUR, HOUR, use_rollups=False)
    assert_same(value, raw, exact=False)


def test_unaligned_steps_and_other_functions_read_raw(store: DuckDBStorage) -> None:
    for expr, start in [
        ('sum_over_time(m{job="t"}[1h])', T0 + DAY + 60_000),  # steps off the 5m grid
        ('stddev_over_time(m{job="t"}[1h])', T0 + DAY),
        ('sum_over_time(m{job="t"}[90s])', T0 + DAY),
    ]:
        reads = RawReads(store)
        evaluate_range(reads, expr, start, start + DAY, HOUR)  # type: ignore[arg-type]
        assert reads.rollup_reads == 0 and reads.raw_ranges, expr


def test_late_data_makes_queries_read_raw_until_recompacted(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=DAY)
    rng = np.random.default_rng(3)
    _write(store, T0, T0 + 2 * DAY, rng)
    store.compact(T0 + 2 * DAY + 2 * HOUR)
    sid = store.lookup_series([_labels("clean")])[0]
    assert sid is not None
    late = np.array([T0 + DAY + 7_500], np.int64)  # between two scrapes, day 1
    store.write(WriteBatch([], np.array([sid], np.int64), late, np.array([1e6])))
    assert store.rollup_spans() == [(T0, T0 + DAY)]  # day 1's rollups are out of date
    expr = 'max_over_time(m{instance="clean"}[1h])'
    fast, raw = _both(store, expr, T0 + HOUR, T0 + 2 * DAY, HOUR)
    assert_same(fast, raw, exact=True)
    assert raw.values.max() == 1e6
    store.compact(T0 + 2 * DAY + 2 * HOUR)
    assert len(store.rollup_spans()) == 2
    fast, raw = _both(store, expr, T0 + HOUR, T0 + 2 * DAY, HOUR)
    assert_same(fast, raw, exact=True)
