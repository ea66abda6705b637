"""SQL sources: rows per second from PostgreSQL into events, and the load on the source database.

Run: .venv/bin/python bench/sql_sources.py                 (500,000 rows, 3 runs)
Quick: .venv/bin/python bench/sql_sources.py --rows 50000 --runs 1

Starts a PostgreSQL 15 of its own (tests/postgres_server.py) with an `orders` table of `--rows`
rows (id, customer_id, total_cents, currency, status, updated_at; indexed on updated_at), then
per run opens fresh services over a new DuckDB data directory and runs the real `SourceRunner`
of a source like docs/sources.md's example (timestamp cursor, batch 10,000, max_rows = all the
rows, events with an id template, entity, value and two props) once, from the initial cursor to
the end. Rows/s is rows stored over the run's wall time (read, convert, ingest, durable commit,
cursor stored after each batch). The source's load is the CPU time (user + system) of the
PostgreSQL processes over the run (psutil: the postmaster, its children, and the children it
reaped) per 1,000 rows.
Figures are medians of `--runs`. Writes the `## SQL sources` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.facts import write_section  # noqa: E402
from opsmetrics.catalog.sources import load_sources  # noqa: E402
from opsmetrics.clock import FakeClock  # noqa: E402
from opsmetrics.ingest.sql_sources import SourceRunner  # noqa: E402
from opsmetrics.services import open_services  # noqa: E402
from opsmetrics.settings import Settings  # noqa: E402
from tests.postgres_server import PASSWORD, PostgresServer  # noqa: E402

HEADING = "SQL sources"
NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
SOURCE = """\
- name: shop_orders
  url: postgresql://postgres@127.0.0.1:{port}/shop
  password_env: BENCH_PG_PASSWORD
  query: |
    SELECT id, customer_id, total_cents, currency, status, updated_at FROM orders
    WHERE updated_at > $cursor ORDER BY updated_at
  cursor: {{column: updated_at, initial: 2026-11-01T00:00:00Z}}
  batch: 10000
  max_rows: {rows}
  emit:
    events: {{name: order, id: "order-{{id}}-{{status}}", entity: customer_id, ts: updated_at,
             value: total_cents, props: [currency, status]}}
"""


def fill(server: PostgresServer, rows: int) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    with psycopg.connect(server.url("shop"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id text, total_cents bigint, "
            "currency text, status text, updated_at timestamptz NOT NULL)"
        )
        # One row every 5 s, ending an hour before NOW (within the late-event window).
        conn.execute(
            "INSERT INTO orders SELECT i, 'cust-' || (i %% 5000), 100 + i %% 90000, "
            "(ARRAY['EUR','USD','GBP'])[1 + i %% 3], (ARRAY['paid','refunded'])[1 + i %% 2], "
            "to_timestamp(%s / 1000.0) - (%s - i) * interval '5 seconds' "
            "FROM generate_series(1, %s) i",
            [NOW - 3_600_000, rows, rows],
        )
        conn.execute("CREATE INDEX orders_updated_at ON orders (updated_at)")
        conn.execute("VACUUM ANALYZE orders")


class PostgresCpu:
    """CPU seconds of the PostgreSQL processes over a run: the postmaster and its children
    alive at either end, plus its reaped children's (a backend that exits during the run, the
    source's session, moves its whole time there). Two readings and no polling thread: one
    polling every 20 ms cost this process as much CPU as converting the rows."""

    def __init__(self, server: PostgresServer) -> None:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        self._main = psutil.Process(pid)

    def _total(self) -> float:
        times = self._main.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for proc in self._main.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child = proc.cpu_times()
                total += child.user + child.system
        return total

    def __enter__(self) -> PostgresCpu:
        self._start = self._total()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # the source's backend exits and is reaped after its session closes
        self._end = self._total()

    def seconds(self) -> float:
        return self._end - self._start


@dataclass(frozen=True, slots=True)
class Run:
    rows_per_s: float
    pg_ms_per_1000: float
    #: This process's CPU (every thread: reading, converting, the ingest writer, DuckDB).
    cpu_us_per_row: float
    #: Full (generation 2) garbage collections during the run: each walks every live object.
    full_gcs: int


class FullCollections:
    """Counts the garbage collector's full passes while it is entered."""

    def __init__(self) -> None:
        self.count = 0

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            self.count += 1

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._seen)


def one_run(server: PostgresServer, config: Path, rows: int) -> Run:
    """One full pull, timed."""
    data = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    svc = open_services(Settings(data_dir=data), FakeClock(NOW))
    try:
        (source,) = load_sources(config).sources
        env = {"BENCH_PG_PASSWORD": PASSWORD}
        runner = SourceRunner(source, svc.storage, svc.ingestor.write, svc.clock, env)
        with PostgresCpu(server) as pg_cpu, FullCollections() as gcs:
            t0, cpu0 = time.perf_counter(), time.process_time()
            run = runner.run()
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        svc.close()
        shutil.rmtree(data, ignore_errors=True)
    if run.error or run.rows != rows:
        raise SystemExit(f"the run stored {run.rows} rows of {rows}: {run.error}")
    per_1000 = pg_cpu.seconds() / rows * 1_000_000
    return Run(rows / seconds, per_1000, cpu / rows * 1e6, gcs.count)


def _cells(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} | {', '.join(f'{v:{fmt}}' for v in values)}"


def report(rows: int, runs: list[Run], load_before: float) -> str:
    rate = statistics.median(r.rows_per_s for r in runs)
    return textwrap.dedent(f"""\
        ## {HEADING}

        `bench/sql_sources.py --rows {rows} --runs {len(runs)}`: one source (docs/sources.md's
        example: timestamp cursor, batch 10,000, events with an id, entity, value and two props)
        pulling {rows:,} rows from PostgreSQL 15 on loopback into events in a fresh DuckDB data
        directory, from the initial cursor to the end in one run.

        | figure | median | runs |
        | --- | --- | --- |
        | rows/s into events (read, convert, durable commit, cursor per batch) | {_cells([r.rows_per_s for r in runs], ",.0f")} |
        | this process's CPU µs per row (all threads, user + system) | {_cells([r.cpu_us_per_row for r in runs], ".2f")} |
        | full garbage collections during the run | {_cells([r.full_gcs for r in runs], ".0f")} |
        | PostgreSQL CPU ms per 1,000 rows (postmaster and backends, user + system) | {_cells([r.pg_ms_per_1000 for r in runs], ".2f")} |

        - Goal: at least 100,000 rows/s: {"met" if rate >= 100_000 else "NOT met"}.
          The source database's share of the work is its CPU time above; the rest is this
          process. Rows are converted column by column (ingest/sql_columns.py) while the batch
          before is written; the ingest writer thread (validation, idempotency keys, the DuckDB
          insert and commit) is the busier of the two. Events and their stored keys are not
          tracked by the garbage collector (`gc=False`), so a pull sets off no full collections.
        - Machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), shared; Python
          {platform.python_version()}, psycopg {psycopg.__version__}; load average (1 min)
          {load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after.
        """)  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="Print, leave BENCHMARKS.md.")
    args = parser.parse_args()
    server = PostgresServer().init().start()
    config = Path(tempfile.mkdtemp(prefix="bench-sources-config-"))
    try:
        fill(server, args.rows)
        (config / "sources").mkdir()
        text = SOURCE.format(port=server.port, rows=args.rows)
        (config / "sources" / "shop.yaml").write_text(text)
        load_before = os.getloadavg()[0]
        runs = [one_run(server, config, args.rows) for _ in range(args.runs)]
    finally:
        server.remove()
        shutil.rmtree(config, ignore_errors=True)
    part = report(args.rows, runs, load_before)
    print(part)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", HEADING, part)


if __name__ == "__main__":
    main()
