"""Running the demo: load history once, then keep simulating live traffic.

Restarting `opsmetrics demo` on the same data directory loads nothing twice: a marker
annotation records the history window (and so the planted story), and the simulation resumes
after the newest stored sample, continuing every counter from its stored value.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from opsmetrics.demo.incidents import Plan, plan_story, story_annotations
from opsmetrics.demo.seasonality import DAY_MS
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


def attach_demo(app: Any, services: Services, *, days: int = 30) -> DemoRunner:
    """Start the demo in a daemon thread: history first, then live traffic every 15 s.

    The runner is kept as `app.state.demo`; call its `stop()` before closing the services.
    """
    runner = DemoRunner(services, days=days)
    app.state.demo = runner
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
    ) -> None:
        self._services = services
        self._days = days
        self._step_ms = step_s * 1000
        self._live_step_ms = live_step_s * 1000
        self._seed = seed
        self._sim: Simulator | None = None
        self._metadata_sent = False
        self._stop = threading.Event()
        #: Set once history is loaded (or loading failed), so callers can wait for it.
        self.history_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="opsmetrics-demo", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

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
        result = self._advance(self._services.clock.now_ms(), self._step_ms, "history")
        log.info(
            "demo history: %d samples and %d events written in %d requests",
            result.samples,
            result.events,
            result.requests,
        )
        return result

    def tick(self) -> LoadResult:
        """Simulate live traffic up to now, one sample per series every live step."""
        return self._advance(self._services.clock.now_ms(), self._live_step_ms, "live")

    def _simulator(self, now: int) -> Simulator:
        if self._sim is None:
            self._sim = Simulator(self._seed, self._prepare_plan(now))
            self._sim.restore(self._services.storage)
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
        # Written before any sample, so an interrupted load resumes with the same story.
        self._write(WriteRequest(SOURCE, annotations=[marker, *story_annotations(plan)]))
        return plan

    def _find_marker(self, now: int) -> Annotation | None:
        found = self._services.storage.read_annotations(0, now + DAY_MS)
        return next((a for a in found if a.id == MARKER_ID), None)

    def _advance(self, until: int, step_ms: int, what: str) -> LoadResult:
        sim = self._simulator(until)
        stamps = self._timestamps(sim, until, step_ms)
        per_chunk = max(1, self._max_samples() // sim.series_count)
        samples = events = requests = 0
        with _Pipeline(self._services, self._stop) as pipeline:
            for i, first in enumerate(range(0, len(stamps), per_chunk)):
                # The next chunk is simulated while the writer commits the previous one.
                chunk = sim.chunk(stamps[first : first + per_chunk], step_ms)
                requests += self._submit_chunk(pipeline, chunk)
                samples += len(chunk.batch)
                events += len(chunk.events)
                _log_progress(what, i, len(stamps), per_chunk)
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

    def _submit_chunk(self, pipeline: _Pipeline, chunk: Chunk) -> int:
        # Metadata once per process: upserting it with every request costs a commit's worth.
        metadata = [] if self._metadata_sent else list(METADATA)
        self._metadata_sent = True
        limit = self._services.settings.limits.max_events_per_request
        events = chunk.events
        samples = DecodedSamples(chunk.batch, metadata)
        pipeline.submit(WriteRequest(SOURCE, samples=samples, events=events[:limit]))
        for first in range(limit, len(events), limit):
            pipeline.submit(WriteRequest(SOURCE, events=events[first : first + limit]))
        return 1 + max(0, len(events) - 1) // limit

    def _write(self, request: WriteRequest) -> None:
        with _Pipeline(self._services, self._stop) as pipeline:
            pipeline.submit(request)


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
