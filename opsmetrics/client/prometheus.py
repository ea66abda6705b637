"""A bridge from prometheus_client: push a CollectorRegistry, once or periodically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from opsmetrics.errors import OpsMetricsError

if TYPE_CHECKING:
    from opsmetrics.client.client import Client

log = logging.getLogger(__name__)


class _Relabelled(Collector):
    """Every metric of `registry` with `labels` set on every sample."""

    def __init__(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._registry = registry
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
            yield out


def registry_exposition(registry: CollectorRegistry, labels: Mapping[str, str]) -> bytes:
    """The registry in Prometheus text format 0.0.4, with `labels` added to every sample."""
    relabelled = CollectorRegistry(auto_describe=False)
    relabelled.register(_Relabelled(registry, labels))
    return generate_latest(relabelled)


class RegistryPusher:
    """Pushes a registry every `interval` seconds from a daemon thread until `stop()`."""

    def __init__(
        self,
        client: Client,
        registry: CollectorRegistry,
        *,
        job: str,
        instance: str = "",
        interval: float = 15.0,
    ) -> None:
        self._client = client
        self._registry = registry
        self._job = job
        self._instance = instance
        self._interval = interval
        self._stop = threading.Event()
        self.pushes = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="opsmetrics-pusher", daemon=True)

    def start(self) -> RegistryPusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, after one last push so the final values are not lost."""
        self._stop.set()
        self._thread.join()

    def push_once(self) -> None:
        try:
            self._client.push_registry(self._registry, job=self._job, instance=self._instance)
            self.pushes += 1
        except OpsMetricsError as exc:
            self.failures += 1
            log.error("opsmetrics: push of job %r failed: %s", self._job, exc.message)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.push_once()
        self.push_once()

    def __enter__(self) -> RegistryPusher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
