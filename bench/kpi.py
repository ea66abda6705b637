"""KPI/event benchmark: event analytics through our layer vs the same SQL run directly.

Run: .venv/bin/python bench/kpi.py            (5M events, 200k users, 30 days, 5 runs)
Quick: .venv/bin/python bench/kpi.py --events 200000 --users 10000 --runs 2
Example KPIs only: .venv/bin/python bench/kpi.py --part demo

Part `demo`: 30 days of the demo simulator's history (`load_history`, SystemClock, a temporary
data directory), then every example KPI (opsmetrics/demo/config/kpis/*.yaml) evaluated through
`KpiEvaluator.series` for the 90 days ending today at daily grain: one warm-up pass, then
--demo-runs passes; per KPI the median and max of its passes, total = median pass time.

Generates a shop's events with a fixed seed — one `signup` per user, sessions of
`product_view` → `cart_view` → `checkout` → `purchase` (with a value) that stop at each step
with fixed odds, and `page_view` noise — and loads them in 250k-event batches through
`DuckDBStorage.write` (no HTTP) into a temporary data directory. Each question is then timed
through the service layer (`opsmetrics.query.events`: validation, SQL compilation, shaping)
and as hand-written DuckDB SQL of the same shape run directly on the same connection (the
floor). One warm-up each, then runs alternate; a figure is the median of --runs. The two
answers are compared before timing. Prints the markdown section `## KPI and events`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.catalog.kpi_model import Grain  # noqa: E402
from opsmetrics.catalog.kpis import load_catalog  # noqa: E402
from opsmetrics.clock import SystemClock  # noqa: E402
from opsmetrics.demo.runner import load_history  # noqa: E402
from opsmetrics.model import Event  # noqa: E402
from opsmetrics.query import events as ev  # noqa: E402
from opsmetrics.query.kpi import KpiEvaluator  # noqa: E402
from opsmetrics.services import open_services  # noqa: E402
from opsmetrics.settings import Settings  # noqa: E402
from opsmetrics.storage.base import StoredEvent, WriteBatch  # noqa: E402
from opsmetrics.storage.duckdb import DuckDBStorage  # noqa: E402

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
DAYS = 30
SOURCES = np.array(["ads", "seo", "direct", "email"], dtype=object)
FUNNEL = ("product_view", "cart_view", "checkout", "purchase")
CONTINUE = (0.5, 0.4, 0.6)  # odds of going on to the next funnel step


def generate(n_events: int, n_users: int, seed: int = 7) -> list[StoredEvent]:
    rng = np.random.default_rng(seed)
    end = T0 + DAYS * DAY
    signup = rng.integers(T0, end - DAY, n_users)
    out = [_event("signup", int(t), u, None, "direct") for u, t in enumerate(signup)]
    sessions = int((n_events - n_users) * 0.77 / 1.82)  # 1.82 funnel events per session
    users = rng.integers(0, n_users, sessions)
    t = signup[users] + (rng.random(sessions) * (end - signup[users])).astype(np.int64)
    src = SOURCES[rng.integers(0, len(SOURCES), sessions)]
    alive = np.ones(sessions, dtype=bool)
    for step, name in enumerate(FUNNEL):
        if step:
            alive &= rng.random(sessions) < CONTINUE[step - 1]
            t = t + rng.exponential(1_800_000, sessions).astype(np.int64) + 1
        value = rng.integers(500, 20_000, sessions) if name == "purchase" else None
        for i in np.flatnonzero(alive & (t < end)):
            v = None if value is None else float(value[i])
            out.append(_event(name, int(t[i]), int(users[i]), v, str(src[i])))
    noise = n_events - len(out)
    nu, nt = rng.integers(0, n_users, noise), rng.integers(T0, end, noise)
    out += [_event("page_view", int(a), int(u), None, "seo") for u, a in zip(nu, nt, strict=True)]
    return [StoredEvent(i + 1, e) for i, e in enumerate(out)]


def _event(name: str, ts: int, user: int, value: float | None, source: str) -> Event:
    return Event(name, ts, f"u{user}", value, {"source": source})


def load(storage: DuckDBStorage, events: list[StoredEvent], batch: int = 250_000) -> float:
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        storage.write(WriteBatch(events=events[i : i + batch]))
    storage.checkpoint()
    return time.perf_counter() - started


# --- the questions: ours, and the same SQL by hand -------------------------------------------
def questions(storage: DuckDBStorage) -> list[tuple[str, Callable[[], Any], str]]:
    end = T0 + DAYS * DAY
    steps = tuple(ev.EventMatch(n) for n in FUNNEL)
    return [
        (
            "daily unique users",
            lambda: [
                (b.start_ms, b.value) for b in ev.aggregate(storage, _agg(None, ev.Agg.UNIQUE))
            ],
            f"SELECT ts // {DAY} * {DAY} AS d, count(DISTINCT entity)::DOUBLE FROM events "
            f"WHERE ts >= {T0} AND ts < {end} GROUP BY d ORDER BY d",
        ),
        (
            "daily revenue",
            lambda: [
                (b.start_ms, b.value) for b in ev.aggregate(storage, _agg("purchase", ev.Agg.SUM))
            ],
            f"SELECT ts // {DAY} * {DAY} AS d, sum(value) FROM events WHERE name = 'purchase' "
            f"AND ts >= {T0} AND ts < {end} GROUP BY d ORDER BY d",
        ),
        (
            "4-step funnel, 1 day window",
            lambda: [
                s.entities
                for g in ev.funnel(storage, ev.Funnel(steps, T0, end, DAY)).groups
                for s in g.steps
            ],
            _funnel_floor(end),
        ),
        (
            "weekly retention (signup → any event)",
            lambda: _retention_ours(storage, end),
            _retention_floor(end),
        ),
    ]


def _agg(name: str | None, agg: ev.Agg) -> ev.EventAggregate:
    return ev.EventAggregate(name, agg, T0, T0 + DAYS * DAY, ev.Grain.DAY)


def _retention_ours(storage: DuckDBStorage, end: int) -> list[tuple[int, int, int, int]]:
    q = ev.Retention(ev.EventMatch("signup"), None, T0, end, ev.Grain.WEEK, 4)
    m = ev.retention(storage, q)
    return [(c.start_ms, c.size, k, n) for c in m.cohorts for k, n in enumerate(c.counts) if n]


def _funnel_floor(end: int) -> str:
    return f"""
        WITH f1 AS (SELECT entity, min(ts) AS t1 FROM events WHERE name = 'product_view'
                    AND ts >= {T0} AND ts < {end} GROUP BY entity),
        e2 AS (SELECT entity, ts FROM events WHERE name = 'cart_view'),
        e3 AS (SELECT entity, ts FROM events WHERE name = 'checkout'),
        e4 AS (SELECT entity, ts FROM events WHERE name = 'purchase'),
        f2 AS (SELECT f1.entity, t1, min(e2.ts) AS t2 FROM f1 LEFT JOIN e2
               ON e2.entity = f1.entity AND e2.ts > t1 AND e2.ts <= t1 + {DAY} GROUP BY ALL),
        f3 AS (SELECT f2.entity, t1, t2, min(e3.ts) AS t3 FROM f2 LEFT JOIN e3
               ON e3.entity = f2.entity AND e3.ts > t2 AND e3.ts <= t1 + {DAY} GROUP BY ALL),
        f4 AS (SELECT f3.entity, t1, t2, t3, min(e4.ts) AS t4 FROM f3 LEFT JOIN e4
               ON e4.entity = f3.entity AND e4.ts > t3 AND e4.ts <= t1 + {DAY} GROUP BY ALL)
        SELECT count(t1), count(t2), median(t2 - t1), avg(t2 - t1), count(t3),
               median(t3 - t2), avg(t3 - t2), count(t4), median(t4 - t3), avg(t4 - t3) FROM f4
    """


def _retention_floor(end: int) -> str:
    week, monday = 7 * DAY, 4 * DAY
    return f"""
        WITH c AS (SELECT entity, min(ts) AS t0 FROM events WHERE name = 'signup'
                   AND ts < {end} GROUP BY entity HAVING min(ts) >= {T0}),
        c2 AS (SELECT entity, t0, t0 - (t0 - {monday}) % {week} AS cb FROM c),
        r AS (SELECT DISTINCT c2.entity, cb,
                     (e.ts - (e.ts - {monday}) % {week} - cb) // {week} AS k
              FROM c2 JOIN events e ON e.entity = c2.entity WHERE e.ts >= t0 AND e.ts < {end}),
        cells AS (SELECT cb, k, count(*) AS n FROM r WHERE k <= 4 GROUP BY cb, k),
        sizes AS (SELECT cb, count(*) AS size FROM c2 GROUP BY cb)
        SELECT sizes.cb, size, k, n FROM sizes LEFT JOIN cells ON cells.cb = sizes.cb
        ORDER BY sizes.cb, k
    """


# --- timing ---------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(storage: DuckDBStorage, runs: int) -> list[tuple[str, float, float]]:
    con = storage._cursor()  # the floor runs on the same database, same connection
    figures = []
    for title, ours, floor in questions(storage):
        ours_result = ours()
        floor_result = con.execute(floor).fetchall()
        check(title, ours_result, floor_result)
        a, b = [], []
        for _ in range(runs):
            a.append(timed(ours))
            b.append(timed(lambda f=floor: con.execute(f).fetchall()))  # type: ignore[misc]
        figures.append((title, statistics.median(a), statistics.median(b)))
        print(
            f"{title}: ours {figures[-1][1] * 1000:.1f} ms, floor {figures[-1][2] * 1000:.1f} ms",
            file=sys.stderr,
        )
    return figures


def check(title: str, ours: Any, floor: list[tuple[Any, ...]]) -> None:
    if title.startswith("4-step"):
        row = floor[0]
        floor = [row[0], row[1], row[4], row[7]]
    if title.startswith("daily revenue"):
        floor = [(t, float(v)) for t, v in floor]
    if list(map(tuple, ours) if ours and isinstance(ours[0], tuple) else ours) != [
        tuple(r) if isinstance(r, tuple) else r for r in floor
    ]:
        raise SystemExit(f"{title}: our answer differs from the floor's:\n{ours[:5]}\n{floor[:5]}")


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {cpu}, {os.cpu_count()} CPUs, {ram:.0f} GiB RAM, "
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, numpy {np.__version__}"
    )


def report(
    args: argparse.Namespace, n: int, load_s: float, figures: list[tuple[str, float, float]]
) -> str:
    lines = [
        "## KPI and events",
        "",
        f"Command: `.venv/bin/python bench/kpi.py --events {args.events} --users {args.users} "
        f"--runs {args.runs}`.",
        f"Machine: {machine()}.",
        f"Measured {time.strftime('%Y-%m-%d')}; other engineers' jobs may have shared the machine.",
        "",
        f"Data: {n:,} events over {DAYS} days for {args.users:,} users (one `signup` each; "
        "sessions `product_view` → `cart_view` (50%) → `checkout` (40%) → `purchase` (60%, with "
        f"a value), `page_view` noise), loaded with `DuckDBStorage.write` in {load_s:.1f} s. "
        "Ours = `opsmetrics.query.events` (validation, SQL compilation with bound parameters, "
        "result shaping); floor = the same SQL hand-written with literals, run directly on the "
        f"same DuckDB connection. Answers are checked equal first; median of {args.runs} runs.",
        "",
        "| question | ours (ms) | floor (ms) | ours / floor |",
        "|---|---:|---:|---:|",
    ]
    for title, ours, floor in figures:
        lines.append(f"| {title} | {ours * 1000:.1f} | {floor * 1000:.1f} | {ours / floor:.2f}× |")
    return "\n".join(lines) + "\n"


# --- every example KPI on the demo's data ---------------------------------------------------
DEMO_CONFIG = ROOT / "opsmetrics" / "demo" / "config"
DEMO_DAYS = 30
EVAL_DAYS = 90


def demo_kpis(runs: int, step_s: int) -> tuple[float, dict[str, list[float]], list[float], str]:
    """(history load s, per-KPI pass times, pass totals, what was loaded)."""
    catalog = load_catalog(DEMO_CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        services = open_services(Settings(data_dir=Path(tmp)), SystemClock())
        try:
            started = time.perf_counter()
            loaded = load_history(services, days=DEMO_DAYS, step_s=step_s)
            load_s = time.perf_counter() - started
            kpis = KpiEvaluator(services.storage, catalog, services.clock)
            end = services.clock.now_ms() // DAY * DAY + DAY  # the end of today (UTC)
            passes = [_demo_pass(kpis, catalog.names(), end) for _ in range(runs + 1)][1:]
        finally:
            services.close()
    what = f"{loaded.samples:,} samples and {loaded.events:,} events"
    per_kpi = {name: [p[name] for p in passes] for name in catalog.names()}
    return load_s, per_kpi, [sum(p.values()) for p in passes], what


def _demo_pass(kpis: KpiEvaluator, names: list[str], end: int) -> dict[str, float]:
    start = end - EVAL_DAYS * DAY
    out = {}
    for name in names:
        started = time.perf_counter()
        kpis.series(name, start, end, grain=Grain.DAY)
        out[name] = time.perf_counter() - started
    return out


def demo_report(
    args: argparse.Namespace,
    load_s: float,
    per_kpi: dict[str, list[float]],
    totals: list[float],
    what: str,
) -> str:
    medians = {n: statistics.median(ts) for n, ts in per_kpi.items()}
    slowest = sorted(medians, key=medians.__getitem__, reverse=True)
    lines = [
        "### Every example KPI, 90 days at daily grain",
        "",
        f"Command: `.venv/bin/python bench/kpi.py --part demo --demo-runs {args.demo_runs} "
        f"--demo-step {args.demo_step}`. Machine: {machine()}. Measured "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"Data: the demo simulator's {DEMO_DAYS} days of history ({what}, one sample per series "
        f"every {args.demo_step} s), loaded with `load_history` in {load_s:.1f} s. Each of the "
        f"{len(per_kpi)} KPIs of opsmetrics/demo/config/kpis/*.yaml evaluated with "
        f"`KpiEvaluator.series` over the {EVAL_DAYS} days ending today at daily grain (the first "
        f"{EVAL_DAYS - DEMO_DAYS} days have no data); one warm-up pass, then {args.demo_runs}.",
        "",
        f"All {len(per_kpi)} KPIs: {statistics.median(totals) * 1000:.0f} ms per pass (median; "
        f"min {min(totals) * 1000:.0f}, max {max(totals) * 1000:.0f}). Per KPI: median "
        f"{statistics.median(medians.values()) * 1000:.1f} ms, max "
        f"{max(max(ts) for ts in per_kpi.values()) * 1000:.1f} ms.",
        "",
        "| slowest KPIs | median (ms) | max (ms) |",
        "|---|---:|---:|",
    ]
    for name in slowest[:8]:
        lines.append(f"| {name} | {medians[name] * 1000:.1f} | {max(per_kpi[name]) * 1000:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("events", "demo", "all"), default="all")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--demo-runs", type=int, default=3)
    parser.add_argument("--demo-step", type=int, default=60, help="demo history step, seconds")
    args = parser.parse_args()
    if args.part != "events":
        print(demo_report(args, *demo_kpis(args.demo_runs, args.demo_step)))
    if args.part != "demo":
        events_part(args)


def events_part(args: argparse.Namespace) -> None:
    events = generate(args.events, args.users)
    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(Path(tmp), now_ms=T0 + DAYS * DAY)
        try:
            load_s = load(storage, events)
            n = len(events)
            del events
            figures = run(storage, args.runs)
        finally:
            storage.close()
    print(report(args, n, load_s, figures))


if __name__ == "__main__":
    main()
