"""One report run: claim the slot, render it, send it through each channel, record it all.

A run is claimed (one insert in the state store) before anything is rendered, so a slot runs
once. Each channel is sent at most until it is `sent`: a restart or a retry sends only the
channels that are not, with the same Message-ID or Idempotency-Key. Before an attempt the
channel's next attempt is pushed past the attempt's timeout, so a process that dies mid-send
leaves the channel due again for whoever runs the scheduler next. Failed channels are retried
with exponential backoff up to the channel's `max_retries` (notify.yaml); rendering that fails
is retried the same way up to RENDER_ATTEMPTS times.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from opsmetrics.alerting.notifiers.base import DeliveryResult
from opsmetrics.catalog.notify import ChannelModel
from opsmetrics.catalog.reports import Delivery, ReportSet, ReportSpec
from opsmetrics.clock import Clock
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import NotFoundError
from opsmetrics.reports.delivery import (
    ChannelUnconfiguredError,
    Outgoing,
    ReportSender,
    build_sender,
    message_id,
)
from opsmetrics.reports.rendered import RenderedReport
from opsmetrics.storage.base import StateStore
from opsmetrics.storage.report_records import (
    DeliveryStatus,
    ReportDelivery,
    ReportRun,
    RunStatus,
    Trigger,
)

log = logging.getLogger(__name__)
#: Renders a report for a slot (reports/render.py `render_report` with its inputs bound).
Renderer = Callable[[ReportSpec, int, bool], RenderedReport]
RENDER_ATTEMPTS = 3
#: Backoff never grows past this.
MAX_BACKOFF_MS = 3_600_000
#: Channel types that send the PDF (attached, or as `pdf_base64`).
SENDS_PDF = frozenset({"email", "webhook"})
#: Rendered artefacts kept in memory for retries of their channels.
CACHE_SIZE = 16


def run_id(report: str, slot_ms: int, trigger: Trigger) -> str:
    return f"{report}.{slot_ms}" + (".manual" if trigger is Trigger.MANUAL else "")


def backoff_ms(base_ms: int, attempts: int) -> int:
    """base, 2×base, 4×base… after the 1st, 2nd, 3rd failed attempt."""
    return int(min(base_ms * 2 ** max(attempts - 1, 0), MAX_BACKOFF_MS))


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    channels: Mapping[str, ChannelModel]
    env: Mapping[str, str]
    #: This node's name (who claimed a run) and the URL the reports page is at.
    holder: str
    external_url: str
    retry_backoff_ms: int = 30_000


class ReportRunner:
    """Claims and processes runs; thread-safe (a run is processed by one thread at a time)."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        reports: ReportSet,
        render: Renderer,
        config: RunnerConfig,
    ) -> None:
        self._store = store
        self._clock = clock
        self.reports = reports
        self._render = render
        self._config = config
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._cache: OrderedDict[str, RenderedReport] = OrderedDict()

    @property
    def channels(self) -> Mapping[str, ChannelModel]:
        return self._config.channels

    # --- claiming ----------------------------------------------------------------------
    def claim(
        self, spec: ReportSpec, slot_ms: int, trigger: Trigger, *, delayed: bool = False,
        deliver: Sequence[Delivery] | None = None,
    ) -> ReportRun | None:  # fmt: skip
        """Claim the slot; None if it is claimed already. `deliver` replaces the report's
        channels (a manual send to one recipient)."""
        now = self._clock.now_ms()
        rid = run_id(spec.name, slot_ms, trigger)
        run = ReportRun(rid, spec.name, slot_ms, trigger, now, self._config.holder, delayed)
        rows = [self._delivery_row(rid, d, now) for d in (spec.deliver if deliver is None
                                                            else deliver)]  # fmt: skip
        return run if self._store.claim_report_run(run, rows) else None

    def _delivery_row(self, rid: str, d: Delivery, now: int) -> ReportDelivery:
        channel = self._config.channels.get(d.channel)
        if channel is None:  # validate refuses this; a notify.yaml edited since
            return ReportDelivery(rid, d.channel, d.to, DeliveryStatus.FAILED,
                                  error=f"no channel {d.channel!r} in notify.yaml")  # fmt: skip
        to = d.to or (tuple(channel.to) if channel.type == "email" else ())
        return ReportDelivery(rid, d.channel, to, message_id=message_id(rid, channel),
                              next_attempt_ms=now)  # fmt: skip

    # --- processing --------------------------------------------------------------------
    def process(self, run: ReportRun, *, force: bool = False) -> ReportRun:
        """Render the run if it needs it and send every channel that is due (all unsent ones
        with `force`); returns the run as stored. A run another thread is on is left alone."""
        with self._lock:
            if run.run_id in self._busy:
                return run
            self._busy.add(run.run_id)
        try:
            return self._process(run, force)
        finally:
            with self._lock:
                self._busy.discard(run.run_id)

    def _process(self, run: ReportRun, force: bool) -> ReportRun:
        now = self._clock.now_ms()
        try:
            spec = self.reports.get(run.report)
        except NotFoundError:
            return self._finish(run, [], now, error="the report is no longer defined")
        if _waiting_to_render(run, now, force):
            return run
        deliveries = self._store.report_deliveries([run.run_id])
        due = [d for d in deliveries if _due(d, now, force)]
        if not due and run.sha256:
            return self._maybe_finish(run, deliveries, now)
        rendered = self._rendered(self._for_channels(spec, deliveries), run)
        if isinstance(rendered, str):
            return self._store_run(self._render_failed(run, now, rendered))
        run = dataclasses.replace(run, sha256=rendered.sha256, next_attempt_ms=None)
        self._store.update_report_run(run)
        done = {d.channel: self._deliver(spec, run, d, rendered) for d in due}
        # The run finishes when its last channel is sent, not when processing began.
        finished = [done.get(d.channel, d) for d in deliveries]
        return self._maybe_finish(run, finished, self._clock.now_ms())

    def _for_channels(self, spec: ReportSpec, deliveries: Sequence[ReportDelivery]) -> ReportSpec:
        """The spec with only the formats the run's channels send: a run that goes to Slack
        alone (a header and a line per KPI) makes no PDF."""
        types = {c.type for d in deliveries if (c := self._config.channels.get(d.channel))}
        if "pdf" in spec.formats and not types & SENDS_PDF:
            return dataclasses.replace(spec, formats=spec.formats - {"pdf"})
        return spec

    def _rendered(self, spec: ReportSpec, run: ReportRun) -> RenderedReport | str:
        """The artefact, or what went wrong rendering it."""
        with self._lock:
            cached = self._cache.get(run.run_id)
        if cached is not None:
            return cached
        try:
            rendered = self._render(spec, run.slot_ms, run.delayed)
        except Exception as exc:  # a report that cannot render must not stop the others
            log.exception("report %s: rendering slot %s failed", spec.name, run.slot_ms)
            return f"render: {type(exc).__name__}: {exc}"[:500]
        with self._lock:
            self._cache[run.run_id] = rendered
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return rendered

    def _render_failed(self, run: ReportRun, now: int, error: str) -> ReportRun:
        attempts = run.render_attempts + 1
        if attempts >= RENDER_ATTEMPTS:
            return dataclasses.replace(run, render_attempts=attempts, error=error,
                                       status=RunStatus.FAILED, finished_ms=now,
                                       next_attempt_ms=None)  # fmt: skip
        wait = backoff_ms(self._config.retry_backoff_ms, attempts)
        return dataclasses.replace(run, render_attempts=attempts, error=error,
                                   next_attempt_ms=now + wait)  # fmt: skip

    def _deliver(
        self, spec: ReportSpec, run: ReportRun, d: ReportDelivery, rendered: RenderedReport
    ) -> ReportDelivery:
        channel = self._config.channels[d.channel]
        now = self._clock.now_ms()
        try:
            sender = build_sender(channel, self._config.env)
        except ChannelUnconfiguredError as exc:
            skipped = dataclasses.replace(d, status=DeliveryStatus.SKIPPED, error=str(exc),
                                          next_attempt_ms=None)  # fmt: skip
            self._store.update_report_delivery(skipped)
            return skipped
        attempt = d.attempts + 1
        # Whoever finds this channel due after the attempt's timeout sends it again.
        guard = now + channel_timeout_ms(channel) + 60_000
        self._store.update_report_delivery(
            dataclasses.replace(d, attempts=attempt, next_attempt_ms=guard)
        )
        result = self._attempt(sender, rendered, self._outgoing(spec, run, d, now))
        outcome = self._outcome(d, channel, attempt, result, self._clock.now_ms())
        self._store.update_report_delivery(outcome)
        return outcome

    def _outgoing(self, spec: ReportSpec, run: ReportRun, d: ReportDelivery, now: int) -> Outgoing:
        link = f"{self._config.external_url.rstrip('/')}/reports?report={spec.name}"
        return Outgoing(spec, run, d.channel, d.recipients, d.message_id, link, now)

    @staticmethod
    def _attempt(sender: ReportSender, rendered: RenderedReport, out: Outgoing) -> DeliveryResult:
        try:
            return sender.send(rendered, out)
        except Exception as exc:  # a sender's bug is this channel's failure, not the loop's
            log.exception("report %s: channel %s failed", out.spec.name, out.channel)
            return DeliveryResult(False, retryable=True, detail=f"{type(exc).__name__}: {exc}")

    def _outcome(
        self, d: ReportDelivery, channel: ChannelModel, attempt: int, r: DeliveryResult, now: int
    ) -> ReportDelivery:
        if r.ok:
            return dataclasses.replace(d, status=DeliveryStatus.SENT, attempts=attempt,
                                       error="", next_attempt_ms=None, sent_ms=now)  # fmt: skip
        again = r.retryable and attempt <= channel.max_retries
        wait = backoff_ms(self._config.retry_backoff_ms, attempt)
        if r.retry_after_s is not None:
            wait = max(wait, int(r.retry_after_s * 1000))
        return dataclasses.replace(d, status=DeliveryStatus.FAILED, attempts=attempt,
                                   error=r.detail[:500],
                                   next_attempt_ms=now + wait if again else None)  # fmt: skip

    def _maybe_finish(
        self, run: ReportRun, deliveries: Sequence[ReportDelivery], now: int
    ) -> ReportRun:
        if any(not d.status.done and d.next_attempt_ms is not None for d in deliveries):
            return run
        return self._finish(run, deliveries, now)

    def _finish(
        self, run: ReportRun, deliveries: Sequence[ReportDelivery], now: int, error: str = ""
    ) -> ReportRun:
        failed = [d for d in deliveries if not d.status.done]
        error = error or "; ".join(f"{d.channel}: {d.error}" for d in failed)
        status = RunStatus.FAILED if failed or error else RunStatus.SENT
        done = dataclasses.replace(run, status=status, finished_ms=now, error=error,
                                   next_attempt_ms=None)  # fmt: skip
        return self._store_run(done)

    def _store_run(self, run: ReportRun) -> ReportRun:
        self._store.update_report_run(run)
        return run

    def render_now(self, spec: ReportSpec, slot_ms: int) -> RenderedReport:
        """A preview: rendered, never sent nor recorded."""
        return self._render(spec, slot_ms, False)


def _due(d: ReportDelivery, now: int, force: bool) -> bool:
    if d.status.done or d.next_attempt_ms is None:
        return False
    return force or d.next_attempt_ms <= now


def _waiting_to_render(run: ReportRun, now: int, force: bool) -> bool:
    """Rendering failed and its retry has not come yet."""
    return not force and run.next_attempt_ms is not None and run.next_attempt_ms > now


def channel_timeout_ms(channel: ChannelModel) -> int:
    return parse_duration_ms(channel.timeout)
