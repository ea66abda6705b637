"""Soak: hold 80% of the measured maximum ingest rate, then twice the maximum, on loopback.

Run:   .venv/bin/python bench/soak.py                         (10 + 2 minutes, ~14 min in all)
Short: .venv/bin/python bench/soak.py --hold-minutes 1 --burst-minutes 0.5 --warmup-seconds 10

One real server (`python -m opsmetrics serve`, a free loopback port, a fresh data directory,
default limits) and one client process. Every request is Prometheus remote_write with 10,000
samples: 1,000 series (those of bench/ingest.py) x 10 timestamps. A sender ("stream", as a
Prometheus remote_write shard) owns its series and sends one request at a time, in timestamp
order: its k-th request carries base + 10k .. base + 10k + 9 ms, so no two requests share a
sample and "every acknowledged sample is stored" can be checked by counting.

1. Ramp: closed loop with 1, 2, 4, 8 senders, `--ramp-seconds` each; the maximum is the best
   rate of acknowledged samples among the steps that had no refusal.
2. Hold: as many streams as the ramp's best step had senders (at most the server's per-endpoint
   concurrency, 8 by default, so a sender that keeps to its schedule is never refused for
   concurrency), open loop (each on its schedule, whatever the answers) at 80% of it for
   `--hold-minutes`: RSS of the server after `--warmup-seconds` and at the end, p50/p99
   acknowledgement latency (send to answer) after the warm-up, errors.
3. Burst: 64 streams (a Prometheus queue near its max_shards of 50) at twice the maximum for
   `--burst-minutes`, no retries: 2xx and goodput,
   429 (with their Retry-After), other 4xx, 5xx, transport errors, and whether the server is
   still up.
Then every phase's stored samples are counted through the query API and compared with the
samples of its 2xx answers. Writes the `## Soak` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facts import write_section  # noqa: E402
from ingest import (  # noqa: E402
    METRICS,
    RW_HEADERS,
    SERIES_PER_REQUEST,
    STEPS_PER_REQUEST,
    Encoders,
    SeriesSet,
    remote_write_body,
)

from tests.server import ServerProcess  # noqa: E402

SAMPLES_PER_REQUEST = SERIES_PER_REQUEST * STEPS_PER_REQUEST
#: Stored samples are counted over windows of this many ms of their timestamps.
COUNT_WINDOW_MS = 5_000
RAMP_SENDERS = (1, 2, 4, 8)
#: Senders of the hold and the burst, like the shards of a Prometheus remote_write queue
#: (its max_shards is 50): each sends its own 1,000 series in order, one request at a time.
STREAMS = 64
#: Timestamps start this far back, so that the newest stays behind the server's clock.
BASE_AGO_MS = 55 * 60_000


@dataclass
class Stream:
    """One sender's series and how many requests it has sent (its timestamps move forward)."""

    encoders: Encoders
    sent: int = 0


@dataclass
class Phase:
    """One phase's metric prefix, its senders' series and what their requests got back."""

    prefix: str
    streams: list[Stream]
    base_ms: int
    values: npt.NDArray[np.float64]
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    retry_after: list[int] = field(default_factory=list)
    late_sends: int = 0
    #: Wall seconds of the open-loop phase, from the first send to the last answer.
    seconds: float = 0.0

    @staticmethod
    def of(prefix: str, now_ms: int, streams: int) -> Phase:
        rng = np.random.default_rng(7)
        made = [Stream(Encoders.of(SeriesSet(prefix, i, now_ms, rng))) for i in range(streams)]
        values = np.round(rng.uniform(0, 1000, (SERIES_PER_REQUEST, STEPS_PER_REQUEST)), 3)
        return Phase(prefix, made, now_ms - BASE_AGO_MS, values)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.streams)

    def next_body(self, stream: Stream) -> bytes:
        ts = self.base_ms + stream.sent * STEPS_PER_REQUEST + np.arange(STEPS_PER_REQUEST)
        stream.sent += 1
        return remote_write_body(stream.encoders, ts.astype(np.int64), self.values)

    @property
    def acknowledged(self) -> int:
        return self.codes["2xx"] * SAMPLES_PER_REQUEST

    def answered(self, since: float = 0.0) -> list[float]:
        return [s for at, s in self.latencies if at >= since]


async def send(http: httpx.AsyncClient, phase: Phase, stream: Stream) -> None:
    body = phase.next_body(stream)
    started = time.perf_counter()
    try:
        got = await http.post("/api/v1/write", content=body, headers=RW_HEADERS)
    except httpx.TransportError as exc:
        phase.codes[f"transport: {type(exc).__name__}"] += 1
        return
    code = got.status_code
    kind = "2xx" if code < 300 else "429" if code == 429 else f"{code // 100}xx"
    phase.codes[kind] += 1
    if code == 429:
        phase.retry_after.append(int(got.headers.get("retry-after", "0")))
    if code < 300:
        phase.latencies.append((started, time.perf_counter() - started))


async def closed_loop(url: str, phase: Phase, senders: int, seconds: float) -> float:
    """The first `senders` streams back to back for `seconds`; acknowledged samples/s."""
    before, deadline = phase.acknowledged, time.perf_counter() + seconds

    async def sender(http: httpx.AsyncClient, stream: Stream) -> None:
        while time.perf_counter() < deadline:
            await send(http, phase, stream)

    async with _client(url, senders) as http:
        started = time.perf_counter()
        await asyncio.gather(*(sender(http, s) for s in phase.streams[:senders]))
        return (phase.acknowledged - before) / (time.perf_counter() - started)


async def open_loop(url: str, phase: Phase, rate_rps: float, seconds: float) -> None:
    """`rate_rps` requests a second spread over the streams, whatever the answers: stream i
    sends its k-th request at (k * streams + i) / rate, or at once when it is behind."""
    n = len(phase.streams)

    async def stream_loop(http: httpx.AsyncClient, i: int, start: float) -> None:
        for k in range(int(rate_rps * seconds / n)):
            wait = start + (k * n + i) / rate_rps - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.5:
                phase.late_sends += 1
            await send(http, phase, phase.streams[i])

    async with _client(url, n) as http:
        start = time.perf_counter()
        await asyncio.gather(*(stream_loop(http, i, start) for i in range(n)))
        phase.seconds = time.perf_counter() - start


def _client(url: str, connections: int) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout would close them
    # under a request just being sent (a transport error that is no overload's fault).
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2
    )
    return httpx.AsyncClient(base_url=url, timeout=120, limits=limits)


def rss_mib(pid: int) -> float:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def stored_samples(url: str, phase: Phase) -> int:
    """The phase's samples as the query API counts them, one metric name and one window of its
    timestamps at a time (a query may load at most 50M samples: the hold stores far more)."""
    end_ms = phase.base_ms + max(s.sent for s in phase.streams) * STEPS_PER_REQUEST
    total = 0
    for i in range(METRICS):
        at_ms = phase.base_ms - 1  # windows (at - W, at], the first one starting before base
        while at_ms < end_ms:
            at_ms += COUNT_WINDOW_MS
            query = f"sum(count_over_time({phase.prefix}_metric_{i}[{COUNT_WINDOW_MS}ms]))"
            params = {"query": query, "time": f"{at_ms / 1000:.3f}"}
            got = httpx.get(url + "/api/v1/query", params=params, timeout=300).json()
            if got.get("status") != "success":
                raise RuntimeError(f"counting {query} at {at_ms}: {got}")
            result = got["data"]["result"]
            total += int(float(result[0]["value"][1])) if result else 0
    return total


@dataclass
class Run:
    max_rate: float = 0.0
    max_senders: int = 1
    ramp: list[tuple[int, float, int]] = field(default_factory=list)  # senders, rate, refused
    rss_start: float = 0.0
    rss_end: float = 0.0
    rss_max: float = 0.0
    hold_p50_ms: float = 0.0
    hold_p99_ms: float = 0.0
    alive: bool = False
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)  # acked, stored
    phases: dict[str, Phase] = field(default_factory=dict)


async def ramp(url: str, run: Run, seconds: float, now_ms: int) -> None:
    phase = run.phases["ramp"] = Phase.of("soakramp", now_ms, max(RAMP_SENDERS))
    for senders in RAMP_SENDERS:
        refused = sum(n for k, n in phase.codes.items() if k != "2xx")
        rate = await closed_loop(url, phase, senders, seconds)
        refused = sum(n for k, n in phase.codes.items() if k != "2xx") - refused
        run.ramp.append((senders, rate, refused))
        print(f"ramp {senders} senders: {rate:,.0f} samples/s, {refused} refused", flush=True)
        if not refused and rate > run.max_rate:
            run.max_rate, run.max_senders = rate, senders


async def hold(url: str, pid: int, run: Run, args: argparse.Namespace, now_ms: int) -> None:
    phase = run.phases["hold"] = Phase.of("soakhold", now_ms, run.max_senders)
    rate_rps = 0.8 * run.max_rate / SAMPLES_PER_REQUEST
    started = time.perf_counter()
    task = asyncio.create_task(open_loop(url, phase, rate_rps, args.hold_minutes * 60))
    await asyncio.sleep(args.warmup_seconds)
    run.rss_start = run.rss_max = rss_mib(pid)
    while not task.done():
        await asyncio.wait({task}, timeout=5)
        run.rss_max = max(run.rss_max, rss_mib(pid))
    run.rss_end = rss_mib(pid)
    after_warmup = [s * 1000 for s in phase.answered(started + args.warmup_seconds)]
    if after_warmup:
        run.hold_p50_ms = statistics.median(after_warmup)
        run.hold_p99_ms = float(np.percentile(after_warmup, 99))


async def burst(url: str, run: Run, minutes: float, now_ms: int) -> None:
    phase = run.phases["burst"] = Phase.of("soakburst", now_ms, STREAMS)
    rate_rps = 2 * run.max_rate / SAMPLES_PER_REQUEST
    await open_loop(url, phase, rate_rps, minutes * 60)


def soak(args: argparse.Namespace) -> Run:
    run = Run()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "data").start(timeout=120)
        assert srv.proc is not None
        try:
            now_ms = int(time.time() * 1000)
            asyncio.run(ramp(srv.url, run, args.ramp_seconds, now_ms))
            asyncio.run(hold(srv.url, srv.proc.pid, run, args, now_ms))
            print(f"hold: {dict(run.phases['hold'].codes)}", flush=True)
            asyncio.run(burst(srv.url, run, args.burst_minutes, now_ms))
            print(f"burst: {dict(run.phases['burst'].codes)}", flush=True)
            run.alive = srv.proc.poll() is None and _ready(srv.url)
            for name, phase in run.phases.items():
                run.stored[name] = (phase.acknowledged, stored_samples(srv.url, phase))
        finally:
            srv.stop(timeout=120)
    return run


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def render(run: Run, args: argparse.Namespace, command: str, facts: list[str]) -> str:
    short = args.hold_minutes < 10 or args.burst_minutes < 2
    label = (
        "**Short validation run** (shorter than the issue's 10 + 2 minutes, on a machine other "
        "engineers' jobs were using); the full soak is the command without arguments."
        if short
        else "Full run (10 + 2 minutes or longer)."
    )
    lines = ["## Soak", "", f"Command: `{command}`. Measured {time.strftime('%Y-%m-%d')}. {label}"]
    lines += ["", *facts, ""]
    lines += _ramp_lines(run) + [""] + _hold_lines(run, args) + [""] + _burst_lines(run, args)
    lines += ["", *_stored_lines(run), ""]
    return "\n".join(lines)


def _ramp_lines(run: Run) -> list[str]:
    steps = ", ".join(f"{s}: {r:,.0f}" + (f" ({n} refused)" if n else "") for s, r, n in run.ramp)
    return [
        f"Ramp (closed loop, senders: acknowledged samples/s): {steps}. "
        f"**Maximum: {run.max_rate:,.0f} samples/s** "
        f"({run.max_rate / SAMPLES_PER_REQUEST:,.1f} requests/s of 10,000 samples)."
    ]


def _hold_lines(run: Run, args: argparse.Namespace) -> list[str]:
    phase = run.phases["hold"]
    errors = sum(n for k, n in phase.codes.items() if k != "2xx")
    return [
        f"Hold at 80% ({0.8 * run.max_rate:,.0f} samples/s) for {args.hold_minutes:g} min, "
        f"{run.max_senders} streams (the senders of the ramp's best step), "
        f"warm-up {args.warmup_seconds:g} s:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent / acknowledged | {phase.sent:,} / {phase.codes['2xx']:,} |",
        f"| acknowledged samples/s over the phase ({phase.seconds:.0f} s) | "
        f"{phase.acknowledged / phase.seconds:,.0f} |",
        f"| errors (any non-2xx or transport error) | {errors} |",
        f"| server RSS after warm-up / at the end / max | {run.rss_start:,.0f} / "
        f"{run.rss_end:,.0f} / {run.rss_max:,.0f} MiB |",
        f"| acknowledgement latency p50 / p99 | {run.hold_p50_ms:.1f} / {run.hold_p99_ms:.1f} ms |",
        f"| sends more than 0.5 s behind schedule (client) | {phase.late_sends} |",
        "",
        _hold_verdict(run, phase, errors, args),
    ]


def _hold_verdict(run: Run, phase: Phase, errors: int, args: argparse.Namespace) -> str:
    growth = (run.rss_end / run.rss_start - 1) * 100 if run.rss_start else float("nan")
    rss = "flat (within 10%)" if growth <= 10 else f"grew {growth:.0f}%"
    if not errors and not phase.late_sends:
        kept = "The server kept up with 80% of the maximum"
    else:
        kept = (
            f"80% of the maximum was **not** fully sustained: {errors} refusals, "
            f"{phase.late_sends} sends behind schedule (the ramp measured a young store for "
            f"{args.ramp_seconds:g} s per step; server and client share the cores)"
        )
    return f"{kept}; RSS {rss} from the end of the warm-up to the end of the hold."


def _burst_lines(run: Run, args: argparse.Namespace) -> list[str]:
    phase = run.phases["burst"]
    codes = phase.codes
    five = codes["5xx"]
    ra = phase.retry_after
    retry = f"{min(ra)}–{max(ra)} s (median {statistics.median(ra):g})" if ra else "—"
    other = {k: n for k, n in codes.items() if k not in ("2xx", "429", "5xx")}
    return [
        f"Burst at 2x ({2 * run.max_rate:,.0f} samples/s offered) for {args.burst_minutes:g} "
        f"min, {STREAMS} streams, no retries:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {phase.sent:,} |",
        f"| 2xx (acknowledged) | {codes['2xx']:,} |",
        f"| acknowledged samples/s (goodput) over the phase ({phase.seconds:.0f} s) | "
        f"{phase.acknowledged / phase.seconds:,.0f} "
        f"({phase.acknowledged / phase.seconds / run.max_rate:.0%} of the maximum) |",
        f"| acknowledgement latency p50 / p99 | {_pct(phase.answered(), 50):.1f} / "
        f"{_pct(phase.answered(), 99):.1f} ms |",
        f"| 429 | {codes['429']:,} |",
        f"| Retry-After of the 429s | {retry} |",
        f"| 5xx (must be 0) | {five}{'' if five == 0 else ' **FAILED**'} |",
        f"| other 4xx / transport errors | {other or 0} |",
        f"| server alive and ready afterwards | {'yes' if run.alive else '**NO**'} |",
    ]


def _pct(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q)) * 1000 if seconds else float("nan")


def _stored_lines(run: Run) -> list[str]:
    lines = ["Every acknowledged sample stored (counted with `count_over_time` through the API):"]
    lines += ["", "| phase | acknowledged samples | stored | |", "|---|---|---|---|"]
    for name, (acked, stored) in run.stored.items():
        verdict = "equal" if acked == stored else "**DIFFERENT**"
        lines.append(f"| {name} | {acked:,} | {stored:,} | {verdict} |")
    return lines


def machine() -> list[str]:
    """CPU, RAM, versions and the load when the run started (no Prometheus needed here)."""
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    limit = os.environ.get("OPSMETRICS_DUCKDB_MEMORY_LIMIT", "")
    return [
        f"- CPU: {cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs (nproc); "
        f"RAM {int(mem.group(1)) / 1024 / 1024:.1f} GiB"
        if mem
        else "RAM ?",
        f"- Python {platform.python_version()}, {platform.platform()}; loopback, default limits"
        + (f", OPSMETRICS_DUCKDB_MEMORY_LIMIT={limit}" if limit else ""),
        f"- Load average when the run started: {os.getloadavg()[0]:.1f}; server and client "
        "share the cores",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ramp-seconds", type=float, default=10.0, help="per ramp step")
    parser.add_argument("--hold-minutes", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=30.0)
    parser.add_argument("--burst-minutes", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    command = " ".join([".venv/bin/python bench/soak.py", *sys.argv[1:]])
    facts = machine()
    run = soak(args)
    part = render(run, args, command, facts)
    print(part)
    write_section(args.out, "Soak", part)
    healthy = run.alive and run.phases["burst"].codes["5xx"] == 0
    sys.exit(0 if healthy and all(a == s for a, s in run.stored.values()) else 1)


if __name__ == "__main__":
    main()
