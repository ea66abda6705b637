"""Alerting rules as Prometheus runs them: the state machine driven by a FakeClock over real
DuckDB storage and the real write pipeline, ALERTS series, restore after a restart, the alert
hub, the seed's business rules and /api/v1/rules (its whole body against a golden file:
tests/golden_files.py; `OPSMETRICS_UPDATE_GOLDEN=1` refreshes it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from opsmetrics.alerting.groups import Health, RuleManager, aligned_at_or_before
from opsmetrics.alerting.model import Alert, AlertHub, AlertState
from opsmetrics.alerting.rule_alerts import RESOLVED_RETENTION_MS
from opsmetrics.catalog.rules import load_rule_file, parse_rule_file
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import METRIC_NAME, Labels, Matcher, MatchOp, SampleBatchBuilder, is_stale
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.web.app import create_app
from tests.golden_files import GOLDEN_DIR, assert_golden_json
from tests.server import ServerProcess, wait_until

NOW = 1_700_000_000_000
MIN = 60_000
FIXTURES = Path(__file__).parent / "fixtures"

RULES = """\
groups:
  - name: alerts
    interval: 1m
    rules:
      - alert: JobDown
        expr: up == 0
        for: 3m
        labels: {severity: page, owner: "{{ $labels.job }}-team"}
        annotations:
          summary: "{{ $labels.instance }} of {{ .Labels.job }} is down"
          value: "{{ $value }}"
"""


class RecordingSink:
    """A real AlertSink that keeps every batch it is sent."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[Alert]]] = []

    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        self.batches.append((at_ms, list(alerts)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def svc(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    services = open_services(Settings(data_dir=tmp_path / "data"), clock)
    try:
        yield services
    finally:
        services.close()


class Run:
    """A rule manager and its clock, stepped one group tick at a time."""

    def __init__(self, svc: Services, clock: FakeClock, text: str = RULES, **kw: object) -> None:
        self.svc, self.clock = svc, clock
        self.hub = AlertHub()
        self.sink = RecordingSink()
        self.hub.add_sink(self.sink)
        groups = parse_rule_file(text, "rules/alerts.yaml")
        self.manager = RuleManager(
            groups,
            svc.storage,
            svc.ingestor,
            clock,
            hub=self.hub,
            **kw,  # type: ignore[arg-type]
        )
        self.hub.add_source(self.manager)
        self.group = groups[0]
        self.tick = aligned_at_or_before(self.group, clock.now_ms()) + self.group.interval_ms

    def step(self, up: dict[str, float]) -> int:
        """Write `up` for each instance just before the next tick, then evaluate at the tick."""
        at = self.tick
        write(
            self.svc, "up", at - 1000, {(("instance", i), ("job", "api")): v for i, v in up.items()}
        )
        self.clock.set(at)
        assert self.manager.evaluate_due() == 1
        self.tick += self.group.interval_ms
        return at

    def rule(self) -> object:
        return self.manager.status()[0].rules[0]

    def alerts(self) -> list[Alert]:
        return self.hub.active_alerts()


def write(svc: Services, name: str, at_ms: int, rows: dict[Labels, float]) -> None:
    builder = SampleBatchBuilder()
    for labels, value in rows.items():
        builder.add(tuple(sorted(((METRIC_NAME, name), *labels))), at_ms, value)
    svc.ingestor.write(WriteRequest("test", samples=DecodedSamples(builder.build())))


def stored(svc: Services, name: str) -> dict[Labels, list[tuple[int, float]]]:
    """Every sample of `name` by label set without __name__; stale markers show as inf."""
    series = svc.storage.select_series([Matcher.of(METRIC_NAME, MatchOp.EQ, name)])
    rows = svc.storage.read_samples([s.id for s in series], 0, NOW + 365 * 86_400_000)
    out: dict[Labels, list[tuple[int, float]]] = {}
    for s in series:
        pick = rows.series_ids == s.id
        values = np.where(is_stale(rows.values[pick]), np.inf, rows.values[pick])
        key = tuple(p for p in s.labels if p[0] != METRIC_NAME)
        out[key] = list(zip(rows.ts[pick].tolist(), values.tolist(), strict=True))
    return out


def labels_of(alert: Alert) -> dict[str, str]:
    return dict(alert.labels)


# --- the state machine ----------------------------------------------------------------------
def test_pending_then_firing_after_for(svc: Services, clock: FakeClock) -> None:
    run = Run(svc, clock)
    first = run.step({"a:1": 0, "a:2": 1})
    (alert,) = run.alerts()
    assert alert.state is AlertState.PENDING and alert.active_at_ms == first
    assert labels_of(alert) == {
        "alertname": "JobDown",
        "instance": "a:1",
        "job": "api",
        "owner": "api-team",
        "severity": "page",
    }
    assert dict(alert.annotations) == {"summary": "a:1 of api is down", "value": "0"}
    assert (alert.source, alert.rule_id, alert.generator_url) == (
        "rule",
        "rules/alerts.yaml;alerts;JobDown",
        "/alerts",
    )
    run.step({"a:1": 0})
    run.step({"a:1": 0})
    assert run.alerts()[0].state is AlertState.PENDING  # 2 minutes held, `for` is 3
    fired = run.step({"a:1": 0})
    (alert,) = run.alerts()
    assert (alert.state, alert.active_at_ms, alert.fired_at_ms) == (
        AlertState.FIRING,
        first,
        fired,
    )
    assert run.rule().state is AlertState.FIRING  # type: ignore[attr-defined]


def test_alerts_series_follow_the_state(svc: Services, clock: FakeClock) -> None:
    run = Run(svc, clock)
    ticks = [run.step({"a:1": 0}) for _ in range(4)]  # pending x3, firing at the 4th
    resolved = run.step({"a:1": 1})
    base = (("alertname", "JobDown"), ("instance", "a:1"), ("job", "api"))
    extra = (("owner", "api-team"), ("severity", "page"))
    alerts = stored(svc, "ALERTS")
    pending = tuple(sorted((*base, ("alertstate", "pending"), *extra)))
    firing = tuple(sorted((*base, ("alertstate", "firing"), *extra)))
    assert alerts[pending] == [(t, 1.0) for t in ticks[:3]] + [(ticks[3], np.inf)]
    assert alerts[firing] == [(ticks[3], 1.0), (resolved, np.inf)]
    for_state = stored(svc, "ALERTS_FOR_STATE")[tuple(sorted((*base, *extra)))]
    assert for_state == [(t, ticks[0] // 1000) for t in ticks] + [(resolved, np.inf)]


def test_pending_alert_that_goes_away_is_dropped(svc: Services, clock: FakeClock) -> None:
    run = Run(svc, clock)
    run.step({"a:1": 0})
    run.step({"a:1": 1})
    assert run.alerts() == []
    assert run.sink.batches == []  # pending alerts are never sent


def test_resolve_then_refire_gets_new_active_at(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace("for: 3m", "for: 0s")
    run = Run(svc, clock, text)
    first = run.step({"a:1": 0})
    assert run.alerts()[0].state is AlertState.FIRING  # for: 0 fires at once
    resolved_at = run.step({"a:1": 1})
    assert run.alerts() == []
    at, batch = run.sink.batches[-1]
    assert at == resolved_at and batch[0].state is AlertState.INACTIVE  # sent at once
    assert batch[0].resolved_at_ms == resolved_at and batch[0].active_at_ms == first
    again = run.step({"a:1": 0})
    (alert,) = run.alerts()
    assert alert.active_at_ms == again != first


def test_keep_firing_for(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace("for: 3m", "for: 0s\n        keep_firing_for: 2m")
    run = Run(svc, clock, text)
    run.step({"a:1": 0})
    since = run.step({"a:1": 1})  # condition gone: keeps firing, keepFiringSince set
    status = run.manager.status()[0].rules[0]
    assert status.alerts[0].state is AlertState.FIRING
    assert status.alerts[0].keep_firing_since_ms == since
    run.step({"a:1": 1})
    assert run.alerts()[0].state is AlertState.FIRING  # 1 minute of 2
    run.step({"a:1": 1})
    assert run.alerts() == []  # 2 minutes: resolved


def test_keep_firing_since_resets_when_condition_returns(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace("for: 3m", "for: 0s\n        keep_firing_for: 2m")
    run = Run(svc, clock, text)
    first = run.step({"a:1": 0})
    run.step({"a:1": 1})
    run.step({"a:1": 0})
    status = run.manager.status()[0].rules[0]
    assert status.alerts[0].keep_firing_since_ms is None
    assert status.alerts[0].active_at_ms == first  # the same alert, never resolved


def test_resend_delay_and_resolved_retention(svc: Services, clock: FakeClock) -> None:
    """Firing alerts are re-sent strictly after the 1m resend delay (every second 1m
    evaluation, as Prometheus); a resolution is sent at once, then re-sent the same way until
    the resolved alert is dropped 15 minutes later."""
    run = Run(svc, clock, RULES.replace("for: 3m", "for: 0s"))
    firing = [run.step({"a:1": 0}) for _ in range(4)]
    sent = [at for at, _ in run.sink.batches]
    assert sent == [firing[0], firing[2]]
    resolved = run.step({"a:1": 1})
    for _ in range(RESOLVED_RETENTION_MS // MIN + 2):
        run.step({"a:1": 1})
    batches = [(at, b[0]) for at, b in run.sink.batches if b[0].state is AlertState.INACTIVE]
    assert [at - resolved for at, _ in batches] == [k * 2 * MIN for k in range(8)]
    assert all(a.resolved_at_ms == resolved for _, a in batches)
    assert run.manager.status()[0].rules[0].alerts == ()


def test_limit_counts_alerts(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace("interval: 1m", "interval: 1m\n    limit: 1")
    run = Run(svc, clock, text)
    run.step({"a:1": 0, "a:2": 0})
    status = run.manager.status()[0].rules[0]
    assert status.health is Health.ERR
    assert status.last_error == "exceeded limit of 1 with 2 alerts"
    assert run.alerts() == []
    run.step({"a:1": 0, "a:2": 1})
    assert run.manager.status()[0].rules[0].health is Health.OK


def test_duplicate_alert_labels_are_an_error(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace('owner: "{{ $labels.job }}-team"', "instance: ''")
    run = Run(svc, clock, text)
    run.step({"a:1": 0, "a:2": 0})
    status = run.manager.status()[0].rules[0]
    assert status.health is Health.ERR
    assert "same labelset after applying alert labels" in status.last_error


def test_template_errors_show_in_the_annotation(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace('"{{ $value }}"', '"{{ humanize $labels.instance }}"')
    run = Run(svc, clock, text)
    run.step({"a:1": 0})
    annotations = dict(run.alerts()[0].annotations)
    assert annotations["value"] == (
        "<error expanding template: error executing template __alert_JobDown: template: "
        "__alert_JobDown:1: error calling humanize: "
        'strconv.ParseFloat: parsing "a:1": invalid syntax>'
    )


def test_query_offset_shifts_the_query_and_the_series(svc: Services, clock: FakeClock) -> None:
    text = RULES.replace("interval: 1m", "interval: 1m\n    query_offset: 2m")
    run = Run(svc, clock, text)
    at = run.tick
    write(svc, "up", at - 2 * MIN - 1000, {(("instance", "old"), ("job", "api")): 0})
    write(svc, "up", at - 1000, {(("instance", "new"), ("job", "api")): 0})
    clock.set(at)
    run.manager.evaluate_due()
    (alert,) = run.alerts()
    assert labels_of(alert)["instance"] == "old"  # `new` is after the offset query time
    assert alert.active_at_ms == at  # activeAt is the evaluation time, as Prometheus
    [(ts, _)] = next(iter(stored(svc, "ALERTS").values()))
    assert ts == at - 2 * MIN


# --- restore after a restart ----------------------------------------------------------------
def test_restart_restores_active_at(tmp_path: Path) -> None:
    """Two managers on the same DuckDB directory: a pending alert keeps its activeAt."""
    clock = FakeClock(NOW)
    text = RULES.replace("for: 3m", "for: 10m")
    settings = Settings(data_dir=tmp_path / "data")
    svc = open_services(settings, clock)
    run = Run(svc, clock, text)
    first = run.step({"a:1": 0})
    for _ in range(8):
        run.step({"a:1": 0})  # pending for 8 of 10 minutes
    svc.close()

    clock.advance(30_000)  # down for a while
    svc = open_services(settings, clock)
    try:
        run2 = Run(svc, clock, text)
        run2.step({"a:1": 0})
        (alert,) = run2.alerts()
        # ALERTS_FOR_STATE holds seconds (as Prometheus): activeAt comes back truncated.
        assert alert.state is AlertState.PENDING and alert.active_at_ms == first // 1000 * 1000
        fired = run2.step({"a:1": 0})
        assert run2.alerts()[0].state is AlertState.FIRING
        assert fired == first + 10 * MIN  # its original time, not 10 minutes after restart
    finally:
        svc.close()


def test_restart_after_outage_tolerance_starts_over(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    text = RULES.replace("for: 3m", "for: 10m")
    settings = Settings(data_dir=tmp_path / "data")
    svc = open_services(settings, clock)
    Run(svc, clock, text).step({"a:1": 0})
    svc.close()
    clock.advance(20 * MIN)
    svc = open_services(settings, clock)
    try:
        run = Run(svc, clock, text, outage_tolerance_ms=10 * MIN)
        at = run.step({"a:1": 0})
        assert run.alerts()[0].active_at_ms == at
    finally:
        svc.close()


# --- the seed's business rules --------------------------------------------------------------
def business_history(svc: Services, clock: FakeClock, orders_per_cart: float) -> None:
    """An hour of counters: 100 cart views a minute, some orders, revenue."""
    start = clock.now_ms() - 59 * MIN
    for k in range(60):
        ts = start + k * MIN
        write(svc, "business_funnel_step_total", ts, {
            (("step", "cart_view"),): 100.0 * k,
            (("step", "order_confirmed"),): 100.0 * orders_per_cart * k,
        })  # fmt: skip
        write(svc, "business_revenue_cents_total", ts, {(): 30_000.0 * k})


def test_seed_rules_parse_unchanged_and_evaluate(svc: Services, clock: FakeClock) -> None:
    path = FIXTURES / "seed_business_rules.yml"
    (group,) = load_rule_file(path)
    assert [r.name for r in group.rules] == [
        "ConversionRateDrop", "RevenueBelowBaseline", "HighCartAbandonment",
        "NewUserEngagementDrop",
    ]  # fmt: skip
    conversion = group.rules[0]
    assert conversion.for_ms == 15 * MIN
    assert conversion.labels == {"severity": "critical", "team": "product"}
    business_history(svc, clock, orders_per_cart=0.01)
    manager = RuleManager([group], svc.storage, svc.ingestor, clock)
    clock.set(aligned_at_or_before(group, clock.now_ms()) + group.interval_ms)
    manager.evaluate_due()
    statuses = manager.status()[0].rules
    assert [s.health for s in statuses] == [Health.OK] * 4, [s.last_error for s in statuses]
    by_name = {a.name: a for a in manager.active_alerts()}
    assert set(by_name) == {"ConversionRateDrop", "RevenueBelowBaseline", "HighCartAbandonment"}
    description = dict(by_name["ConversionRateDrop"].annotations)["description"]
    assert description.startswith("Current conversion rate is 1%.\n")
    revenue = dict(by_name["RevenueBelowBaseline"].annotations)["description"]
    assert revenue.startswith("Current revenue rate is $30k per minute.")
    abandon = dict(by_name["HighCartAbandonment"].annotations)["description"]
    assert abandon.startswith("99% of carts are being abandoned.")


def test_demo_business_rules_load_with_the_same_expressions() -> None:
    demo = Path(__file__).parent.parent / "opsmetrics/demo/config/rules/business.yaml"
    (ours,) = load_rule_file(demo)
    (seed,) = load_rule_file(FIXTURES / "seed_business_rules.yml")
    for mine, theirs in zip(ours.rules, seed.rules, strict=True):
        assert (mine.name, mine.expr, mine.for_ms, mine.labels) == (
            theirs.name,
            theirs.expr,
            theirs.for_ms,
            theirs.labels,
        )
        assert {k for k, _ in mine.annotations} == {k for k, _ in theirs.annotations}


# --- /api/v1/rules ---------------------------------------------------------------------------
def api_get(svc: Services, manager: RuleManager, url: str) -> httpx.Response:
    app = create_app(svc)
    app.state.rules = manager

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(url)

    return asyncio.run(send())


def test_api_lists_alerts_in_prometheus_shape(svc: Services, clock: FakeClock) -> None:
    run = Run(svc, clock, RULES.replace("for: 3m", "for: 0s\n        keep_firing_for: 5m"))
    first = run.step({"a:1": 0})
    since = run.step({"a:1": 1})
    body = api_get(svc, run.manager, "/api/v1/rules?type=alert").json()
    rule = body["data"]["groups"][0]["rules"][0]
    assert list(rule) == [
        "state", "name", "query", "duration", "keepFiringFor", "labels", "annotations",
        "alerts", "health", "evaluationTime", "lastEvaluation", "type",
    ]  # fmt: skip
    assert (rule["state"], rule["duration"], rule["keepFiringFor"], rule["health"]) == (
        "firing",
        0,
        300,
        "ok",
    )
    (alert,) = rule["alerts"]
    assert list(alert) == ["labels", "annotations", "state", "activeAt", "keepFiringSince", "value"]
    assert alert["state"] == "firing" and alert["value"] == "0e+00"
    assert alert["labels"]["owner"] == "api-team"
    assert alert["activeAt"] == _rfc3339(first) and alert["keepFiringSince"] == _rfc3339(since)
    excluded = api_get(svc, run.manager, "/api/v1/rules?exclude_alerts=true").json()
    assert "alerts" not in excluded["data"]["groups"][0]["rules"][0]
    none = api_get(svc, run.manager, "/api/v1/rules?type=record").json()
    assert none["data"]["groups"] == []


def _rfc3339(ms: int) -> str:
    from opsmetrics.web.routers.rules import rfc3339

    return rfc3339(ms)


def test_app_wires_the_rule_manager_into_the_hub(svc: Services) -> None:
    app = create_app(svc)
    hub = app.state.alerts
    assert isinstance(hub, AlertHub)
    assert hub.active_alerts() == []


# --- golden: the whole /api/v1/rules body ---------------------------------------------------
GOLDEN = GOLDEN_DIR / "rules" / "api_rules_alerting.json"


def _zero_timings(node: object) -> object:
    """evaluationTime is measured, so it is set to 0 before comparing."""
    if isinstance(node, dict):
        return {k: 0 if k == "evaluationTime" else _zero_timings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_zero_timings(v) for v in node]
    return node


def test_api_rules_body_matches_golden(svc: Services, clock: FakeClock) -> None:
    text = RULES + "      - record: job:up:min\n        expr: min by (job) (up)\n"
    run = Run(svc, clock, text.replace("for: 3m", "for: 1m\n        keep_firing_for: 5m"))
    run.step({"a:1": 0, "a:2": 1})
    run.step({"a:1": 0, "a:2": 0, "a:3": 1})
    # a:1 kept firing (keepFiringSince), a:2 firing after 1m, a:3 pending: state "firing"
    run.step({"a:1": 1, "a:2": 0, "a:3": 0})
    body = _zero_timings(api_get(svc, run.manager, "/api/v1/rules").json())
    assert_golden_json(GOLDEN, body)


# --- a real restart of the real server ------------------------------------------------------
def _pending_alert(srv: ServerProcess) -> dict[str, object]:
    def alert() -> dict[str, object] | None:
        groups = httpx.get(srv.url + "/api/v1/rules").json()["data"]["groups"]
        alerts = groups[0]["rules"][0]["alerts"] if groups else []
        return dict(alerts[0]) if alerts else None

    try:
        found: dict[str, object] = wait_until(alert, "the rule's alert", timeout_s=20)
    except AssertionError:
        print(srv.log())
        raise
    return found


def _for_state_samples(srv: ServerProcess) -> int:
    """How many ALERTS_FOR_STATE samples of the last minute the server has stored."""
    params = {"query": "count_over_time(ALERTS_FOR_STATE[1m])"}
    result = httpx.get(srv.url + "/api/v1/query", params=params).json()["data"]["result"]
    return int(result[0]["value"][1]) if result else 0


@pytest.mark.e2e
def test_server_restart_keeps_pending_alerts_active_at(tmp_path: Path) -> None:
    """kill -9 the server while an alert is pending; the restarted server restores activeAt
    from ALERTS_FOR_STATE instead of starting the `for` over."""
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True)
    (config / "rules" / "slow.yaml").write_text(
        "groups:\n  - name: slow\n    interval: 1s\n    rules:\n"
        "      - alert: Always\n        expr: vector(1)\n        for: 10m\n"
    )
    first = ServerProcess(tmp_path / "data", config_dir=config).start()
    try:
        before = _pending_alert(first)
        # A few more evaluations write ALERTS_FOR_STATE again, and it is stored.
        wait_until(lambda: _for_state_samples(first) >= 3, "ALERTS_FOR_STATE stored three times")
    finally:
        first.kill()
    assert before["state"] == "pending"
    second = ServerProcess(tmp_path / "data", config_dir=config).start()
    try:
        after = _pending_alert(second)
    finally:
        second.kill()
    # ALERTS_FOR_STATE keeps whole seconds, so activeAt comes back truncated to the second.
    active_at = str(before["activeAt"])
    assert after["state"] == "pending"
    assert str(after["activeAt"]) == active_at.split(".")[0].rstrip("Z") + "Z"
