"""Current KPI values, cached briefly, for the KPI list and for /metrics.

`/metrics` exports `opsmetrics_kpi_value{kpi}`, `opsmetrics_kpi_target{kpi}` and
`opsmetrics_kpi_status{kpi}` (0 ok, 1 warning, 2 critical; absent while unknown) so existing
Prometheus/Grafana stacks can read KPIs. Every scrape and every load of the KPI list would
otherwise evaluate the whole catalog; each KPI's current value is kept for `ttl_ms` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from opsmetrics.catalog.kpi_model import KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.errors import OpsMetricsError
from opsmetrics.query.kpi import KpiEvaluator, KpiPoint, Status
from opsmetrics.query.kpi.exclusions import Excluded
from opsmetrics.services import Services

DEFAULT_TTL_MS = 60_000
STATUS_VALUE = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Current:
    """A KPI's current point, or why it could not be evaluated."""

    point: KpiPoint | None
    error: str | None = None
    excluded: Excluded = Excluded()  # the input events its evaluation left out


class KpiValues:
    """The evaluator, and each KPI's current value cached for `ttl_ms` of `clock` time."""

    def __init__(
        self,
        evaluator: KpiEvaluator,
        catalog: Catalog,
        clock: Clock,
        ttl_ms: int = DEFAULT_TTL_MS,
    ) -> None:
        self.evaluator = evaluator
        self.catalog = catalog
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._cache: dict[str, tuple[int, Current]] = {}
        self._lock = threading.Lock()

    def current(self, name: str) -> Current:
        now = self._clock.now_ms()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self._ttl_ms:
            return hit[1]
        found = self._evaluate(name)
        with self._lock:
            self._cache[name] = (now, found)
        return found

    def all(self) -> list[tuple[KpiDefinition, Current]]:
        return [(kpi, self.current(kpi.name)) for kpi in self.catalog]

    def forget(self, name: str) -> None:
        """Drop a cached value (after new manual values arrive)."""
        with self._lock:
            self._cache.pop(name, None)

    def _evaluate(self, name: str) -> Current:
        # One broken KPI (a PromQL error, a missing view) must not hide the others.
        try:
            got = self.evaluator.current_series(name)
            return Current(got.points[0], excluded=got.excluded)
        except OpsMetricsError as exc:
            return Current(None, exc.message)


class KpiCollector(Collector):
    """A prometheus_client collector over KpiValues."""

    def __init__(self, values: KpiValues) -> None:
        self.values = values

    def describe(self) -> Iterable[Metric]:
        # Without describe() the registry would collect (evaluate every KPI) on register.
        return []

    def collect(self) -> Iterator[Metric]:
        value = GaugeMetricFamily(
            "opsmetrics_kpi_value", "Current value of each KPI (its current period)", labels=["kpi"]
        )
        target = GaugeMetricFamily(
            "opsmetrics_kpi_target", "Target of each KPI for its current period", labels=["kpi"]
        )
        status = GaugeMetricFamily(
            "opsmetrics_kpi_status", "KPI status: 0 ok, 1 warning, 2 critical", labels=["kpi"]
        )
        for kpi, current in self.values.all():
            point = current.point
            if point is None:
                continue
            if point.value is not None:
                value.add_metric([kpi.name], point.value)
            if point.target is not None:
                target.add_metric([kpi.name], point.target)
            if point.status in STATUS_VALUE:
                status.add_metric([kpi.name], STATUS_VALUE[point.status])
        yield from (value, target, status)


def kpi_values_for(services: Services) -> KpiValues:
    evaluator = KpiEvaluator(services.storage, services.catalog, services.clock)
    return KpiValues(evaluator, services.catalog, services.clock)


def install(app: FastAPI, services: Services) -> KpiValues:
    """Share one KpiValues between the KPI routes and /metrics (called by create_app)."""
    values = kpi_values_for(services)
    services.telemetry.registry.register(KpiCollector(values))
    app.state.kpi_values = values
    return values


def kpi_values(request: Request) -> KpiValues:
    """The app's KpiValues; made on first use when create_app did not install one."""
    values: KpiValues | None = getattr(request.app.state, "kpi_values", None)
    if values is None:
        values = request.app.state.kpi_values = kpi_values_for(request.app.state.services)
    return values
