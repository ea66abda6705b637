"""The planted story: deploys, a memory regression, and checkout latency incidents.

The plan depends only on the history window and the seed, so a restart recomputes the same
plan from the marker annotation that records the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsmetrics.demo.seasonality import DAY_MS, HOUR_MS
from opsmetrics.demo.topology import SERVICES
from opsmetrics.model import Annotation, Float64Array, Int64Array

MINUTE_MS = 60_000
#: How much slower checkout gets during a latency incident, and its 5xx share.
INCIDENT_LATENCY_FACTOR = 7.0
INCIDENT_ERROR_RATE = 0.09
#: Share of would-be buyers who still complete a purchase during an incident.
INCIDENT_CONVERSION_FACTOR = 0.35
MEMORY_REGRESSION_FACTOR = 1.45
MEMORY_REGRESSION_SERVICE = "api"


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int

    def mask(self, ts_ms: Int64Array) -> np.ndarray:
        return (ts_ms >= self.start) & (ts_ms < self.end)


@dataclass(frozen=True, slots=True)
class Deploy:
    ts: int
    service: str
    version: str


@dataclass(slots=True)
class Plan:
    """Everything that is not ordinary seasonal traffic, for one history window."""

    origin: int
    end: int
    incidents: list[Span] = field(default_factory=list)
    deploys: list[Deploy] = field(default_factory=list)
    memory_regression: Span | None = None

    def incident_mask(self, ts_ms: Int64Array) -> np.ndarray:
        mask = np.zeros(len(ts_ms), dtype=bool)
        for span in self.incidents:
            mask |= span.mask(ts_ms)
        return mask

    def memory_factor(self, service: str, ts_ms: Int64Array) -> Float64Array:
        out: Float64Array = np.ones(len(ts_ms))
        span = self.memory_regression
        if span is not None and service == MEMORY_REGRESSION_SERVICE:
            # The leak grows after the deploy, as a real regression does.
            grown = np.clip((ts_ms - span.start) / (6 * HOUR_MS), 0.0, 1.0)
            out = np.where(span.mask(ts_ms), 1.0 + (MEMORY_REGRESSION_FACTOR - 1.0) * grown, 1.0)
        return out


def plan_story(origin: int, end: int, seed: int) -> Plan:
    rng = np.random.default_rng([seed, origin // MINUTE_MS, 7])
    plan = Plan(origin, end)
    plan.incidents = _latency_incidents(origin, end, rng)
    plan.deploys = _routine_deploys(origin, end, rng)
    plan.memory_regression = _memory_regression(origin, end, plan.incidents)
    return plan


def _evenings(origin: int, end: int, duration: int) -> list[int]:
    """Starts of evening windows (18:00-21:00 UTC) that fit whole inside [origin, end)."""
    first_day = origin // DAY_MS
    starts = []
    for day in range(first_day, end // DAY_MS + 1):
        start = day * DAY_MS + 18 * HOUR_MS
        if start >= origin and start + 3 * HOUR_MS + duration <= end:
            starts.append(start)
    return starts


def _latency_incidents(origin: int, end: int, rng: np.random.Generator) -> list[Span]:
    days = max(1, (end - origin) // DAY_MS)
    evenings = _evenings(origin, end, 2 * HOUR_MS)
    count = min(len(evenings), max(1, round(days / 7.5)))
    chosen = sorted(rng.choice(len(evenings), size=count, replace=False).tolist())
    spans = []
    for i in chosen:
        start = evenings[i] + int(rng.integers(0, 150)) * MINUTE_MS
        spans.append(Span(start, start + int(rng.integers(45, 110)) * MINUTE_MS))
    return spans


def _routine_deploys(origin: int, end: int, rng: np.random.Generator) -> list[Deploy]:
    deploys = []
    versions = {s.name: 0 for s in SERVICES}
    for day in range(origin // DAY_MS, end // DAY_MS + 1):
        if (day + 3) % 7 >= 5:  # nobody deploys at weekends
            continue
        ts = day * DAY_MS + int(rng.integers(9 * 60, 16 * 60)) * MINUTE_MS
        service = SERVICES[int(rng.integers(0, len(SERVICES)))].name
        versions[service] += 1
        if origin <= ts < end:
            deploys.append(Deploy(ts, service, f"v2.{versions[service]}.0"))
    return deploys


def _memory_regression(origin: int, end: int, incidents: list[Span]) -> Span | None:
    """A deploy at 60 % of the window leaks memory until a rollback two days later."""
    start = origin + (end - origin) * 3 // 5
    start -= start % HOUR_MS
    if any(s.start <= start < s.end for s in incidents) or start >= end:
        start += 3 * HOUR_MS
    return Span(start, min(end, start + 2 * DAY_MS)) if start < end else None


def story_annotations(plan: Plan) -> list[Annotation]:
    out = [_deploy_annotation(d) for d in plan.deploys]
    for i, span in enumerate(plan.incidents):
        out.append(
            Annotation(
                id=f"demo-incident-{span.start}",
                ts=span.start,
                end=span.end,
                title=f"INC-{100 + i}: checkout latency and 5xx errors",
                tags=["incident", "service:checkout", "severity:critical", "demo"],
                text="Checkout p95 latency above 2 s and elevated 5xx; DB connection pool "
                "exhausted. Mitigated by restarting the payment gateway client.",
            )
        )
    if plan.memory_regression is not None:
        out.extend(_regression_annotations(plan.memory_regression))
    return out


def _deploy_annotation(d: Deploy) -> Annotation:
    return Annotation(
        id=f"demo-deploy-{d.service}-{d.ts}",
        ts=d.ts,
        title=f"Deploy {d.service} {d.version}",
        tags=["deploy", f"service:{d.service}", f"version:{d.version}", "demo"],
    )


def _regression_annotations(span: Span) -> list[Annotation]:
    service = MEMORY_REGRESSION_SERVICE
    return [
        Annotation(
            id=f"demo-deploy-{service}-{span.start}",
            ts=span.start,
            title=f"Deploy {service} v3.0.0 (new product cache)",
            tags=["deploy", f"service:{service}", "version:v3.0.0", "demo"],
            text="Introduces an in-process product cache; memory grows after rollout.",
        ),
        Annotation(
            id=f"demo-deploy-{service}-{span.end}",
            ts=span.end,
            title=f"Rollback {service} to v2.x (cache memory regression)",
            tags=["deploy", "rollback", f"service:{service}", "demo"],
        ),
    ]
