"""Technical series: HTTP counters and latency histograms, process and dependency gauges.

Columns come out in the order of `series()`: increments for counters, levels for gauges.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.incidents import INCIDENT_ERROR_RATE, INCIDENT_LATENCY_FACTOR
from opsmetrics.demo.topology import (
    BUCKETS,
    CODES,
    QUEUES,
    SERVICES,
    Endpoint,
    Kind,
    Service,
    endpoints,
    format_le,
    instances,
    process_labels,
)
from opsmetrics.model import Float64Array, Labels, make_labels

CLIENT_ERROR_RATE = 0.015
SERVER_ERROR_RATE = 0.0015
LATENCY_SIGMA = 0.55
DB_POOL_SIZE = 50
LE = (*BUCKETS, float("inf"))
INSTANCE_SHARE = (0.52, 0.48)
HISTOGRAM = "http_request_duration_seconds"


def series() -> list[SeriesSpec]:
    out: list[SeriesSpec] = []
    for e in endpoints():
        out += [SeriesSpec(e.labels("http_requests_total", code=c), Kind.TOTAL) for c in CODES]
    for e in endpoints():
        out += [
            SeriesSpec(
                e.labels("http_request_duration_seconds_bucket", le=format_le(le)), Kind.TOTAL
            )
            for le in LE
        ]
        out.append(SeriesSpec(e.labels(f"{HISTOGRAM}_sum"), Kind.TOTAL))
        out.append(SeriesSpec(e.labels(f"{HISTOGRAM}_count"), Kind.TOTAL))
    for name, kind in _PROCESS_METRICS:
        out += [
            SeriesSpec(process_labels(name, s.name, i), kind)
            for s in SERVICES
            for i in instances(s.name)
        ]
    out += [
        SeriesSpec(
            make_labels({"__name__": "queue_depth", "service": "worker", "queue": q}), Kind.LEVEL
        )
        for q in QUEUES
    ]
    return out


def _queue_labels(queue: str) -> Labels:
    return make_labels({"__name__": "queue_depth", "service": "worker", "queue": queue})


_PROCESS_METRICS = (
    ("process_cpu_seconds_total", Kind.TOTAL),
    ("process_resident_memory_bytes", Kind.LEVEL),
    ("up", Kind.LEVEL),
    ("db_connections_open", Kind.LEVEL),
)


def simulate(step: Step) -> Float64Array:
    eps = endpoints()
    counts = _request_counts(step, eps)
    by_code = _split_codes(step, eps, counts)
    hist = _histograms(step, eps, counts)
    per_instance = _process_columns(step, eps, counts)
    queues = _queues(step)
    return np.hstack([by_code, hist, per_instance, queues])


def _is_checkout(eps: list[Endpoint]) -> np.ndarray:
    return np.array([e.route.service == "checkout" for e in eps])


def _request_counts(step: Step, eps: list[Endpoint]) -> Float64Array:
    rps = {s.name: s.rps for s in SERVICES}
    base = np.array([rps[e.route.service] * e.route.share * INSTANCE_SHARE[e.replica] for e in eps])
    expected = (step.load * step.dt_s)[:, None] * base[None, :]
    counts: Float64Array = step.rng.poisson(expected).astype(np.float64)
    return counts


def _split_codes(step: Step, eps: list[Endpoint], counts: Float64Array) -> Float64Array:
    """Per endpoint: 200, 400, 500 columns (endpoint-major)."""
    hit = step.incident[:, None] & _is_checkout(eps)[None, :]
    p5 = np.where(hit, INCIDENT_ERROR_RATE, SERVER_ERROR_RATE)
    ints = counts.astype(np.int64)
    c500 = step.rng.binomial(ints, p5)
    c400 = step.rng.binomial(ints - c500, CLIENT_ERROR_RATE)
    c200 = ints - c500 - c400
    out: Float64Array = np.stack([c200, c400, c500], axis=2).reshape(len(step), -1)
    return out.astype(np.float64)


def _histograms(step: Step, eps: list[Endpoint], counts: Float64Array) -> Float64Array:
    """Per endpoint: cumulative buckets (+Inf last), _sum, _count (endpoint-major)."""
    median = np.array([e.route.median_s for e in eps])[None, :] * (0.85 + 0.25 * step.load)[:, None]
    hit = step.incident[:, None] & _is_checkout(eps)[None, :]
    mu = np.log(np.where(hit, median * INCIDENT_LATENCY_FACTOR, median))
    z = (np.log(np.array(BUCKETS))[None, None, :] - mu[:, :, None]) / LATENCY_SIGMA
    # Rounding a monotone CDF keeps the buckets cumulative, and the last finite bucket reaches
    # the +Inf count whenever the tail above it is under half a request (flooring would leave
    # it one short every step, and quantiles would read that bucket's bound).
    buckets = np.round(counts[:, :, None] * ndtr(z))
    mean = np.exp(mu + LATENCY_SIGMA**2 / 2)
    total = counts * mean * step.rng.lognormal(0.0, 0.03, size=counts.shape)
    parts = [buckets, counts[:, :, None], total[:, :, None], counts[:, :, None]]
    out: Float64Array = np.concatenate(parts, axis=2).reshape(len(step), -1)
    return out


def _instance_rps(step: Step, eps: list[Endpoint], counts: Float64Array) -> Float64Array:
    names = [i for s in SERVICES for i in instances(s.name)]
    member = np.array([[e.instance == n for n in names] for e in eps], dtype=np.float64)
    out: Float64Array = (counts @ member) / step.dt_s[:, None]
    return out


def _process_columns(step: Step, eps: list[Endpoint], counts: Float64Array) -> Float64Array:
    rps = _instance_rps(step, eps, counts)
    services = [s for s in SERVICES for _ in instances(s.name)]
    cost = np.array([s.cpu_per_request_s for s in services])[None, :]
    noise = step.rng.lognormal(0.0, 0.05, size=rps.shape)
    cpu = (0.02 + cost * rps) * noise * step.dt_s[:, None]
    memory = np.column_stack([_memory(step, s.name, s.memory_bytes) for s in services])
    up = np.ones_like(rps)
    return np.hstack([cpu, memory, up, _db_connections(step, services)])


def _memory(step: Step, service: str, base: float) -> Float64Array:
    wobble = step.rng.normal(0.0, 0.015, size=len(step))
    level = base * (0.9 + 0.12 * step.load + wobble) * step.plan.memory_factor(service, step.ts)
    out: Float64Array = np.round(level / 4096) * 4096
    return out


def _db_connections(step: Step, services: list[Service]) -> Float64Array:
    n = len(services)
    busy = 4 + 18 * step.load[:, None] + step.rng.normal(0.0, 1.5, size=(len(step), n))
    checkout = np.array([s.name == "checkout" for s in services])
    exhausted = step.incident[:, None] & checkout[None, :]
    level = np.where(exhausted, DB_POOL_SIZE - step.rng.integers(0, 2, size=busy.shape), busy)
    out: Float64Array = np.clip(np.round(level), 1, DB_POOL_SIZE)
    return out


def _queues(step: Step) -> Float64Array:
    backlog = np.where(step.incident, 4.0, 1.0)
    emails = step.rng.poisson(8 * step.load)
    orders = step.rng.poisson((3 + 10 * step.load) * backlog)
    out: Float64Array = np.column_stack([emails, orders]).astype(np.float64)
    return out
