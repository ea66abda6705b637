"""Owners' review cycles end to end on a real server with an injected clock: the review list
(due, overdue, off target, no owner) from planted reviews, marking a KPI reviewed over HTTP
and the CLI, what survives a restart, refusals that store nothing, and the scope it needs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.auth import NewToken, new_token
from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.kpi_records import ManualKpiValue
from opsmetrics.storage.review_records import KpiReview
from opsmetrics.storage.token_records import Scope
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, run_bounded

DAY = 86_400_000
CATALOG = """\
- name: weekly_old
  title: Weekly KPI reviewed 8 days ago
  owner: growth
  cadence: weekly
  unit: count
  direction: higher_is_better
  manual: true
- name: weekly_fresh
  title: Weekly KPI reviewed 2 days ago
  owner: growth
  cadence: weekly
  unit: count
  direction: higher_is_better
  manual: true
- name: orphan
  title: KPI with no owner
  owner: tbd
  cadence: monthly
  unit: count
  direction: lower_is_better
  manual: true
- name: signups
  title: Signups
  owner: ops
  cadence: quarterly
  unit: count
  direction: higher_is_better
  target: 100
  manual: true
"""


def review(kpi: str, at_ms: int, author: str = "ana", note: str = "looked") -> KpiReview:
    return KpiReview(f"planted-{kpi}-{at_ms}", kpi, at_ms, author, note, 1, "ok", None)


def write_config(root: Path) -> Path:
    config = root / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "kpis.yaml").write_text(CATALOG)
    return config


def plant(data: Path, config: Path) -> dict[Scope, NewToken]:
    """Reviews 8 and 2 days old, a recent one of signups, signups below target, two tokens."""
    tokens = {s: new_token(s.value, s, FIXED_NOW) for s in (Scope.READ, Scope.INGEST)}
    services = open_services(Settings(data_dir=data, config_dir=config), FakeClock(FIXED_NOW))
    try:
        store = services.storage
        store.record_review(review("weekly_old", FIXED_NOW - 8 * DAY))
        store.record_review(review("weekly_fresh", FIXED_NOW - 2 * DAY))
        store.record_review(review("signups", FIXED_NOW - 3 * DAY))
        v = ManualKpiValue("signups", FIXED_NOW - DAY // 2, 40.0, "bob", "", FIXED_NOW)
        store.record_manual_kpi_value(v)
        for t in tokens.values():
            store.save_token(t.record)
    finally:
        services.close()
    return tokens


class Running:
    """The module's server, replaced by the restart test."""

    def __init__(self, srv: ServerProcess, tokens: dict[Scope, NewToken]) -> None:
        self.srv = srv
        self.tokens = tokens

    def get(self, path: str, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[Scope.READ].secret}"}
        r = httpx.get(self.srv.url + path, params=params, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def post(self, path: str, body: object, scope: Scope = Scope.INGEST) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[scope].secret}"}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.srv.url + path, content=content, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("reviews")
    config = write_config(root)
    tokens = plant(root / "data", config)
    srv = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start(timeout=120)
    state = Running(srv, tokens)
    yield state
    state.srv.stop()


def listed(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["kpi"]: k | {"group": g["owner"]} for g in data["owners"] for k in g["kpis"]}


def test_a_weekly_kpi_reviewed_8_days_ago_is_overdue_and_2_days_ago_is_not(
    running: Running,
) -> None:
    old = running.get("/api/v1/kpis/weekly_old/reviews")
    assert old["state"] == "overdue" and "overdue" in old["flags"]
    # Due 7 days after the review: a day ago, plus the moments the server has run.
    assert DAY / 1000 <= old["overdue_seconds"] < DAY / 1000 + 600
    assert old["standing"] == "overdue by 1 day"
    fresh = running.get("/api/v1/kpis/weekly_fresh/reviews")
    assert fresh["state"] == "reviewed" and fresh["overdue_seconds"] == 0
    assert fresh["due"] == "2027-01-09T00:12:00.000Z"  # the review + 7 days
    found = listed(running.get("/api/v1/reviews"))
    assert found["weekly_old"]["group"] == "growth"
    assert "weekly_fresh" not in found


def test_a_kpi_with_no_owner_is_listed_under_no_owner(running: Running) -> None:
    data = running.get("/api/v1/reviews")
    assert data["owners"][-1]["owner"] == "(no owner)"
    orphan = listed(data)["orphan"]
    assert orphan["group"] == "(no owner)" and "no owner" in orphan["flags"]
    assert "never reviewed" in orphan["flags"]
    assert "Set `owner:` of orphan" in orphan["todo"]
    never = [f for f in running.get("/api/v1/hygiene")["findings"] if f["kind"] == "never_reviewed"]
    assert [f["subject"] for f in never] == ["(no owner)"]
    assert never[0]["fix"].startswith("set a real `owner:` for orphan (")
    assert "kpis.yaml:15)" in never[0]["fix"]


def test_a_kpi_below_its_target_is_off_target_and_the_owner_filter_keeps_its_own(
    running: Running,
) -> None:
    only_ops = running.get("/api/v1/reviews", owner="ops")
    assert [g["owner"] for g in only_ops["owners"]] == ["ops"]
    signups = listed(only_ops)["signups"]
    assert signups["state"] == "reviewed" and signups["off_target"] is True
    assert signups["value"] == 40.0 and signups["target"] == 100.0
    assert signups["flags"] == ["off target"]


def test_refused_reviews_name_the_field_and_store_nothing(running: Running) -> None:
    path = "/api/v1/kpis/weekly_old/reviews"
    before = running.get(path)["reviews"]
    cases = [
        ({"note": "no author"}, "author"),
        ({"author": "  ", "note": "blank"}, "author: must not be empty"),
        ({"author": "ana", "note": "x", "extra": 1}, "unknown field `extra`"),
        ({"author": "ana", "note": 5}, "note"),
        ({"author": "ana", "note": "n" * 3000}, "note: 3000 characters"),
        ({"author": "a\u0000b"}, "author: contains a NUL character"),
        (b"{not json", "not JSON"),
    ]
    for body, message in cases:
        r = running.post(path, body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["error"], (body, r.json())
    missing = running.post("/api/v1/kpis/no_such_kpi/reviews", {"author": "ana"})
    assert missing.status_code == 404
    read_only = running.post(path, {"author": "ana"}, scope=Scope.READ)
    assert read_only.status_code == 403
    assert running.get(path)["reviews"] == before


def test_the_cli_marks_a_kpi_reviewed_and_lists_the_reviews(running: Running) -> None:
    env = {**os.environ, "OPSMETRICS_TOKEN": running.tokens[Scope.INGEST].secret}
    base = [sys.executable, "-m", "opsmetrics", "kpi"]
    url = ["--url", running.srv.url]
    done = run_bounded([*base, "review", "orphan", "--author", "cli", "--note", "ok", *url],
                       60, env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "orphan: reviewed by cli, next due 2027-02-04T00:12" in done.stdout
    read = ["--token", running.tokens[Scope.READ].secret]
    shown = run_bounded([*base, "reviews", "--owner", "growth", *url, *read], 60, env)
    assert shown.returncode == 0, shown.stderr
    assert "weekly_old" in shown.stdout and "overdue by 1 day" in shown.stdout
    assert "weekly_fresh" not in shown.stdout
    refused = run_bounded([*base, "review", "nope", "--author", "cli", *url], 60, env)
    assert refused.returncode == 2 and "404" in refused.stderr


def test_a_posted_review_is_shown_and_survives_a_restart(running: Running) -> None:
    """Last in the module: it restarts the server."""
    r = running.post("/api/v1/kpis/signups/reviews", {"author": "ben", "note": "campaign ended"})
    assert r.status_code == 200, r.text
    item = r.json()["data"]
    assert item["state"] == "reviewed" and item["last_review"]["author"] == "ben"
    assert (item["last_review"]["status"], item["last_review"]["value"]) == ("ok", 40.0)
    got = running.get("/api/v1/kpis/signups/reviews")
    first = got["reviews"][0]
    assert (first["author"], first["note"], first["value"]) == ("ben", "campaign ended", 40.0)
    assert [x["author"] for x in got["reviews"]] == ["ben", "ana"]  # newest first
    srv = running.srv
    srv.stop()
    later = srv.clock_ms() + 60_000
    running.srv = ServerProcess(srv.data_dir, config_dir=srv.config_dir, now_ms=later).start(
        timeout=120
    )
    again = running.get("/api/v1/kpis/signups/reviews")
    assert again["reviews"] == got["reviews"]
    assert again["last_review"]["author"] == "ben"
