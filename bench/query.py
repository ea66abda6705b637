"""Query benchmark: dashboard range queries, opsmetrics vs Prometheus and VictoriaMetrics.

Run: .venv/bin/python bench/query.py [--instances 4] [--days 3] [--runs 5]
Quick: .venv/bin/python bench/query.py --instances 1 --days 1 --runs 2 --no-write
Engine only: .venv/bin/python bench/query.py --in-process (`evaluate_range` of both tables'
queries over the same kind of data held in memory: no storage, HTTP or JSON; prints wall and
CPU medians)

Generates 500 x --instances series (2,000 by default) at 15 s for --days days ending now:
counters `http_requests_total{service,instance,code,route}`, classic histograms
`http_request_duration_seconds_{bucket,sum,count}{service,instance,route}` and gauges
`queue_depth{service,instance,queue}`. The same samples go to the real server
(`python -m opsmetrics serve`, remote_write, day partitions compacted before timing) and to
Debian's Prometheus (`promtool tsdb create-blocks-from openmetrics`, then `prometheus` on the
blocks), and the same remote_write requests to Debian's victoria-metrics. Every query is
POSTed to each `/api/v1/query_range`; after one warm-up each, runs alternate between them; a
figure is the median of --runs. Our results are compared with Prometheus's series by series
(values within 1e-6 relative). Results replace the `## Query` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cramjam
import httpx
import numpy as np
import numpy.typing as npt
from facts import machine_facts

from opsmetrics import model
from opsmetrics.ingest.proto import remote_pb2

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
VICTORIA = "/usr/bin/victoria-metrics"
STEP_MS = 15_000
#: Samples sit half-way between 15 s grid points so no sample falls exactly on a window edge:
#: Prometheus 2.x windows are closed on the left, 3.x (and ours) open, and a sample on the edge
#: would make the two disagree for a reason that is not a bug. 7.5 s is exact in binary, so the
#: OpenMetrics seconds timestamp converts back to the same millisecond.
PHASE_MS = 7_500
MAX_SAMPLES_PER_REQUEST = 50_000
SERVICES = ("api", "auth", "billing", "search", "web")
CODES = ("200", "404", "500")
ROUTES = ("/", "/login", "/items", "/items/{id}", "/checkout")
LE = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
QUEUES = 20
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Json = dict[str, Any]


# --- the data set -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]  # `__name__` first
    values: Floats


@dataclass(frozen=True, slots=True)
class DataSet:
    ts: Ints  # shared by every series
    series: list[Series]

    @property
    def samples(self) -> int:
        return len(self.ts) * len(self.series)


def generate(instances: int, days: float, now_ms: int, seed: int = 1) -> DataSet:
    rng = np.random.default_rng(seed)
    n = int(days * 86_400_000 // STEP_MS)
    last = (now_ms - PHASE_MS) // STEP_MS * STEP_MS + PHASE_MS
    ts = last - STEP_MS * np.arange(n - 1, -1, -1, dtype=np.int64)
    diurnal = 1 + 0.5 * np.sin(2 * np.pi * ts / 86_400_000)
    out: list[Series] = []
    for si, service in enumerate(SERVICES):
        for i in range(instances):
            # The last instance of every service restarts once: its counters reset to zero.
            reset = int(rng.integers(n // 4, 3 * n // 4)) if i == instances - 1 else None
            base = {"service": service, "instance": f"{service}-{i}"}
            out += counters(rng, base, diurnal * (si + 1), reset)
            out += histograms(rng, base, diurnal * (si + 1), 0.02 * (si + 1), reset)
            out += gauges(rng, base, n)
    return DataSet(ts, out)


def _restart(cumulative: Floats, reset: int | None) -> Floats:
    if reset is not None:
        cumulative = cumulative.copy()
        cumulative[reset:] -= cumulative[reset - 1]
    return cumulative


def counters(
    rng: np.random.Generator, base: dict[str, str], load: Floats, reset: int | None
) -> list[Series]:
    out = []
    for code, share in zip(CODES, (20.0, 1.0, 0.3), strict=True):
        for ri, route in enumerate(ROUTES):
            incr = rng.poisson(load * share / (ri + 1)).astype(np.float64)
            labels = {"__name__": "http_requests_total", **base, "code": code, "route": route}
            out.append(Series(labels, _restart(np.cumsum(incr), reset)))
    return out


def histograms(
    rng: np.random.Generator, base: dict[str, str], load: Floats, median_s: float, reset: int | None
) -> list[Series]:
    bounds = np.array([float(le) for le in LE[:-1]])
    out = []
    for ri, route in enumerate(ROUTES):
        latency = median_s * (ri + 1) / 2
        # Lognormal latencies: bucket probabilities from the normal CDF of log(le / median).
        z = np.log(bounds / latency) / 0.8
        cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
        probs = np.diff(np.concatenate(([0.0], cdf, [1.0])))
        count = rng.poisson(load * 10 / (ri + 1))
        per_bucket = rng.multinomial(count, probs / probs.sum())
        buckets = np.cumsum(np.cumsum(per_bucket, axis=1), axis=0).astype(np.float64)
        labels = {**base, "route": route}
        for k, le in enumerate(LE):
            name = {"__name__": "http_request_duration_seconds_bucket", **labels, "le": le}
            out.append(Series(name, _restart(buckets[:, k], reset)))
        total = np.round(count * latency * rng.lognormal(0.3, 0.2, len(count)), 3)
        out.append(
            Series(
                {"__name__": "http_request_duration_seconds_sum", **labels},
                _restart(np.cumsum(total), reset),
            )
        )
        out.append(
            Series(
                {"__name__": "http_request_duration_seconds_count", **labels},
                _restart(buckets[:, -1].copy(), reset),
            )
        )
    return out


def gauges(rng: np.random.Generator, base: dict[str, str], n: int) -> list[Series]:
    out = []
    for q in range(QUEUES):
        walk = np.abs(np.cumsum(rng.normal(0, 3, n))).round(0) + q
        out.append(Series({"__name__": "queue_depth", **base, "queue": f"q{q}"}, walk))
    return out


# --- remote_write bodies: labels through remote_pb2, samples laid out with numpy ----------


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def samples_bytes(ts: Ints, values: Floats) -> bytes:
    """Field 2 of TimeSeries, once per sample: each Sample is 16 bytes (double + 6-byte varint)."""
    assert ((ts >= 1 << 35) & (ts < 1 << 42)).all()
    out = np.empty((len(ts), 18), dtype=np.uint8)
    out[:, :3] = (0x12, 16, 0x09)
    out[:, 3:11] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    out[:, 11] = 0x10
    shifts = np.arange(6, dtype=np.int64) * 7
    out[:, 12:] = ((ts[:, None] >> shifts) & 0x7F).astype(np.uint8)
    out[:, 12:17] |= 0x80
    return out.tobytes()


def labels_bytes(labels: dict[str, str]) -> bytes:
    pairs = sorted(labels.items())
    msg = remote_pb2.TimeSeries(labels=[remote_pb2.Label(name=k, value=v) for k, v in pairs])
    return msg.SerializeToString()


def write_requests(data: DataSet, series: Sequence[Series]) -> Iterator[bytes]:
    """Uncompressed WriteRequests of <= 50k samples; a series' samples stay in time order."""
    parts: list[bytes] = []
    room = MAX_SAMPLES_PER_REQUEST
    for s in series:
        head = labels_bytes(s.labels)
        start = 0
        while start < len(data.ts):
            stop = min(len(data.ts), start + room)
            body = head + samples_bytes(data.ts[start:stop], s.values[start:stop])
            parts.append(b"\x0a" + varint(len(body)) + body)
            room -= stop - start
            start = stop
            if room == 0:
                yield b"".join(parts)
                parts, room = [], MAX_SAMPLES_PER_REQUEST
    if parts:
        yield b"".join(parts)


def check_encoding(data: DataSet) -> None:
    """The hand-laid samples must decode with the real message types."""
    first = next(write_requests(data, data.series[:2]))
    req = remote_pb2.WriteRequest.FromString(first)
    got = req.timeseries[0]
    assert got.samples[0].timestamp == data.ts[0], got.samples[0]
    assert got.samples[-1].value == data.series[0].values[len(got.samples) - 1]
    assert sum(len(t.samples) for t in req.timeseries) <= MAX_SAMPLES_PER_REQUEST


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    url: str
    popen: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(120)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def wait_ready(proc: Proc, path: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.url}: process exited with {proc.popen.returncode}")
        try:
            if httpx.get(proc.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.url} not ready after {timeout} s")


@contextmanager
def opsmetrics_server(data_dir: Path) -> Iterator[Proc]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "opsmetrics",
        "serve",
        "--data",
        str(data_dir),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    env = {
        **os.environ,
        "OPSMETRICS_SAMPLES_LATE_WINDOW": "5m",
        "OPSMETRICS_MAINTENANCE_INTERVAL": "10s",
    }
    with (data_dir.parent / "opsmetrics.log").open("ab") as log:
        popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = Proc(f"http://127.0.0.1:{port}", popen)
    try:
        wait_ready(proc, "/readyz")
        yield proc
    finally:
        proc.stop()


@contextmanager
def serve(cmd: list[str], port: int, log_path: Path, ready: str) -> Iterator[Proc]:
    """A reference server, its output in `log_path`, stopped on exit."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    proc = Proc(f"http://127.0.0.1:{port}", popen)
    try:
        wait_ready(proc, ready)
        yield proc
    finally:
        proc.stop()


def prometheus_server(work: Path) -> AbstractContextManager[Proc]:
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    cmd = [
        PROMETHEUS,
        f"--storage.tsdb.path={work / 'prometheus'}",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=30d",
    ]
    return serve(cmd, port, work / "prometheus.log", "/-/ready")


def victoria_server(work: Path) -> AbstractContextManager[Proc]:
    """Debian's victoria-metrics: no result cache, and no 30 s hold-back of recent data."""
    port = free_port()
    cmd = [
        VICTORIA,
        f"-storageDataPath={work / 'victoria'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.disableCache",
        "-search.latencyOffset=0s",
        "-search.maxPointsPerTimeseries=1000000",
    ]
    return serve(cmd, port, work / "victoria.log", "/health")


# --- loading ------------------------------------------------------------------------------------


def load_opsmetrics(url: str, data: DataSet, clients: int = 2) -> float:
    """Posts every sample (one thread per share of the series); returns samples/s."""
    errors: list[str] = []

    def send(share: Sequence[Series]) -> None:
        with httpx.Client(timeout=300) as client:
            for raw in write_requests(data, share):
                body = bytes(cramjam.snappy.compress_raw(raw))
                r = client.post(url + "/api/v1/write", content=body, headers=RW_HEADERS)
                if r.status_code != 204:
                    errors.append(f"{r.status_code} {r.text[:300]}")
                    return

    t0 = time.monotonic()
    threads = [
        threading.Thread(target=send, args=(data.series[i::clients],)) for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("remote_write failed: " + errors[0])
    return data.samples / (time.monotonic() - t0)


def load_victoria(data: DataSet, work: Path) -> float:
    """The same remote_write requests to VictoriaMetrics, flushed; returns samples/s."""
    with victoria_server(work) as vm:
        rate = load_opsmetrics(vm.url, data)
        httpx.get(vm.url + "/internal/force_flush", timeout=600)
    return rate


def storage_rows(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=60).text
    found = re.findall(r'^opsmetrics_storage_rows\{kind="(\w+)"\} (\S+)$', text, re.M)
    return {kind: float(value) for kind, value in found}


def wait_compacted(url: str, data: DataSet, partition_ms: int = 86_400_000) -> float:
    """Until the head holds no more than the still-open day partition; returns seconds waited."""
    open_rows = int((data.ts >= time.time() * 1000 // partition_ms * partition_ms).sum())
    limit = open_rows * len(data.series) * 1.01 + 1000
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1800:
        rows = storage_rows(url)
        print(f"  rows: {rows}", flush=True)
        if rows.get("samples_head", math.inf) <= limit:
            return time.monotonic() - t0
        time.sleep(10)
    raise RuntimeError(f"compaction not done after 30 min: {rows}")


def write_openmetrics(data: DataSet, path: Path) -> None:
    stamps = [f"{t // 1000}.{t % 1000:03d}" for t in data.ts.tolist()]
    families = {
        "http_requests_total": ("http_requests", "counter"),
        "queue_depth": ("queue_depth", "gauge"),
    }
    with path.open("w") as out:
        for name, (family, kind) in families.items():
            out.write(f"# TYPE {family} {kind}\n")
            for s in (s for s in data.series if s.labels["__name__"] == name):
                _write_series(out, s, stamps)
        out.write("# TYPE http_request_duration_seconds histogram\n")
        for s in data.series:
            if s.labels["__name__"].startswith("http_request_duration_seconds"):
                _write_series(out, s, stamps)
        out.write("# EOF\n")


def _write_series(out: object, s: Series, stamps: list[str]) -> None:
    labels = ",".join(f'{k}="{v}"' for k, v in s.labels.items() if k != "__name__")
    prefix = f"{s.labels['__name__']}{{{labels}}} "
    lines = [f"{prefix}{v!r} {t}\n" for v, t in zip(s.values.tolist(), stamps, strict=True)]
    out.write("".join(lines))  # type: ignore[attr-defined]


def load_prometheus(data: DataSet, work: Path) -> float:
    """OpenMetrics text → promtool blocks in work/prometheus; returns seconds."""
    t0 = time.monotonic()
    text = work / "data.om.txt"
    write_openmetrics(data, text)
    print(f"  openmetrics file: {text.stat().st_size / 1e9:.2f} GB", flush=True)
    subprocess.run(
        [
            PROMTOOL,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            "--max-block-duration=72h",
            str(text),
            str(work / "prometheus"),
        ],
        check=True,
    )
    text.unlink()
    return time.monotonic() - t0


# --- queries ------------------------------------------------------------------------------------

RATE = "rate(http_requests_total[{w}])"
BUCKETS = "sum by (le, service) (rate(http_request_duration_seconds_bucket[{w}]))"
QUERIES = {
    "rate by service": f"sum by (service) ({RATE})",
    "5xx ratio by service": f'sum by (service) (rate(http_requests_total{{code=~"5.."}}[{{w}}]))'
    f" / sum by (service) ({RATE})",
    "p95 latency": f"histogram_quantile(0.95, {BUCKETS})",
    "p99 latency": f"histogram_quantile(0.99, {BUCKETS})",
    "avg_over_time gauge": "avg_over_time(queue_depth[{w2}])",
    "topk 5 routes": f"topk(5, sum by (route) ({RATE}))",
    "today / yesterday": f"sum({RATE}) / sum(rate(http_requests_total[{{w}}] offset 1d))",
}


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    span_s: int
    step_s: int
    rate_window: str
    gauge_window: str


WINDOWS = (
    Window("24h, step 60s", 86_400, 60, "5m", "10m"),
    Window("3d, step 1h", 3 * 86_400, 3_600, "1h", "1h"),
)


def query_text(template: str, window: Window) -> str:
    return template.replace("{w}", window.rate_window).replace("{w2}", window.gauge_window)


@dataclass
class Timing:
    query: str
    window: str
    expr: str
    ours: list[float] = field(default_factory=list)
    prom: list[float] = field(default_factory=list)
    vm: list[float] = field(default_factory=list)
    series: int = 0
    points: int = 0
    mismatch: str = ""


def run_query(client: httpx.Client, url: str, form: dict[str, str]) -> tuple[float, Json]:
    t0 = time.perf_counter()
    r = client.post(url + "/api/v1/query_range", data=form)
    elapsed = time.perf_counter() - t0
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:500]} for {form['query']}")
    return elapsed, body["data"]


def as_map(data: Json) -> dict[frozenset[tuple[str, str]], dict[float, float]]:
    return {
        frozenset(s["metric"].items()): {float(t): float(v) for t, v in s["values"]}
        for s in data["result"]
    }


@dataclass(frozen=True, slots=True)
class Mismatch:
    series: str
    t: float
    ours: float | None
    prom: float | None


def compare(ours: Json, prom: Json) -> list[Mismatch]:
    """Every point where the two results differ (missing on one side, or off by > 1e-6 rel)."""
    a, b = as_map(ours), as_map(prom)
    out = []
    for key in a.keys() | b.keys():
        pa, pb = a.get(key, {}), b.get(key, {})
        for t in sorted(pa.keys() | pb.keys()):
            va, vb = pa.get(t), pb.get(t)
            if va is None or vb is None or not _same(va, vb):
                out.append(Mismatch(str(dict(key)), t, va, vb))
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6)


def describe(bad: list[Mismatch], edge_s: float) -> str:
    """'' when nothing differs; says whether every difference sits at the start of the data."""
    if not bad:
        return ""
    where = len({m.series for m in bad})
    first = min(bad, key=lambda m: m.t)
    text = f"{len(bad)} points in {where} series, e.g. {first.series} @ {first.t:.0f}: "
    text += f"ours {first.ours!r}, Prometheus {first.prom!r}"
    if all(m.t <= edge_s for m in bad):
        text += "; all in windows that hold the data's first sample (see notes)"
    return text


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[duration[-1]]


def time_queries(
    ours: str, prom: str, vm: str, first_s: float, end_s: int, runs: int
) -> list[Timing]:
    timings = []
    with httpx.Client(timeout=600) as client:
        for window in WINDOWS:
            end = end_s // window.step_s * window.step_s
            for name, template in QUERIES.items():
                expr = query_text(template, window)
                form = {
                    "query": expr,
                    "start": str(end - window.span_s),
                    "end": str(end),
                    "step": str(window.step_s),
                }
                reach = max(seconds(window.rate_window), seconds(window.gauge_window))
                edge = first_s + reach + (86_400 if "offset 1d" in expr else 0)
                timing = Timing(name, window.name, expr)
                timings.append(time_one(client, (ours, prom, vm), form, timing, runs, edge))
    return timings


def time_one(
    client: httpx.Client,
    urls: tuple[str, str, str],
    form: dict[str, str],
    t: Timing,
    runs: int,
    edge_s: float,
) -> Timing:
    ours, prom, vm = urls
    _, got = run_query(client, ours, form)
    _, want = run_query(client, prom, form)
    run_query(client, vm, form)
    t.mismatch = describe(compare(got, want), edge_s)
    t.series = len(want["result"])
    t.points = sum(len(s["values"]) for s in want["result"])
    for _ in range(runs):
        t.ours.append(run_query(client, ours, form)[0])
        t.prom.append(run_query(client, prom, form)[0])
        t.vm.append(run_query(client, vm, form)[0])
    print(
        f"  {t.window:14} {t.query:22} ours {statistics.median(t.ours) * 1e3:9.1f} ms  "
        f"prom {statistics.median(t.prom) * 1e3:8.1f} ms  "
        f"vm {statistics.median(t.vm) * 1e3:8.1f} ms  {t.mismatch or 'results agree'}",
        flush=True,
    )
    return t


# --- the report ---------------------------------------------------------------------------------


def machine() -> list[str]:
    return machine_facts("; a shared machine (other engineers' jobs may run alongside)")


def render(timings: list[Timing], facts: dict[str, str], command: str) -> str:
    lines = [
        "## Query",
        "",
        f"Command: `{command}`",
        "",
        *machine(),
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        "| range | query | series × points | ours (ms) | Prometheus (ms) | VictoriaMetrics (ms) "
        "| ours / Prometheus | ours / VictoriaMetrics | results (vs Prometheus) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        a, b = statistics.median(t.ours) * 1e3, statistics.median(t.prom) * 1e3
        c = statistics.median(t.vm) * 1e3 if t.vm else math.nan
        agree = "agree" if not t.mismatch else "**differ**: " + t.mismatch.replace("|", "\\|")
        lines.append(
            f"| {t.window} | {t.query} | {t.series} × {t.points:,} | {a:,.1f} | "
            f"{b:,.1f} | {c:,.1f} | {a / b:.2f} | {a / c:.2f} | {agree} |"
        )
    lines += ["", "Expressions (`[5m]`/`[10m]` windows at step 60 s; `[1h]` at step 1 h):", ""]
    lines += [f"- {name}: `{query_text(q, WINDOWS[0])}`" for name, q in QUERIES.items()]
    return "\n".join(lines + ["", *NOTES]) + "\n"


NOTES = [
    "Notes:",
    "",
    "- A time is the wall time of one form-encoded POST to `/api/v1/query_range` on loopback,",
    "  JSON body included, measured by the client. Each query runs once per server as a warm-up,",
    "  then the two servers alternate; the figure is the median. Ratios below 1 mean opsmetrics",
    "  was faster.",
    "- Samples sit at 7.5 s past each 15 s grid point, so no sample lies exactly on a window",
    "  edge. Prometheus 2.x windows are closed on the left and 3.x windows (which we follow) are",
    "  open, so a sample on the edge would make the results differ for a known reason.",
    "- Where results differ only in windows that hold the data's first sample, the cause is",
    "  `rate` extrapolation. If a series starts inside the window, Prometheus 2.42 extrapolates",
    "  towards the counter's zero point before it applies the half-interval cap. Prometheus 3.x",
    "  applies the cap first, and opsmetrics follows 3.x. Every other point agrees within 1e-6.",
    "- VictoriaMetrics (Debian's 1.79, single node) gets the same remote_write requests, runs",
    "  with its result cache off and no hold-back of recent data, and answers the same PromQL",
    "  through its Prometheus API; its results are not compared: MetricsQL's `rate` does not",
    "  extrapolate and looks back at the sample before the window, by design.",
]


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the `## Query` section; a hand-written `### Profile…` survives."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Query\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    if old:
        kept = re.search(r"^### Profile.*", old.group(0), re.S | re.M)
        section += "\n" + kept.group(0).rstrip("\n") + "\n" if kept else ""
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


# --- main ---------------------------------------------------------------------------------------


def load_both(args: argparse.Namespace, work: Path, facts: dict[str, str]) -> dict[str, float]:
    """Generates the data, loads both stores under `work`; returns its first and last time (s)."""
    t0 = time.monotonic()
    data = generate(args.instances, args.days, int(time.time() * 1000))
    check_encoding(data)
    facts["data"] = (
        f"{len(data.series):,} series × {len(data.ts):,} samples (15 s) = "
        f"{data.samples:,} samples over {args.days:g} days ending at load time; "
        f"{len(SERVICES) * args.instances * len(CODES) * len(ROUTES)} counters, "
        f"{len(SERVICES) * args.instances * len(ROUTES) * (len(LE) + 2)} histogram "
        f"series ({len(LE)} buckets + _sum + _count), "
        f"{len(SERVICES) * args.instances * QUEUES} gauges"
    )
    print(f"generated {data.samples:,} samples in {time.monotonic() - t0:.0f} s", flush=True)
    with opsmetrics_server(work / "opsmetrics") as ours:
        rate = load_opsmetrics(ours.url, data)
        print(f"opsmetrics remote_write: {rate:,.0f} samples/s", flush=True)
        waited = wait_compacted(ours.url, data)
    facts["load, opsmetrics"] = (
        f"remote_write ≤ 50k samples/request, 2 clients: {rate:,.0f} "
        f"samples/s; then {waited:.0f} s until the closed day "
        "partitions were compacted"
    )
    vm_rate = load_victoria(data, work)
    facts["load, VictoriaMetrics"] = (
        f"the same remote_write requests, 2 clients: {vm_rate:,.0f} samples/s"
    )
    seconds = load_prometheus(data, work)
    facts["load, Prometheus"] = (
        f"OpenMetrics text + `promtool tsdb create-blocks-from "
        f"openmetrics --max-block-duration=72h`: {seconds:.0f} s"
    )
    end_s = int(data.ts[-1] // 1000)
    times = {"first_s": float(data.ts[0]) / 1000, "end_s": end_s}
    (work / "facts.json").write_text(json.dumps({**times, **facts}))
    return times


# --- the engine alone (--in-process) ------------------------------------------------------------


class MemoryReader:
    """The data set as a `SeriesReader`: the engine's time without storage, HTTP or JSON."""

    def __init__(self, data: DataSet) -> None:
        self.series = [
            model.Series(i, tuple(sorted(s.labels.items()))) for i, s in enumerate(data.series)
        ]
        self.ts = data.ts
        self.values = [s.values for s in data.series]

    def select_series(
        self,
        matchers: Sequence[model.Matcher],
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[model.Series]:
        return [s for s in self.series if all(m.matches_labels(s.labels) for m in matchers)]

    def read_samples(self, ids: Sequence[int], start_ms: int, end_ms: int) -> model.SampleRows:
        lo, hi = np.searchsorted(self.ts, [start_ms, end_ms + 1])
        wanted = sorted(ids)
        return model.SampleRows(
            np.repeat(np.asarray(wanted, np.int64), hi - lo),
            np.tile(self.ts[lo:hi], len(wanted)),
            np.concatenate([self.values[i][lo:hi] for i in wanted]) if wanted else np.zeros(0),
        )

    def read_rollups(self, *args: object) -> Any:
        raise AssertionError("the in-process run reads raw samples only")

    def rollup_spans(self) -> list[tuple[int, int]]:
        return []


def in_process(args: argparse.Namespace) -> None:
    """Median time of `evaluate_range` for each query of both tables, on the same kind of data."""
    from opsmetrics.query.promql.engine import evaluate_range

    # The longest range and a day: "today / yesterday" reads a day back (offset 1d).
    days = max(w.span_s for w in WINDOWS) / 86_400 + 1.01
    data = generate(args.instances, days, int(time.time() * 1000))
    reader = MemoryReader(data)
    print("| range | query | wall (ms) | CPU (ms) |\n|---|---|---|---|", flush=True)
    for window in WINDOWS:
        step = window.step_s * 1000
        end = int(data.ts[-1]) // step * step
        start = end - window.span_s * 1000
        for name, template in QUERIES.items():
            expr = query_text(template, window)
            evaluate_range(reader, expr, start, end, step, use_rollups=False)
            wall, cpu = [], []
            for _ in range(args.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                evaluate_range(reader, expr, start, end, step, use_rollups=False)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            print(
                f"| {window.name} | {name} | {statistics.median(wall) * 1000:,.1f} "
                f"| {statistics.median(cpu) * 1000:,.1f} |",
                flush=True,
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--instances", type=int, default=4, help="per service; 500 series each")
    p.add_argument("--days", type=float, default=3)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--work", type=Path, help="keep data here (default: a temporary directory)")
    p.add_argument("--reuse", action="store_true", help="skip loading: --work is already loaded")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print the section only")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="time the engine alone (data in memory, no servers); prints the figures",
    )
    return p.parse_args(argv)


def check_loaded(url: str, end_s: int) -> None:
    """Prometheus must have opened the backfilled blocks: count the series it sees now."""
    form = {"query": 'count({__name__=~".+"})', "time": str(end_s)}
    result = httpx.post(url + "/api/v1/query", data=form, timeout=120).json()["data"]["result"]
    if not result:
        raise RuntimeError("Prometheus sees no series: the blocks were not loaded")
    print(f"Prometheus sees {result[0]['value'][1]} series at the data's end", flush=True)


def run(args: argparse.Namespace, work: Path, command: str) -> None:
    if args.reuse:
        facts = json.loads((work / "facts.json").read_text())
        times = {"first_s": facts.pop("first_s"), "end_s": facts.pop("end_s")}
    else:
        facts = {}
        times = load_both(args, work, facts)
    end_s = int(times["end_s"])
    with (
        opsmetrics_server(work / "opsmetrics") as ours,
        prometheus_server(work) as prom,
        victoria_server(work) as vm,
    ):
        check_loaded(prom.url, end_s)
        timings = time_queries(ours.url, prom.url, vm.url, times["first_s"], end_s, args.runs)
    section = render(timings, facts, command)
    print(section)
    if not args.no_write:
        write_section(args.out, section)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.in_process:
        in_process(args)
        return
    command = ".venv/bin/python bench/query.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work, command.strip())
        return
    with tempfile.TemporaryDirectory(prefix="opsmetrics-query-bench-") as tmp:
        run(args, Path(tmp), command.strip())


if __name__ == "__main__":
    main()
