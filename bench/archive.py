"""Archive benchmark: export and restore rates for 10M samples and 5M events, Parquet bytes
per sample beside the store's.

Run: .venv/bin/python bench/archive.py [--series 868] [--days 2] [--events 5000000] [--runs 3]

The samples are bench/storage.py's data set (half gauges, half counters, 15 s), written
straight into DuckDBStorage in 1M-row batches and compacted; the events are generated inside
DuckDB (the fastest way in; their shape is the ingest benchmarks': 4 names, 50k entities, a
value on half, two props). Each run exports samples (with their rollups) and events to
separate archives and restores each into a fresh data directory; the figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from facts import machine_facts, write_section
from storage import START_MS, make_data, used_bytes

from opsmetrics.model import Series
from opsmetrics.storage.archive import DataClass, TimeRange, archivable
from opsmetrics.storage.archive_export import export_archive
from opsmetrics.storage.archive_restore import restore_archive
from opsmetrics.storage.base import DAY_MS, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

BATCH_ROWS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Source:
    store: DuckDBStorage
    samples: int
    events: int
    store_bytes_per_sample: float
    now_ms: int


@dataclass(frozen=True, slots=True)
class RunResult:
    export_samples_s: float
    export_events_s: float
    restore_samples_s: float
    restore_events_s: float
    sample_bytes: int
    rollup_bytes: int
    event_bytes: int


def build_source(data_dir: Path, series: int, days: int, events: int) -> Source:
    ids, ts, vals = make_data(series, days)
    now = START_MS + (days + 1) * DAY_MS
    store = DuckDBStorage(data_dir, now_ms=now)
    labels = [(("__name__", f"bench_metric_{i % 50}"), ("instance", f"host-{i}")) for i in
              range(1, series + 1)]  # fmt: skip
    assert store.allocate_series_ids(labels) == list(range(1, series + 1))
    new = [Series(i + 1, lbl) for i, lbl in enumerate(labels)]
    for lo in range(0, len(ts), BATCH_ROWS):
        hi = lo + BATCH_ROWS
        batch = WriteBatch(new_series=new if lo == 0 else [], series_ids=ids[lo:hi],
                           ts=ts[lo:hi], values=vals[lo:hi])  # fmt: skip
        store.write(batch)
    store.compact(now)
    store.checkpoint()
    per_sample = used_bytes(store._cursor()) / len(ts)
    _generate_events(store, events, days)
    return Source(store, len(ts), events, per_sample, now)


def _generate_events(store: DuckDBStorage, count: int, days: int) -> None:
    spacing = max(1, days * DAY_MS // count)
    with store._transaction() as cur:
        cur.execute(
            "INSERT INTO events SELECT hash(i), 'order-' || i, "
            "(['purchase', 'signup', 'cart_view', 'nps_response'])[i % 4 + 1], "
            f"{START_MS} + i * {spacing}, 'user-' || (i % 50000), "
            "CASE WHEN i % 2 = 1 THEN (i % 977)::DOUBLE END, "
            '\'{"plan":"pro","source":"\' || (CASE WHEN i % 3 = 0 THEN \'organic\' '
            "ELSE 'ads' END) || '\"}' FROM range(?) t(i)",
            [count],
        )
    store.checkpoint()


def _timed_export(source: Source, target: Path, kinds: tuple[DataClass, ...]) -> float:
    everything = TimeRange(0, source.now_ms)
    began = time.perf_counter()
    export_archive(archivable(source.store), target, dict.fromkeys(kinds, everything),
                   now_ms=source.now_ms)  # fmt: skip
    return time.perf_counter() - began


def _timed_restore(archive: Path, data_dir: Path, now_ms: int) -> float:
    store = DuckDBStorage(data_dir, now_ms=now_ms)
    try:
        began = time.perf_counter()
        restore_archive(archivable(store), archive, now_ms=now_ms)
        store.checkpoint()
        return time.perf_counter() - began
    finally:
        store.close()


def _bytes(root: Path, kind: str) -> int:
    return sum(p.stat().st_size for p in (root / kind).rglob("*.parquet"))


def one_run(source: Source, tmp: Path) -> RunResult:
    samples, events = tmp / "samples-archive", tmp / "events-archive"
    export_s = _timed_export(source, samples, (DataClass.SAMPLES, DataClass.ROLLUPS))
    export_e = _timed_export(source, events, (DataClass.EVENTS,))
    restore_s = _timed_restore(samples, tmp / "restored-samples", source.now_ms)
    restore_e = _timed_restore(events, tmp / "restored-events", source.now_ms)
    return RunResult(export_s, export_e, restore_s, restore_e, _bytes(samples, "samples"),
                     _bytes(samples, "rollups"), _bytes(events, "events"))  # fmt: skip


def report(source: Source, runs: list[RunResult], args: argparse.Namespace, load: str) -> str:
    def med(attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in runs)

    n, e = source.samples, source.events
    command = "`.venv/bin/python bench/archive.py`"
    lines = [
        "## Archive",
        "",
        f"Command: {command} (`--series {args.series} --days {args.days} --events "
        f"{args.events} --runs {args.runs}`). Median of {len(runs)} runs.",
        *machine_facts(load),
        "",
        f"Data: {n:,} samples ({args.series} series x {args.days} days x 15 s, bench/storage.py's "
        f"gauges and counters) and {e:,} events, in one DuckDB store, compacted. Samples are "
        "exported with their rollups (5 m and 1 h buckets) to one archive, events to another; "
        "each is restored into a fresh data directory (samples: written, compacted into "
        "partitions, rollups written over the rebuilt ones, CHECKPOINT).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| export samples + rollups | {n / med('export_samples_s'):,.0f} samples/s "
        f"({med('export_samples_s'):.1f} s) |",
        f"| export events | {e / med('export_events_s'):,.0f} events/s "
        f"({med('export_events_s'):.1f} s) |",
        f"| restore samples + rollups | {n / med('restore_samples_s'):,.0f} samples/s "
        f"({med('restore_samples_s'):.1f} s) |",
        f"| restore events | {e / med('restore_events_s'):,.0f} events/s "
        f"({med('restore_events_s'):.1f} s) |",
        f"| **Parquet bytes/sample** (samples files) | **{med('sample_bytes') / n:.2f}** |",
        f"| store bytes/sample (compacted, used blocks, rollups included) | "
        f"{source.store_bytes_per_sample:.2f} |",
        f"| Parquet rollup bytes per sample archived | {med('rollup_bytes') / n:.3f} |",
        f"| Parquet bytes/event | {med('event_bytes') / e:.2f} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=868)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    load = " (a shared machine: other engineers' jobs may have run alongside)"
    with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-archive-") as tmp:
        source = build_source(Path(tmp) / "source", args.series, args.days, args.events)
        print(f"source: {source.samples:,} samples, {source.events:,} events", flush=True)
        runs = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(dir=tmp) as run_dir:
                runs.append(one_run(source, Path(run_dir)))
            print(f"run {run + 1}: {runs[-1]}", flush=True)
        source.store.close()
    text = report(source, runs, args, load)
    print(text)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "Archive", text)


if __name__ == "__main__":
    main()
