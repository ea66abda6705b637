"""Notification throughput: alerts → dispatcher → webhook to a local receiver, with the log.

Run: .venv/bin/python bench/notifications.py          (1000 groups, 3 runs)
Quick: .venv/bin/python bench/notifications.py --groups 200 --runs 1

Each run opens a fresh DuckDB data directory, starts a threaded loopback HTTP receiver
(answers 200), and sends `--groups` firing alerts that each form their own aggregation group
(group_by instance, group_wait 0s) on one webhook route. One `tick` then submits every
notification — each writes its `pending` intent to the notification log, is POSTed (Alertmanager
webhook v4 JSON, httpx, 4 delivery threads) and has its outcome logged. The rate is
notifications / wall time from the tick to the last logged outcome; the figure is the median of
--runs. Writes one line under `## Alerting` in BENCHMARKS.md (creating the section if missing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.alerting.dispatcher import Dispatcher  # noqa: E402
from opsmetrics.alerting.model import Alert, AlertState  # noqa: E402
from opsmetrics.catalog.notify import parse_notify  # noqa: E402
from opsmetrics.clock import SystemClock  # noqa: E402
from opsmetrics.storage.alert_records import NotificationFilter  # noqa: E402
from opsmetrics.storage.duckdb import DuckDBStorage  # noqa: E402

SECTION = "## Alerting"
LINE_PREFIX = "- Notifications delivered per second"
ROW_PREFIX = "| notifications per second |"


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def one_run(groups: int) -> float:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    cfg = parse_notify(
        f"channels: [{{name: hook, type: webhook, url: '{url}'}}]\n"
        "routes: [{channels: [hook], group_by: [instance], group_wait: 0s}]\n",
        "bench",
    )
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(Path(tmp), now_ms=clock.now_ms())
        dispatcher = Dispatcher(cfg, storage, clock)
        now = clock.now_ms()
        alerts = [
            Alert(
                labels=(("alertname", "Bench"), ("instance", f"i{i}"), ("severity", "warning")),
                annotations=(("summary", "benchmark"),),
                state=AlertState.FIRING,
                value=1.0,
                active_at_ms=now,
                fired_at_ms=now,
            )
            for i in range(groups)
        ]
        dispatcher.send(alerts, now)
        started = time.perf_counter()
        sent = dispatcher.tick(now)
        dispatcher.wait_idle(600)
        elapsed = time.perf_counter() - started
        log = storage.notifications(NotificationFilter(status="delivered", limit=groups + 1))
        assert sent == groups and len(log) == groups, (sent, len(log))
        dispatcher.close()
        storage.close()
    server.shutdown()
    server.server_close()
    return groups / elapsed


def write_figure(row: str, line: str) -> None:
    """Fill the `| notifications per second |` row of the Alerting table if there is one
    (bench/alerts.py writes the table), else put `line` under the section heading."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    rows = [i for i, x in enumerate(lines) if x.startswith(ROW_PREFIX)]
    if rows:
        lines[rows[0]] = row
    else:
        if SECTION not in lines:
            lines += ["", SECTION, ""]
        lines = [x for x in lines if not x.startswith(LINE_PREFIX)]
        lines.insert(lines.index(SECTION) + 1, "")
        lines.insert(lines.index(SECTION) + 2, line)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rates = [one_run(args.groups) for _ in range(args.runs)]
    median = statistics.median(rates)
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    how = (
        f"{args.groups} groups, webhook to a loopback receiver, intent + outcome logged in "
        f"DuckDB, load average {load:.1f} at the start; `bench/notifications.py`"
    )
    line = f"{LINE_PREFIX}, median of {args.runs} ({how}): **{median:,.0f}/s** ({runs})"
    row = f"{ROW_PREFIX} {median:,.0f}/s, median of {args.runs} ({runs}); {how} |"
    print(line)
    if not args.no_write:
        write_figure(row, line)


if __name__ == "__main__":
    main()
