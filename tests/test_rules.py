"""Recording rules: rule files with file:line errors, the FakeClock-driven group schedule over
real storage and the real write pipeline, and /api/v1/rules in Prometheus's shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from opsmetrics.alerting.groups import Health, RuleManager, aligned_at_or_before, group_offset_ms
from opsmetrics.catalog.rules import RuleGroup, RuleType, load_rules, parse_rule_file
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import METRIC_NAME, Matcher, MatchOp, SampleBatchBuilder, is_stale
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.web.app import create_app
from opsmetrics.web.routers import rules as rules_router
from tests.server import ServerProcess, wait_until

NOW = 1_700_000_000_000
MIN = 60_000

RULES = """\
groups:
  - name: api
    interval: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {team: web}
      - record: job:up:sum_doubled
        expr: job:up:sum * 2
      - alert: ApiDown
        expr: job:up:sum < 1
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} is down"}
  - name: copies
    interval: 30s
    limit: 1
    rules:
      - record: up:copy
        expr: up
"""


# --- rule files ---------------------------------------------------------------------------
def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_rule_file(text, "rules/api.yaml")
    return info.value.message.splitlines()


def test_a_valid_file_loads_groups_and_rules() -> None:
    api, copies = parse_rule_file(RULES, "rules/api.yaml")
    assert (api.name, api.interval_ms, api.limit, api.file) == ("api", MIN, 0, "rules/api.yaml")
    assert [r.type for r in api.rules] == [RuleType.RECORDING] * 2 + [RuleType.ALERTING]
    alert = api.rules[2]
    assert (alert.for_ms, alert.keep_firing_for_ms) == (5 * MIN, MIN)
    assert alert.annotations == (("summary", "{{ $labels.job }} is down"),)
    assert (copies.interval_ms, copies.limit) == (30_000, 1)


def test_interval_defaults_to_one_minute() -> None:
    (group,) = parse_rule_file("groups: [{name: g, rules: [{record: a, expr: up}]}]", "f.yaml")
    assert group.interval_ms == MIN


def test_every_problem_is_reported_with_file_and_line() -> None:
    text = """\
groups:
  - name: g
    interval: often
    rules:
      - record: job:ok
        expr: sum(rate(x[5m])
      - record: "bad name"
        expr: up
      - expr: up
      - record: r
        alert: A
        expr: up
      - record: r2
        expr: up
        for: 5m
        labels: {"0bad": x}
      - alert: A2
        expr: up
        colour: red
"""
    assert errors_of(text) == [
        "rules/api.yaml:3: groups[0].interval: 'often' is not a duration; use e.g. 30s, 1m or "
        "1h30m",
        "rules/api.yaml:6: groups[0].rules[0].expr: invalid PromQL 'sum(rate(x[5m])': "
        "unclosed left parenthesis",
        "rules/api.yaml:7: groups[0].rules[1].record: 'bad name' is not a valid metric name "
        "(e.g. job:requests:rate5m)",
        "rules/api.yaml:16: groups[0].rules[4].labels: '0bad' is not a valid label name",
        "rules/api.yaml:19: groups[0].rules[5].colour: unknown field; check the spelling (see "
        "docs/configuration.md)",
    ]


def test_rule_kind_problems_are_reported_like_promtool() -> None:
    text = """\
groups:
  - name: g
    rules:
      - expr: up
      - record: r
        alert: A
        expr: up
      - record: r2
        expr: up
        for: 5m
        annotations: {a: b}
  - name: g
    rules: []
"""
    assert errors_of(text) == [
        "rules/api.yaml:4: groups[0].rules[0].expr: one of 'record' or 'alert' must be set",
        "rules/api.yaml:5: groups[0].rules[1].record: only one of 'record' and 'alert' may be set",
        "rules/api.yaml:10: groups[0].rules[2].for: invalid field 'for' in a recording rule; it "
        "applies to alerts only",
        "rules/api.yaml:11: groups[0].rules[2].annotations: invalid field 'annotations' in a "
        "recording rule",
        "rules/api.yaml:12: groups[1].name: group name 'g' is repeated in the same file; rename "
        "one",
    ]


def test_validate_reports_rule_file_problems(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ok.yaml").write_text(RULES)
    bad = tmp_path / "rules" / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - record: x\n        expr: 'up +'\n")
    problems = validate_config_dir(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}:5: groups[0].rules[0].expr: invalid PromQL 'up +'")
    with pytest.raises(ConfigError):
        load_rules(tmp_path)


# --- evaluation ---------------------------------------------------------------------------
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


def write_up(svc: Services, at_ms: int, targets: dict[tuple[str, str], float]) -> None:
    builder = SampleBatchBuilder()
    for (job, instance), value in targets.items():
        labels = ((METRIC_NAME, "up"), ("instance", instance), ("job", job))
        builder.add(labels, at_ms, value)
    svc.ingestor.write(WriteRequest("test", samples=DecodedSamples(builder.build())))


def recorded(
    svc: Services, name: str, start: int, end: int
) -> dict[tuple, list[tuple[int, float]]]:
    """Every stored sample of metric `name`, by label set (stale markers as 'stale')."""
    series = svc.storage.select_series([Matcher.of(METRIC_NAME, MatchOp.EQ, name)])
    rows = svc.storage.read_samples([s.id for s in series], start, end)
    out: dict[tuple, list[tuple[int, float]]] = {}
    for s in series:
        pick = rows.series_ids == s.id
        values = rows.values[pick]
        shown = np.where(is_stale(values), np.inf, values)
        out[s.labels] = list(zip(rows.ts[pick].tolist(), shown.tolist(), strict=True))
    return out


def manager(svc: Services, clock: FakeClock, text: str = RULES) -> RuleManager:
    groups = parse_rule_file(text, "rules/api.yaml")
    return RuleManager(groups, svc.storage, svc.ingestor, clock)


def api_group(m: RuleManager) -> RuleGroup:
    return m.status()[0].group


def test_groups_run_on_aligned_ticks_offset_per_group(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock)
    api, copies = (s.group for s in m.status())
    first = aligned_at_or_before(api, NOW) + MIN
    assert NOW < first <= NOW + MIN
    assert first % MIN == group_offset_ms(api)  # a grid shifted by the group's hash
    assert group_offset_ms(api) != group_offset_ms(copies)
    assert m.evaluate_due() == 0  # nothing before the first tick
    clock.set(first - 1)
    assert m.evaluate_due() <= 1  # maybe `copies`, whose 30 s grid differs
    clock.set(first)
    evaluated = m.evaluate_due()
    assert evaluated >= 1
    assert m.status()[0].last_evaluation_ms == first
    assert m.evaluate_due() == 0  # the same tick never runs twice
    clock.set(first + 5 * MIN + 7_000)  # fell behind: missed ticks are skipped
    m.evaluate_due()
    assert m.status()[0].last_evaluation_ms == first + 5 * MIN


def test_group_evaluations_show_prometheus_rule_group_metrics(
    svc: Services, clock: FakeClock
) -> None:
    groups = parse_rule_file(RULES, "rules/api.yaml")
    m = RuleManager(groups, svc.storage, svc.ingestor, clock, telemetry=svc.telemetry)
    write_up(svc, NOW, {("api", "a:1"): 1, ("db", "d:1"): 0})
    first = aligned_at_or_before(api_group(m), NOW) + MIN
    clock.set(first)
    m.evaluate_due()
    clock.set(first + 3 * MIN)  # two ticks of `api` missed
    m.evaluate_due()
    got = svc.telemetry.registry.get_sample_value
    key = {"rule_group": "rules/api.yaml;api"}
    assert got("prometheus_rule_group_iterations_missed_total", key) == 2
    # job:up:sum and its double for two jobs; ApiDown's ALERTS and ALERTS_FOR_STATE for db
    assert got("prometheus_rule_group_last_evaluation_samples", key) == 6
    duration = got("prometheus_rule_group_last_duration_seconds", key)
    assert duration is not None and duration > 0


def test_recording_rules_write_series_in_order(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock)
    first = aligned_at_or_before(api_group(m), NOW) + MIN
    write_up(svc, NOW, {("api", "a:1"): 1, ("api", "a:2"): 1, ("db", "d:1"): 0})
    clock.set(first)
    m.evaluate_due()
    got = recorded(svc, "job:up:sum", NOW - MIN, NOW + DAY)
    assert got == {
        (("__name__", "job:up:sum"), ("job", "api"), ("team", "web")): [(first, 2.0)],
        (("__name__", "job:up:sum"), ("job", "db"), ("team", "web")): [(first, 0.0)],
    }
    # The second rule read the first rule's result of the same evaluation.
    doubled = recorded(svc, "job:up:sum_doubled", NOW - MIN, NOW + DAY)
    assert sorted(v for points in doubled.values() for v in points) == [(first, 0.0), (first, 4.0)]
    status = m.status()[0]
    assert [r.health for r in status.rules] == [Health.OK, Health.OK, Health.OK]
    assert status.rules[0].last_evaluation_ms == first


def test_series_that_disappear_get_stale_markers(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock)
    first = aligned_at_or_before(api_group(m), NOW) + MIN
    write_up(svc, first - 1000, {("api", "a:1"): 1, ("db", "d:1"): 1})
    clock.set(first)
    m.evaluate_due()
    write_up(svc, first + MIN - 1000, {("api", "a:1"): 1})  # db scraped no more ...
    clock.set(first + 6 * MIN)  # ... and out of the 5 m lookback by the next evaluation
    write_up(svc, first + 6 * MIN - 1000, {("api", "a:1"): 1})
    m.evaluate_due()
    got = recorded(svc, "job:up:sum", NOW, NOW + DAY)
    db = (("__name__", "job:up:sum"), ("job", "db"), ("team", "web"))
    api = (("__name__", "job:up:sum"), ("job", "api"), ("team", "web"))
    assert got[db] == [(first, 1.0), (first + 6 * MIN, np.inf)]  # inf stands for stale
    assert got[api] == [(first, 1.0), (first + 6 * MIN, 1.0)]


def test_limit_and_errors_set_health_and_last_error(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock)
    copies = m.status()[1].group
    write_up(svc, NOW, {("api", "a:1"): 1, ("api", "a:2"): 1})
    clock.set(aligned_at_or_before(copies, NOW) + 30_000)
    m.evaluate_due()
    rule = next(s for s in m.status() if s.group.name == "copies").rules[0]
    assert rule.health is Health.ERR
    assert rule.last_error.startswith("exceeded limit of 1 with 2 series")
    assert recorded(svc, "up:copy", NOW - MIN, NOW + DAY) == {}  # nothing written


def test_duplicate_label_sets_after_rule_labels_are_an_error(
    svc: Services, clock: FakeClock
) -> None:
    text = "groups: [{name: g, rules: [{record: r, expr: up, labels: {instance: ''}}]}]"
    m = manager(svc, clock, text)
    write_up(svc, NOW, {("api", "a:1"): 1, ("api", "a:2"): 1})
    clock.set(aligned_at_or_before(api_group(m), NOW) + MIN)
    m.evaluate_due()
    rule = m.status()[0].rules[0]
    assert rule.health is Health.ERR
    assert "same labelset after applying rule labels" in rule.last_error


def test_scalar_results_are_recorded_without_labels(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock, "groups: [{name: g, rules: [{record: answer, expr: '6 * 7'}]}]")
    tick = aligned_at_or_before(api_group(m), NOW) + MIN
    clock.set(tick)
    m.evaluate_due()
    assert recorded(svc, "answer", NOW, NOW + DAY) == {(("__name__", "answer"),): [(tick, 42.0)]}


# --- /api/v1/rules --------------------------------------------------------------------------
DAY = 86_400_000


def app_with(svc: Services, m: RuleManager) -> FastAPI:
    """The real app with the rule manager attached the way app.py's wiring attaches it."""
    app = create_app(svc)
    app.state.rules = m
    if not any(getattr(r, "path", "") == "/api/v1/rules" for r in app.routes):
        app.include_router(rules_router.router)
    return app


def get(app: FastAPI, url: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(url)

    return asyncio.run(send())


def test_api_rules_has_prometheus_shape(svc: Services, clock: FakeClock) -> None:
    m = manager(svc, clock)
    write_up(svc, NOW, {("api", "a:1"): 1, ("api", "a:2"): 1})
    tick = aligned_at_or_before(api_group(m), NOW) + MIN
    clock.set(tick + 30_000)  # both groups have had a tick
    m.evaluate_due()
    body = get(app_with(svc, m), "/api/v1/rules").json()
    assert body["status"] == "success"
    api = body["data"]["groups"][0]
    assert list(api) == [
        "name", "file", "rules", "interval", "limit", "evaluationTime", "lastEvaluation",
    ]  # fmt: skip
    assert (api["name"], api["file"], api["interval"], api["limit"]) == (
        "api",
        "rules/api.yaml",
        60.0,
        0,
    )
    assert api["lastEvaluation"].endswith("Z") and api["evaluationTime"] >= 0
    rec = api["rules"][0]
    assert list(rec) == [
        "name", "query", "labels", "health", "evaluationTime", "lastEvaluation", "type",
    ]  # fmt: skip
    assert (rec["name"], rec["query"], rec["labels"], rec["health"], rec["type"]) == (
        "job:up:sum",
        "sum by (job) (up)",
        {"team": "web"},
        "ok",
        "recording",
    )
    alert = api["rules"][2]
    assert (alert["state"], alert["duration"], alert["keepFiringFor"]) == ("inactive", 300, 60)
    assert (alert["health"], alert["alerts"], alert["type"]) == ("ok", [], "alerting")
    assert alert["lastEvaluation"] == api["lastEvaluation"]
    copies = body["data"]["groups"][1]["rules"][0]
    assert copies["health"] == "err" and copies["lastError"].startswith("exceeded limit of 1")


def test_api_rules_filters(svc: Services, clock: FakeClock) -> None:
    app = app_with(svc, manager(svc, clock))

    def names(url: str) -> list[tuple[str, list[str]]]:
        groups = get(app, url).json()["data"]["groups"]
        return [(g["name"], [r["name"] for r in g["rules"]]) for g in groups]

    assert names("/api/v1/rules?type=alert") == [("api", ["ApiDown"])]
    assert names("/api/v1/rules?type=record&rule_group[]=copies") == [("copies", ["up:copy"])]
    assert names("/api/v1/rules?rule_name[]=job:up:sum&rule_name[]=up:copy") == [
        ("api", ["job:up:sum"]),
        ("copies", ["up:copy"]),
    ]
    assert names("/api/v1/rules?file[]=other.yaml") == []
    bad = get(app, "/api/v1/rules?type=recording")
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"


# --- the real server ------------------------------------------------------------------------
@pytest.mark.e2e
def test_server_evaluates_rule_files(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True)
    (config / "rules" / "fast.yaml").write_text(
        "groups: [{name: fast, interval: 1s, rules: [{record: answer, expr: '6 * 7'}]}]\n"
    )
    srv = ServerProcess(tmp_path / "data", config_dir=config).start()
    try:

        def healthy() -> bool:
            groups = httpx.get(srv.url + "/api/v1/rules").json()["data"]["groups"]
            return bool(groups) and groups[0]["rules"][0].get("health") == "ok"

        try:
            wait_until(healthy, "the rule evaluated with health ok", timeout_s=20)
        except AssertionError:
            print(srv.log())
            raise
        series = httpx.get(srv.url + "/api/v1/series", params={"match[]": "answer"}).json()
        assert series["data"] == [{"__name__": "answer"}]
    finally:
        srv.kill()
