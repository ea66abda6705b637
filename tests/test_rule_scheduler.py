"""The rule-group scheduler and one group evaluation: Prometheus's offsets (xxHash64 of the
group), selectors shared by a group's rules read once, the same results with and without the
shared reads, one write per group evaluation, concurrent groups, missed iterations counted when
an evaluation overruns, and Prometheus's rule metrics. Real DuckDB storage and write pipeline,
FakeClock time."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsmetrics.alerting.evaluator import vector_rows
from opsmetrics.alerting.group_hash import group_hash, group_offset_ms, xxh64
from opsmetrics.alerting.groups import Health, RuleManager, aligned_at_or_before
from opsmetrics.alerting.model import Alert, AlertHub
from opsmetrics.alerting.schedule import GroupScheduler
from opsmetrics.catalog.rules import RuleGroup, parse_rule_file
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import METRIC_NAME, Matcher, MatchOp, SampleBatchBuilder, SampleRows, Series
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.query.promql.reads import SeriesReader, SharedReads
from opsmetrics.query.promql.values import Value
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.base import RollupRows

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
MIN = 60_000
STEP = 15_000
SERVICES = ("api", "web", "db")
CODES = ("200", "500")


def _load(services: Services) -> None:
    """30 minutes at 15 s: request counters per service and code, one gauge per queue."""
    builder = SampleBatchBuilder()
    for k, t in enumerate(range(NOW - 30 * MIN, NOW + 10 * MIN, STEP)):
        for i, svc in enumerate(SERVICES):
            for j, code in enumerate(CODES):
                labels = ((METRIC_NAME, "req_total"), ("code", code), ("svc", svc))
                builder.add(labels, t, float(k * (i + 1) * (3 if j == 0 else 1)))
        for q in range(3):
            labels = ((METRIC_NAME, "queue"), ("q", f"q{q}"))
            builder.add(labels, t, float((k * 7 + q * 40) % 150))
    services.ingestor.write(WriteRequest("test", samples=DecodedSamples(builder.build())))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    clock = FakeClock(NOW)
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("rules") / "d"), clock)
    try:
        _load(services)
        yield services
    finally:
        services.close()


class CountingReader:
    """The real store, counting what is asked of it."""

    def __init__(self, storage: SeriesReader) -> None:
        self._storage = storage
        self.selects: list[tuple[tuple[Matcher, ...], int | None, int | None]] = []
        self.samples = 0
        self.other = 0

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        self.selects.append((tuple(matchers), start_ms, end_ms))
        return self._storage.select_series(matchers, start_ms, end_ms)

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        self.samples += 1
        return self._storage.read_samples(series_ids, start_ms, end_ms)

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        self.other += 1
        return self._storage.read_rollups(series_ids, start_ms, end_ms, width_ms)

    def rollup_spans(self) -> list[tuple[int, int]]:
        self.other += 1
        return self._storage.rollup_spans()

    @property
    def calls(self) -> int:
        return len(self.selects) + self.samples + self.other


# --- Prometheus's offsets -----------------------------------------------------------------
def test_xxh64_matches_the_specifications_test_vectors() -> None:
    assert xxh64(b"") == 0xEF46DB3751D8E999
    assert xxh64(b"abc") == 0x44BC2CF5AD770999


def _system_xxh64() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("xxhash")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.XXH64.restype = ctypes.c_uint64
    lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    return lib


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_xxh64_matches_the_system_library(data: bytes) -> None:
    lib = _system_xxh64()
    if lib is None:
        pytest.skip("libxxhash is not installed")
    assert xxh64(data) == lib.XXH64(data, len(data), 0)


def test_the_group_hash_is_prometheus_label_set_hash() -> None:
    # Prometheus hashes the labels {file, name} in name order: file first.
    expected = xxh64(b"file\xffrules/api.yaml\xffname\xffapi\xff")
    assert group_hash("rules/api.yaml", "api") == expected
    assert group_offset_ms("rules/api.yaml", "api", MIN) == expected % (MIN * 10**6) // 10**6


@settings(max_examples=50, deadline=None)
@given(
    st.text(min_size=1, max_size=30),
    st.text(min_size=1, max_size=30),
    st.integers(min_value=1, max_value=3_600).map(lambda s: s * 1000),
    st.integers(min_value=0, max_value=10**13),
)
def test_the_offset_is_stable_and_inside_the_interval(
    file: str, name: str, interval_ms: int, now_ms: int
) -> None:
    group = RuleGroup(name, file, interval_ms, limit=0, query_offset_ms=0, rules=())
    offset = group_offset_ms(file, name, interval_ms)
    assert 0 <= offset < interval_ms
    assert offset == group_offset_ms(file, name, interval_ms)
    tick = aligned_at_or_before(group, now_ms)
    assert now_ms - interval_ms < tick <= now_ms
    assert (tick - offset) % interval_ms == 0


# --- shared reads ---------------------------------------------------------------------------
SHARING = [
    "sum(rate(req_total[5m]))",
    "rate(req_total[5m]) > 0",
    "req_total > 0",  # lookback 5m: the same window as [5m]
    'sum by (svc) (rate(req_total{code="500"}[5m]))',  # its series are among req_total's
    "queue > 100",
    "max_over_time(queue[5m])",
]


def _group_text(exprs: Sequence[str], name: str = "shared", interval: str = "1m") -> str:
    rules = "".join(f"      - alert: A{i}\n        expr: '{e}'\n" for i, e in enumerate(exprs))
    return f"groups:\n  - name: {name}\n    interval: {interval}\n    rules:\n{rules}"


def test_a_selector_shared_by_rules_of_a_group_is_read_once(svc: Services) -> None:
    groups = parse_rule_file(_group_text(SHARING), "rules/shared.yaml")
    manager = RuleManager(groups, svc.storage, svc.ingestor, FakeClock(NOW))
    manager.evaluate_at(NOW)
    (status,) = manager.status()
    assert all(r.health is Health.OK for r in status.rules), [r.last_error for r in status.rules]
    # Storage, asked rule by rule without sharing, for comparison.
    alone = CountingReader(svc.storage)
    for expr in SHARING:
        evaluate_instant(alone, expr, NOW)
    # Shared: select req_total, req_total{code="500"} and queue once each, and read the
    # samples of req_total and of queue once each (code="500"'s are cut from req_total's).
    shared = CountingReader(svc.storage)
    reads = SharedReads(shared)
    for expr in SHARING:
        evaluate_instant(reads, expr, NOW)
    assert len(shared.selects) == len(set(shared.selects)) == 3
    assert shared.samples == 2
    assert reads.counts.reads == shared.calls
    assert reads.counts.reads + reads.counts.shared == alone.calls
    assert (status.reads.reads, status.reads.shared) == (reads.counts.reads, reads.counts.shared)


def _rows(value: Value) -> list[tuple[object, ...]]:
    return [(labels, "nan" if math.isnan(v) else v) for labels, v in vector_rows(value)]


SELECTORS = st.sampled_from(
    ["req_total", 'req_total{code="500"}', 'req_total{svc=~"a.*|db"}', "queue", 'queue{q!="q1"}']
)
RANGES = st.sampled_from(["1m", "5m", "10m"])
OFFSETS = st.sampled_from(["", " offset 1m", " offset 5m"])


@st.composite
def rule_expr(draw: st.DrawFn) -> str:
    sel, rng, off = draw(SELECTORS), draw(RANGES), draw(OFFSETS)
    shape = draw(st.integers(0, 6))
    return [
        f"{sel}{off}",
        f"rate({sel}[{rng}]{off})",
        f"sum by (svc) (rate({sel}[{rng}]{off}))",
        f"max_over_time({sel}[{rng}]{off}) > 20",
        f"sum(increase({sel}[{rng}])) / sum(increase({sel}[{rng}]{off}))",
        f"count({sel}{off}) * avg_over_time({sel}[{rng}])",
        f"topk(2, delta({sel}[{rng}]{off}))",
    ][shape]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(rule_expr(), min_size=1, max_size=8), st.integers(0, 8))
def test_shared_reads_give_the_results_storage_gives(
    svc: Services, exprs: list[str], minutes: int
) -> None:
    at = NOW - minutes * MIN + 7_000
    reads = SharedReads(svc.storage)
    for expr in exprs:
        assert _rows(evaluate_instant(reads, expr, at)) == _rows(
            evaluate_instant(svc.storage, expr, at)
        ), expr


# --- one write per group evaluation ---------------------------------------------------------
def _alerts_stored(svc: Services, alertname: str, at_ms: int) -> int:
    matchers = [
        Matcher.of(METRIC_NAME, MatchOp.EQ, "ALERTS"),
        Matcher.of("alertname", MatchOp.EQ, alertname),
    ]
    series = svc.storage.select_series(matchers)
    return len(svc.storage.read_samples([s.id for s in series], at_ms, at_ms).ts)


def test_alerts_of_a_group_are_written_in_one_request(svc: Services) -> None:
    exprs = ["req_total > 0", "queue >= 0", 'rate(req_total{code="200"}[5m]) > 0']
    groups = parse_rule_file(_group_text(exprs, "one_batch"), "rules/batch.yaml")
    manager = RuleManager(groups, svc.storage, svc.ingestor, FakeClock(NOW))
    at = NOW + 1_000
    manager.evaluate_at(at)
    (status,) = manager.status()
    assert status.writes == 1
    # Every alert went into that one request: 6 + 3 + 3 alerts, each with ALERTS stored.
    assert [len(r.alerts) for r in status.rules] == [6, 3, 3]
    assert [_alerts_stored(svc, f"A{i}", at) for i in range(3)] == [6, 3, 3]


def test_a_rule_reading_an_earlier_rules_output_sees_it(svc: Services) -> None:
    text = """\
groups:
  - name: chained
    rules:
      - alert: BusyBefore
        expr: svc:req:rate5m > 0
      - record: svc:req:rate5m
        expr: sum by (svc) (rate(req_total[5m]))
      - alert: Busy
        expr: svc:req:rate5m > 0
      - alert: QueueDeep
        expr: queue > 100
"""
    groups = parse_rule_file(text, "rules/chained.yaml")
    manager = RuleManager(groups, svc.storage, svc.ingestor, FakeClock(NOW))
    manager.evaluate_at(NOW + 2_000)
    (status,) = manager.status()
    # BusyBefore ran before anything was recorded. The recorded series were written before
    # Busy read them (and what BusyBefore had read was forgotten); the rest in a second request.
    assert status.writes == 2
    assert status.rules[0].alerts == ()
    assert {dict(a.labels)["svc"] for a in status.rules[2].alerts} == set(SERVICES)


# --- the scheduler --------------------------------------------------------------------------
def test_groups_that_are_due_together_are_evaluated_concurrently(svc: Services) -> None:
    both_running = threading.Barrier(2, timeout=20)

    def evaluate(reader: SeriesReader, expr: str, at_ms: int) -> Value:
        both_running.wait()  # breaks (and the rule fails) unless the other group runs too
        return evaluate_instant(reader, expr, at_ms)

    text = _group_text(["queue > 100"], "first") + _group_text(["queue > 50"], "second")[7:]
    groups = parse_rule_file(text, "rules/both.yaml")
    clock = FakeClock(NOW)
    manager = RuleManager(groups, svc.storage, svc.ingestor, clock, evaluator=evaluate)
    clock.set(NOW + 2 * MIN)  # both groups are due
    assert manager.evaluate_due() == 2
    errors = [r.last_error for g in manager.status() for r in g.rules]
    assert errors == ["", ""]


def test_managers_sharing_one_scheduler_run_in_one_pass_and_each_sends_its_own(
    svc: Services,
) -> None:
    both_running = threading.Barrier(2, timeout=20)

    def evaluate(reader: SeriesReader, expr: str, at_ms: int) -> Value:
        both_running.wait()  # breaks unless the other manager's group runs at the same time
        return evaluate_instant(reader, expr, at_ms)

    clock = FakeClock(NOW)
    shared: GroupScheduler[Any] = GroupScheduler("shared", clock)
    sent: dict[str, list[list[str]]] = {}
    for name in ("one", "two"):
        hub, sent[name] = AlertHub(), []
        hub.add_sink(_Sink(sent[name]))
        groups = parse_rule_file(_group_text(["vector(1)"], name), f"rules/{name}.yaml")
        RuleManager(groups, svc.storage, svc.ingestor, clock, evaluator=evaluate, hub=hub,
                    scheduler=shared)  # fmt: skip
    clock.set(NOW + 2 * MIN)  # both groups are due
    assert len(shared.evaluate_due()) == 2
    # each manager sent once after the pass, its own group's alert only
    assert sent == {"one": [["rules/one.yaml;one"]], "two": [["rules/two.yaml;two"]]}


class _Sink:
    def __init__(self, into: list[list[str]]) -> None:
        self._into = into

    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        self._into.append(sorted(a.rule_id.rsplit(";", 1)[0] for a in alerts))


def test_an_overrunning_evaluation_counts_the_iterations_it_missed(svc: Services) -> None:
    clock = FakeClock(NOW)

    def slow(reader: SeriesReader, expr: str, at_ms: int) -> Value:
        clock.advance(int(2.5 * 15_000))  # the evaluation takes 2.5 intervals
        return evaluate_instant(reader, expr, at_ms)

    groups = parse_rule_file(_group_text(["queue > 100"], "slow", "15s"), "rules/slow.yaml")
    manager = RuleManager(
        groups, svc.storage, svc.ingestor, clock, evaluator=slow, telemetry=svc.telemetry
    )
    first = aligned_at_or_before(groups[0], NOW) + 15_000
    clock.set(first)
    assert manager.evaluate_due() == 1
    assert manager.evaluate_due() == 1  # 2.5 intervals later: two ticks were missed
    assert manager.status()[0].last_evaluation_ms == first + 2 * 15_000
    key = {"rule_group": "rules/slow.yaml;slow"}
    got = svc.telemetry.registry.get_sample_value
    assert got("prometheus_rule_group_iterations_missed_total", key) == 1
    assert got("prometheus_rule_group_interval_seconds", key) == 15
    assert got("prometheus_rule_evaluations_total", key) == 2
    assert got("prometheus_rule_evaluation_failures_total", key) == 0


def test_failed_rules_are_counted_per_group(svc: Services) -> None:
    text = _group_text(["queue > 100", 'label_replace(queue, "q", "same", "", "")'], "bad")
    groups = parse_rule_file(text, "rules/bad.yaml")
    manager = RuleManager(
        groups, svc.storage, svc.ingestor, FakeClock(NOW), telemetry=svc.telemetry
    )
    manager.evaluate_at(NOW)
    assert [r.health for r in manager.status()[0].rules] == [Health.OK, Health.ERR]
    key = {"rule_group": "rules/bad.yaml;bad"}
    got = svc.telemetry.registry.get_sample_value
    assert got("prometheus_rule_evaluations_total", key) == 2
    assert got("prometheus_rule_evaluation_failures_total", key) == 1
