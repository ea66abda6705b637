"""No silently wrong number (issue 17): a KPI reports the input events it left out and why, and
a period whose every input was left out has no value, never a 0.

Through a real server process on a fixed clock: NPS responses posted with the score as the
event's value (the obvious way) give the right NPS with `score: value`, and with the default
`score: props.score` a null value, a note and `meta.excluded` instead of NPS 0; the KPI list,
`opsmetrics kpi values` and `opsmetrics validate --data` say the same.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.catalog.kpis import load_catalog
from opsmetrics.clock import ALLOW_FAKE_NOW_ENV, FAKE_NOW_ENV, FakeClock
from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import Event
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.exclusion_records import Reason
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, run_bounded
from tests.stores import open_store

DAY = 86_400_000
#: The day before the server's fixed now (2027-01-03, UTC).
DAY_START = FIXED_NOW - FIXED_NOW % DAY - DAY
SCORES = [10, 9, 9, 7, 2]  # 3 promoters, 1 detractor of 5: (3 - 1) / 5 * 100 = 40

CATALOG = """\
- name: nps
  title: Net promoter score
  owner: cx
  unit: score
  direction: higher_is_better
  use: nps
  params: {event: nps_response}
- name: nps_of_value
  title: Net promoter score (score as the event's value)
  owner: cx
  unit: score
  direction: higher_is_better
  use: nps
  params: {event: nps_response, score: value}
- name: survey_nps
  title: Survey NPS (some responses carry no score)
  owner: cx
  unit: score
  direction: higher_is_better
  use: nps
  params: {event: survey, score: props.score}
- name: big_orders
  title: Orders over 100
  owner: sales
  unit: count
  direction: higher_is_better
  event: {name: purchase, agg: count, where: {amount: {gt: 100}}}
"""


def events() -> list[dict[str, Any]]:
    t = DAY_START + 3_600_000
    by_value = [
        {"name": "nps_response", "ts": t + i, "entity": f"u{i}", "value": s}
        for i, s in enumerate(SCORES)
    ]
    # 3 scored (10, 9, 2: (2 - 1) / 3 * 100 = 33.3) and 2 without a score
    survey = [
        {"name": "survey", "ts": t + i, "entity": f"s{i}", "props": {"score": s}}
        for i, s in enumerate([10, 9, 2])
    ]
    survey += [{"name": "survey", "ts": t + 10 + i, "entity": f"n{i}"} for i in range(2)]
    purchases = [
        {"name": "purchase", "ts": t + i, "entity": f"p{i}", "props": {"amount": a}}
        for i, a in enumerate([150, 50, "lots"])
    ]
    purchases.append({"name": "purchase", "ts": t + 5, "entity": "p5"})
    return by_value + survey + purchases


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("exclusions")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "voice.yaml").write_text(CATALOG)
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
def test_nps_reads_the_events_value_when_the_definition_says_so(srv: ServerProcess) -> None:
    data = series(srv, "nps_of_value")
    assert the_point(data)["value"] == pytest.approx(40.0)
    excluded = data["meta"]["excluded"]
    assert (excluded["total"], excluded["of"], excluded["warnings"]) == (0, 5, [])


@pytest.mark.e2e
def test_nps_from_a_property_the_responses_lack_is_no_value_with_a_warning(
    srv: ServerProcess,
) -> None:
    """On main before issue 17 this answered NPS 0 and nothing else."""
    data = series(srv, "nps")
    point = the_point(data)
    assert point["value"] is None
    assert point["status"] == "unknown"
    assert "all 5 nps_response events in the period were excluded" in point["note"]
    assert "props.score" in point["note"]
    excluded = data["meta"]["excluded"]
    assert excluded["total"] == 5 and excluded["of"] == 5
    assert excluded["missing_property"] == {"props.score": 5}
    assert excluded["warnings"] == ["5 of 5 nps_response events excluded: 5 without props.score"]
    [entry] = excluded["events"]
    assert (entry["event"], entry["total"], entry["of"]) == ("nps_response", 5, 5)


@pytest.mark.e2e
def test_responses_without_a_score_are_excluded_not_counted_as_passives(
    srv: ServerProcess,
) -> None:
    data = series(srv, "survey_nps")
    assert the_point(data)["value"] == pytest.approx(100 / 3)  # not (2 - 1) / 5 * 100 = 20
    excluded = data["meta"]["excluded"]
    assert excluded["warnings"] == ["2 of 5 survey events excluded: 2 without props.score"]


@pytest.mark.e2e
def test_an_event_filter_reports_missing_wrong_type_and_outside(srv: ServerProcess) -> None:
    data = series(srv, "big_orders")
    assert the_point(data)["value"] == 1.0
    excluded = data["meta"]["excluded"]
    assert excluded["missing_property"] == {"props.amount": 1}
    assert excluded["wrong_type"] == {"props.amount": 1}
    assert excluded["outside_filter"] == {"props.amount": 1}  # 50: the filter doing its job
    assert excluded["total"] == 2 and excluded["of"] == 4
    why = "1 without props.amount, 1 with props.amount not a number"
    assert excluded["warnings"] == [f"2 of 4 purchase events excluded: {why}"]


@pytest.mark.e2e
def test_the_kpi_list_carries_the_note_and_the_warnings(srv: ServerProcess) -> None:
    got = httpx.get(srv.url + "/api/v1/kpis", params={"values": "1"}, timeout=10)
    assert got.status_code == 200, got.text
    rows = {k["name"]: k for k in got.json()["data"]}
    nps = rows["nps"]
    assert nps["current"]["value"] is None and "props.score" in nps["current"]["note"]
    assert nps["meta"]["excluded"]["total"] == 5
    assert rows["nps_of_value"]["current"]["value"] == pytest.approx(40.0)
    assert rows["nps_of_value"]["meta"]["excluded"]["warnings"] == []


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    full = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", **(env or {})}
    return run_bounded([sys.executable, "-m", "opsmetrics", *args], 60, full)


@pytest.mark.e2e
def test_cli_kpi_values_prints_the_warning_and_the_note(srv: ServerProcess) -> None:
    start, end = str(DAY_START // 1000), str((DAY_START + DAY) // 1000)
    done = cli("kpi", "values", "nps", "--from", start, "--to", end, "--url", srv.url)
    assert done.returncode == 0, done.stderr
    assert "warning: 5 of 5 nps_response events excluded: 5 without props.score" in done.stdout
    assert "no value: all 5 nps_response events in the period were excluded" in done.stdout
    raw = cli("kpi", "values", "nps", "--from", start, "--to", end, "--url", srv.url, "--json")
    assert json.loads(raw.stdout)["data"]["meta"]["excluded"]["total"] == 5
    listed = cli("kpi", "list", "--url", srv.url)
    assert listed.returncode == 0, listed.stderr
    assert "warning: nps: 5 of 5 nps_response events excluded: 5 without props.score" in (
        listed.stdout
    )


def test_the_catalog_parses(tmp_path: Path) -> None:
    (tmp_path / "kpis").mkdir()
    (tmp_path / "kpis" / "voice.yaml").write_text(CATALOG)
    done = cli("validate", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_validate_data_names_the_mismatch_and_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "voice.yaml").write_text(CATALOG)
    store = open_store(tmp_path / "data", FIXED_NOW)
    try:
        stored = [StoredEvent(event_key(e), e) for e in map(as_event, events())]
        store.write(WriteBatch(events=stored))
    finally:
        store.close()
    env = {FAKE_NOW_ENV: str(FIXED_NOW / 1000), ALLOW_FAKE_NOW_ENV: "1"}
    done = cli("validate", str(config), "--data", str(tmp_path / "data"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    days = "in the last 30 days"
    lines = [line.removeprefix(f"{config}/") for line in done.stdout.splitlines()]
    assert sorted(lines) == sorted(
        [
            f"kpis/voice.yaml:1: nps reads props.score but 5 of 5 nps_response events {days} have "
            "no `props.score`; they carry `value` — set `score: value`",
            f"kpis/voice.yaml:15: survey_nps reads props.score but 2 of 5 survey events {days} "
            "have no `props.score`",
            f"kpis/voice.yaml:22: big_orders reads props.amount but 1 of 4 purchase events {days} "
            "have no `props.amount`",
            f"kpis/voice.yaml:22: big_orders reads props.amount as a number but 1 of 4 purchase "
            f"events {days} hold something else there",
        ]
    )
    fixed = CATALOG.replace(
        "params: {event: nps_response}\n", "params: {event: nps_response, score: value}\n"
    )
    (config / "kpis" / "voice.yaml").write_text(fixed)
    again = cli("validate", str(config), "--data", str(tmp_path / "data"), env=env)
    kpis = [line.removeprefix(f"{config}/").split(" ")[1] for line in again.stdout.splitlines()]
    assert sorted(kpis) == [
        "big_orders",
        "big_orders",
        "survey_nps",
    ]


def as_event(e: dict[str, Any]) -> Event:
    return Event(e["name"], e["ts"], e["entity"], e.get("value"), e.get("props", {}))


# --- in process: breakdowns and formulas of several parts -----------------------------------
PARTS = """\
- name: revenue
  title: Revenue from the amount property
  owner: sales
  unit: count
  direction: higher_is_better
  dimensions: [country]
  event: {name: purchase, agg: sum, field: props.amount}
- name: pro_share
  title: Pro purchases per visit duration
  owner: sales
  unit: ratio
  direction: higher_is_better
  ratio:
    numerator: {event: {name: purchase, where: {plan: pro}}}
    denominator: {event: {name: visit, agg: avg}}
"""


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[KpiEvaluator]:
    (tmp_path / "config" / "kpis").mkdir(parents=True)
    (tmp_path / "config" / "kpis" / "parts.yaml").write_text(PARTS)
    store = open_store(tmp_path / "data", FIXED_NOW)
    t = DAY_START + 3_600_000
    written = [
        Event("purchase", t, "a", None, {"country": "de", "amount": 10, "plan": "pro"}),
        Event("purchase", t + 1, "b", None, {"country": "de", "amount": "x", "plan": "free"}),
        Event("purchase", t + 2, "c", None, {"country": "fr"}),
        Event("purchase", t + 3, "d", None, {"country": "fr", "amount": None}),
        Event("visit", t, "a", 30.0),
        Event("visit", t + 1, "b"),
    ]
    store.write(WriteBatch(events=[StoredEvent(event_key(e), e) for e in written]))
    try:
        yield KpiEvaluator(store, load_catalog(tmp_path / "config"), FakeClock(FIXED_NOW))
    finally:
        store.close()


def test_a_group_whose_events_all_lack_the_field_has_no_value(evaluator: KpiEvaluator) -> None:
    got = evaluator.series("revenue", DAY_START, DAY_START + DAY, by=("country",))
    by_group = {p.group: p for p in got.points}
    assert by_group[(("country", "de"),)].value == 10.0
    fr = by_group[(("country", "fr"),)]
    assert fr.value is None and fr.note is not None and "props.amount" in fr.note
    [entry] = got.excluded.inputs
    assert (entry.event, entry.of, entry.total) == ("purchase", 4, 3)
    assert got.excluded.by_reason(Reason.MISSING_PROPERTY) == {"props.amount": 2}
    assert got.excluded.by_reason(Reason.WRONG_TYPE) == {"props.amount": 1}


def test_a_formula_of_several_events_reports_each(evaluator: KpiEvaluator) -> None:
    got = evaluator.series("pro_share", DAY_START, DAY_START + DAY)
    assert [p.value for p in got.points] == [1 / 30]
    assert [(i.event, i.of, i.total) for i in got.excluded.inputs] == [
        ("purchase", 4, 2),  # two have no plan (and one another plan: the filter's job)
        ("visit", 2, 1),
    ]
    assert got.excluded.by_reason(Reason.OUTSIDE_FILTER) == {"props.plan": 1}
    assert got.excluded.warnings() == [
        "2 of 4 purchase events excluded: 2 without props.plan",
        "1 of 2 visit events excluded: 1 without value",
    ]
