"""Report bursts: 200 scheduled reports due in the same minute, sent by a real server.

    .venv/bin/python bench/report_burst.py [--reports 200] [--runs 3] [--out BENCHMARKS.md]

The data: 30 count KPIs over 30 days of hourly events (bench/reports.py's), three per team
tag, written once into a DuckDB store. Each run copies that store, writes `--reports` daily
reports all due at 08:00 Europe/Berlin (audiences executive, operations and engineering in
turn, each reading one team's three KPIs, formats html and pdf, delivered by email to its own
recipient and to a webhook), and starts `opsmetrics serve` with its clock a little before the
slot (OPSMETRICS_FAKE_NOW). A real SMTP server (aiosmtpd) and a loopback HTTP receiver count
what arrives, by Message-ID and Idempotency-Key. The burst time runs from the slot to the
arrival of the last delivery; the per-report time is its run's claim to finish (render and
both sends) from the delivery log; peak RSS is the server's and its child processes' (the
PDF workers, reports/pdf_workers.py), VmHWM. Each KPI is in 20 of the 200 reports, so the
burst also measures what they share (reports/memo.py). Goal (issue 18): every report of the
minute sent within it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import reports as reports_bench
from bench.facts import machine_facts, write_section
from bench.reports import SLOT
from opsmetrics.clock import pause
from tests.server import ServerProcess, free_port, wait_until

KPIS = 30
TEAMS = 10
AUDIENCES = ("executive", "operations", "engineering")
#: The server starts with its clock this long before the slot (it is ready in a few seconds).
LEAD_MS = 25_000
#: Its own section, after bench/reports.py's "## Reports" (which that script rewrites whole).
HEADING = "Report bursts: 200 reports due in one minute"


def kpi_yaml() -> str:
    """bench/reports.py's KPIs, each owned by and tagged with one of TEAMS teams."""
    return "".join(
        line.replace("owner: bench,", f"owner: team{i % TEAMS}, tags: [team{i % TEAMS}],")
        for i, line in enumerate(reports_bench.kpi_yaml().splitlines(keepends=True))
    )


def make_data(root: Path) -> None:
    reports_bench.make_data(root)
    (root / "config" / "kpis" / "k.yaml").write_text(kpi_yaml())


def reports_yaml(count: int) -> str:
    lines = ["reports:"]
    for i in range(count):
        lines += [
            f"  - name: team-{i:03d}",
            f"    title: Team report {i}",
            f"    audience: {AUDIENCES[i % len(AUDIENCES)]}",
            '    schedule: "0 8 * * *"',
            "    timezone: Europe/Berlin",
            "    window: day",
            "    formats: [html, pdf]",
            f"    sources: {{tags: [team{i % TEAMS}]}}",
            f"    deliver: [{{channel: mail, to: [r{i:03d}@bench.example]}}, {{channel: hook}}]",
        ]
    return "\n".join(lines) + "\n"


def notify_yaml(smtp_port: int, hook_url: str) -> str:
    return (
        "channels:\n"
        f"  - {{name: mail, type: email, smtp_host: 127.0.0.1, smtp_port: {smtp_port},\n"
        "     from: reports@bench.example, to: [ops@bench.example], timeout: 30s}\n"
        f"  - {{name: hook, type: webhook, url: '{hook_url}', timeout: 30s}}\n"
    )


@dataclass
class Arrivals:
    """What the receivers got: (identity, time.monotonic()) per message."""

    mail: list[tuple[str, float]] = field(default_factory=list)
    hooks: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, box: list[tuple[str, float]], identity: str) -> None:
        with self.lock:
            box.append((identity, time.monotonic()))

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.mail), len(self.hooks)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        found = re.search(rb"^Message-ID:\s*(\S+)", raw, re.M | re.I)
        self.add(self.mail, found.group(1).decode() if found else "?")
        return "250 OK"


def hook_handler(arrivals: Arrivals) -> type[BaseHTTPRequestHandler]:
    class Hook(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            arrivals.add(arrivals.hooks, self.headers.get("idempotency-key", "?"))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Hook


def one_run(template: Path, work: Path, count: int) -> dict[str, float]:
    """One burst on a fresh copy of the store; the figures of the run."""
    shutil.copytree(template / "data", work / "data")
    shutil.copytree(template / "config", work / "config")
    arrivals = Arrivals()
    smtp_port = free_port()
    smtp = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    hook = ThreadingHTTPServer(("127.0.0.1", 0), hook_handler(arrivals))
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cfg = work / "config"
    (cfg / "notify.yaml").write_text(
        notify_yaml(smtp_port, f"http://127.0.0.1:{hook.server_address[1]}/hook")
    )
    (cfg / "reports").mkdir()
    (cfg / "reports" / "burst.yaml").write_text(reports_yaml(count))
    load = os.getloadavg()[0]
    srv = ServerProcess(work / "data", cfg, now_ms=SLOT - LEAD_MS).start(timeout=120)
    try:
        if srv.clock_ms() >= SLOT:
            raise RuntimeError("the server was ready after the slot: raise LEAD_MS")
        wait_until(lambda: arrivals.counts() == (count, count), "every delivery", 1800)
        pause(2.0)  # a late repeat would show up here
        figures = _figures(srv, arrivals, count) | {"load": load}
    finally:
        srv.stop()
        smtp.stop()
        hook.shutdown()
        hook.server_close()
    return figures


def _figures(srv: ServerProcess, arrivals: Arrivals, count: int) -> dict[str, float]:
    assert srv.proc is not None and srv.ready_at is not None and srv.now_ms is not None
    server = psutil.Process(srv.proc.pid)
    children = server.children(recursive=True)
    with arrivals.lock:
        both = arrivals.mail + arrivals.hooks
        once = _exactly_once(arrivals.mail, count) and _exactly_once(arrivals.hooks, count)
    last_ms = srv.now_ms + (max(t for _, t in both) - srv.ready_at) * 1000
    took = _run_times(srv, count)
    total_s = (last_ms - SLOT) / 1000
    return {
        "total_s": total_s,
        "per_min": count / total_s * 60,
        "median_s": statistics.median(took),
        "p95_s": float(np.percentile(took, 95)),
        "rss_mb": _peak_mb(srv.proc.pid),
        "workers_mb": sum(_peak_mb(c.pid) for c in children),
        "processes": float(len(children)),
        "cpu_ms": _cpu_s(server) / count * 1000,
        "workers_cpu_ms": sum(_cpu_s(c) for c in children) / count * 1000,
        "exactly_once": float(once),
    }


def _cpu_s(process: psutil.Process) -> float:
    """User and system CPU seconds since the process started."""
    times = process.cpu_times()
    return float(times.user + times.system)


def _peak_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def _exactly_once(box: list[tuple[str, float]], count: int) -> bool:
    seen = Counter(identity for identity, _ in box)
    return len(seen) == count and set(seen.values()) == {1}


def _run_times(srv: ServerProcess, count: int) -> list[float]:
    """Each report's run, claim to finish (seconds), from GET /api/v1/reports/{name}/runs."""
    took = []
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for i in range(count):
            runs = client.get(f"/api/v1/reports/team-{i:03d}/runs").json()["data"]
            (run,) = [r for r in runs if r["slot_ms"] == SLOT]
            assert run["status"] == "sent", run
            took.append((run["finished_ms"] - run["claimed_ms"]) / 1000)
    return took


def section(results: list[dict[str, float]], count: int, facts: list[str]) -> str:
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    worst = {k: max(r[k] for r in results) for k in ("total_s", "p95_s", "rss_mb", "workers_mb")}
    once = all(r["exactly_once"] == 1.0 for r in results)
    lines = [
        f"## {HEADING}",
        "",
        f"`.venv/bin/python bench/report_burst.py` (median of {len(results)} runs, each a "
        f"fresh `opsmetrics serve`): {count} daily reports due at the same minute, each of "
        "three KPIs of one team (audiences executive, operations, engineering in turn) in "
        "html and pdf, sent by email to a real SMTP server (aiosmtpd) and to a loopback "
        "webhook; each KPI is in a tenth of the reports. The burst runs from the slot to the "
        "last delivery's arrival; the per-report time is its run's claim to finish (render, "
        "PDF, PNG charts, both sends), four reports at a time.",
        "",
        "| figure | median | worst | goal |",
        "| --- | --- | --- | --- |",
        f"| all {count} delivered | {med['total_s']:.1f} s | {worst['total_s']:.1f} s | ≤ 60 s |",
        f"| reports per minute | {med['per_min']:.1f} | | ≥ {count} |",
        f"| per report (median / p95) | {med['median_s']:.2f} s / {med['p95_s']:.2f} s "
        f"| p95 {worst['p95_s']:.2f} s | |",
        f"| server peak RSS | {med['rss_mb']:.0f} MB | {worst['rss_mb']:.0f} MB | |",
        f"| its {med['processes']:.0f} child processes (PDF workers, multiprocessing's "
        f"resource tracker), peak RSS summed | {med['workers_mb']:.0f} MB "
        f"| {worst['workers_mb']:.0f} MB | |",
        f"| CPU per report: server / its child processes (start-up included) "
        f"| {med['cpu_ms']:.0f} ms / {med['workers_cpu_ms']:.0f} ms | | |",
        f"| each slot delivered exactly once (email and webhook) | {'yes' if once else 'NO'} "
        "| | yes |",
        "",
        *facts[:-1],
        facts[-1] + "; at each run's start: " + ", ".join(f"{r['load']:.1f}" for r in results),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the section here")
    args = parser.parse_args()
    facts = machine_facts(" (a shared machine)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        make_data(template)
        for n in range(args.runs):
            results.append(one_run(template, Path(tmp) / f"run{n}", args.reports))
            print(results[-1], flush=True)
    part = section(results, args.reports, facts)
    print(part)
    if args.out is not None:
        write_section(args.out, HEADING, part)


if __name__ == "__main__":
    main()
