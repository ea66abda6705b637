"""Running the demo: load history once, then keep simulating live traffic.

Restarting `opsmetrics demo` on the same data directory loads nothing twice: a marker
annotation records the history window (and so the planted story), and the simulation resumes
after the newest stored sample, continuing every counter from its stored value.

History is written in-process through the ingest pipeline (fast); given `live_url`, live
traffic is posted to the server's public HTTP ingest endpoints instead (live.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from opsmetrics.demo.annotations import latency_incident, story_annotations
from opsmetrics.demo.incidents import Plan, plan_story
from opsmetrics.demo.initiatives import campaign_initiative
from opsmetrics.demo.live import HttpWriter, demo_token
from opsmetrics.demo.ops_events import story_events
from opsmetrics.demo.saas import opening_events
from opsmetrics.demo.seasonality import DAY_MS
from opsmetrics.demo.shop_db import ShopDatabase, late_floor
from opsmetrics.demo.simulator import Chunk, Simulator
from opsmetrics.demo.topology import METADATA
from opsmetrics.errors import OverloadedError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest, WriteResult
from opsmetrics.model import Annotation, Int64Array
from opsmetrics.services import Services

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
MARKER_ID = "demo-history"
#: Each write request stays at or under this many samples, whatever the configured limit.
MAX_BATCH_SAMPLES = 50_000
SOURCE = "demo"
OPENING_LEAD_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class LoadResult:
    samples: int
    events: int
    requests: int
    #: The last simulated timestamp, None when there was nothing to do.
    until_ms: int | None


def load_history(
    services: Services, days: int = 30, step_s: int = 60, seed: int = DEFAULT_SEED
) -> LoadResult:
    """Write `days` of history ending now; on a data dir that has it, only fill the gap."""
    return DemoRunner(services, days=days, step_s=step_s, seed=seed).load_history()


def attach_demo(
    app: Any, services: Services, *, days: int = 30, live_url: str | None = None
) -> DemoRunner:
    """Start the demo in a daemon thread: history first, then live traffic every 15 s.

    With `live_url` (this server's own address) live traffic goes through its HTTP ingest
    endpoints. The runner is kept as `app.state.demo`; call its `stop()` before closing the
    services.
    """
    runner = DemoRunner(services, days=days, live_url=live_url)
    app.state.demo = runner
    runner.prepare()
    runner.start()
    return runner


class DemoRunner:
    def __init__(
        self,
        services: Services,
        *,
        days: int = 30,
        step_s: int = 60,
        seed: int = DEFAULT_SEED,
        live_step_s: int = 15,
        live_url: str | None = None,
    ) -> None:
        self._services = services
        self._live_url = live_url
        self._http: HttpWriter | None = None
        self._days = days
        self._step_ms = step_s * 1000
        self._live_step_ms = live_step_s * 1000
        self._seed = seed
        self._sim: Simulator | None = None
        self._metadata_sent = False
        self._story_events = 0
        self._stop = threading.Event()
        #: Set once history is loaded (or loading failed), so callers can wait for it.
        self.history_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="opsmetrics-demo", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------
    def prepare(self) -> Plan:
        """Fix the story (and annotate it) now, before loading: quick, and shown to the user."""
        return self._simulator(self._services.clock.now_ms()).plan

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._http is not None:
            self._http.close()

    @property
    def plan(self) -> Plan | None:
        """The planted story, once history loading has begun."""
        return None if self._sim is None else self._sim.plan

    def _run(self) -> None:
        try:
            self.load_history()
        except Exception:
            log.exception("loading the demo history failed; live simulation continues")
        finally:
            self.history_done.set()
        while not self._stop.wait(self._live_step_ms / 1000):
            try:
                self.tick()
            except Exception:
                # A rejected or failed write loses one tick; the next one catches up.
                log.exception("a demo simulation tick failed")

    # --- simulating ---------------------------------------------------------------------
    def load_history(self) -> LoadResult:
        began = time.monotonic()
        result = self._advance(self._services.clock.now_ms(), self._step_ms, "history")
        log.info(
            "demo history: %d samples and %d events written in %d requests in %.1f s",
            result.samples,
            result.events,
            result.requests,
            time.monotonic() - began,
        )
        return result

    def tick(self) -> LoadResult:
        """Simulate live traffic up to now, one sample per series every live step."""
        now = self._services.clock.now_ms()
        sim = self._simulator(now)
        writer = self._live_writer()
        if sim.last_ts is not None:
            started = sim.plan.live_incidents(sim.last_ts, now)
            writer.write_annotations([latency_incident(s, 300 + n) for n, s in started])
        result = self._advance(now, self._live_step_ms, "live", writer)
        self._sync_shop_db(sim, now)
        return result

    def _sync_shop_db(self, sim: Simulator, now: int) -> None:
        """The shop's own database (demo/shop_db.py), which the demo's SQL source reads."""
        floor = late_floor(now, self._services.settings.limits.events_late_window_ms)
        ShopDatabase(self._services.settings.data_dir, sim.plan, self._seed).sync(now, floor)

    def _pipeline_writer(self) -> _PipelineWriter:
        writer = _PipelineWriter(self._services, self._stop, metadata=not self._metadata_sent)
        self._metadata_sent = True
        return writer

    def _live_writer(self) -> ChunkWriter:
        if self._live_url is None:
            return self._pipeline_writer()
        if self._http is None:
            limit = self._services.settings.limits.max_events_per_request
            self._http = HttpWriter(self._live_url, demo_token(self._services), limit)
        return self._http

    def _simulator(self, now: int) -> Simulator:
        if self._sim is None:
            self._sim = Simulator(self._seed, self._prepare_plan(now))
            self._sim.restore(self._services.storage)
            self._sync_shop_db(self._sim, now)
        return self._sim

    def _prepare_plan(self, now: int) -> Plan:
        marker = self._find_marker(now)
        if marker is not None and marker.end is not None:
            return plan_story(marker.ts, marker.end, self._seed)
        origin = _align(now - self._days * DAY_MS, self._step_ms)
        plan = plan_story(origin, now, self._seed)
        marker = Annotation(
            id=MARKER_ID,
            ts=origin,
            end=now,
            title="Demo history",
            tags=["demo"],
            text=f"seed={self._seed} days={self._days} step_ms={self._step_ms}",
        )
        # Written before any sample, so an interrupted load resumes with the same story. The
        # opening balance of subscriptions lies a day and an hour before the window, so 30-day
        # windows of the last complete day see only the history's own changes.
        limits = self._services.settings.limits
        # Never older than the pipeline accepts for events (a long --days).
        floor = now - limits.events_late_window_ms + OPENING_LEAD_MS
        opening = opening_events(max(origin - DAY_MS - OPENING_LEAD_MS, floor))
        notes = [marker, *story_annotations(plan)]
        events = opening + [e for e in story_events(plan) if e.ts >= floor]
        limit = limits.max_events_per_request
        requests = [
            WriteRequest(SOURCE, events=events[i : i + limit]) for i in range(0, len(events), limit)
        ]
        initiative = campaign_initiative(plan)
        if initiative is not None:  # False when a reload finds it stored: nothing to do
            self._services.storage.save_initiative(initiative)
        # The marker last: a load interrupted before it starts over (event ids are stable).
        self._write(*requests, WriteRequest(SOURCE, annotations=notes))
        self._story_events = len(events)
        return plan

    def _find_marker(self, now: int) -> Annotation | None:
        found = self._services.storage.read_annotations(0, now + DAY_MS)
        return next((a for a in found if a.id == MARKER_ID), None)

    def _advance(
        self, until: int, step_ms: int, what: str, writer: ChunkWriter | None = None
    ) -> LoadResult:
        sim = self._simulator(until)
        stamps = self._timestamps(sim, until, step_ms)
        per_chunk = max(1, self._max_samples() // sim.series_count)
        samples = requests = 0
        # The opening balance and the story's events, when this run wrote them.
        events, self._story_events = self._story_events, 0
        writer = writer or self._pipeline_writer()
        try:
            for i, first in enumerate(range(0, len(stamps), per_chunk)):
                # The next chunk is simulated while the writer commits the previous one.
                chunk = sim.chunk(stamps[first : first + per_chunk], step_ms)
                requests += writer.write_chunk(chunk)
                samples += len(chunk.batch)
                events += len(chunk.events)
                _log_progress(what, i, len(stamps), per_chunk)
        finally:
            writer.flush()
        return LoadResult(samples, events, requests, sim.last_ts if len(stamps) else None)

    def _timestamps(self, sim: Simulator, until: int, step_ms: int) -> Int64Array:
        limits = self._services.settings.limits
        # Never older than the pipeline accepts for events (nor than the history window).
        floor = max(sim.plan.origin, until - limits.events_late_window_ms + step_ms)
        after = floor if sim.last_ts is None else max(sim.last_ts, floor)
        first = _align(after, step_ms) + step_ms
        return np.arange(first, until + 1, step_ms, dtype=np.int64)

    def _max_samples(self) -> int:
        return min(MAX_BATCH_SAMPLES, self._services.settings.limits.max_samples_per_request)

    def _write(self, *requests: WriteRequest) -> None:
        with _Pipeline(self._services, self._stop) as pipeline:
            for request in requests:
                pipeline.submit(request)


class ChunkWriter(Protocol):
    def write_chunk(self, chunk: Chunk) -> int:
        """Write one chunk; returns the number of requests it took."""
        ...

    def write_annotations(self, notes: list[Annotation]) -> None: ...

    def flush(self) -> None: ...


class _PipelineWriter:
    """In-process: straight into the ingest pipeline, a few requests in flight."""

    def __init__(self, services: Services, stop: threading.Event, *, metadata: bool) -> None:
        self._limit = services.settings.limits.max_events_per_request
        self._pipeline = _Pipeline(services, stop)
        self._metadata = metadata

    def write_chunk(self, chunk: Chunk) -> int:
        # Metadata once: upserting it with every request costs a commit's worth.
        metadata = list(METADATA) if self._metadata else []
        self._metadata = False
        events, limit = chunk.events, self._limit
        samples = DecodedSamples(chunk.batch, metadata)
        self._pipeline.submit(WriteRequest(SOURCE, samples=samples, events=events[:limit]))
        for first in range(limit, len(events), limit):
            self._pipeline.submit(WriteRequest(SOURCE, events=events[first : first + limit]))
        return 1 + max(0, len(events) - 1) // limit

    def write_annotations(self, notes: list[Annotation]) -> None:
        if notes:
            self._pipeline.submit(WriteRequest(SOURCE, annotations=notes))

    def flush(self) -> None:
        self._pipeline.__exit__()


class _Pipeline:
    """Keeps a few write requests in flight, in order; waits for all of them on exit."""

    def __init__(self, services: Services, stop: threading.Event, depth: int = 2) -> None:
        self._ingestor = services.ingestor
        self._stop = stop
        self._depth = depth
        self._pending: deque[Future[WriteResult]] = deque()

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._pending:
            self._pending.popleft().result()

    def submit(self, request: WriteRequest) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        while True:
            try:
                self._pending.append(self._ingestor.submit(request))
                return
            except OverloadedError:
                if self._stop.wait(0.5):
                    raise


def _align(ts: int, step_ms: int) -> int:
    return ts - ts % step_ms


def _log_progress(what: str, index: int, total_steps: int, per_chunk: int) -> None:
    chunks = -(-total_steps // per_chunk)
    tenth = max(1, chunks // 10)
    if chunks > 1 and (index + 1) % tenth == 0:
        log.info("demo %s: %d%% loaded", what, 100 * (index + 1) // chunks)
