"""Ingest benchmark: durable samples/s over loopback, events/s, bytes/sample, peak RSS.

Run: .venv/bin/python bench/ingest.py [--runs 3] [--requests 20] [--storage-samples 10000000]

Starts the real server (`python -m opsmetrics serve`) on a free port with a fresh data dir,
and Debian's Prometheus (/usr/bin/prometheus, remote-write receiver on) as the reference; both
get the SAME pre-encoded remote_write bodies. Every request carries 10k samples: 1,000 series
(10 labels each, `__name__` included) x 10 timestamps; each client owns its series and its
timestamps only move forward. A figure is the median of --runs runs; a rate counts only
samples whose request was answered 2xx (our 2xx means committed to disk). Results replace the
`## Ingest` section of BENCHMARKS.md; nothing else in that file is touched.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import httpx
import msgspec
import numpy as np
import numpy.typing as npt
from facts import machine_facts
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
VICTORIA = "/usr/bin/victoria-metrics"
SERIES_PER_REQUEST = 1_000
STEPS_PER_REQUEST = 10
METRICS = 10  # 1,000 series = 10 metric names x 100 label combinations
#: Scrape interval of the storage run; the throughput runs use 1 s so they stay within an hour.
STEP_MS = 15_000
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
OTLP_HEADERS = {"content-type": "application/x-protobuf"}
JSON_HEADERS = {"content-type": "application/json"}
NDJSON_HEADERS = {"content-type": "application/x-ndjson"}
Bytes = npt.NDArray[np.uint8]


# --- protobuf by hand: the encoders are not what we measure, so keep them cheap ------------


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varints6(values: npt.NDArray[np.int64]) -> Bytes:
    """Each value (2^35 <= v < 2^42, i.e. a ms timestamp) as its 6-byte varint."""
    assert ((values >= 1 << 35) & (values < 1 << 42)).all()
    shifts = np.arange(6, dtype=np.int64) * 7
    out = ((values[:, None] >> shifts) & 0x7F).astype(np.uint8)
    out[:, :5] |= 0x80
    return out


# --- the data -------------------------------------------------------------------------------


@dataclass
class SeriesSet:
    """One client's 1,000 series and their values, advancing one request at a time."""

    prefix: str
    client: int
    start_ms: int
    rng: np.random.Generator
    step_ms: int = STEP_MS
    labels: list[dict[str, str]] = field(default_factory=list)
    level: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    step: int = 0

    def __post_init__(self) -> None:
        for i in range(SERIES_PER_REQUEST):
            self.labels.append(
                {
                    "__name__": f"{self.prefix}_metric_{i % METRICS}",
                    "job": "api",
                    "instance": f"10.0.{self.client}.{i // METRICS % 25}:9100",
                    "env": "prod",
                    "region": ("eu-west-1", "us-east-1")[self.client % 2],
                    "service": f"svc-{i // METRICS % 5}",
                    "method": ("GET", "POST")[i // 50 % 2],
                    "code": ("200", "500")[i // 100 % 2],
                    "cluster": f"c{self.client}",
                    "pod": f"pod-{i // METRICS:03d}",
                }
            )
        self.level = 10.0 ** self.rng.uniform(0, 3, SERIES_PER_REQUEST)

    def next_block(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Timestamps (10,) and values (1000, 10): half random-walk gauges, half counters."""
        ts = (
            self.start_ms
            + (self.step + np.arange(STEPS_PER_REQUEST, dtype=np.int64)) * self.step_ms
        )
        self.step += STEPS_PER_REQUEST
        half = SERIES_PER_REQUEST // 2
        walk = self.rng.normal(0, 0.002, (half, STEPS_PER_REQUEST)).cumsum(axis=1)
        gauges = np.round(self.level[:half, None] * (1 + walk), 2)
        self.level[:half] = gauges[:, -1]
        incs = self.rng.poisson(5, (SERIES_PER_REQUEST - half, STEPS_PER_REQUEST)).cumsum(axis=1)
        counters = self.level[half:, None] + incs
        self.level[half:] = counters[:, -1]
        return ts, np.vstack([gauges, counters])


@dataclass
class Encoders:
    """Per-series bytes that never change, built once per SeriesSet."""

    rw_labels: list[bytes]
    otlp_attrs: list[bytes]

    @staticmethod
    def of(series: SeriesSet) -> Encoders:
        rw = [b"".join(_rw_label(k, v) for k, v in sorted(lbl.items())) for lbl in series.labels]
        otlp = [
            b"".join(field_bytes(7, _kv(k, v)) for k, v in lbl.items() if k != "__name__")
            for lbl in series.labels
        ]
        return Encoders(rw, otlp)


def _rw_label(name: str, value: str) -> bytes:
    return field_bytes(1, field_bytes(1, name.encode()) + field_bytes(2, value.encode()))


def _kv(key: str, value: str) -> bytes:
    return field_bytes(1, key.encode()) + field_bytes(2, field_bytes(1, value.encode()))


def remote_write_body(
    enc: Encoders, ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
) -> bytes:
    n, k = v.shape
    entries = np.empty((n, k, 18), np.uint8)
    entries[:, :, 0] = 0x12  # TimeSeries.samples
    entries[:, :, 1] = 16
    entries[:, :, 2] = 0x09  # Sample.value, fixed64
    entries[:, :, 3:11] = v.astype("<f8").view(np.uint8).reshape(n, k, 8)
    entries[:, :, 11] = 0x10  # Sample.timestamp, varint
    entries[:, :, 12:] = varints6(ts)[None, :, :]
    raw = entries.reshape(n, -1)
    series = (field_bytes(1, labels + raw[i].tobytes()) for i, labels in enumerate(enc.rw_labels))
    return bytes(cramjam.snappy.compress_raw(b"".join(series)))


def otlp_body(
    series: SeriesSet, enc: Encoders, ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
) -> bytes:
    n, k = v.shape
    fixed = np.empty((n, k, 18), np.uint8)
    fixed[:, :, 0] = 0x19  # NumberDataPoint.time_unix_nano, fixed64
    fixed[:, :, 1:9] = (ts * 1_000_000).astype("<u8").view(np.uint8).reshape(1, k, 8)
    fixed[:, :, 9] = 0x21  # NumberDataPoint.as_double, fixed64
    fixed[:, :, 10:] = v.astype("<f8").view(np.uint8).reshape(n, k, 8)
    points: dict[str, list[bytes]] = {}
    for i, attrs in enumerate(enc.otlp_attrs):
        head = varint(0x0A) + varint(len(attrs) + 18) + attrs
        name = series.labels[i]["__name__"]
        points.setdefault(name, []).extend(head + fixed[i, j].tobytes() for j in range(k))
    metrics = b"".join(
        field_bytes(2, field_bytes(1, name.encode()) + field_bytes(5, b"".join(dps)))
        for name, dps in points.items()
    )
    resource = field_bytes(1, field_bytes(1, _kv("service.name", "api")))
    return field_bytes(1, resource + field_bytes(2, metrics))


def json_body(series: SeriesSet, ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64]) -> bytes:
    times = ts.tolist()
    items = []
    for lbl, row in zip(series.labels, v.tolist(), strict=True):
        labels = {k: x for k, x in lbl.items() if k != "__name__"}
        items.append(
            {
                "name": lbl["__name__"],
                "labels": labels,
                "samples": list(zip(times, row, strict=True)),
            }
        )
    return msgspec.json.encode(items)


def vm_json_body(series: SeriesSet, ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64]) -> bytes:
    """The same series and samples in VictoriaMetrics's own JSON line format (/api/v1/import)."""
    times = ts.tolist()
    return b"\n".join(
        msgspec.json.encode({"metric": lbl, "values": row, "timestamps": times})
        for lbl, row in zip(series.labels, v.tolist(), strict=True)
    )


def events_body(client: int, request: int, count: int, now_ms: int) -> bytes:
    names = ("purchase", "signup", "cart_view", "subscription_changed")
    lines = [
        msgspec.json.encode(
            {
                "name": names[i % 4],
                "ts": now_ms - 60_000 + i,
                "entity": f"user-{(client * 7919 + i) % 50_000}",
                "value": (i % 97) * 100,
                "props": {"source": ("ads", "seo", "direct")[i % 3], "plan": "pro"},
                "id": f"c{client}-r{request}-{i}",
            }
        )
        for i in range(count)
    ]
    return b"\n".join(lines)


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    url: str
    popen: subprocess.Popen[bytes]
    command: list[str]

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)


def wait_ready(proc: Proc, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.command[0]} exited with {proc.popen.returncode}")
        try:
            if httpx.get(proc.url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.url} not ready after {timeout} s")


@contextmanager
def opsmetrics_server(data: Path, env: dict[str, str]) -> Iterator[Proc]:
    port = free_port()
    cmd = [sys.executable, "-m", "opsmetrics", "serve", "--data", str(data), "--port", str(port)]
    log = (data.parent / f"opsmetrics-{port}.log").open("wb")
    popen = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    proc = Proc(f"http://127.0.0.1:{port}", popen, cmd)
    try:
        wait_ready(proc, "/readyz")
        yield proc
    finally:
        proc.stop()


@contextmanager
def prometheus_server(tmp: Path) -> Iterator[Proc]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    cmd = [
        PROMETHEUS,
        "--web.enable-remote-write-receiver",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp / 'prometheus'}",
        f"--config.file={config}",
    ]
    log = (tmp / "prometheus.log").open("wb")
    popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    proc = Proc(f"http://127.0.0.1:{port}", popen, cmd)
    try:
        wait_ready(proc, "/-/ready")
        yield proc
    finally:
        proc.stop()


@contextmanager
def victoria_server(tmp: Path) -> Iterator[Proc]:
    """Debian's victoria-metrics (single node) on a free port with its own data directory."""
    port = free_port()
    cmd = [
        VICTORIA,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp / 'victoria'}",
        "-retentionPeriod=100y",
        "-search.disableCache",
    ]
    log = (tmp / "victoria.log").open("wb")
    popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    proc = Proc(f"http://127.0.0.1:{port}", popen, cmd)
    try:
        wait_ready(proc, "/health")
        yield proc
    finally:
        proc.stop()


# --- driving --------------------------------------------------------------------------------


def drive(url: str, path: str, headers: dict[str, str], bodies: Sequence[list[bytes]]) -> float:
    """Each client posts its bodies back to back; returns wall seconds until all are answered."""
    errors: list[str] = []
    start = threading.Barrier(len(bodies) + 1)

    def client(mine: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            start.wait()
            for body in mine:
                r = http.post(path, content=body, headers=headers)
                if r.status_code >= 300:
                    errors.append(f"{r.status_code} {r.text[:300]}")

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed on {url}{path}: {errors[0]}")
    return elapsed


Encode = Callable[[SeriesSet, Encoders, npt.NDArray[np.int64], npt.NDArray[np.float64]], bytes]


def _encode_rw(
    s: SeriesSet, e: Encoders, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
) -> bytes:
    return remote_write_body(e, t, v)


def _encode_json(
    s: SeriesSet, e: Encoders, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
) -> bytes:
    return json_body(s, t, v)


def _encode_otlp_json(
    s: SeriesSet, e: Encoders, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
) -> bytes:
    """The OTLP body as an exporter writes it in JSON: compact, camelCase, int64 strings."""
    request = ExportMetricsServiceRequest.FromString(otlp_body(s, e, t, v))
    return json_format.MessageToJson(request, indent=None).encode()


FORMATS: dict[str, tuple[str, dict[str, str], Encode]] = {
    "remote_write": ("/api/v1/write", RW_HEADERS, _encode_rw),
    "otlp": ("/v1/metrics", OTLP_HEADERS, otlp_body),
    "otlp_json": ("/v1/metrics", JSON_HEADERS, _encode_otlp_json),
    "json": ("/api/v1/samples", JSON_HEADERS, _encode_json),
}


#: What each reference is sent for a format: (path, headers, encoder); remote_write bodies are
#: the very bytes we get, VictoriaMetrics's JSON import gets the same series in its own format.
REFERENCES: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("prometheus", "remote_write"): ("/api/v1/write", RW_HEADERS),
    ("victoria", "remote_write"): ("/api/v1/write", RW_HEADERS),
    ("victoria", "json"): ("/api/v1/import", NDJSON_HEADERS),
}


@dataclass
class Clients:
    """Up to 4 clients' series sets for one format; bodies are encoded before any timing."""

    sets: list[tuple[SeriesSet, Encoders]]
    encode: Encode

    @staticmethod
    def make(fmt: str, count: int, start_ms: int, seed: int, step_ms: int) -> Clients:
        sets = []
        for c in range(count):
            s = SeriesSet(f"bench_{fmt}", c, start_ms, np.random.default_rng(seed + c), step_ms)
            sets.append((s, Encoders.of(s)))
        return Clients(sets, FORMATS[fmt][2])

    def bodies(self, clients: int, requests: int) -> list[list[bytes]]:
        return [
            [self.encode(s, e, *s.next_block()) for _ in range(requests)]
            for s, e in self.sets[:clients]
        ]

    def vm_json_bodies(self, clients: int, requests: int) -> list[list[bytes]]:
        """Fresh blocks of the same series, for VictoriaMetrics's JSON import."""
        return [
            [vm_json_body(s, *s.next_block()) for _ in range(requests)]
            for s, _ in self.sets[:clients]
        ]


# --- the scenarios ----------------------------------------------------------------------------


@dataclass
class Figures:
    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    events: list[float] = field(default_factory=list)
    storage: dict[str, float] = field(default_factory=dict)
    rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, key: tuple[str, int], rate: float) -> None:
        self.rates.setdefault(key, []).append(rate)


def throughput(args: argparse.Namespace, tmp: Path, figures: Figures) -> None:
    start_ms = int(time.time() * 1000) - 3_600_000
    clients = {f: Clients.make(f, 4, start_ms, 100 * i, 1_000) for i, f in enumerate(FORMATS)}
    vm_json = Clients.make("json", 4, start_ms, 700, 1_000)
    with (
        opsmetrics_server(tmp / "data", {}) as ours,
        prometheus_server(tmp) as prom,
        victoria_server(tmp) as vm,
    ):
        refs = {"prometheus": prom, "victoria": vm}
        _warm_up(ours, refs, clients, vm_json)
        for run in range(args.runs):
            for n in (2, 4):
                _one_round(args, ours, refs, clients, vm_json, n, figures)
            figures.events.append(_events_rate(ours, args.event_requests, run))
            print(f"run {run + 1}/{args.runs} done", flush=True)
        figures.rss_mib = ours.peak_rss_mib()
        figures.storage["prometheus_rss_mib"] = prom.peak_rss_mib()
        figures.storage["victoria_rss_mib"] = vm.peak_rss_mib()


def _send_reference(
    refs: dict[str, Proc], fmt: str, bodies: list[list[bytes]], vm_json: list[list[bytes]]
) -> dict[str, float]:
    """Seconds each reference took for the same samples in this format."""
    out = {}
    for (name, taken), (path, headers) in REFERENCES.items():
        if taken == fmt:
            sent = vm_json if (name, fmt) == ("victoria", "json") else bodies
            out[name] = drive(refs[name].url, path, headers, sent)
    return out


def _warm_up(
    ours: Proc, refs: dict[str, Proc], clients: dict[str, Clients], vm_json: Clients
) -> None:
    """One request per client creates the series; timed requests then only add samples."""
    for fmt, c in clients.items():
        path, headers, _ = FORMATS[fmt]
        bodies = c.bodies(4, 1)
        try:
            drive(ours.url, path, headers, bodies)
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"{fmt}: unavailable ({exc})", flush=True)
        _send_reference(refs, fmt, bodies, vm_json.vm_json_bodies(4, 1))


def _one_round(
    args: argparse.Namespace,
    ours: Proc,
    refs: dict[str, Proc],
    clients: dict[str, Clients],
    vm_json: Clients,
    n: int,
    figures: Figures,
) -> None:
    samples = n * args.requests * SERIES_PER_REQUEST * STEPS_PER_REQUEST
    for fmt, c in clients.items():
        path, headers, _ = FORMATS[fmt]
        bodies = c.bodies(n, args.requests)
        try:
            figures.add((fmt, n), samples / drive(ours.url, path, headers, bodies))
        except (RuntimeError, httpx.HTTPError) as exc:
            figures.notes.append(f"{fmt} with {n} clients failed: {str(exc)[:200]}")
            continue
        vm_bodies = vm_json.vm_json_bodies(n, args.requests) if fmt == "json" else []
        for name, took in _send_reference(refs, fmt, bodies, vm_bodies).items():
            figures.add((f"{name}:{fmt}", n), samples / took)
        print(f"  {fmt} x{n}: {figures.rates[(fmt, n)][-1]:,.0f} samples/s", flush=True)


def _events_rate(ours: Proc, requests: int, run: int) -> float:
    now = int(time.time() * 1000)
    bodies = [
        [events_body(c, run * 1000 + r, 10_000, now) for r in range(requests)] for c in range(2)
    ]
    seconds = drive(ours.url, "/api/v1/events", NDJSON_HEADERS, bodies)
    return 2 * requests * 10_000 / seconds


STORAGE_ENV = {
    "OPSMETRICS_PARTITION": "1h",
    "OPSMETRICS_SAMPLES_LATE_WINDOW": "5m",
    "OPSMETRICS_MAINTENANCE_INTERVAL": "5s",
}


def storage_size(total: int, tmp: Path, figures: Figures) -> None:
    """Write `total` samples spanning many 1h partitions, let maintenance compact, measure."""
    requests = total // (SERIES_PER_REQUEST * STEPS_PER_REQUEST)
    steps = requests // 2 * STEPS_PER_REQUEST
    start_ms = int(time.time() * 1000) - 10 * 60_000 - steps * STEP_MS
    clients = Clients.make("remote_write", 2, start_ms, 999, STEP_MS)
    data = tmp / "storage"
    with opsmetrics_server(data, STORAGE_ENV) as ours:
        seconds = _drive_lazily(ours, clients, requests // 2)
        figures.storage["sustained_rate"] = 2 * (requests // 2) * 10_000 / seconds
        rows = _wait_compacted(ours)
        figures.storage.update(rows)
        figures.storage["rss_mib"] = ours.peak_rss_mib()
    figures.storage["file_bytes_after_stop"] = (data / "opsmetrics.duckdb").stat().st_size


def _drive_lazily(ours: Proc, clients: Clients, per_client: int) -> float:
    """Encode inside the client threads (10M samples of bodies would not fit in memory)."""
    began = time.perf_counter()
    threads = [
        threading.Thread(target=_post_many, args=(ours.url, s, e, per_client))
        for s, e in clients.sets
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def _post_many(url: str, series: SeriesSet, enc: Encoders, count: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as http:
        for _ in range(count):
            r = http.post("/api/v1/write", content=remote_write_body(enc, *series.next_block()))
            r.raise_for_status()


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=60).text
    found = re.findall(r'^opsmetrics_storage_(bytes|rows)\{kind="(\w+)"\} (\S+)$', text, re.M)
    return {f"{what}_{kind}": float(value) for what, kind, value in found}


def _wait_compacted(ours: Proc, timeout: float = 600) -> dict[str, float]:
    """Until the head holds only the still-open partition and two readings agree."""
    deadline = time.monotonic() + timeout
    last: dict[str, float] = {}
    while time.monotonic() < deadline:
        time.sleep(6)
        now = _metrics(ours.url)
        # Not the WAL: it grows between checkpoints while data is still arriving.
        steady = all(now.get(k) == last.get(k) for k in now if k != "bytes_wal")
        if steady and now.get("rows_samples_head", 1) < now.get("rows_samples", 0) / 10:
            return now
        last = now
    return last


# --- the report -------------------------------------------------------------------------------


def machine() -> list[str]:
    return machine_facts(" (other work shares this machine)")


def victoria_version() -> str:
    found = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True
    )
    return f"victoria-metrics {found.stdout.strip() or '?'} (Debian)"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate_table(figures: Figures) -> list[str]:
    lines = [
        "| format | clients | ours: durable samples/s (median) | runs | Prometheus "
        "| VictoriaMetrics | ours / Prometheus | ours / VictoriaMetrics |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (fmt, n), values in sorted(figures.rates.items()):
        if ":" in fmt:
            continue
        ours = _median(values)
        cells = []
        for ref in ("prometheus", "victoria"):
            theirs = _median(figures.rates.get((f"{ref}:{fmt}", n), []))
            cells.append(
                (f"{theirs:,.0f}", f"{ours / theirs:.2f}") if theirs == theirs else ("—", "—")
            )
        runs = ", ".join(f"{v:,.0f}" for v in values)
        lines.append(
            f"| {fmt} | {n} | **{ours:,.0f}** | {runs} | {cells[0][0]} | {cells[1][0]} "
            f"| {cells[0][1]} | {cells[1][1]} |"
        )
    return lines


def storage_lines(figures: Figures) -> list[str]:
    st = figures.storage
    samples = st.get("rows_samples", float("nan"))
    used = st.get("bytes_database", float("nan"))
    return [
        f"- Samples stored: {samples:,.0f} ({st.get('rows_samples_head', 0):,.0f} still in the "
        f"head), series: {st.get('rows_series', 0):,.0f}; sustained remote_write rate while "
        f"writing them (2 clients): {st.get('sustained_rate', 0):,.0f} samples/s",
        f'- `opsmetrics_storage_bytes{{kind="database"}}` = {used:,.0f} B → '
        f"**{used / samples:.2f} bytes/sample**; WAL {st.get('bytes_wal', 0):,.0f} B; "
        f"file size after a clean stop {st.get('file_bytes_after_stop', 0):,.0f} B "
        f"({st.get('file_bytes_after_stop', 0) / samples:.2f} B/sample)",
        f"- Peak RSS (VmHWM) of the server: {figures.rss_mib:,.0f} MiB in the throughput runs, "
        f"{st.get('rss_mib', 0):,.0f} MiB in the 10M-sample run; in the throughput runs "
        f"Prometheus {st.get('prometheus_rss_mib', 0):,.0f} MiB, VictoriaMetrics "
        f"{st.get('victoria_rss_mib', 0):,.0f} MiB",
    ]


def render(figures: Figures, args: argparse.Namespace, command: str) -> str:
    events = ", ".join(f"{v:,.0f}" for v in figures.events)
    body = [
        "## Ingest",
        "",
        f"Command: `.venv/bin/{command}` (bench/ingest.py; see bench/README.md).",
        "",
        *machine(),
        f"- Second reference: {victoria_version()} (single node, data buffered in memory and "
        "flushed every second, no fsync per request)",
        "",
        f"Each request: 10,000 samples (1,000 series x 10 labels x 10 timestamps), bodies "
        f"encoded before timing; {args.requests} requests per client per run; median of "
        f"{args.runs} runs. Rates count only samples whose request was answered 2xx.",
        "",
        *rate_table(figures),
        "",
        f"Events (NDJSON, 10,000 per request, 2 clients): **{_median(figures.events):,.0f} "
        f"events/s** (runs: {events}).",
        "",
        f"Storage after {args.storage_samples:,} remote_write samples (15 s apart, 1h "
        "partitions, 5m late window, maintenance every 5 s):",
        "",
        *storage_lines(figures),
        *([""] + [f"- Note: {n}" for n in figures.notes] if figures.notes else []),
        "",
    ]
    return "\n".join(body)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the `## Ingest` section, leaving every other section alone."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nFigures measured on the real server.\n"
    )
    pattern = re.compile(r"^## Ingest\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    if old:
        # The hand-written analysis (### Profile …) survives a rerun of the measurements.
        kept = re.search(r"^### Profile.*", old.group(0), re.S | re.M)
        section += "\n" + kept.group(0).rstrip("\n") + "\n" if kept else ""
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--requests", type=int, default=20, help="requests per client per run")
    p.add_argument("--event-requests", type=int, default=5, help="per client per run")
    p.add_argument("--storage-samples", type=int, default=10_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--skip-storage", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python bench/ingest.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-") as tmp:
        throughput(args, Path(tmp), figures)
        if not args.skip_storage:
            storage_size(args.storage_samples, Path(tmp), figures)
    section = render(figures, args, command.strip())
    print(section)
    write_section(args.out, section)


if __name__ == "__main__":
    main()
