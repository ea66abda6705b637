"""In-process decode cost of one 10,000-sample request per body kind (BENCHMARKS.md, Ingest,
"Decode cost per 10,000-sample request"): min of 30 runs with the per-app series cache and
without it. Prints a Markdown table; the section is hand-written, so nothing is rewritten.

    .venv/bin/python bench/decode.py [--runs 30]

Bodies: bench/ingest.py's OTLP gauges (1,000 series x 10 points, 9 attributes) as protobuf
and as compact JSON (as an exporter writes it); 100 histogram series x 10 points with 7
bounds (8 `_bucket`, `_sum`, `_count`: 10 rows a point) and 100 summary series x 10 points
with 8 quantiles, each point with 9 attributes.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import Encoders, SeriesSet, otlp_body

from opsmetrics.ingest.otlp import decode_otlp
from opsmetrics.ingest.otlp_numbers import SeriesCache
from opsmetrics.settings import Limits

NOW = 1_700_000_000_000
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
BOUNDS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)


def gauges() -> bytes:
    s = SeriesSet("bench_otlp", 0, NOW, np.random.default_rng(1), 15_000)
    return otlp_body(s, Encoders.of(s), *s.next_block())


def as_json(body: bytes) -> bytes:
    request = ExportMetricsServiceRequest.FromString(body)
    return json_format.MessageToJson(request, indent=None).encode()


def distributions(kind: str) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=AnyValue(string_value="bench"))
    m = rm.scope_metrics.add().metrics.add(name="request.duration", unit="s")
    m.histogram.aggregation_temporality = 2
    for s in range(100):
        attrs = [(f"attr{j}", f"value{j}-{s % (j + 2)}") for j in range(8)] + [("series", str(s))]
        for t in range(10):
            when = (NOW + t * 15_000) * 10**6
            if kind == "histogram":
                p = m.histogram.data_points.add(
                    time_unix_nano=when, count=100 + t, sum=12.5 * t, explicit_bounds=BOUNDS,
                    bucket_counts=[t, 1, 2, 3, 4, 5, 6, 79],
                )  # fmt: skip
            else:
                p = m.summary.data_points.add(time_unix_nano=when, count=100 + t, sum=12.5 * t)
                for q in QUANTILES:
                    p.quantile_values.add(quantile=q, value=q * t)
            for k, v in attrs:
                p.attributes.add(key=k, value=AnyValue(string_value=v))
    return request.SerializeToString()


def best_ms(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    limits = Limits()
    gauge = gauges()
    bodies = {
        "OTLP protobuf, gauges": (gauge, PROTOBUF),
        "OTLP JSON, gauges (compact)": (as_json(gauge), JSON),
        "OTLP protobuf, histograms": (distributions("histogram"), PROTOBUF),
        "OTLP protobuf, summaries": (distributions("summary"), PROTOBUF),
    }
    print(f"load average {os.getloadavg()[0]:.1f}; min of {args.runs}\n")
    print("| body | bytes | samples | with the cache | without |\n|---|---|---|---|---|")
    for name, (body, media) in bodies.items():
        cache = SeriesCache()
        first = decode_otlp(body, media, None, limits, cache=cache)
        warm = functools.partial(decode_otlp, body, media, None, limits, cache=cache)
        cold = functools.partial(decode_otlp, body, media, None, limits)
        cached, uncached = best_ms(warm, args.runs), best_ms(cold, args.runs)
        samples = len(first.decoded.batch)
        print(f"| {name} | {len(body):,} | {samples:,} | {cached:.1f} ms | {uncached:.1f} ms |")


if __name__ == "__main__":
    main()
