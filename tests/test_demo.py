"""The demo simulator against a real DuckDB file: shapes, the planted story, idempotent restarts."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from opsmetrics.clock import FakeClock
from opsmetrics.demo.incidents import plan_story
from opsmetrics.demo.runner import MARKER_ID, DemoRunner, LoadResult, attach_demo, load_history
from opsmetrics.demo.seasonality import daily_factor, weekly_factor
from opsmetrics.demo.shop_db import FILE, ShopDatabase, late_floor
from opsmetrics.model import Annotation, Event, Labels, Matcher, MatchOp, SampleRows
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from tests.server import free_port, wait_until

#: Thursday 2026-11-05 06:00 UTC: two days of history span two weekday evenings.
NOW = 1_793_858_400_000
HOUR = 3_600_000
DAY = 24 * HOUR
DAYS = 2
STEP_S = 300


@dataclass
class Loaded:
    services: Services
    result: LoadResult


def _open(data_dir: Path, clock: FakeClock, limits: Limits | None = None) -> Services:
    return open_services(Settings(data_dir=data_dir, limits=limits or Limits()), clock)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    services = _open(tmp_path_factory.mktemp("demo"), FakeClock(NOW))
    result = load_history(services, days=DAYS, step_s=STEP_S)
    yield Loaded(services, result)
    services.close()


def _series(services: Services, name: str) -> dict[int, Labels]:
    found = services.storage.select_series([Matcher.of("__name__", MatchOp.EQ, name)])
    return {s.id: s.labels for s in found}


def _rows(services: Services, name: str) -> tuple[dict[int, Labels], SampleRows]:
    series = _series(services, name)
    return series, services.storage.read_samples(list(series), NOW - 40 * DAY, NOW)


def _per_series(rows: SampleRows) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for sid in np.unique(rows.series_ids).tolist():
        mask = rows.series_ids == sid
        out[sid] = (rows.ts[mask], rows.values[mask])
    return out


def _events(services: Services, name: str) -> list[Event]:
    return services.storage.read_events(name, NOW - 40 * DAY, NOW + DAY)


def _incidents(services: Services) -> list[Annotation]:
    """The checkout latency incidents."""
    notes = services.storage.read_annotations(0, NOW)
    return [a for a in notes if {"incident", "service:checkout"} <= set(a.tags)]


def test_history_covers_the_window_in_steps(loaded: Loaded) -> None:
    stats = loaded.services.storage.stats()
    assert stats.samples == loaded.result.samples > 0
    assert stats.events == loaded.result.events > 0
    _, rows = _rows(loaded.services, "up")
    assert int(rows.ts.min()) > NOW - DAYS * DAY
    assert int(rows.ts.max()) == NOW
    assert set(np.diff(np.unique(rows.ts)).tolist()) == {STEP_S * 1000}


def test_events_stay_inside_the_history_window(loaded: Loaded) -> None:
    events = loaded.services.storage.read_events(None, 0, NOW + DAY)
    names = {e.name for e in events}
    assert {"page_view", "add_to_cart", "cart_view", "checkout", "purchase"} <= names
    assert {"signup", "subscription_changed", "experiment_exposure", "marketing_spend"} <= names
    assert {"nps_response", "support_ticket"} <= names
    # The opening balance of subscriptions lies just before the window; the rest inside it.
    opening = [e for e in events if e.props.get("change") == "opening"]
    assert len(opening) == 1150 and all(e.ts < NOW - DAYS * DAY for e in opening)
    rest = [e for e in events if e.props.get("change") != "opening"]
    assert all(NOW - DAYS * DAY < e.ts <= NOW for e in rest)
    # Tens of thousands a day at most, as the demo promises.
    assert len(events) / DAYS < 50_000


def test_counters_never_decrease(loaded: Loaded) -> None:
    names = ["http_requests_total", "process_cpu_seconds_total", "shop_orders_total"]
    names += ["business_funnel_step_total", "business_revenue_cents_total"]
    names += ["business_feature_usage_total", "marketing_spend_cents_total"]
    names += [f"http_request_duration_seconds_{s}" for s in ("bucket", "sum", "count")]
    for name in names:
        _, rows = _rows(loaded.services, name)
        for ts, values in _per_series(rows).values():
            assert np.all(np.diff(ts) > 0)
            assert np.all(np.diff(values) >= 0), name


EndpointKey = tuple[tuple[str, str], ...]


def _endpoint_key(labels: Labels) -> EndpointKey:
    return tuple((k, v) for k, v in labels if k not in ("__name__", "le"))


def test_histogram_buckets_are_cumulative_and_inf_equals_count(loaded: Loaded) -> None:
    bucket_series, bucket_rows = _rows(loaded.services, "http_request_duration_seconds_bucket")
    count_series, count_rows = _rows(loaded.services, "http_request_duration_seconds_count")
    counts = {
        _endpoint_key(count_series[sid]): v for sid, (_, v) in _per_series(count_rows).items()
    }
    by_endpoint: dict[tuple[tuple[str, str], ...], list[tuple[float, np.ndarray]]] = defaultdict(
        list
    )
    for sid, (_, values) in _per_series(bucket_rows).items():
        labels = bucket_series[sid]
        by_endpoint[_endpoint_key(labels)].append((float(dict(labels)["le"]), values))
    assert len(by_endpoint) == len(counts) == 16
    for key, buckets in by_endpoint.items():
        buckets.sort(key=lambda b: b[0])
        stacked = np.vstack([values for _, values in buckets])
        assert np.all(np.diff(stacked, axis=0) >= 0), key
        assert buckets[-1][0] == float("inf")
        np.testing.assert_array_equal(buckets[-1][1], counts[key])
        # The top finite bucket (10 s) keeps up with +Inf step by step, except when a real
        # tail passes it, so quantiles read latencies and not the bucket bound.
        same = np.diff(stacked[-2]) == np.diff(stacked[-1])
        assert same.mean() > 0.9, (key, same.mean())


def _increase_by_hour(rows: SampleRows) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for ts, values in _per_series(rows).values():
        hours = (ts[1:] % DAY) // HOUR
        for hour, inc in zip(hours.tolist(), np.diff(values).tolist(), strict=True):
            out[hour] += inc
    return out


def test_evening_peak_is_well_above_the_night_trough(loaded: Loaded) -> None:
    _, rows = _rows(loaded.services, "http_requests_total")
    by_hour = _increase_by_hour(rows)
    assert by_hour[19] > 2.5 * by_hour[3]
    assert max(by_hour, key=lambda h: by_hour[h]) in (18, 19, 20, 21)


def _in_spans(ts: int, spans: list[Annotation]) -> bool:
    return any(a.ts <= ts < (a.end or a.ts) for a in spans)


def _conversion(views: list[Event], purchases: list[Event]) -> float:
    return len(purchases) / max(1, len(views))


def test_checkout_conversion_drops_during_latency_incidents(loaded: Loaded) -> None:
    incidents = _incidents(loaded.services)
    assert incidents, "the story plants at least one incident"
    views = _events(loaded.services, "cart_view")
    purchases = _events(loaded.services, "purchase")
    during = _conversion(
        [e for e in views if _in_spans(e.ts, incidents)],
        [e for e in purchases if _in_spans(e.ts, incidents)],
    )
    outside = _conversion(
        [e for e in views if not _in_spans(e.ts, incidents)],
        [e for e in purchases if not _in_spans(e.ts, incidents)],
    )
    # Orders per cart view: about 28 % normally, under 2 % while checkout is slow.
    assert 0.2 < outside < 0.36
    assert during < 0.1 * outside
    shop_wide = _increase_by_step(loaded.services)
    assert 0.2 < shop_wide["order_confirmed"] / shop_wide["cart_view"] < 0.36


def _increase_by_step(services: Services) -> dict[str, float]:
    series, rows = _rows(services, "business_funnel_step_total")
    return {
        dict(series[sid])["step"]: float(values[-1] - values[0])
        for sid, (_, values) in _per_series(rows).items()
    }


def test_the_funnel_narrows_step_by_step_in_events_and_counters(loaded: Loaded) -> None:
    names = ("page_view", "add_to_cart", "cart_view", "checkout", "purchase")
    counts = [len(_events(loaded.services, n)) for n in names]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0
    assert 0.015 < counts[-1] / counts[0] < 0.04
    shop = _increase_by_step(loaded.services)
    steps = ["page_view", "add_to_cart", "cart_view", "checkout", "order_confirmed"]
    assert [shop[s] for s in steps] == sorted(shop.values(), reverse=True)
    # Counters count every session, events a sample: the same shape at another scale.
    assert shop["page_view"] > 100 * counts[0]
    assert shop["order_confirmed"] / shop["page_view"] == pytest.approx(
        counts[-1] / counts[0], rel=0.25
    )


def test_each_purchase_follows_its_users_earlier_funnel_steps(loaded: Loaded) -> None:
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for name in ("page_view", "add_to_cart", "cart_view", "checkout"):
        for e in _events(loaded.services, name):
            seen[(name, e.entity)].append(e.ts)
    for purchase in _events(loaded.services, "purchase"):
        for name in ("page_view", "add_to_cart", "cart_view", "checkout"):
            assert any(t <= purchase.ts for t in seen[(name, purchase.entity)]), name


def test_experiment_exposures_split_users_by_id(loaded: Loaded) -> None:
    exposures = _events(loaded.services, "experiment_exposure")
    added = {(e.entity, e.ts) for e in _events(loaded.services, "add_to_cart")}
    assert {(e.entity, e.ts) for e in exposures} == added
    arms: dict[str, set[str]] = defaultdict(set)
    for e in exposures:
        assert e.props["experiment"] == "checkout_redesign"
        arms[e.entity].add(str(e.props["variant"]))
    assert all(len(a) == 1 for a in arms.values())
    treated = sum("treatment" in a for a in arms.values()) / len(arms)
    assert 0.45 < treated < 0.55


def _checkout_error_share(
    rows: SampleRows, series: dict[int, Labels], incidents: list[Annotation], inside: bool
) -> float:
    errors = total = 0.0
    for sid, (ts, values) in _per_series(rows).items():
        labels = dict(series[sid])
        if labels["service"] != "checkout":
            continue
        for t, inc in zip(ts[1:].tolist(), np.diff(values).tolist(), strict=True):
            if _in_spans(t, incidents) == inside:
                total += inc
                errors += inc if labels["code"].startswith("5") else 0.0
    return errors / total


def test_checkout_p99_stays_inside_the_finite_buckets_outside_incidents(loaded: Loaded) -> None:
    """The top finite bucket keeps up with +Inf, so p99 reads a latency, not the bucket bound
    (rounding buckets per step; flooring left the 10 s bucket short and p99 read 10 s)."""
    expr = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{service="checkout"}[30m])))'
    )
    step = 30 * 60_000
    start = NOW - DAYS * DAY + HOUR
    value = evaluate_range(loaded.services.storage, expr, start, NOW, step)
    assert isinstance(value, InstantVector) and len(value.labels) == 1
    incidents = _incidents(loaded.services)
    times = start + np.arange(value.values.shape[1]) * step
    calm = [all(a.ts > t or (a.end or a.ts) <= t - step for a in incidents) for t in times]
    quiet = np.array(calm) & value.present[0]
    p99 = value.values[0][quiet]
    assert quiet.sum() > 50
    assert np.all(p99 < 2.5), p99.max()
    assert np.median(p99) > 0.3  # a real tail above the ~0.2 s median


def test_incidents_raise_checkout_errors_and_are_annotated(loaded: Loaded) -> None:
    incidents = _incidents(loaded.services)
    for incident in incidents:
        assert incident.end is not None and incident.end > incident.ts
        assert "service:checkout" in incident.tags
    series, rows = _rows(loaded.services, "http_requests_total")
    assert _checkout_error_share(rows, series, incidents, inside=True) > 0.05
    assert _checkout_error_share(rows, series, incidents, inside=False) < 0.01


def test_the_memory_regression_deploy_raises_api_memory(loaded: Loaded) -> None:
    notes = loaded.services.storage.read_annotations(0, NOW)
    deploy = next(a for a in notes if "v3.0.0" in a.title)
    assert "deploy" in deploy.tags
    series, rows = _rows(loaded.services, "process_resident_memory_bytes")
    for sid, (ts, values) in _per_series(rows).items():
        before = values[(ts < deploy.ts) & (ts >= deploy.ts - 6 * HOUR)].mean()
        after = values[(ts >= deploy.ts + 6 * HOUR) & (ts < deploy.ts + 12 * HOUR)]
        if dict(series[sid])["service"] == "api" and len(after):
            assert after.mean() > 1.2 * before


def _everything(services: Services) -> tuple[list[tuple[Labels, int, float]], list[Event]]:
    series = {s.id: s.labels for s in services.storage.select_series([])}
    rows = services.storage.read_samples(list(series), 0, NOW)
    samples = [
        (series[sid], t, v)
        for sid, t, v in zip(
            rows.series_ids.tolist(), rows.ts.tolist(), rows.values.tolist(), strict=True
        )
    ]
    return sorted(samples), services.storage.read_events(None, 0, NOW + DAY)


def test_the_same_seed_gives_the_same_data(loaded: Loaded, tmp_path: Path) -> None:
    twin = _open(tmp_path / "twin", FakeClock(NOW))
    try:
        load_history(twin, days=DAYS, step_s=STEP_S)
        assert _everything(twin) == _everything(loaded.services)
    finally:
        twin.close()


def test_another_seed_gives_other_data(loaded: Loaded, tmp_path: Path) -> None:
    other = _open(tmp_path / "other", FakeClock(NOW))
    try:
        DemoRunner(other, days=1, step_s=3600, seed=7).load_history()
        theirs = {e.ts for e in _events(other, "purchase")}
        ours = {e.ts for e in _events(loaded.services, "purchase")}
        assert theirs and not theirs & ours
    finally:
        other.close()


def _counts(services: Services) -> tuple[int, int, int, int]:
    stats = services.storage.stats()
    return stats.series, stats.samples, stats.events, stats.annotations


def test_a_restart_resumes_without_duplicating_history(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    services = _open(tmp_path, clock)
    first = load_history(services, days=1, step_s=900)
    counts_before = _counts(services)
    services.close()

    services = _open(tmp_path, clock)
    try:
        again = load_history(services, days=1, step_s=900)
        assert (again.samples, again.events) == (0, 0)
        assert _counts(services) == counts_before
        assert [a.id for a in services.storage.read_annotations(0, NOW)].count(MARKER_ID) == 1

        _, old = _rows(services, "shop_cart_views_total")
        clock.advance(60_000)
        live = DemoRunner(services, days=1, step_s=900).tick()
        _, new = _rows(services, "shop_cart_views_total")
        assert live.samples == 4 * services.storage.stats().series  # four 15 s steps
        assert first.until_ms == NOW and live.until_ms == NOW + 60_000
        assert np.all(np.diff(new.values) >= 0) and new.values[-1] >= old.values[-1]
    finally:
        services.close()


def test_requests_respect_the_configured_limits(tmp_path: Path) -> None:
    limits = Limits(max_samples_per_request=2_000, max_events_per_request=500)
    services = _open(tmp_path, FakeClock(NOW), limits)
    try:
        result = load_history(services, days=1, step_s=900)
        stats = services.storage.stats()
        assert (stats.samples, stats.events) == (result.samples, result.events)
        assert result.requests >= max(result.samples / 2_000, result.events / 500)
    finally:
        services.close()


def test_attach_demo_loads_history_in_the_background(tmp_path: Path) -> None:
    services = _open(tmp_path, FakeClock(NOW))
    app = FastAPI()
    runner = attach_demo(app, services, days=1)
    try:
        assert runner.history_done.wait(60)
        assert app.state.demo is runner
        assert services.storage.stats().samples > 0
    finally:
        runner.stop()
        services.close()


def test_weekends_are_quieter_than_weekdays() -> None:
    wednesday_evening = np.array([NOW - DAY + 13 * HOUR], dtype=np.int64)
    saturday_evening = wednesday_evening + 3 * DAY
    assert weekly_factor(saturday_evening)[0] < weekly_factor(wednesday_evening)[0] == 1.0
    assert daily_factor(wednesday_evening)[0] > 3 * daily_factor(wednesday_evening - 15 * HOUR)[0]


def test_thirty_days_plant_a_few_evening_incidents_and_one_memory_regression() -> None:
    plan = plan_story(NOW - 30 * DAY, NOW, seed=42)
    assert 3 <= len(plan.incidents) <= 5
    for span in plan.incidents:
        assert 18 <= (span.start % DAY) // HOUR <= 21
        assert 95 * 60_000 <= span.end - span.start < 140 * 60_000
    regression = plan.memory_regression
    assert regression is not None and NOW - 30 * DAY < regression.start < regression.end <= NOW
    assert len(plan.deploys) >= 15
    bug = plan.onboarding_bug
    assert bug is not None and NOW - 22 * DAY <= bug.start < bug.end <= NOW
    assert len(plan.campaigns) == 3
    assert plan_story(NOW - 30 * DAY, NOW, seed=42) == plan


def test_latency_incidents_keep_coming_in_the_live_phase() -> None:
    plan = plan_story(NOW - DAY, NOW, seed=42)
    started = plan.live_incidents(NOW, NOW + DAY)
    assert len(started) == 3 and started[0][0] == 0
    first = started[0][1]
    stamps = np.array([first.start - 60_000, first.start, first.end - 1, first.end])
    assert plan.incident_mask(stamps).tolist() == [False, True, True, False]
    assert plan.live_incidents(first.start, NOW + DAY)[0][0] == 1


def _refund_rows(path: Path) -> dict[int, tuple[str, str, str, str]]:
    """id → (status, reason, updated_at, created_at) of every row of the shop database."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        query = "SELECT id, status, reason, updated_at, created_at FROM refunds"
        rows = db.execute(query).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_the_shop_database_follows_the_story_and_moves_its_cursor(tmp_path: Path) -> None:
    """The refunds the demo's SQL source reads: the same for the same seed; double charges
    only right after checkout incidents; a later sync adds refunds and moves older rows on,
    every change dated after the previous sync, so a cursor on updated_at misses none."""
    plan = plan_story(NOW - 30 * DAY, NOW, seed=42)
    floor = late_floor(NOW, Limits().events_late_window_ms)
    for name in ("a", "b"):
        ShopDatabase(tmp_path / name, plan, 42).sync(NOW, floor)
    before = _refund_rows(tmp_path / "a" / FILE)
    assert before == _refund_rows(tmp_path / "b" / FILE) and len(before) > 1000
    assert max(r[2] for r in before.values()) <= _stamp(NOW)
    twice = [r[3] for r in before.values() if r[1] == "charged_twice"]
    spans = [(_stamp(s.start), _stamp(s.end)) for s in plan.incidents]
    assert twice and all(any(a <= t <= b for a, b in spans) for t in twice), twice
    later = NOW + 6 * HOUR
    added = ShopDatabase(tmp_path / "a", plan, 42).sync(later, floor)
    after = _refund_rows(tmp_path / "a" / FILE)
    assert added > 0 and sorted(after) == list(range(1, len(before) + added + 1))
    moved = [i for i, r in before.items() if after[i] != r]
    assert len(moved) > 10
    changed = [after[i][2] for i in moved] + [after[i][2] for i in after if i not in before]
    assert all(_stamp(NOW) < t <= _stamp(later) for t in changed)


def _metric(text: str, name: str, source: str) -> float:
    prefix = f'{name}{{source="{source}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _assert_the_shop_database_is_a_healthy_source(url: str) -> None:
    """The demo's SQL source has read its shop database, and the refunds KPI names it."""

    def read() -> dict[str, Any] | None:
        sources = httpx.get(url + "/api/v1/sources").json()["data"]
        found = next(s for s in sources if s["name"] == "shop_refunds")
        return found if found["rows_total"] > 0 else None

    source = wait_until(read, "the shop_refunds source to store rows", timeout_s=60)
    assert source["up"] is True and source["error"] is None, source
    assert source["driver"] == "sqlite" and source["tables"] == ["refunds"]
    assert source["url"] == "sqlite:///{data_dir}/shop.sqlite"
    assert source["lag_seconds"] is not None and source["lag_seconds"] < 3600, source
    kpi = httpx.get(url + "/api/v1/kpis/refunds").json()["data"]
    assert [(s["source"], s["input"]) for s in kpi["lineage"]["sources"]] == [
        ("shop_refunds", "refund")
    ]


@pytest.mark.e2e
def test_the_demo_command_posts_live_traffic_through_the_http_api(tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, "-m", "opsmetrics", "demo", "--days", "1"]
    args += ["--data", str(tmp_path / "data"), "--port", str(port)]
    log = tmp_path / "demo.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        # The first live tick comes 15 s after the history: it arrives as JSON over HTTP.
        def live() -> float:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(url + "/metrics").text
                return _metric(text, "opsmetrics_ingest_samples_total", "json")
            return 0.0

        try:
            wait_until(live, "samples of a live tick ingested as JSON", timeout_s=90)
        except AssertionError:
            print(log.read_text())
            raise
        query = {"query": 'sum(business_funnel_step_total{step="page_view"})'}
        body = httpx.get(url + "/api/v1/query", params=query).json()
        assert float(body["data"]["result"][0]["value"][1]) > 0
        printed = log.read_text()
        # The story's live line is always there; past incidents only when one of them falls
        # inside the day of history, which depends on the time of day the test runs.
        assert "/dashboards/executive" in printed and "next checkout incident" in printed
        _assert_the_shop_database_is_a_healthy_source(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        # Not proc.wait(30): Popen.wait(timeout) polls with time.sleep (tests/README.md).
        try:
            wait_until(lambda: proc.poll() is not None, "the demo to exit on SIGTERM", 30)
        finally:
            proc.kill()  # a no-op once it has exited
            proc.wait()
