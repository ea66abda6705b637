"""The scrape loop: pull Prometheus/OpenMetrics targets from scrape.yaml, Prometheus semantics.

Each target gets its own task. A scrape writes the target's samples with `job`/`instance` target
labels, the synthetic series `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
`scrape_samples_post_metric_relabeling` and `scrape_series_added`, and stale markers for series
that were there last time and are gone now (all of them when the target is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import numpy as np

from opsmetrics.catalog.scrape import JobConfig, ScrapeConfig
from opsmetrics.clock import Clock
from opsmetrics.errors import LimitExceededError, OpsMetricsError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.exposition import parse_exposition
from opsmetrics.model import (
    METRIC_NAME,
    STALE_NAN,
    Labels,
    MetricMetadata,
    SampleBatch,
    SampleBatchBuilder,
    make_labels,
)

log = logging.getLogger(__name__)

Sink = Callable[[DecodedSamples], Awaitable[None]]

#: What Prometheus sends: OpenMetrics preferred, then the text format 0.0.4.
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
USER_AGENT = "opsmetrics-scraper"


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    job: JobConfig
    address: str
    url: str
    #: `job`, `instance` and the static labels, added to every scraped series.
    labels: Labels
    interval_ms: int
    timeout_ms: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.job.job_name, self.url)


def targets_of(config: ScrapeConfig) -> list[Target]:
    """Every target of every job, once (a repeated address in a job is scraped once)."""
    out: dict[tuple[str, str], Target] = {}
    for job in config.scrape_configs:
        for static in job.static_configs:
            for address in static.targets:
                target = _target_of(config, job, address, static.labels)
                out.setdefault(target.key, target)
    return list(out.values())


def _target_of(
    config: ScrapeConfig, job: JobConfig, address: str, labels: dict[str, str]
) -> Target:
    # Static labels win over job/instance, as in Prometheus; `__` labels are meta labels.
    pairs = {"job": job.job_name, "instance": address, **labels}
    pairs = {k: v for k, v in pairs.items() if not k.startswith("__")}
    url = f"{job.scheme}://{address}{job.metrics_path}"
    interval, timeout = config.interval_ms(job), config.timeout_ms(job)
    return Target(job, address, url, make_labels(pairs), interval, timeout)


@dataclass(slots=True)
class TargetHealth:
    up: bool | None = None
    last_error: str = ""
    last_scrape_ms: int | None = None
    last_duration_seconds: float = 0.0


@dataclass(slots=True)
class _TargetState:
    health: TargetHealth = field(default_factory=TargetHealth)
    #: Series of the last scrape that had no explicit timestamp: the ones that can go stale.
    series: set[Labels] = field(default_factory=set)


class ScrapeFailedError(OpsMetricsError):
    """The target did not answer with a usable exposition (status, timeout, connection)."""

    reason = "scrape_failed"


# --- the scraper -------------------------------------------------------------------------------


class Scraper:
    def __init__(self, config: ScrapeConfig, sink: Sink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self.targets = targets_of(config)
        self._state = {t.key: _TargetState() for t in self.targets}
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def health(self, target: Target) -> TargetHealth:
        return self._state[target.key].health

    async def start(self) -> None:
        for target in self.targets:
            task = asyncio.create_task(self._run(target), name=f"scrape {target.url}")
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        # Spread targets over the interval so they are not all scraped at the same moment.
        await asyncio.sleep(zlib.crc32(target.url.encode()) % target.interval_ms / 1000)
        while True:
            started = loop.time()
            try:
                await self.scrape_once(target)
            except Exception:
                log.exception("writing the scrape of %s failed", target.url)
            elapsed = loop.time() - started
            await asyncio.sleep(max(0.0, target.interval_ms / 1000 - elapsed))

    async def scrape_once(self, target: Target) -> DecodedSamples:
        """Scrape the target once, write the result to the sink and return what was written."""
        loop = asyncio.get_running_loop()
        ts, started = self._clock.now_ms(), loop.time()
        state = self._state[target.key]
        scrape = await self._collect(target, ts)
        duration = loop.time() - started
        batch = _assemble(target, ts, scrape, state, duration)
        state.health = TargetHealth(scrape.error == "", scrape.error, ts, duration)
        result = DecodedSamples(batch, scrape.metadata)
        await self._sink(result)
        return result

    async def _collect(self, target: Target, ts: int) -> _Scrape:
        scrape = _Scrape()
        try:
            decoded = await self._fetch(target, ts)
            scrape.scraped = len(decoded.batch)
            batch = _with_target_labels(decoded.batch, target)
            scrape.post_relabeling = len(batch)
            _enforce_limits(batch, target)
        except (OpsMetricsError, httpx.HTTPError, TimeoutError) as exc:
            scrape.error = _describe(exc, target)
        else:
            scrape.batch, scrape.metadata = batch, decoded.metadata
        return scrape

    async def _fetch(self, target: Target, ts: int) -> DecodedSamples:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=True)
        timeout = target.timeout_ms / 1000
        headers = {
            "Accept": ACCEPT,
            "User-Agent": USER_AGENT,
            "X-Prometheus-Scrape-Timeout-Seconds": _seconds_text(target.timeout_ms),
        }
        async with asyncio.timeout(timeout):
            response = await self._client.get(target.url, headers=headers, timeout=timeout)
        if response.status_code != 200:
            raise ScrapeFailedError(f"server returned HTTP status {response.status_code}")
        content_type = response.headers.get("content-type")
        # Parsing a big exposition takes a while; keep the event loop answering meanwhile.
        return await asyncio.to_thread(parse_exposition, response.content, content_type, ts)


def _seconds_text(ms: int) -> str:
    return format(Decimal(ms).scaleb(-3).normalize(), "f")


def _describe(exc: Exception, target: Target) -> str:
    if isinstance(exc, OpsMetricsError):
        return exc.message
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"scrape timed out after {_seconds_text(target.timeout_ms)}s"
    return f"{type(exc).__name__}: {exc}"


# --- labels, limits, staleness -----------------------------------------------------------------

_REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)


def _report_labels(target: Target) -> list[Labels]:
    return [make_labels({**dict(target.labels), METRIC_NAME: n}) for n in _REPORT_NAMES]


def _with_target_labels(batch: SampleBatch, target: Target) -> SampleBatch:
    series = [_merge_labels(labels, target) for labels in batch.series]
    reserved = set(_report_labels(target))
    if len(set(series)) == len(series) and reserved.isdisjoint(series):
        return SampleBatch(series, batch.index, batch.ts, batch.values)
    return _without_clashes(batch, series, reserved)


def _without_clashes(
    batch: SampleBatch, series: list[Labels], reserved: set[Labels]
) -> SampleBatch:
    """Rows whose labels clash after adding target labels: the first row of a series and
    timestamp wins, and the synthetic series (`up`…) always come from the scraper."""
    builder, seen = SampleBatchBuilder(), set()
    for row in range(len(batch)):
        labels, ts = series[batch.index[row]], int(batch.ts[row])
        if labels in reserved or (labels, ts) in seen:
            continue
        seen.add((labels, ts))
        builder.add(labels, ts, float(batch.values[row]))
    return builder.build()


def _merge_labels(scraped: Labels, target: Target) -> Labels:
    """Add the target labels. On a clash the scraped value moves to `exported_<name>`, unless
    honor_labels keeps it (Prometheus semantics)."""
    pairs = dict(scraped)
    for name, value in target.labels:
        old = pairs.get(name)
        if old is not None and target.job.honor_labels:
            continue
        if old is not None and old != value:
            exported = "exported_" + name
            while exported in pairs:
                exported = "exported_" + exported
            pairs[exported] = old
        pairs[name] = value
    return make_labels(pairs)


def _enforce_limits(batch: SampleBatch, target: Target) -> None:
    job = target.job
    if job.sample_limit and len(batch) > job.sample_limit:
        raise LimitExceededError(
            f"sample_limit exceeded: the target exposed {len(batch)} samples, more than "
            f"the limit of {job.sample_limit}"
        )
    if job.label_limit or job.label_name_length_limit or job.label_value_length_limit:
        for labels in batch.series:
            _check_label_limits(labels, job)


def _check_label_limits(labels: Labels, job: JobConfig) -> None:
    name = dict(labels).get(METRIC_NAME, "")
    if job.label_limit and len(labels) > job.label_limit:
        raise LimitExceededError(
            f"label_limit exceeded: {name} has {len(labels)} labels, limit {job.label_limit}"
        )
    for key, value in labels:
        if job.label_name_length_limit and len(key.encode()) > job.label_name_length_limit:
            raise LimitExceededError(
                f"label_name_length_limit exceeded: {name} label {key[:50]!r} is longer than "
                f"{job.label_name_length_limit} bytes"
            )
        if job.label_value_length_limit and len(value.encode()) > job.label_value_length_limit:
            raise LimitExceededError(
                f"label_value_length_limit exceeded: {name} label {key!r} value is longer "
                f"than {job.label_value_length_limit} bytes"
            )


@dataclass(slots=True)
class _Scrape:
    """What one scrape brought back; `error` is empty when the target is up."""

    batch: SampleBatch = field(default_factory=SampleBatch.empty)
    metadata: list[MetricMetadata] = field(default_factory=list)
    scraped: int = 0
    post_relabeling: int = 0
    error: str = ""


def _assemble(
    target: Target, ts: int, scrape: _Scrape, state: _TargetState, duration: float
) -> SampleBatch:
    """The scraped samples, then stale markers for vanished series, then the synthetic ones."""
    batch, up = scrape.batch, not scrape.error
    current = _stale_tracked(batch, ts)
    stale = sorted(state.series - set(batch.series))
    report = [
        1.0 if up else 0.0,
        duration,
        float(scrape.scraped),
        float(scrape.post_relabeling),
        float(len(current - state.series) if up else 0),
    ]
    state.series = current
    extra = stale + _report_labels(target)
    first = len(batch.series)
    return SampleBatch(
        batch.series + extra,
        np.concatenate([batch.index, np.arange(first, first + len(extra), dtype=np.int32)]),
        np.concatenate([batch.ts, np.full(len(extra), ts, dtype=np.int64)]),
        np.concatenate([batch.values, np.array([STALE_NAN] * len(stale) + report)]),
    )


def _stale_tracked(batch: SampleBatch, ts: int) -> set[Labels]:
    # Samples with their own timestamp are not subject to staleness (Prometheus semantics).
    return {batch.series[int(i)] for i in np.unique(batch.index[batch.ts == ts])}


@contextlib.asynccontextmanager
async def running(scraper: Scraper) -> AsyncIterator[Scraper]:
    """`async with running(scraper):` runs the scrape loops and stops them on exit."""
    await scraper.start()
    try:
        yield scraper
    finally:
        await scraper.stop()
