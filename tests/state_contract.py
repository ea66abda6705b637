"""The contract every StateStore backend passes. Backends are params of the `open_state`
fixture: DuckDB in a temp dir and PostgreSQL (a fresh database per test, tests/postgres_server.py).

A test module imports this module's tests (`from tests.state_contract import *`) together with
the PostgreSQL fixtures, and so runs them against every backend in BACKENDS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from opsmetrics.storage.alert_records import (
    AckRow,
    NotificationFilter,
    NotificationOutcome,
    NotificationRecord,
    SilenceRow,
)
from opsmetrics.storage.base import DAY_MS, KpiVersion, StateStore
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.initiative_records import InitiativeRecord
from opsmetrics.storage.kpi_records import ManualKpiValue
from opsmetrics.storage.postgres import PostgresStateStore
from opsmetrics.storage.timeline_records import ActionClaim, TimelineEntry
from opsmetrics.storage.token_records import Scope, TokenRecord

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T0 + 10 * DAY_MS

#: Opens (or reopens) the one store of a test.
StateOpener = Callable[[], StateStore]

BACKENDS = ("duckdb", "postgresql")
#: What refusing a duplicate key raises: DuckDB lets its driver's error through.
REFUSED = (ValueError, duckdb.ConstraintException)
#: JSON with odd spacing and key order: both backends keep it byte for byte.
BATCH = '{"b": 1,   "a" : [1, 2.50], "s": "ünïcode"}'


@pytest.fixture(params=BACKENDS)
def open_state(request: pytest.FixtureRequest, tmp_path: Path) -> StateOpener:
    if request.param == "duckdb":
        return lambda: DuckDBStorage(tmp_path / "data", now_ms=NOW)
    url: str = request.getfixturevalue("pg_state_url")
    return lambda: PostgresStateStore(url, now_ms=NOW)


@pytest.fixture
def state(open_state: StateOpener) -> Iterator[StateStore]:
    store = open_state()
    yield store
    store.close()


# --- helpers ----------------------------------------------------------------------------
def token(id_: str, created_ms: int, scope: Scope = Scope.READ) -> TokenRecord:
    return TokenRecord(id_, f"name-{id_}", scope, f"sha256-{id_}", created_ms)


def kpi_version(name: str, version: int, digest: str = "h") -> KpiVersion:
    definition = json.dumps({"name": name, "formula": f"v{version}"}, indent=1)
    return KpiVersion(name, version, digest, definition, f"--- v{version - 1}", "ana", T0 + version)


def manual(kpi: str, ts: int, value: float, recorded_ms: int = T0) -> ManualKpiValue:
    return ManualKpiValue(kpi, ts, value, "bob", f"note {value}", recorded_ms)


def note(
    id_: str,
    created_ms: int,
    *,
    kind: str = "notify",
    channel: str = "ops",
    fingerprints: tuple[str, ...] = ("fp1",),
    alertnames: tuple[str, ...] = ("HighLatency",),
) -> NotificationRecord:
    return NotificationRecord(
        id=id_, group_key=f"{{}}:{{alertname={','.join(alertnames)}}}", group_hash=f"gh-{id_}",
        route="root", channel=channel, kind=kind, status="pending", content_hash=f"ch-{id_}",
        fingerprints=fingerprints, alertnames=alertnames, batch=BATCH, created_ms=created_ms,
    )  # fmt: skip


def outcome(id_: str, status: str, finished_ms: int, attempts: int = 1) -> NotificationOutcome:
    http = 200 if status == "delivered" else 503
    return NotificationOutcome(
        id_, status, attempts, http, f"{status} after {attempts}", finished_ms
    )


def finished(rec: NotificationRecord, out: NotificationOutcome) -> NotificationRecord:
    """`rec` as the log shows it with `out` as its newest outcome."""
    return NotificationRecord(
        id=rec.id, group_key=rec.group_key, group_hash=rec.group_hash, route=rec.route,
        channel=rec.channel, kind=rec.kind, status=out.status, content_hash=rec.content_hash,
        fingerprints=rec.fingerprints, alertnames=rec.alertnames, batch=rec.batch,
        created_ms=rec.created_ms, attempts=out.attempts, http_status=out.http_status,
        detail=out.detail, finished_ms=out.finished_ms,
    )  # fmt: skip


def ids(recs: list[NotificationRecord]) -> list[str]:
    return [r.id for r in recs]


def silence(id_: str, starts_ms: int, ends_ms: int, comment: str = "maintenance") -> SilenceRow:
    matchers = '[{"name": "job", "value": "api", "isRegex": false, "isEqual": true}]'
    return SilenceRow(id_, matchers, starts_ms, ends_ms, "carol", comment, starts_ms)


def everything(store: StateStore) -> tuple[object, ...]:
    """Every readable piece of state, to compare before and after a reopen."""
    return (
        store.tokens(),
        store.kpi_names(),
        store.kpi_versions("revenue"),
        store.manual_kpi_values("nps", 0, 2**62),
        store.notifications(NotificationFilter(limit=1000)),
        store.silences(),
        store.acks(),
    )


# --- tokens -----------------------------------------------------------------------------
def test_tokens_come_back_oldest_first(state: StateStore) -> None:
    late, early = token("t-a", T0 + 5, Scope.ADMIN), token("t-z", T0, Scope.INGEST)
    state.save_token(late)
    state.save_token(early)
    assert state.tokens() == [early, late]


def test_a_duplicate_token_id_is_refused(state: StateStore) -> None:
    first = token("t1", T0)
    state.save_token(first)
    with pytest.raises(REFUSED):
        state.save_token(TokenRecord("t1", "other", Scope.ADMIN, "sha256-other", T0 + 1))
    assert state.tokens() == [first]


def test_a_publishable_key_keeps_its_origins_and_rate(state: StateStore) -> None:
    origins = ("https://shop.example", "http://localhost:3000", "https://[::1]:8443")
    key = TokenRecord("pk1", "web shop", Scope.EVENTS, "sha256-pk1", T0, origins, 90)
    plain = token("t1", T0 + 1, Scope.INGEST)
    state.save_token(key)
    state.save_token(plain)
    assert state.tokens() == [key, plain]
    assert state.tokens()[1].origins == () and state.tokens()[1].rate_per_min is None


def test_tokens_made_in_the_same_ms_come_back_by_id(state: StateStore) -> None:
    made = [token(i, T0) for i in ("t-c", "t-a", "t-b")]
    for t in made:
        state.save_token(t)
    assert [t.id for t in state.tokens()] == ["t-a", "t-b", "t-c"]


# --- KPI versions -----------------------------------------------------------------------
def test_kpi_versions_are_per_kpi_and_oldest_first(state: StateStore) -> None:
    a1, a2, b1 = kpi_version("revenue", 1), kpi_version("revenue", 2), kpi_version("churn", 1)
    for v in (a2, b1, a1):
        state.record_kpi_version(v)
    assert state.kpi_versions("revenue") == [a1, a2]
    assert state.kpi_versions("churn") == [b1]
    assert state.kpi_versions("unknown") == []


def test_a_duplicate_kpi_version_is_a_value_error(state: StateStore) -> None:
    first = kpi_version("revenue", 1, digest="first")
    state.record_kpi_version(first)
    with pytest.raises(ValueError, match="revenue"):
        state.record_kpi_version(kpi_version("revenue", 1, digest="second"))
    assert state.kpi_versions("revenue") == [first]


def test_kpi_names_are_those_with_versions_or_values_sorted(state: StateStore) -> None:
    assert state.kpi_names() == []
    state.record_kpi_version(kpi_version("revenue", 1))
    state.record_kpi_version(kpi_version("revenue", 2))
    state.record_manual_kpi_value(manual("nps", T0, 1.0))
    state.record_manual_kpi_value(manual("Zeta", T0, 1.0))  # byte order: capitals first
    state.record_kpi_version(kpi_version("nps", 1))
    assert state.kpi_names() == ["Zeta", "nps", "revenue"]


# --- manual KPI values ------------------------------------------------------------------
def test_manual_values_in_a_range_are_start_inclusive_and_oldest_first(
    state: StateStore,
) -> None:
    at_end = manual("nps", T0 + 20, 3.0)
    later_entry, first_entry = manual("nps", T0 + 10, 2.5, T0 + 9), manual("nps", T0 + 10, 2.0)
    start, other = manual("nps", T0, 0.1 + 0.2, T0 + 50), manual("csat", T0 + 10, 9.0)
    for v in (at_end, later_entry, other, start, first_entry):
        state.record_manual_kpi_value(v)
    assert state.manual_kpi_values("nps", T0, T0 + 20) == [start, first_entry, later_entry]
    assert state.manual_kpi_values("nps", T0 + 11, T0 + 20) == []


def test_period_values_take_the_latest_moment_then_the_latest_entry(state: StateStore) -> None:
    for v in (
        manual("nps", T0 + 10, 1.0),
        manual("nps", T0 + 50, 2.0, recorded_ms=T0 + 1),
        manual("nps", T0 + 50, 3.0, recorded_ms=T0 + 2),  # re-entered for the same moment
        manual("nps", T0 + 40, 4.0, recorded_ms=T0 + 9),  # entered later, for an older moment
        manual("nps", T0 + 299, 7.0),
        manual("nps", T0 + 300, 9.0),  # the end of the last period is not in it
        manual("csat", T0 + 150, 5.0),
    ):
        state.record_manual_kpi_value(v)
    starts, ends = [T0, T0 + 100, T0 + 200, T0], [T0 + 100, T0 + 200, T0 + 300, T0 + 45]
    assert state.manual_kpi_period_values("nps", starts, ends) == {0: 3.0, 2: 7.0, 3: 4.0}
    assert state.manual_kpi_period_values("nps", [], []) == {}
    assert state.manual_kpi_period_values("csat", starts, ends) == {1: 5.0}


def test_newest_manual_value_is_by_moment_not_by_entry(state: StateStore) -> None:
    assert state.newest_manual_kpi_ms("nps") is None
    state.record_manual_kpi_value(manual("nps", T0 + 500, 1.0, recorded_ms=T0))
    state.record_manual_kpi_value(manual("nps", T0 + 100, 1.0, recorded_ms=T0 + 999))
    state.record_manual_kpi_value(manual("csat", T0 + 900, 1.0))
    assert state.newest_manual_kpi_ms("nps") == T0 + 500
    assert state.newest_manual_kpi_ms("other") is None


# --- the notification log ---------------------------------------------------------------
def test_recorded_intents_are_pending_oldest_first(state: StateStore) -> None:
    b, a = note("n-b", T0 + 2), note("n-a", T0 + 1, fingerprints=("f1", "f2"), alertnames=())
    state.record_notifications([b, a])
    assert state.pending_notifications() == [a, b]
    assert state.notifications(NotificationFilter()) == [b, a]


def test_the_newest_outcome_finishes_an_intent(state: StateStore) -> None:
    a, b = note("n-a", T0), note("n-b", T0 + 1)
    state.record_notifications([a, b])
    failed, delivered = outcome("n-a", "failed", T0 + 10), outcome("n-a", "delivered", T0 + 20, 2)
    state.finish_notifications([delivered])
    state.finish_notifications([failed])  # appended after, but finished earlier
    assert state.pending_notifications() == [b]
    assert state.notifications(NotificationFilter()) == [b, finished(a, delivered)]


def test_an_outcome_detail_is_cut_to_1000_characters(state: StateStore) -> None:
    state.record_notifications([note("n-a", T0)])
    state.finish_notifications([NotificationOutcome("n-a", "failed", 3, None, "x" * 5000, T0)])
    (got,) = state.notifications(NotificationFilter())
    assert (got.detail, got.http_status, got.attempts) == ("x" * 1000, None, 3)


def test_the_log_filters_by_alert_channel_and_status(state: StateStore) -> None:
    recs = [
        note("n1", T0 + 1, fingerprints=("fpA",), alertnames=("Disk",)),
        note("n2", T0 + 2, channel="pager", fingerprints=("fpB",), alertnames=("Disk",)),
        note("n3", T0 + 3, fingerprints=("fpA", "fpC"), alertnames=("Cpu",)),
        note("n4", T0 + 3, channel="pager", fingerprints=("fpD",), alertnames=("Mem",)),
    ]
    state.record_notifications(recs)
    state.finish_notifications([outcome("n1", "delivered", T0 + 5), outcome("n2", "failed", T0)])

    def log(**f: str | int) -> list[str]:
        return ids(state.notifications(NotificationFilter(**f)))  # type: ignore[arg-type]

    assert log() == ["n4", "n3", "n2", "n1"]  # newest first; equal times by id, descending
    assert log(alert="fpA") == ["n3", "n1"]
    assert log(alert="Disk") == ["n2", "n1"]
    assert log(alert="fpC") == ["n3"]
    assert log(channel="pager") == ["n4", "n2"]
    assert log(status="pending") == ["n4", "n3"]
    assert log(status="failed") == ["n2"]
    assert log(alert="Disk", status="delivered", channel="ops") == ["n1"]
    assert log(limit=2) == ["n4", "n3"]


def test_recent_notifications_are_sent_or_sending_notify_and_escalation(
    state: StateStore,
) -> None:
    state.record_notifications(
        [
            note("old", T0 - 1),
            note("pending", T0),  # created exactly at `since`: included
            note("delivered", T0 + 1, kind="escalation"),
            note("failed", T0 + 2),
            note("ack", T0 + 3, kind="acknowledge"),
            note("later", T0 + 4),
        ]
    )
    state.finish_notifications(
        [outcome("delivered", "delivered", T0 + 9), outcome("failed", "failed", T0 + 9)]
    )
    assert ids(state.recent_notifications(T0)) == ["pending", "delivered", "later"]
    assert ids(state.recent_notifications(T0 + 5)) == []


def test_prune_drops_finished_notifications_and_ended_silences_before_then(
    state: StateStore,
) -> None:
    cut = T0 + 100
    state.record_notifications(
        [note("old-done", T0), note("old-pending", T0 + 1), note("at-cut", cut)]
    )
    state.finish_notifications([outcome("old-done", "delivered", T0 + 5)])
    state.finish_notifications([outcome("at-cut", "failed", cut + 5)])
    ended, ends_at_cut, active = (
        silence("s1", T0, cut - 1),
        silence("s2", T0, cut),
        silence("s3", T0, cut + 999),
    )
    for s in (ended, ends_at_cut, active):
        state.save_silence(s)

    assert state.prune_alert_log(cut) == 1
    assert ids(state.notifications(NotificationFilter())) == ["at-cut", "old-pending"]
    assert state.silences() == [ends_at_cut, active]
    # Its outcomes went with it: the id recorded again is a new, pending intent.
    state.record_notifications([note("old-done", T0)])
    assert ids(state.pending_notifications()) == ["old-done", "old-pending"]
    assert state.prune_alert_log(cut) == 0


def test_a_recorded_id_is_refused_and_the_batch_stores_nothing(state: StateStore) -> None:
    first = note("n-a", T0)
    state.record_notifications([first])
    with pytest.raises(REFUSED):
        state.record_notifications([note("n-new", T0 + 1), note("n-a", T0 + 2)])
    with pytest.raises(REFUSED):
        state.record_notifications([note("n-twice", T0 + 3), note("n-twice", T0 + 3)])
    assert state.notifications(NotificationFilter()) == [first]


def test_empty_batches_change_nothing(state: StateStore) -> None:
    state.record_notifications([])
    state.finish_notifications([])
    state.record_notifications([note("n-a", T0)])
    state.finish_notifications([])
    assert ids(state.pending_notifications()) == ["n-a"]


# --- silences and acknowledgements ------------------------------------------------------
def test_a_saved_silence_replaces_the_one_with_its_id(state: StateStore) -> None:
    late = silence("s-c", T0 + 9, T0 + 99)
    early_b, early_a = silence("s-b", T0, T0 + 50), silence("s-a", T0, T0 + 60)
    for s in (late, early_b, early_a):
        state.save_silence(s)
    assert state.silences() == [early_a, early_b, late]  # by start, then id
    moved = SilenceRow("s-c", "[]", T0 - 5, T0 + 10, "dave", "extended", T0 + 30)
    state.save_silence(moved)
    assert state.silences() == [moved, early_a, early_b]


def test_acks_are_replaced_and_deleted_by_fingerprint(state: StateStore) -> None:
    one, two = AckRow("fp1", "dave", "on it", T0 + 10), AckRow("fp2", "erin", "", T0 + 5)
    state.save_ack(one)
    state.save_ack(two)
    assert state.acks() == [two, one]  # oldest first
    again = AckRow("fp1", "frank", "taking over", T0 + 20)
    state.save_ack(again)
    assert state.acks() == [two, again]
    state.delete_ack("fp2")
    state.delete_ack("unknown")
    assert state.acks() == [again]


# --- leases -----------------------------------------------------------------------------
def test_a_free_lease_is_taken_and_its_holder_renews_it(state: StateStore) -> None:
    assert state.hold_lease("alerting", "node-a", NOW, 1000)
    assert state.hold_lease("alerting", "node-a", NOW + 900, 1000)  # now until NOW + 1900
    assert not state.hold_lease("alerting", "node-b", NOW + 1500, 1000)
    assert state.hold_lease("alerting", "node-b", NOW + 1900, 1000)


def test_a_held_lease_is_refused_to_others_until_it_expires(state: StateStore) -> None:
    assert state.hold_lease("alerting", "node-a", NOW, 1000)
    assert not state.hold_lease("alerting", "node-b", NOW + 999, 1000)
    assert state.hold_lease("alerting", "node-b", NOW + 1000, 1000)  # expired at NOW + 1000
    assert not state.hold_lease("alerting", "node-a", NOW + 1001, 1000)


def test_leases_are_independent_by_name(state: StateStore) -> None:
    assert state.hold_lease("alerting", "node-a", NOW, 1000)
    assert state.hold_lease("maintenance", "node-b", NOW, 1000)
    assert not state.hold_lease("maintenance", "node-a", NOW + 1, 1000)


def test_release_frees_the_lease_only_for_its_holder(state: StateStore) -> None:
    assert state.hold_lease("alerting", "node-a", NOW, 60_000)
    state.release_lease("alerting", "node-b")  # not its lease: nothing changes
    state.release_lease("unknown", "node-a")
    assert not state.hold_lease("alerting", "node-c", NOW + 1, 60_000)
    state.release_lease("alerting", "node-a")
    assert state.hold_lease("alerting", "node-c", NOW + 2, 60_000)


# --- durability -------------------------------------------------------------------------
def test_reopening_keeps_every_piece_of_state(open_state: StateOpener) -> None:
    store = open_state()
    store.save_token(token("t1", T0))
    store.record_kpi_version(kpi_version("revenue", 1))
    store.record_manual_kpi_value(manual("nps", T0, 8.5))
    store.record_notifications([note("n-a", T0), note("n-b", T0 + 1)])
    store.finish_notifications([outcome("n-a", "delivered", T0 + 2)])
    store.save_silence(silence("s1", T0, T0 + 100))
    store.save_ack(AckRow("fp1", "dave", "", T0))
    assert store.hold_lease("alerting", "node-a", NOW, 60_000)
    before = everything(store)
    store.close()

    again = open_state()
    try:
        assert everything(again) == before
        assert len(before[4]) == 2 and before[0]  # type: ignore[arg-type]
        assert not again.hold_lease("alerting", "node-b", NOW + 1, 60_000)
        assert again.newest_manual_kpi_ms("nps") == T0
    finally:
        again.close()


# --- incident timelines and protocol action claims ----------------------------------------
def entry(id_: str, at_ms: int, kind: str = "fired", fp: str = "fp1") -> TimelineEntry:
    detail = '{"channel": "ops",  "status": "delivered", "ü": 1}'
    return TimelineEntry(id_, fp, T0, at_ms, kind, "opsmetrics", detail)


def test_a_timeline_comes_back_oldest_first_with_its_detail_kept(state: StateStore) -> None:
    later, first = entry("b", T0 + 5, "notified"), entry("a", T0 + 1)
    tie = entry("c", T0 + 5, "acknowledged")
    assert state.record_timeline([later, first, tie, entry("z", T0, fp="fp2")]) == 4
    assert state.timeline("fp1") == [first, later, tie]
    assert state.timeline("nope") == []


def test_an_entry_recorded_again_is_stored_once(state: StateStore) -> None:
    assert state.record_timeline([entry("a", T0), entry("a", T0)]) == 1
    assert state.record_timeline([entry("a", T0 + 9), entry("b", T0 + 1)]) == 1
    assert [(e.id, e.at_ms) for e in state.timeline("fp1")] == [("a", T0), ("b", T0 + 1)]
    assert state.record_timeline([]) == 0


def test_timeline_entries_filter_by_kind_and_time(state: StateStore) -> None:
    state.record_timeline([
        entry("f1", T0), entry("a1", T0 + 10, "acknowledged"), entry("r1", T0 + 20, "resolved"),
        entry("a2", T0 + 30, "acknowledged", fp="fp2"), entry("s1", T0 + 40, "step"),
    ])  # fmt: skip
    got = state.timeline_entries(["acknowledged", "resolved"], T0 + 10)
    assert [e.id for e in got] == ["a1", "r1", "a2"]
    assert [e.id for e in state.timeline_entries(["acknowledged"], T0 + 11)] == ["a2"]


def claim(key: str, at_ms: int = T0) -> ActionClaim:
    return ActionClaim(key, "fp1", T0, "scale-out", at_ms)


def test_an_action_is_claimed_once_until_its_run_fails(state: StateStore) -> None:
    assert state.claim_action(claim("k1"))
    assert not state.claim_action(claim("k1", T0 + 1))  # claimed, not finished: never again
    assert state.claim_action(claim("k2"))  # another key
    state.finish_action("k1", "failed", T0 + 2)
    assert state.claim_action(claim("k1", T0 + 3))  # a failed run may be tried again
    state.finish_action("k1", "succeeded", T0 + 4)
    assert not state.claim_action(claim("k1", T0 + 5))


def test_timeline_and_claims_survive_a_reopen(open_state: StateOpener) -> None:
    store = open_state()
    store.record_timeline([entry("a", T0), entry("b", T0 + 1, "step")])
    store.claim_action(claim("k1"))
    before = store.timeline("fp1")
    store.close()
    again = open_state()
    try:
        assert again.timeline("fp1") == before and len(before) == 2
        assert not again.claim_action(claim("k1", T0 + 9))
    finally:
        again.close()


# --- improvement initiatives created through the API ------------------------------------
def test_initiatives_come_back_by_name_and_a_name_is_taken_once(open_state: StateOpener) -> None:
    first = InitiativeRecord("zeta", '{"name": "zeta", "title": "ü"}', T0, "admin")
    other = InitiativeRecord("alpha", '{"name": "alpha"}', T0 + 1, "admin")
    store = open_state()
    assert store.initiatives() == []
    assert store.save_initiative(first) and store.save_initiative(other)
    assert not store.save_initiative(InitiativeRecord("zeta", "{}", T0 + 2, "someone"))
    store.close()
    reopened = open_state()
    try:
        got = reopened.initiatives()
        assert [r.name for r in got] == ["alpha", "zeta"]
        assert json.loads(got[1].definition) == {"name": "zeta", "title": "ü"}
        assert got[1].created_by == "admin" and got[1].created_ms == T0
    finally:
        reopened.close()
