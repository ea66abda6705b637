"""The write path against a real DuckDB file: limits, duplicates, late data, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from opsmetrics import errors
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import STALE_NAN, Event, Labels, Matcher, SampleBatchBuilder
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings

NOW = 1_700_000_000_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def _open(tmp: Path, clock: FakeClock, **limits: int) -> Services:
    return open_services(Settings(data_dir=tmp, limits=Limits(**limits)), clock)


@pytest.fixture
def svc(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    services = _open(tmp_path, clock, max_series_per_metric=5)
    yield services
    services.close()


def labels(name: str, **kv: str) -> Labels:
    return tuple(sorted({"__name__": name, **kv}.items()))


def samples(*rows: tuple[Labels, int, float]) -> WriteRequest:
    b = SampleBatchBuilder()
    for lbl, ts, value in rows:
        b.add(lbl, ts, value)
    return WriteRequest("test", samples=DecodedSamples(b.build()))


def stored(svc: Services, name: str) -> list[tuple[int, float]]:
    series = svc.storage.select_series([Matcher.of("__name__", "=", name)])
    rows = svc.storage.read_samples([s.id for s in series], 0, NOW * 2)
    return list(zip(rows.ts.tolist(), rows.values.tolist(), strict=True))


def test_samples_round_trip_bit_exact(svc: Services) -> None:
    up = labels("up", job="api")
    svc.ingestor.write(samples((up, NOW - 2000, 1.0), (up, NOW - 1000, STALE_NAN)))
    series = svc.storage.select_series([Matcher.of("job", "=", "api")])
    rows = svc.storage.read_samples([series[0].id], 0, NOW)
    assert rows.ts.tolist() == [NOW - 2000, NOW - 1000]
    assert rows.values.view(np.uint64)[1] == 0x7FF0000000000002


def test_identical_resend_is_a_no_op(svc: Services) -> None:
    up = labels("up", job="api")
    req = samples((up, NOW - 2000, 1.0), (up, NOW - 1000, 2.0))
    first = svc.ingestor.write(req)
    again = svc.ingestor.write(samples((up, NOW - 2000, 1.0), (up, NOW - 1000, 2.0)))
    assert (first.samples, again.samples, again.duplicates) == (2, 0, 2)
    assert stored(svc, "up") == [(NOW - 2000, 1.0), (NOW - 1000, 2.0)]


def test_changed_value_for_same_timestamp_is_rejected(svc: Services) -> None:
    up = labels("up", job="api")
    svc.ingestor.write(samples((up, NOW - 1000, 1.0)))
    with pytest.raises(errors.ConflictingSampleError, match=r'up\{job="api"\}'):
        svc.ingestor.write(samples((up, NOW - 1000, 5.0)))
    assert stored(svc, "up") == [(NOW - 1000, 1.0)]


def test_conflict_inside_one_request_rejects_it_whole(svc: Services) -> None:
    up = labels("up", job="api")
    other = labels("other")
    with pytest.raises(errors.ConflictingSampleError):
        svc.ingestor.write(samples((other, NOW, 1.0), (up, NOW, 1.0), (up, NOW, 2.0)))
    assert stored(svc, "up") == [] and stored(svc, "other") == []


def test_late_samples_accepted_within_window_rejected_beyond(svc: Services) -> None:
    g = labels("g")
    svc.ingestor.write(samples((g, NOW, 1.0)))
    svc.ingestor.write(samples((g, NOW - 30 * 60_000, 0.5)))  # 30 min late: fine
    with pytest.raises(errors.OutOfBoundsError, match="late-data window"):
        svc.ingestor.write(samples((g, NOW - 2 * 3_600_000, 0.1)))
    assert stored(svc, "g") == [(NOW - 30 * 60_000, 0.5), (NOW, 1.0)]


def test_future_timestamps_rejected(svc: Services) -> None:
    with pytest.raises(errors.OutOfBoundsError, match="future"):
        svc.ingestor.write(samples((labels("g"), NOW + 11 * 60_000, 1.0)))
    svc.ingestor.write(samples((labels("g"), NOW + 9 * 60_000, 1.0)))
    assert len(stored(svc, "g")) == 1


@pytest.mark.parametrize(
    ("lbl", "reason"),
    [
        (labels("1bad"), "invalid_metric_name"),
        (labels("ok", **{"bad-name": "x"}), "invalid_label_name"),
        (labels("ok", v="x" * 4097), "label_value_too_long"),
        (labels("ok", **{f"l{i}": "v" for i in range(31)}), "too_many_labels"),
        ((("job", "x"),), "missing_metric_name"),
    ],
)
def test_invalid_series_rejected_with_reason(svc: Services, lbl: Labels, reason: str) -> None:
    with pytest.raises(errors.UserError) as info:
        svc.ingestor.write(samples((labels("good"), NOW, 1.0), (lbl, NOW, 1.0)))
    assert info.value.reason == reason
    assert stored(svc, "good") == []  # atomic: the valid row is not written either
    assert svc.telemetry.rejected.labels(reason)._value.get() == 1


def test_series_limit_per_metric(svc: Services) -> None:
    svc.ingestor.write(samples(*[(labels("m", i=str(i)), NOW, 1.0) for i in range(5)]))
    with pytest.raises(errors.LimitExceededError, match="more than 5 series"):
        svc.ingestor.write(samples((labels("m", i="new"), NOW, 1.0)))
    svc.ingestor.write(samples((labels("m", i="0"), NOW + 1, 2.0)))  # known series still fine


def test_events_idempotent_by_id_and_by_content(svc: Services) -> None:
    e1 = Event(name="purchase", ts=NOW, entity="u1", value=1200, props={"plan": "pro"}, id="o-1")
    e2 = Event(name="signup", ts=NOW, entity="u2")
    assert svc.ingestor.write(WriteRequest("t", events=[e1, e2])).events == 2
    svc.ingestor.write(WriteRequest("t", events=[e1, e2, e1]))
    got = svc.storage.read_events(None, 0, NOW)
    assert sorted(e.name for e in got) == ["purchase", "signup"]
    assert got[0].props or got[1].props


def test_events_outside_window_rejected_atomically(svc: Services) -> None:
    good = Event(name="signup", ts=NOW, entity="u")
    old = Event(name="signup", ts=NOW - 40 * 86_400_000, entity="u")
    with pytest.raises(errors.OutOfBoundsError, match=r"events\[1\]\.ts"):
        svc.ingestor.write(WriteRequest("t", events=[good, old]))
    assert svc.storage.read_events(None, 0, NOW) == []


def test_deltas_accumulate_into_a_counter(svc: Services, tmp_path: Path) -> None:
    c = labels("jobs_total")

    def delta(ts: int, v: float) -> WriteRequest:
        b = SampleBatchBuilder()
        b.add(c, ts, v)
        return WriteRequest(
            "otlp", samples=DecodedSamples(SampleBatchBuilder().build(), [], b.build())
        )

    svc.ingestor.write(delta(NOW - 2000, 3))
    svc.ingestor.write(delta(NOW - 1000, 4))
    assert stored(svc, "jobs_total") == [(NOW - 2000, 3.0), (NOW - 1000, 7.0)]


def test_concurrent_identical_requests_store_once(svc: Services) -> None:
    up = labels("up", job="x")
    futures = [svc.ingestor.submit(samples((up, NOW - 1000, 1.0))) for _ in range(10)]
    results = [f.result() for f in futures]
    assert sum(r.samples for r in results) == 1
    assert stored(svc, "up") == [(NOW - 1000, 1.0)]


def test_state_survives_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = _open(tmp_path, clock)
    up = labels("up")
    first.ingestor.write(samples((up, NOW - 1000, 1.0)))
    first.close()
    second = _open(tmp_path, clock)
    try:
        with pytest.raises(errors.ConflictingSampleError):
            second.ingestor.write(samples((up, NOW - 1000, 2.0)))
        assert second.ingestor.write(samples((up, NOW - 1000, 1.0))).duplicates == 1
    finally:
        second.close()
