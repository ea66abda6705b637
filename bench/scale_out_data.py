"""In-process parts of bench/scale_out.py: bytes/sample, the query data set, funnel/retention.

    .venv/bin/python bench/scale_out_data.py storage|load|events --out F.json --tmp DIR

Each part runs in its own process (chdb allows one engine path per process). The DuckDB
backend is `DuckDBStorage`; the ClickHouse one is `open_data_store("chdb://…")`, the engine
in this process. Data goes in through each backend's `write` (samples) or, for the 5M events,
one bulk `INSERT … SELECT` from a Parquet file into each backend's own events table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.clock import FakeClock  # noqa: E402
from opsmetrics.model import Labels, Series  # noqa: E402
from opsmetrics.settings import Settings  # noqa: E402
from opsmetrics.storage.base import WriteBatch  # noqa: E402
from opsmetrics.storage.clickhouse import ClickHouseStorage  # noqa: E402
from opsmetrics.storage.duckdb import DuckDBStorage  # noqa: E402
from opsmetrics.storage.event_records import EventMatch, Funnel, Grain, Retention  # noqa: E402
from opsmetrics.storage.open import open_data_store  # noqa: E402

DAY = 86_400_000
Json = dict[str, Any]
Store = DuckDBStorage | ClickHouseStorage


def open_ch(path: Path, database: str, now_ms: int) -> ClickHouseStorage:
    store = open_data_store(f"chdb://{path}?database={database}", Settings(), FakeClock(now_ms))
    assert isinstance(store, ClickHouseStorage)
    return store


def new_series(store: Store, labels: list[Labels]) -> list[Series]:
    ids = store.allocate_series_ids(labels)
    return [Series(int(i), lbl) for i, lbl in zip(ids, labels, strict=True)]


def write_rows(store: Store, new: list[Series], real: Any, rows: Any, batch: int) -> float:
    """`rows` = (index into `real`, ts, value) arrays, written in `batch`-row writes; `new`
    (the series not stored yet) go with the first; returns seconds."""
    idx, ts, vals = rows
    began = time.perf_counter()
    for lo in range(0, len(ts), batch):
        hi = lo + batch
        store.write(WriteBatch(new if lo == 0 else [], real[idx[lo:hi]], ts[lo:hi], vals[lo:hi]))
    return time.perf_counter() - began


def _ids(new: list[Series]) -> Any:
    return np.array([s.id for s in new], dtype=np.int64)


# --- 2. bytes/sample ------------------------------------------------------------------------


def part_storage(args: argparse.Namespace, tmp: Path) -> Json:
    """bench/storage.py's data (N series x D days x 15 s, arrival order) into both backends,
    compacted; bytes per sample."""
    from storage import START_MS, make_data, used_bytes

    ids, ts, vals = make_data(args.series, args.days)
    ids = ids - 1
    labels = [
        (("__name__", f"bench_metric_{i % 50}"), ("instance", f"host-{i}"))
        for i in range(1, args.series + 1)
    ]
    now = START_MS + (args.days + 1) * DAY
    out: Json = {"samples": len(ts), "series": args.series, "days": args.days}
    duck = DuckDBStorage(tmp / "bytes-duck", now_ms=now)
    new = new_series(duck, labels)
    out["duckdb_write_s"] = write_rows(duck, new, _ids(new), (ids, ts, vals), 10_000)
    duck.compact(now)
    duck.checkpoint()
    cur = duck._cursor()
    out["duckdb_bytes"] = used_bytes(cur)
    out["duckdb_samples_bytes"] = _duck_table_bytes(cur, "samples%")
    duck.close()
    ch = open_ch(tmp / "bytes-chdb", "bytes", now)
    new = new_series(ch, labels)
    out["ch_write_s"] = write_rows(ch, new, _ids(new), (ids, ts, vals), args.ch_batch)
    began = time.perf_counter()
    ch.compact(now)
    out["ch_compact_s"] = time.perf_counter() - began
    q = ch._ch
    q.command("OPTIMIZE TABLE samples FINAL")
    parts = "FROM system.parts WHERE active AND database = currentDatabase()"
    row = q.query(f"SELECT sum(bytes_on_disk), sum(rows), count() {parts} AND table = 'samples'")
    out["ch_samples_bytes"], out["ch_rows"], out["ch_parts"] = map(int, row.result_rows[0])
    out["ch_bytes"] = int(q.command(f"SELECT sum(bytes_on_disk) {parts}"))
    cols = q.query(
        "SELECT name, sum(data_compressed_bytes) FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'samples' GROUP BY name ORDER BY name"
    )
    out["ch_columns"] = {str(n): int(b) for n, b in cols.result_rows}
    ch.close()
    return out


def _duck_table_bytes(cur: Any, like: str) -> int:
    size = int(cur.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0])
    tables = [
        r[0]
        for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE ?", [like]
        ).fetchall()
    ]
    blocks = 0
    for t in tables:
        got = cur.execute(
            "SELECT count(DISTINCT block_id) FROM pragma_storage_info(?) WHERE persistent", [t]
        ).fetchone()
        blocks += int(got[0])
    return blocks * size


# --- 3. the query data set --------------------------------------------------------------------


def part_load(args: argparse.Namespace, tmp: Path) -> Json:
    """bench/query.py's data set (500 x instances series at 15 s, `days` days ending now) into
    a DuckDB directory and a chdb path, compacted; part `queries` then serves both."""
    from query import generate

    now = int(time.time() * 1000)
    data = generate(args.instances, args.days, now)
    labels = [tuple(sorted(s.labels.items())) for s in data.series]
    values = np.vstack([s.values for s in data.series])  # (series, steps)
    chunk = 6 * 3_600_000 // 15_000
    meta: Json = {
        "end_ms": int(data.ts[-1]),
        "samples": data.samples,
        "series": len(data.series),
        "duckdb_dir": str(tmp / "q-duck"),
        "chdb_path": str(tmp / "q-chdb"),
        "database": "q",
    }
    stores: list[Store] = [
        DuckDBStorage(Path(meta["duckdb_dir"]), now_ms=now, late_window_ms=300_000),
        open_ch(Path(meta["chdb_path"]), "q", now),
    ]
    for store, key in zip(stores, ("duckdb", "ch"), strict=True):
        began = time.perf_counter()
        new = new_series(store, labels)
        real = _ids(new)
        for lo in range(0, len(data.ts), chunk):
            ts = data.ts[lo : lo + chunk]
            rows = (np.repeat(np.arange(len(labels)), len(ts)), np.tile(ts, len(labels)))
            write_rows(store, new, real, (*rows, values[:, lo : lo + len(ts)].ravel()), 10**9)
            new = []
        store.compact(now)
        meta[f"{key}_load_s"] = time.perf_counter() - began
        store.close()
    (tmp / "query-data.json").write_text(json.dumps(meta))
    return meta


# --- 4. funnel and retention over 5M events ----------------------------------------------------

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
DAYS = 30
FUNNEL = ("product_view", "cart_view", "checkout", "purchase")
CONTINUE = (0.5, 0.4, 0.6)
SOURCES = np.array(["ads", "seo", "direct", "email"])


def event_table(n_events: int, n_users: int, seed: int = 7) -> pa.Table:
    """bench/kpi.py's shop (one signup per user; product_view → cart_view (50%) → checkout
    (40%) → purchase (60%, with a value); page_view noise), built with numpy."""
    rng = np.random.default_rng(seed)
    end = T0 + DAYS * DAY
    signup = rng.integers(T0, end - DAY, n_users)
    names, ts, users = [np.full(n_users, "signup")], [signup], [np.arange(n_users)]
    vals = [np.full(n_users, np.nan)]
    sessions = int((n_events - n_users) * 0.77 / 1.82)
    su = rng.integers(0, n_users, sessions)
    t = signup[su] + (rng.random(sessions) * (end - signup[su])).astype(np.int64)
    alive = np.ones(sessions, dtype=bool)
    for step, name in enumerate(FUNNEL):
        if step:
            alive &= rng.random(sessions) < CONTINUE[step - 1]
            t = t + rng.exponential(1_800_000, sessions).astype(np.int64) + 1
        keep = alive & (t < end)
        names.append(np.full(int(keep.sum()), name))
        ts.append(t[keep])
        users.append(su[keep])
        v = rng.integers(500, 20_000, sessions).astype(float) if name == "purchase" else None
        vals.append(v[keep] if v is not None else np.full(int(keep.sum()), np.nan))
    noise = n_events - sum(len(x) for x in ts)
    names.append(np.full(noise, "page_view"))
    ts.append(rng.integers(T0, end, noise))
    users.append(rng.integers(0, n_users, noise))
    vals.append(np.full(noise, np.nan))
    user = pa.array(np.concatenate(users)).cast(pa.string())
    value = np.concatenate(vals)
    return pa.table(
        {
            "key": pa.array(np.arange(1, n_events + 1, dtype=np.uint64)),
            "name": pa.array(np.concatenate(names)),
            "ts": pa.array(np.concatenate(ts)),
            "entity": pc.binary_join_element_wise("u", user, ""),
            "value": pa.array(value, mask=np.isnan(value)),
            "source": pa.array(SOURCES[rng.integers(0, 4, n_events)]),
        }
    )


def load_events(
    tmp: Path, n_events: int, n_users: int
) -> tuple[DuckDBStorage, ClickHouseStorage, Json]:
    table = event_table(n_events, n_users)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "events.parquet"
    pq.write_table(table, path)
    now = T0 + (DAYS + 1) * DAY
    duck = DuckDBStorage(tmp / "ev-duck", now_ms=now)
    ch = open_ch(tmp / "ev-chdb", "ev", now)
    out: Json = {"events": table.num_rows, "users": n_users}
    began = time.perf_counter()
    duck._cursor().execute(
        "INSERT INTO events SELECT key, NULL, name, ts, entity, value, "
        f"json_object('source', source) FROM read_parquet('{path}')"
    )
    duck.checkpoint()
    out["duckdb_load_s"] = time.perf_counter() - began
    began = time.perf_counter()
    ch._ch.command(
        "INSERT INTO events SELECT key, NULL, name, fromUnixTimestamp64Milli(ts, 'UTC'), entity, "
        "value, map('source', source), map(), concat('{\"source\":\"', source, '\"}') "
        f"FROM file('{path}', Parquet)"
    )
    ch._ch.command("OPTIMIZE TABLE events FINAL")
    out["ch_load_s"] = time.perf_counter() - began
    return duck, ch, out


def _funnel_q() -> Funnel:
    return Funnel(tuple(EventMatch(n) for n in FUNNEL), T0, T0 + DAYS * DAY, DAY)


def _retention_q() -> Retention:
    return Retention(EventMatch("signup"), None, T0, T0 + DAYS * DAY, Grain.WEEK, 4)


def hand_funnel_sql() -> str:
    """windowFunnel over each entity's events in [first product_view, + 1 day]: with the start
    pinned to the first step-1 event, its deepest chain is ours ("first time through")."""
    end = T0 + DAYS * DAY
    lo, hi = f"fromUnixTimestamp64Milli({T0}, 'UTC')", f"fromUnixTimestamp64Milli({end}, 'UTC')"
    conds = ", ".join(f"e.name = '{n}'" for n in FUNNEL)
    names = ", ".join(f"'{n}'" for n in FUNNEL)
    return f"""
        WITH f AS (SELECT entity, min(ts) AS t1 FROM events WHERE name = '{FUNNEL[0]}'
                   AND ts >= {lo} AND ts < {hi} GROUP BY entity)
        SELECT level, count() FROM (
            SELECT e.entity, windowFunnel({DAY}, 'strict_increase')(
                toUInt64(toUnixTimestamp64Milli(e.ts)), {conds}) AS level
            FROM events AS e INNER JOIN f ON e.entity = f.entity
            WHERE e.ts >= f.t1 AND e.ts <= f.t1 + toIntervalMillisecond({DAY})
              AND e.name IN ({names})
            GROUP BY e.entity
        ) WHERE level > 0 GROUP BY level ORDER BY level"""


def hand_retention_sql() -> str:
    """retention(): cohort = Monday week of the first signup; returned k weeks later."""
    end = T0 + DAYS * DAY
    lo, hi = f"fromUnixTimestamp64Milli({T0}, 'UTC')", f"fromUnixTimestamp64Milli({end}, 'UTC')"
    week = "intDiv(dateDiff('day', toMonday(c.t0), toMonday(e.ts)), 7)"
    conds = ", ".join(f"{week} = {k}" for k in range(5))
    return f"""
        WITH c AS (SELECT entity, min(ts) AS t0 FROM events WHERE name = 'signup'
                   GROUP BY entity HAVING t0 >= {lo} AND t0 < {hi})
        SELECT toUnixTimestamp64Milli(toDateTime64(cb, 3, 'UTC')) AS cohort,
               {", ".join(f"sum(r[{k + 1}])" for k in range(5))}
        FROM (SELECT e.entity, toMonday(any(c.t0)) AS cb, retention({conds}) AS r
              FROM events AS e INNER JOIN c ON e.entity = c.entity
              WHERE e.ts >= c.t0 AND e.ts < {hi} GROUP BY e.entity)
        GROUP BY cb ORDER BY cb"""


def part_events(args: argparse.Namespace, tmp: Path) -> Json:
    duck, ch, out = load_events(tmp, args.events, args.users)
    fq, rq = _funnel_q(), _retention_q()
    client = ch._ch.client
    cases: dict[str, dict[str, Callable[[], Any]]] = {
        "funnel": {
            "ch_ours": lambda: ch.event_funnel(fq),
            "ch_hand": lambda: client.query(hand_funnel_sql()).result_rows,
            "duckdb_ours": lambda: duck.event_funnel(fq),
        },
        "retention": {
            "ch_ours": lambda: ch.event_retention(rq),
            "ch_hand": lambda: client.query(hand_retention_sql()).result_rows,
            "duckdb_ours": lambda: duck.event_retention(rq),
        },
    }
    for question, fns in cases.items():
        answers = {k: fn() for k, fn in fns.items()}  # warm-up, and the answers
        out[f"{question}_agree"] = _agree(question, answers)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.runs):
            for k, fn in fns.items():
                began = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - began)
        out[question] = times
        med = {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}
        print(f"  {question}: {med} ms; {out[f'{question}_agree']}", flush=True)
    duck.close()
    ch.close()
    return out


def _agree(question: str, a: dict[str, Any]) -> str:
    if question == "funnel":
        ours = [r.entities for r in a["ch_ours"]]
        same = ours == [r.entities for r in a["duckdb_ours"]]
        levels = dict(a["ch_hand"])
        hand = [sum(n for lv, n in levels.items() if lv > k) for k in range(len(FUNNEL))]
        return f"backends {'agree' if same else 'DIFFER'}; ours {ours}, windowFunnel {hand}"
    ours = [(r.cohort_ms, r.size, dict(r.returned)) for r in a["ch_ours"]]
    same = ours == [(r.cohort_ms, r.size, dict(r.returned)) for r in a["duckdb_ours"]]
    hand = [
        (int(row[0]), int(row[1]), {k: int(n) for k, n in enumerate(row[1:]) if n})
        for row in a["ch_hand"]
    ]
    return f"backends {'agree' if same else 'DIFFER'}; retention() " + (
        "agrees" if hand == ours else f"differs: ours {ours[:2]} vs {hand[:2]}"
    )


PARTS = {"storage": part_storage, "load": part_load, "events": part_events}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("part", choices=sorted(PARTS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tmp", type=Path, required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--series", type=int, default=2000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--ch-batch", type=int, default=1_000_000, help="rows per ClickHouse write")
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--users", type=int, default=200_000)
    args = p.parse_args()
    args.out.write_text(json.dumps(PARTS[args.part](args, args.tmp)))


if __name__ == "__main__":
    main()
