"""Scale-out benchmark (issue 15): the DuckDB backend vs ClickHouse's engine, side by side.

Run: .venv/bin/python bench/scale_out.py [--quick] [--write]

1. remote_write durable samples/s through a real server: DuckDB, ClickHouse over HTTP
   (server -> tests/chshim.py -> chdb) and chdb in the server's process (scale_out_servers.py).
2. bytes/sample of bench/storage.py's 2,000 series x 3 days after compaction (scale_out_data.py).
3. bench/query.py's seven range queries at 24h/60s and 3d/1h, over HTTP on both servers.
4. Funnel and retention over 5M events: EventStore on ClickHouse vs hand-written ClickHouse
   SQL (windowFunnel, retention()) on the same table; DuckDB's EventStore on the same rows.
5. Two server processes on one ClickHouse (chshim), each fed by its own client, vs one.

Each part runs in its own process (one chdb engine path per process) in one temporary
directory; the processes a part starts are stopped by pid when it ends, also on failure.
Prints a table; with --write, replaces this benchmark's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Scale-out: DuckDB vs ClickHouse engine (issue 15)"
Json = dict[str, Any]

#: Per part: the script and its arguments, full and --quick.
RUNS_20 = ["--runs", "5", "--requests", "20"]
RUNS_3 = ["--runs", "3", "--requests", "3"]
SMALL_EVENTS = ["--events", "200000", "--users", "10000", "--runs", "3"]
PARTS: dict[str, tuple[str, list[str], list[str]]] = {
    "ingest": ("scale_out_servers.py", RUNS_20, RUNS_3),
    "nodes": ("scale_out_servers.py", RUNS_20, RUNS_3),
    "storage": ("scale_out_data.py", [], ["--series", "200", "--days", "1"]),
    "load": ("scale_out_data.py", [], ["--instances", "1", "--days", "1"]),
    "queries": ("scale_out_servers.py", ["--runs", "3"], ["--runs", "2"]),
    "events": ("scale_out_data.py", ["--runs", "5"], SMALL_EVENTS),
}


def run_part(name: str, quick: bool, tmp: Path) -> Json:
    script, full, small = PARTS[name]
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(ROOT / "bench" / script), name, "--out", str(out), "--tmp", str(tmp)]
    cmd += small if quick else full
    print(f"== {name}: {shlex.join(cmd[1:])}", flush=True)
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: the part's own cleanup runs on SIGTERM
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    if code != 0:
        raise SystemExit(f"part {name} failed with exit code {code}")
    print(f"   {name} took {time.monotonic() - began:.0f} s", flush=True)
    return dict(json.loads(out.read_text()))


def machine_facts(load: float) -> list[str]:
    """CPU, RAM, versions and the load when the run started (/proc, importlib.metadata)."""
    from importlib.metadata import version

    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    libs = ", ".join(f"{n} {version(n)}" for n in ("duckdb", "chdb-core", "clickhouse-connect"))
    return [
        f"- CPU: {cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs (nproc); RAM "
        f"{int(mem.group(1)) / 2**20 if mem else 0:.1f} GiB; {platform.platform()}",
        f"- Python {platform.python_version()}, {libs}",
        f"- Load average when the run started: {load:.1f} (other engineers' jobs share the 2 CPUs)",
    ]


# --- the report -------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def runs_text(values: list[float], scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
    return ", ".join(fmt.format(v * scale) for v in values)


def ingest_rows(r: Json) -> list[str]:
    duck = med(r["runs"]["duckdb"])
    names = {
        "duckdb": "DuckDB (reference)",
        "clickhouse_http": "ClickHouse over HTTP (server → chshim → chdb)",
        "chdb_in_process": "ClickHouse engine in the server process (chdb://)",
    }
    rows = []
    for key, title in names.items():
        v = r["runs"][key]
        cpu = [sum(c) for c in r["cpu"][key]]
        rows.append(
            f"| 1 | remote_write, {r['clients']} clients: {title} | **{med(v):,.0f}** samples/s "
            f"| {runs_text(v)} | {med(v) / duck:.2f} | CPU {med(cpu):.1f} s per M samples |"
        )
    return rows


def storage_rows(r: Json) -> list[str]:
    n = r["samples"]
    duck = r["duckdb_bytes"] / n
    cols = ", ".join(f"{k} {v / n:.2f}" for k, v in r["ch_columns"].items())
    return [
        f"| 2 | bytes/sample, DuckDB, whole database (used blocks; reference) | **{duck:.2f}** "
        f"| 1 run | 1.00 | samples tables alone {r['duckdb_samples_bytes'] / n:.2f} |",
        f"| 2 | bytes/sample, ClickHouse `samples` (system.parts, after OPTIMIZE FINAL) "
        f"| **{r['ch_samples_bytes'] / r['ch_rows']:.2f}** | 1 run "
        f"| {r['ch_samples_bytes'] / r['ch_rows'] / duck:.2f} | per column: {cols} |",
        f"| 2 | bytes/sample, ClickHouse, whole database (samples + rollups + series) "
        f"| {r['ch_bytes'] / n:.2f} | 1 run | {r['ch_bytes'] / n / duck:.2f} "
        f"| {r['ch_rows']:,} rows in {r['ch_parts']} parts |",
    ]


def query_rows(r: Json) -> list[str]:
    out = []
    for row in r["rows"]:
        d, c = med(row["duckdb"]), med(row["clickhouse_http"])
        agree = "agree" if not row["differ"] else f"**{row['differ']} points differ**"
        out.append(
            f"| 3 | {row['window']}: {row['query']} (ms, DuckDB / ClickHouse) "
            f"| {d * 1000:,.0f} / **{c * 1000:,.0f}** "
            f"| {runs_text(row['clickhouse_http'], 1000)} | {c / d:.2f} | {agree} |"
        )
    return out


def event_rows(r: Json) -> list[str]:
    out = []
    for q in ("funnel", "retention"):
        t = r[q]
        ours, hand, duck = med(t["ch_ours"]), med(t["ch_hand"]), med(t["duckdb_ours"])
        out.append(
            f"| 4 | {q}: opsmetrics on ClickHouse / hand-written ClickHouse SQL (ms) "
            f"| **{ours * 1000:,.0f}** / {hand * 1000:,.0f} | {runs_text(t['ch_ours'], 1000)} "
            f"| {ours / hand:.2f} | {r[q + '_agree']} |"
        )
        out.append(
            f"| 4 | {q}: opsmetrics on DuckDB (ms), ratio ClickHouse / DuckDB | {duck * 1000:,.0f} "
            f"| {runs_text(t['duckdb_ours'], 1000)} | {ours / duck:.2f} | |"
        )
    return out


def nodes_rows(r: Json) -> list[str]:
    one, two = med(r["runs"]["one"]), med(r["runs"]["two"])
    cpu = {k: [med([c[i] for c in r["cpu"][k]]) for i in range(3)] for k in ("one", "two")}
    where = {
        k: f"node a {v[0]:.1f}, node b {v[1]:.1f}, shim+chdb {v[2]:.1f}" for k, v in cpu.items()
    }
    return [
        f"| 5 | one server, one client (reference) | {one:,.0f} samples/s "
        f"| {runs_text(r['runs']['one'])} | 1.00 | CPU s per M samples: {where['one']} |",
        f"| 5 | two servers, one client each, one ClickHouse | **{two:,.0f}** samples/s "
        f"| {runs_text(r['runs']['two'])} | **{two / one:.2f}** "
        f"| CPU s per M samples: {where['two']} |",
    ]


def render(results: Json, quick: bool) -> str:
    ev, st, q, meta = results["events"], results["storage"], results["load"], results["meta"]
    lines = [
        HEADING,
        "",
        f"Command: `.venv/bin/{meta['command']}` (bench/scale_out.py; parts in "
        "bench/scale_out_servers.py and bench/scale_out_data.py).",
        "",
        *machine_facts(meta["load"]),
        f"- Measured {meta['measured']}{' with --quick sizes' if quick else ''}",
        "",
        "Data: (1, 5) bench/ingest.py's remote_write bodies, 10,000 samples each (1,000 series × "
        f"10 labels × 10 timestamps), {results['ingest']['requests']} requests per client per run;"
        f" (2) bench/storage.py's {st['series']:,} series × {st['days']} days × 15 s = "
        f"{st['samples']:,} samples in arrival order through each backend's `write`, then "
        f"`compact`; (3) bench/query.py's {q['series']:,} series × 15 s = {q['samples']:,} "
        "samples ending at load time, written in process, compacted, then served by "
        "`opsmetrics serve` (DuckDB) and by `opsmetrics serve` with "
        "`OPSMETRICS_STORAGE_URL=clickhouse://…` on chshim; times are one POST to "
        f"`/api/v1/query_range` (JSON included); (4) {ev['events']:,} events, "
        f"{ev['users']:,} users over 30 days (bench/kpi.py's shop), bulk-loaded into each "
        "backend's own events table.",
        "",
        "| # | figure | median | runs | ratio to reference | notes |",
        "|---|---|---|---|---|---|",
        *ingest_rows(results["ingest"]),
        *storage_rows(st),
        *query_rows(results["queries"]),
        *event_rows(ev),
        *nodes_rows(results["nodes"]),
        "",
        "Ratios: (1) ClickHouse / DuckDB samples/s (goal ≥ 1); (2) ClickHouse / DuckDB "
        "bytes/sample (goal ≤ 1.7 B/sample); (3) ClickHouse / DuckDB latency; (4) opsmetrics / "
        "hand-written SQL (goal ≤ 1.2); (5) two nodes / one (goal ≥ 1.6).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this section; a `### Why` subsection written by hand is kept."""
    text = path.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    if old:
        kept = re.search(r"^### Why.*", old.group(0), re.S | re.M)
        section += "\n" + kept.group(0).rstrip("\n") + "\n" if kept else ""
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--results", type=Path, help="render saved results (JSON) instead of running")
    args = p.parse_args(argv)
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write"]
    if args.results:
        results = json.loads(args.results.read_text())
    else:
        results = {
            "meta": {
                "command": shlex.join(["python", "bench/scale_out.py", *given]),
                "load": os.getloadavg()[0],
                "measured": time.strftime("%Y-%m-%d %H:%M"),
            }
        }
        with tempfile.TemporaryDirectory(prefix="opsmetrics-scale-out-") as tmp:
            results.update({name: run_part(name, args.quick, Path(tmp)) for name in PARTS})
        saved = Path(tempfile.gettempdir()) / "opsmetrics-scale-out-results.json"
        saved.write_text(json.dumps(results))
        print(f"results saved in {saved}")
    section = render(results, args.quick)
    print(section)
    if args.write:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
