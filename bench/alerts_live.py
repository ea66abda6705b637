"""Live rule evaluation side by side: the same rules on opsmetrics and on Prometheus.

Each system runs as its own process on a loopback port with a temporary data directory
(Prometheus with `--web.enable-remote-write-receiver`), gets the same rule file and the same
series by remote_write: --hours of history at load, then the next samples as the clock reaches
them (every 5 s), so the rules' 5-minute windows stay full for the whole run. Both serve
`/api/v1/rules` with a group `evaluationTime`; a cycle is one evaluation of every group
(each group's k-th), its figure the sum of the groups' evaluationTime, as Prometheus's
`prometheus_rule_group_last_duration_seconds` summed. Missed iterations are read from both
systems' `prometheus_rule_group_iterations_missed_total` at the end. The systems run one
after the other, never at the same time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import httpx
import numpy as np
from query import RW_HEADERS, DataSet, Proc, Series, free_port, wait_ready, write_requests

PROMETHEUS = "/usr/bin/prometheus"
MISSED = re.compile(r"^prometheus_rule_group_iterations_missed_total\{[^}]*\} (\S+)$", re.M)


@dataclass(slots=True)
class LiveResult:
    system: str
    rules: int
    #: Per cycle: evaluationTime summed over every group (seconds).
    cycles: list[float] = field(default_factory=list)
    missed: float = 0.0
    errors: int = 0
    #: Each group's offset in its interval (ms), from its lastEvaluation timestamps.
    offsets: dict[str, int] = field(default_factory=dict)


# --- processes ----------------------------------------------------------------------------------
@contextmanager
def prometheus(work: Path, rules: Path, interval_s: int) -> Iterator[Proc]:
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text(f"global:\n  evaluation_interval: {interval_s}s\nrule_files:\n  - {rules}\n")
    cmd = [
        PROMETHEUS,
        f"--storage.tsdb.path={work / 'prometheus'}",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
    ]
    with (work / "prometheus.log").open("ab") as log:
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    yield from _serving(Proc(f"http://127.0.0.1:{port}", popen), "/-/ready")


@contextmanager
def opsmetrics(work: Path, config: Path) -> Iterator[Proc]:
    port = free_port()
    cmd = [sys.executable, "-m", "opsmetrics", "serve", "--data", str(work / "data")]
    cmd += ["--config", str(config), "--port", str(port), "--host", "127.0.0.1"]
    env = {**os.environ, "OPSMETRICS_SAMPLES_LATE_WINDOW": "2h"}
    with (work / "opsmetrics.log").open("ab") as log:
        popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield from _serving(Proc(f"http://127.0.0.1:{port}", popen), "/readyz")


def _serving(proc: Proc, ready: str) -> Iterator[Proc]:
    try:
        wait_ready(proc, ready)
        yield proc
    finally:
        proc.stop()


# --- data ---------------------------------------------------------------------------------------
def remote_write(url: str, data: DataSet, after_ms: int, upto_ms: int) -> int:
    """Send every sample with after < ts <= upto; returns how many."""
    keep = (data.ts > after_ms) & (data.ts <= upto_ms)
    if not keep.any():
        return 0
    part = DataSet(data.ts[keep], [Series(s.labels, s.values[keep]) for s in data.series])
    with httpx.Client(timeout=300) as client:
        for raw in write_requests(part, part.series):
            body = bytes(cramjam.snappy.compress_raw(raw))
            r = client.post(url + "/api/v1/write", content=body, headers=RW_HEADERS)
            if r.status_code not in (200, 204):
                raise RuntimeError(f"remote_write to {url}: {r.status_code} {r.text[:300]}")
    return part.samples


class Feeder:
    """Writes the data set's samples as the wall clock reaches them."""

    def __init__(self, url: str, data: DataSet) -> None:
        self._url, self._data = url, data
        self._stop = threading.Event()
        self._sent_ms = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._send()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _send(self) -> None:
        now = time.time_ns() // 1_000_000
        remote_write(self._url, self._data, self._sent_ms, now)
        self._sent_ms = now

    def _run(self) -> None:
        while not self._stop.wait(5):
            self._send()


# --- reading the rules API ----------------------------------------------------------------------
@dataclass(slots=True)
class _Seen:
    """Per group: (lastEvaluation, evaluationTime) of every evaluation seen, in order."""

    evaluations: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    errors: int = 0

    def add(self, groups: list[dict[str, object]]) -> None:
        self.errors = 0
        for g in groups:
            key = f"{g['file']};{g['name']}"
            seen = self.evaluations.setdefault(key, [])
            last, took = str(g.get("lastEvaluation") or ""), float(str(g["evaluationTime"]))
            if last and not last.startswith("0001") and (not seen or seen[-1][0] != last):
                seen.append((last, took))
            rules = g["rules"]
            assert isinstance(rules, list)
            self.errors += sum(1 for r in rules if r.get("health") == "err")

    def complete(self, cycles: int) -> int:
        """Cycles every group has been through (the first, partial one not counted)."""
        if not self.evaluations:
            return 0
        return min(len(v) for v in self.evaluations.values()) - 1

    def sums(self, cycles: int) -> list[float]:
        return [sum(v[k][1] for v in self.evaluations.values()) for k in range(1, cycles + 1)]


def watch(url: str, cycles: int, interval_s: int) -> _Seen:
    """Poll /api/v1/rules until every group has been evaluated `cycles` more times."""
    seen = _Seen()
    deadline = time.monotonic() + (cycles + 3) * interval_s * 3 + 120
    with httpx.Client(timeout=60) as client:
        while seen.complete(cycles) < cycles:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: rule groups did not reach {cycles} cycles in time")
            body = client.get(url + "/api/v1/rules", params={"exclude_alerts": "true"}).json()
            seen.add(body["data"]["groups"])
            time.sleep(min(2.0, interval_s / 5))
    return seen


def missed(url: str) -> float:
    return sum(float(v) for v in MISSED.findall(httpx.get(url + "/metrics", timeout=60).text))


def offsets(seen: _Seen, interval_s: int) -> dict[str, int]:
    """Each group's evaluation instant modulo the interval, from its lastEvaluation."""
    return {k: rfc3339_ms(v[-1][0]) % (interval_s * 1000) for k, v in seen.evaluations.items()}


def rfc3339_ms(text: str) -> int:
    """Milliseconds of an RFC 3339 UTC timestamp with up to nanosecond digits."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = np.datetime64(whole, "s").astype(np.int64)
    return int(seconds) * 1000 + int((fraction + "000")[:3])


def run_live(
    system: str, work: Path, rules_text: str, data: DataSet, cycles: int, interval_s: int
) -> LiveResult:
    """Start `system` ("opsmetrics" or "prometheus") with the rules, feed it, watch it."""
    work.mkdir(parents=True)
    config = work / "config"
    (config / "rules").mkdir(parents=True)
    rules = config / "rules" / "bench.yaml"
    rules.write_text(rules_text)
    server = (
        prometheus(work, rules, interval_s) if system == "prometheus" else opsmetrics(work, config)
    )
    with server as proc, Feeder(proc.url, data):
        seen = watch(proc.url, cycles, interval_s)
        count = rules_text.count("- alert:") + rules_text.count("- record:")
        return LiveResult(
            system,
            count,
            seen.sums(cycles),
            missed(proc.url),
            seen.errors,
            offsets(seen, interval_s),
        )
