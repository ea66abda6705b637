"""The planted story: deploys, a memory regression, checkout latency incidents, marketing
campaigns and a release that breaks onboarding for new users.

The plan depends only on the history window and the seed, so a restart recomputes the same
plan from the marker annotation that records the window. Latency incidents keep happening in
the live phase too (LIVE_INCIDENT_*), so alerts fire while someone watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from opsmetrics.demo.seasonality import DAY_MS, HOUR_MS
from opsmetrics.demo.topology import SERVICES
from opsmetrics.model import Float64Array, Int64Array

MINUTE_MS = 60_000
#: How much slower checkout gets during a latency incident, and its 5xx share.
INCIDENT_LATENCY_FACTOR = 7.0
INCIDENT_ERROR_RATE = 0.09
#: During an incident fewer carts reach checkout (slow pages) and most payments fail.
INCIDENT_CHECKOUT_FACTOR = 0.35
INCIDENT_PAYMENT_FACTOR = 0.08
#: Latency incidents last long enough for an hour-long conversion window to see them whole.
INCIDENT_MINUTES = (95, 140)
#: Live phase: the first incident starts this long after the history ends, then one every period.
LIVE_INCIDENT_DELAY_MS = 10 * MINUTE_MS
LIVE_INCIDENT_PERIOD_MS = 8 * HOUR_MS
LIVE_INCIDENT_MS = 100 * MINUTE_MS
#: Feature usage by new users while the onboarding bug is live, relative to normal.
ONBOARDING_BUG_FACTOR = 0.25
ONBOARDING_BUG_MS = 36 * HOUR_MS
#: Extra shop traffic while a campaign runs (0.8 = +80 %).
CAMPAIGN_LIFT = 0.8
CAMPAIGN_CHANNELS = ("email", "ads", "social")
#: The checkout campaign initiative (demo/initiatives.py): from midnight this many days before
#: the last one, shoppers pay 15 % more often, so checkout conversion rises by 15 %. Not 8 %:
#: the event sample (about 330 cart viewers a day) makes the daily rate vary by ~9 %, and 8 %
#: over two weeks is within that noise (measured: +4.8 %, interval -4.9 % to +14.5 %).
CHECKOUT_CAMPAIGN_DAYS = 15
CHECKOUT_CAMPAIGN_LIFT = 1.15
MEMORY_REGRESSION_FACTOR = 1.45
MEMORY_REGRESSION_SERVICE = "api"


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int

    def mask(self, ts_ms: Int64Array) -> np.ndarray:
        return (ts_ms >= self.start) & (ts_ms < self.end)


@dataclass(frozen=True, slots=True)
class Campaign:
    span: Span
    channel: str
    title: str


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
    onboarding_bug: Span | None = None
    campaigns: list[Campaign] = field(default_factory=list)
    #: When the checkout campaign initiative started (demo/initiatives.py), if it did.
    checkout_campaign: int | None = None

    def incident_mask(self, ts_ms: Int64Array) -> np.ndarray:
        mask = self._live_incident_mask(ts_ms)
        for span in self.incidents:
            mask |= span.mask(ts_ms)
        return mask

    def _live_incident_mask(self, ts_ms: Int64Array) -> np.ndarray:
        since = ts_ms - self.end - LIVE_INCIDENT_DELAY_MS
        out: np.ndarray = (since >= 0) & (since % LIVE_INCIDENT_PERIOD_MS < LIVE_INCIDENT_MS)
        return out

    def live_incidents(self, start: int, end: int) -> list[tuple[int, Span]]:
        """The live-phase incidents that begin in (start, end], numbered from 0."""
        first = self.end + LIVE_INCIDENT_DELAY_MS
        k = max(0, -(-(start + 1 - first) // LIVE_INCIDENT_PERIOD_MS))
        out = []
        while (begin := first + k * LIVE_INCIDENT_PERIOD_MS) <= end:
            out.append((k, Span(begin, begin + LIVE_INCIDENT_MS)))
            k += 1
        return out

    def onboarding_mask(self, ts_ms: Int64Array) -> np.ndarray:
        if self.onboarding_bug is None:
            return np.zeros(len(ts_ms), dtype=bool)
        return self.onboarding_bug.mask(ts_ms)

    def campaign_lift(self, ts_ms: Int64Array) -> Float64Array:
        """Extra shop traffic per timestamp: 0 normally, CAMPAIGN_LIFT while a campaign runs."""
        lift: Float64Array = np.zeros(len(ts_ms))
        for c in self.campaigns:
            lift = np.where(c.span.mask(ts_ms), CAMPAIGN_LIFT, lift)
        return lift

    def pay_factor(self, ts_ms: Int64Array) -> Float64Array:
        """The checkout campaign's lift of the probability to pay: 1 before it, then 1.15."""
        if self.checkout_campaign is None:
            return np.ones(len(ts_ms))
        out: Float64Array = np.where(ts_ms >= self.checkout_campaign, CHECKOUT_CAMPAIGN_LIFT, 1.0)
        return out

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
    plan.onboarding_bug = _onboarding_bug(origin, end)
    plan.campaigns = _campaigns(origin, end)
    plan.checkout_campaign = _checkout_campaign(origin, end)
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
        spans.append(Span(start, start + int(rng.integers(*INCIDENT_MINUTES)) * MINUTE_MS))
    return spans


def _onboarding_bug(origin: int, end: int) -> Span | None:
    """A release at 10:00 UTC about 70 % into the window breaks onboarding for 36 hours.

    It comes late enough that a week-over-week comparison of a day of usage has data.
    """
    day = (origin + (end - origin) * 7 // 10) // DAY_MS
    start = day * DAY_MS + 10 * HOUR_MS
    if start < origin + 8 * DAY_MS or start + ONBOARDING_BUG_MS > end:
        return None
    return Span(start, start + ONBOARDING_BUG_MS)


def _checkout_campaign(origin: int, end: int) -> int | None:
    """Midnight 15 days before the last one: two complete weeks after it, and at least two
    before it in the default 30-day history (what the impact estimate needs)."""
    start = (end // DAY_MS - CHECKOUT_CAMPAIGN_DAYS) * DAY_MS
    return start if start - origin >= 14 * DAY_MS else None


def _campaigns(origin: int, end: int) -> list[Campaign]:
    """Day-long campaigns (08:00-22:00 UTC) at 15 %, 45 % and 85 % of a week-long window."""
    out: list[Campaign] = []
    if end - origin < 7 * DAY_MS:
        return out
    titles = ("Newsletter: autumn sale", "Search ads: brand push", "Social: influencer drop")
    for i, share in enumerate((0.15, 0.45, 0.85)):
        day = (origin + int((end - origin) * share)) // DAY_MS
        span = Span(day * DAY_MS + 8 * HOUR_MS, day * DAY_MS + 22 * HOUR_MS)
        if origin <= span.start and span.end <= end:
            out.append(Campaign(span, CAMPAIGN_CHANNELS[i], titles[i]))
    return out


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
