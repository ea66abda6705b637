"""Alerting benchmark: one evaluation of 1,000 Prometheus alerting rules, and of KPI alert rules.

Run: .venv/bin/python bench/alerts.py [--rules 1000] [--hours 1] [--runs 3] [--kpi-rules 100]
     [--live-cycles 10] [--live-interval 15] [--big-rules 5000] [--big-cycles 6]
Quick: .venv/bin/python bench/alerts.py --rules 100 --runs 1 --kpi-rules 0 --live-cycles 2
       --live-interval 5 --big-rules 200 --big-cycles 2 --no-write

Data: bench/query.py's generator (500 series of one instance per service at 15 s: request
counters, classic latency histograms, queue gauges) for --hours ending now, written through the
real write pipeline into a temporary DuckDB directory (no HTTP). Rules: --rules alerting rules
in groups of 100, cycling through four shapes people write — error ratio per service, p95
latency per service from histogram buckets, per-route request rate, per-queue depth — with
thresholds spread so that some fire and most do not, each with `for`, labels and templated
annotations (`$labels`, `humanize`, `humanizePercentage`). A run is one evaluation of every
group at the same instant (`RuleManager.evaluate_at`: queries, the state machine, template
expansion, ALERTS/ALERTS_FOR_STATE writes); --runs runs one minute apart (the first also
looks up ALERTS_FOR_STATE for rules with `for`, as after a restart; no separate warm-up, to keep
the run near 3 minutes); the figure is the median. Results replace the `## Alerting` section
of BENCHMARKS.md, keeping the notifications row (bench/notifications.py writes it) and any
hand-written `###` notes below the table.

Live, beside Prometheus (bench/alerts_live.py; `apt-get install prometheus` for
/usr/bin/prometheus): the same --rules with `interval: --live-interval s` on a real opsmetrics
server and on Prometheus 2.42 (`--web.enable-remote-write-receiver`), one after the other, each
fed the same 500 series by remote_write (an hour of history, then samples as the clock reaches
them). The figure per system is the groups' `evaluationTime` from /api/v1/rules summed per
cycle, median over --live-cycles cycles; iterations missed from both systems' /metrics; and
whether Prometheus's observed group offsets are the ones opsmetrics computes. Then
--big-rules rules at the same interval on opsmetrics alone, counting missed iterations.

KPI alert rules: --kpi-rules rules over the example catalog (`benchmark_rules`: in turn a
threshold, a change against the same hour last week and a no-data rule), on --kpi-days of demo
history at 5-minute steps; a run is one `KpiAlertManager.evaluate_all()`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from alerts_live import LiveResult, run_live
from facts import machine_facts
from query import ROUTES, SERVICES, DataSet, generate

from opsmetrics.alerting.group_hash import group_offset_ms
from opsmetrics.alerting.groups import RuleManager
from opsmetrics.alerting.kpi_rules import KpiAlertManager, benchmark_rules
from opsmetrics.catalog.rules import parse_rule_file
from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.clock import FakeClock
from opsmetrics.demo.runner import load_history
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import SampleBatch
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
GROUP_SIZE = 100
MIN = 60_000
SECTION = "## Alerting"
#: Prometheus's lastEvaluation is when the evaluation started, a little after its tick.
OFFSET_SLACK_MS = 100


def rule_yaml(k: int) -> str:
    """The k-th rule: one of four shapes, its threshold spread over the data's range."""
    shape, n = k % 4, k // 4
    service, route = SERVICES[n % len(SERVICES)], ROUTES[n % len(ROUTES)]
    if shape == 0:
        expr = (
            f'sum by (service) (rate(http_requests_total{{code="500",service="{service}"}}[5m]))'
            f" / sum by (service) (rate(http_requests_total[5m])) > {0.005 + 0.0005 * (n % 40)}"
        )
    elif shape == 1:
        expr = (
            "histogram_quantile(0.95, sum by (le, service) (rate("
            f'http_request_duration_seconds_bucket{{service="{service}"}}[5m]))) > '
            f"{0.05 + 0.01 * (n % 30)}"
        )
    elif shape == 2:
        expr = f'rate(http_requests_total{{route="{route}",code="200"}}[5m]) > {1 + n % 50}'
    else:
        expr = f'queue_depth{{queue="q{n % 20}"}} > {50 + 10 * (n % 30)}'
    return (
        f"      - alert: Bench{k}\n"
        f"        expr: '{expr}'\n"
        f"        for: {(n % 3) * 5}m\n"
        f"        labels: {{severity: {('page', 'ticket', 'info')[n % 3]}, team: bench}}\n"
        "        annotations:\n"
        '          summary: "{{ $labels.service }} is at {{ $value | humanize }}"\n'
        '          ratio: "{{ $value | humanizePercentage }}"\n'
    )


def rules_text(count: int, interval: str = "1m") -> str:
    lines = ["groups:"]
    for g in range(0, count, GROUP_SIZE):
        lines.append(f"  - name: bench{g // GROUP_SIZE}\n    interval: {interval}\n    rules:")
        lines += [rule_yaml(k).rstrip("\n") for k in range(g, min(g + GROUP_SIZE, count))]
    return "\n".join(lines) + "\n"


def load(services: Services, data: DataSet) -> None:
    for start in range(0, len(data.series), 50):
        chunk = data.series[start : start + 50]
        labels = [tuple(sorted(s.labels.items())) for s in chunk]
        n = len(data.ts)
        batch = SampleBatch(
            labels,
            np.repeat(np.arange(len(chunk), dtype=np.int32), n),
            np.tile(data.ts, len(chunk)),
            np.concatenate([s.values for s in chunk]),
        )
        services.ingestor.write(WriteRequest("bench", samples=DecodedSamples(batch)))


@dataclass(frozen=True, slots=True)
class Result:
    seconds: list[float]
    alerts: int
    firing: int
    errors: int
    samples: int
    series: int


def run(rules: int, hours: float, runs: int) -> Result:
    now = (time.time_ns() // 1_000_000) // MIN * MIN
    clock = FakeClock(now)
    data = generate(instances=1, days=hours / 24, now_ms=now)
    with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-alerts-") as tmp:
        services = open_services(Settings(data_dir=Path(tmp)), clock)
        try:
            load(services, data)
            groups = parse_rule_file(rules_text(rules), "bench/rules.yaml")
            manager = RuleManager(groups, services.storage, services.ingestor, clock)
            seconds = []
            for i in range(runs):
                clock.set(now + i * MIN)
                started = time.perf_counter()
                manager.evaluate_at(now + i * MIN)
                seconds.append(time.perf_counter() - started)
            statuses = [r for g in manager.status() for r in g.rules]
            live = [a for r in statuses for a in r.alerts]
            return Result(
                seconds,
                len(live),
                sum(a.state.value == "firing" for a in live),
                sum(r.health.value == "err" for r in statuses),
                data.samples,
                len(data.series),
            )
        finally:
            services.close()


@dataclass(frozen=True, slots=True)
class KpiResult:
    seconds: list[float]
    rules: int
    days: int
    errors: int


def run_kpi(rules: int, days: int, runs: int) -> KpiResult:
    now = (time.time_ns() // 1_000_000) // MIN * MIN
    clock = FakeClock(now)
    with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-kpi-alerts-") as tmp:
        settings = Settings(data_dir=Path(tmp), config_dir=EXAMPLE_CONFIG)
        services = open_services(settings, clock)
        try:
            load_history(services, days=days, step_s=300)
            specs = benchmark_rules(services.catalog, rules)
            manager = KpiAlertManager(specs, services.storage, services.catalog, clock)
            seconds = []
            for i in range(runs):
                clock.set(now + i * MIN)
                started = time.perf_counter()
                manager.evaluate_all()
                seconds.append(time.perf_counter() - started)
            errors = sum(bool(r.last_error) for r in manager.runs)
            return KpiResult(seconds, len(specs), days, errors)
        finally:
            services.close()


@dataclass(frozen=True, slots=True)
class Live:
    ours: LiveResult
    theirs: LiveResult
    big: LiveResult | None
    #: Per Prometheus group: its observed offset (lastEvaluation, the wall-clock start of its
    #: evaluation) minus the one group_hash.py computes, in ms, modulo the interval.
    offset_lag_ms: list[int]


def run_live_all(args: argparse.Namespace) -> Live:
    """The live comparison at --live-interval, then ours alone with --big-rules."""
    interval = args.live_interval
    extra_ms = 3_600_000  # the feeders have an hour of samples ahead of the clock
    now = time.time_ns() // 1_000_000
    data = generate(instances=1, days=(args.hours + 1) / 24, now_ms=now + extra_ms)
    text = rules_text(args.rules, f"{interval}s")
    with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-live-") as tmp:
        work = Path(tmp)
        theirs = run_live("prometheus", work / "prom", text, data, args.live_cycles, interval)
        print(f"  prometheus: {theirs.cycles}", flush=True)
        ours = run_live("opsmetrics", work / "ours", text, data, args.live_cycles, interval)
        print(f"  opsmetrics: {ours.cycles}", flush=True)
        big = None
        if args.big_rules:
            big_text = rules_text(args.big_rules, f"{interval}s")
            big = run_live("opsmetrics", work / "big", big_text, data, args.big_cycles, interval)
            print(f"  opsmetrics, {args.big_rules} rules: {big.cycles}", flush=True)
    lags = [
        (offset - group_offset_ms(file, name, interval * 1000)) % (interval * 1000)
        for (file, name), offset in ((k.rsplit(";", 1), v) for k, v in theirs.offsets.items())
    ]
    return Live(ours, theirs, big, lags)


def _spread(cycles: list[float]) -> str:
    return f"{statistics.median(cycles):.3f} s ({min(cycles):.3f}–{max(cycles):.3f})"


def live_rows(live: Live, interval: int) -> list[str]:
    ours, theirs = live.ours, live.theirs
    ratio = statistics.median(ours.cycles) / statistics.median(theirs.cycles)
    groups = len(theirs.offsets)
    rows = [
        f"| live, {ours.rules:,} rules at {interval} s: opsmetrics, `evaluationTime` summed "
        f"over {groups} groups, median of {len(ours.cycles)} cycles | {_spread(ours.cycles)} |",
        f"| the same on Prometheus 2.42, median of {len(theirs.cycles)} cycles | "
        f"{_spread(theirs.cycles)} |",
        f"| ratio opsmetrics / Prometheus | {ratio:.2f} |",
        f"| iterations missed in those cycles (opsmetrics, Prometheus) | {ours.missed:g}, "
        f"{theirs.missed:g} |",
        f"| rules with errors (opsmetrics, Prometheus) | {ours.errors}, {theirs.errors} |",
        f"| group offsets: Prometheus's observed start − ours computed | 0–{OFFSET_SLACK_MS} "
        f"ms for {sum(lag <= OFFSET_SLACK_MS for lag in live.offset_lag_ms)} of {groups} "
        f"groups (largest {max(live.offset_lag_ms, default=0)} ms) |",
    ]
    if live.big is not None:
        big = live.big
        rows.append(
            f"| live, {big.rules:,} rules at {interval} s on opsmetrics: cycle (summed), "
            f"median of {len(big.cycles)} | {_spread(big.cycles)}; {big.missed:g} iterations "
            f"missed, {big.errors} rules with errors |"
        )
    return rows


def kpi_rows(result: KpiResult) -> list[str]:
    median = statistics.median(result.seconds)
    runs = ", ".join(f"{s:.2f}" for s in result.seconds)
    return [
        f"| evaluation of {result.rules:,} KPI alert rules over {result.days} days of demo "
        f"history, median of {len(result.seconds)} | {median:.2f} s ({runs}); "
        f"{median / max(result.rules, 1) * 1000:.1f} ms per rule; {result.errors} with errors |",
    ]


def section(
    result: Result, kpi: KpiResult | None, live: Live | None, args: argparse.Namespace, note: str
) -> str:
    rules, hours = args.rules, args.hours
    median = statistics.median(result.seconds)
    runs = ", ".join(f"{s:.2f}" for s in result.seconds)
    return "\n".join(
        [
            SECTION,
            "",
            "`.venv/bin/python bench/alerts.py` (bench/alerts.py says how). "
            f"{rules:,} alerting rules in {-(-rules // GROUP_SIZE)} groups over "
            f"{result.series} series × {hours:g} h at 15 s ({result.samples:,} samples), "
            "one in-process evaluation of every group (queries, state machine, templates, "
            "ALERTS writes).",
            "",
            "| figure | value |",
            "|---|---|",
            f"| evaluation of all {rules:,} rules, median of {len(result.seconds)} | "
            f"{median:.2f} s ({runs}) |",
            f"| per rule | {median / rules * 1000:.1f} ms |",
            f"| alerts after the last run (pending + firing) | {result.alerts:,} "
            f"({result.firing:,} firing) |",
            f"| rules with errors | {result.errors} |",
            *(live_rows(live, args.live_interval) if live is not None else []),
            *(kpi_rows(kpi) if kpi is not None else []),
            "",
            *_facts(note, args.start_load),
            "",
        ]
    )


def _facts(note: str, start_load: float) -> list[str]:
    """machine_facts, with the load average read when the run started (not at its end)."""
    lines = machine_facts(note)
    return [*lines[:-1], f"- Load average when the run started: {start_load:.1f}{note}"]


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text()
    pattern = re.compile(rf"^{SECTION}\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(current)
    if old is not None:
        text = _keep_hand_written(old.group(0), text)
    updated = (
        pattern.sub(lambda _: text + "\n", current)
        if pattern.search(current)
        else (current.rstrip("\n") + "\n\n" + text)
    )
    path.write_text(updated)


def _keep_hand_written(old: str, new: str) -> str:
    """Carry over the notifications row and the `###` notes of the previous section."""
    rows = [line for line in old.splitlines() if line.startswith("| notifications per second")]
    lines = new.rstrip("\n").splitlines()
    last_row = max(i for i, line in enumerate(lines) if line.startswith("|"))
    lines[last_row + 1 : last_row + 1] = rows
    notes = old[old.index("\n### ") :] if "\n### " in old else ""
    return "\n".join(lines) + "\n" + notes.rstrip("\n") + ("\n" if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kpi-rules", type=int, default=100)
    parser.add_argument("--kpi-days", type=int, default=9)
    parser.add_argument("--live-cycles", type=int, default=10, help="0: no live comparison")
    parser.add_argument("--live-interval", type=int, default=15, help="seconds")
    parser.add_argument("--big-rules", type=int, default=5000, help="0: no 5,000-rule run")
    parser.add_argument("--big-cycles", type=int, default=6)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load_avg = args.start_load = os.getloadavg()[0]
    note = " (other work was running on the machine)" if load_avg > 1 else ""
    result = run(args.rules, args.hours, args.runs)
    kpi = run_kpi(args.kpi_rules, args.kpi_days, args.runs) if args.kpi_rules else None
    live = run_live_all(args) if args.live_cycles else None
    text = section(result, kpi, live, args, note)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
