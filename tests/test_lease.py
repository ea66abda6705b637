"""Leases: one node runs rule evaluation / notification / maintenance among nodes sharing a
state store. The PostgreSQL cases (two real stores on one database) are in
tests/test_state_stores.py; here two `Lease`s share one DuckDB state store, as two nodes would
share one PostgreSQL, and a FakeClock moves time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opsmetrics.alerting.groups import RuleManager
from opsmetrics.catalog.rules import parse_rule_file
from opsmetrics.clock import FakeClock
from opsmetrics.services import Services
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.lease import RENEW_MS, TTL_MS, Lease
from tests.test_rules import (  # noqa: F401 - svc and clock are fixtures
    MIN,
    NOW,
    RULES,
    aligned_at_or_before,
    api_group,
    clock,
    svc,
    write_up,
)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DuckDBStorage]:
    store = DuckDBStorage(tmp_path / "data", now_ms=NOW)
    yield store
    store.close()


def test_one_holder_at_a_time_and_failover_after_the_ttl(state: DuckDBStorage) -> None:
    fake = FakeClock(NOW)
    a = Lease(state, fake, "alerting", "node-a")
    b = Lease(state, fake, "alerting", "node-b")
    assert a.held() and not b.held()
    assert (a.gained, b.gained) == (1, 0)
    fake.advance(RENEW_MS)
    assert a.held() and not b.held()  # a renews, b is still refused
    # a dies (stops renewing): b takes over once a's last renewal has expired
    fake.advance(TTL_MS - 1)
    assert not b.held()
    fake.advance(RENEW_MS)
    assert b.held() and b.gained == 1
    fake.advance(RENEW_MS)
    assert not a.held()  # a comes back: b holds it now


def test_release_hands_over_at_once(state: DuckDBStorage) -> None:
    fake = FakeClock(NOW)
    a = Lease(state, fake, "maintenance", "node-a")
    b = Lease(state, fake, "maintenance", "node-b")
    assert a.held()
    a.release()
    assert b.held()
    assert Lease(state, fake, "alerting", "node-a").held()  # leases are independent


def test_a_solo_lease_is_always_held() -> None:
    lease = Lease.solo(FakeClock(NOW), "alerting")
    assert lease.held() and not lease.shared and lease.gained == 0


def test_rules_are_evaluated_only_by_the_lease_holder(
    svc: Services,  # noqa: F811
    clock: FakeClock,  # noqa: F811
) -> None:
    holder = Lease(svc.storage, clock, "alerting", "other-node")
    assert holder.held()
    mine = Lease(svc.storage, clock, "alerting", "this-node")
    groups = parse_rule_file(RULES, "rules/api.yaml")
    m = RuleManager(groups, svc.storage, svc.ingestor, clock, lease=mine)
    write_up(svc, NOW, {("api", "a:1"): 1})
    first = aligned_at_or_before(api_group(m), NOW) + MIN
    clock.set(first)
    assert holder.held()  # other-node renews its lease
    assert m.evaluate_due() == 0  # and so this node does not evaluate
    assert m.status()[0].last_evaluation_ms is None
    clock.set(first + 2 * MIN)  # other-node stopped renewing at `first`: its lease expired
    assert first + TTL_MS < first + 2 * MIN
    assert m.evaluate_due() >= 1
    assert m.status()[0].last_evaluation_ms == first + 2 * MIN
