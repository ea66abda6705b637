"""No silently wrong number for state formulas (issue 17): MRR with `recorded: level` reads each
customer's latest `props.mrr`, and a subscription event without it (or with text there) is
reported in `meta.excluded`, not silently skipped; a period whose every such event was left out
and where no customer has a level has no value, not MRR 0. Formulas that read no event
properties (manual here; promql and sql likewise) report an empty `meta.excluded`.

A conversion reports the steps that lack the key it joins on, and a rolling distinct count
(WAU) what its filter left out. Through a real server process on a fixed clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FIXED_NOW
from tests.server import ServerProcess

DAY = 86_400_000
#: The day before the server's fixed now.
DAY_START = FIXED_NOW - FIXED_NOW % DAY - DAY

CATALOG = """\
- name: mrr
  title: MRR from each customer's level
  owner: finance
  unit: count
  direction: higher_is_better
  use: mrr
  params: {recorded: level, field: props.mrr}
- name: trial_mrr
  title: MRR of trials (no event carries the amount)
  owner: finance
  unit: count
  direction: higher_is_better
  use: mrr
  params: {event: trial_changed, recorded: level, field: props.mrr}
- name: account_conversion
  title: Signups that buy within a day, per account
  owner: growth
  unit: ratio
  direction: higher_is_better
  conversion: {from: signup, to: purchase, within: 1d, entity: props.account}
- name: pro_wau
  title: Weekly active pro visitors (distinct over 7 days, not a sum of days)
  owner: growth
  unit: count
  direction: higher_is_better
  cumulative:
    of: {event: {name: visit, agg: unique, where: {plan: {eq: pro}}}}
    window: 7d
- name: headcount
  title: Headcount
  owner: people
  unit: count
  direction: higher_is_better
  manual: true
"""


def events() -> list[dict[str, Any]]:
    t = DAY_START + 3_600_000
    levels: list[dict[str, Any]] = [
        {"name": "subscription_changed", "ts": t, "entity": "c1", "props": {"mrr": 5000}},
        {"name": "subscription_changed", "ts": t + 1, "entity": "c2", "props": {"mrr": 3000}},
        {"name": "subscription_changed", "ts": t + 2, "entity": "c3", "props": {"plan": "pro"}},
        {"name": "subscription_changed", "ts": t + 3, "entity": "c4", "props": {"mrr": "lots"}},
    ]
    trials = [{"name": "trial_changed", "ts": t + i, "entity": f"t{i}"} for i in range(3)]
    journeys: list[dict[str, Any]] = [
        {"name": "signup", "ts": t, "entity": "u1", "props": {"account": "a1"}},
        {"name": "signup", "ts": t + 1, "entity": "u2"},
        {"name": "purchase", "ts": t + 60_000, "entity": "u1", "props": {"account": "a1"}},
        {"name": "purchase", "ts": t + 60_001, "entity": "u2"},
    ]
    visits: list[dict[str, Any]] = [
        {"name": "visit", "ts": t, "entity": "v1", "props": {"plan": "pro"}},
        {"name": "visit", "ts": t + 1, "entity": "v2", "props": {"plan": "free"}},
        {"name": "visit", "ts": t + 2, "entity": "v3"},
    ]
    return levels + trials + journeys + visits


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("state-exclusions")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "revenue.yaml").write_text(CATALOG)
    server = ServerProcess(root / "data", root / "config", now_ms=FIXED_NOW).start()
    try:
        posted = httpx.post(server.url + "/api/v1/events", json=events(), timeout=10)
        assert posted.status_code == 200, posted.text
        yield server
    finally:
        server.kill()


def series(srv: ServerProcess, name: str) -> dict[str, Any]:
    params = {"from": DAY_START // 1000, "to": (DAY_START + DAY) // 1000, "grain": "day"}
    got = httpx.get(f"{srv.url}/api/v1/kpis/{name}/series", params=params, timeout=10)
    assert got.status_code == 200, got.text
    data: dict[str, Any] = got.json()["data"]
    return data


def the_point(data: dict[str, Any]) -> dict[str, Any]:
    [point] = [p for p in data["points"] if p["t"] == "2027-01-03T00:00:00Z"]
    return point


@pytest.mark.e2e
def test_mrr_level_reports_subscription_events_without_a_numeric_mrr(srv: ServerProcess) -> None:
    """On main before this the events of c3 and c4 were skipped with nothing said."""
    data = series(srv, "mrr")
    assert the_point(data)["value"] == pytest.approx(80.0)  # (5000 + 3000) / 100
    excluded = data["meta"]["excluded"]
    assert (excluded["total"], excluded["of"]) == (2, 4)
    assert excluded["missing_property"] == {"props.mrr": 1}
    assert excluded["wrong_type"] == {"props.mrr": 1}
    why = "1 without props.mrr, 1 with props.mrr not a number"
    assert excluded["warnings"] == [f"2 of 4 subscription_changed events excluded: {why}"]
    [entry] = excluded["events"]
    assert (entry["event"], entry["total"], entry["of"]) == ("subscription_changed", 2, 4)


@pytest.mark.e2e
def test_mrr_level_with_every_event_excluded_has_no_value_not_zero(srv: ServerProcess) -> None:
    data = series(srv, "trial_mrr")
    point = the_point(data)
    assert point["value"] is None
    assert point["status"] == "unknown"
    assert "all 3 trial_changed events in the period were excluded" in point["note"]
    assert data["meta"]["excluded"]["missing_property"] == {"props.mrr": 3}


@pytest.mark.e2e
def test_a_conversion_reports_the_steps_without_the_key_it_joins_on(srv: ServerProcess) -> None:
    data = series(srv, "account_conversion")
    assert the_point(data)["value"] == pytest.approx(1.0)  # a1 of a1: u2's signup has no account
    excluded = data["meta"]["excluded"]
    assert (excluded["total"], excluded["of"]) == (2, 4)
    assert excluded["missing_property"] == {"props.account": 2}
    assert excluded["warnings"] == [
        "1 of 2 purchase events excluded: 1 without props.account",
        "1 of 2 signup events excluded: 1 without props.account",
    ]


@pytest.mark.e2e
def test_a_rolling_unique_count_reports_its_filter(srv: ServerProcess) -> None:
    data = series(srv, "pro_wau")
    assert the_point(data)["value"] == 1.0
    excluded = data["meta"]["excluded"]
    assert (excluded["total"], excluded["of"]) == (1, 3)
    assert excluded["missing_property"] == {"props.plan": 1}
    assert excluded["outside_filter"] == {"props.plan": 1}  # v2's free plan: the filter's job
    assert excluded["warnings"] == ["1 of 3 visit events excluded: 1 without props.plan"]


@pytest.mark.e2e
def test_a_formula_reading_no_event_properties_reports_nothing_excluded(
    srv: ServerProcess,
) -> None:
    excluded = series(srv, "headcount")["meta"]["excluded"]
    assert (excluded["total"], excluded["of"], excluded["events"]) == (0, 0, [])
    assert excluded["warnings"] == []
