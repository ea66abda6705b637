"""Initiatives end to end: files in config/initiatives/ with file:line errors, the API on a
real server (list, get, create with the admin scope, refusals that store nothing) and the
impact of a planted effect on manual KPIs, with and without a control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from opsmetrics.auth import NewToken, new_token
from opsmetrics.catalog.initiatives import read_initiatives
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.kpi_records import ManualKpiValue
from opsmetrics.storage.token_records import Scope
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, run_bounded

DAY = 86_400_000
TODAY = FIXED_NOW - FIXED_NOW % DAY
START = TODAY - 21 * DAY  # 35 days before, 21 after (complete days)

CATALOG = """\
- name: signup_rate
  title: Signup rate
  owner: growth
  unit: ratio
  direction: higher_is_better
  manual: true
- name: other_rate
  title: Signup rate elsewhere
  owner: growth
  unit: ratio
  direction: higher_is_better
  manual: true
"""
INITIATIVE = """\
name: onboarding_emails
title: Onboarding emails
owner: growth-team
kpis:
  - {kpi: signup_rate, direction: up, expected: +10%}
start: 2026-12-14
"""


DASHBOARD = """\
title: Growth
time_range: 60d
sections:
  - title: Signups
    widgets:
      - {type: trend_chart, id: signups, kpis: [signup_rate], annotations: true}
"""


def write_config(root: Path) -> Path:
    config = root / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "growth.yaml").write_text(CATALOG)
    (config / "initiatives").mkdir()
    (config / "initiatives" / "onboarding.yaml").write_text(INITIATIVE)
    (config / "dashboards").mkdir()
    (config / "dashboards" / "growth.yaml").write_text(DASHBOARD)
    return config


def test_a_file_with_problems_names_the_file_line_and_field(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (config / "initiatives" / "bad.yaml").write_text(
        "name: bad\ntitle: Bad\nowner: me\nkpis:\n"
        "  - {kpi: no_such_kpi, direction: up}\n"
        "  - {kpi: signup_rate, direction: sideways, expected: ten}\nstart: 2026-12-01\n"
    )
    found, problems = read_initiatives(config, {"signup_rate", "other_rate"})
    assert set(found) == {"onboarding_emails"}
    bad = str(config / "initiatives" / "bad.yaml")
    assert any(p.startswith(f"{bad}:6: kpis[1].direction:") for p in problems), problems
    assert any(p.startswith(f"{bad}:6: kpis[1].expected:") and "+10%" in p for p in problems)
    assert validate_config_dir(config) == problems
    (config / "initiatives" / "bad.yaml").write_text(INITIATIVE.replace("signup", "nope"))
    problems = read_initiatives(config, {"signup_rate"})[1]
    assert problems == [f"{bad}:5: kpis[0].kpi: unknown KPI 'nope_rate'; see `opsmetrics kpi list`"]


def _values(kpi: str, lift: float, seed: int) -> list[ManualKpiValue]:
    rng = np.random.default_rng(seed)
    out, noise = [], 0.0
    for day in range(-35, 21):
        noise = 0.5 * noise + rng.normal(0, 0.004)
        weekday = (day % 7 in (5, 6)) * -0.01
        value = 0.2 + weekday + noise + (lift * 0.2 if day >= 0 else 0.0)
        out.append(ManualKpiValue(kpi, START + day * DAY + 3_600_000, value, "test", "", START))
    return out


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, NewToken]]]:
    root = tmp_path_factory.mktemp("initiatives")
    config = write_config(root)
    tokens = {s: new_token(f"{s.value}-token", s, FIXED_NOW) for s in (Scope.READ, Scope.ADMIN)}
    services = open_services(
        Settings(data_dir=root / "data", config_dir=config), FakeClock(FIXED_NOW)
    )
    try:
        for t in tokens.values():
            services.storage.save_token(t.record)
        for v in [*_values("signup_rate", 0.10, 1), *_values("other_rate", 0.0, 2)]:
            services.storage.record_manual_kpi_value(v)
    finally:
        services.close()
    srv = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start()
    yield srv, {s.value: t for s, t in tokens.items()}
    srv.stop()


def _call(
    srv: ServerProcess, token: NewToken, method: str, path: str, **kw: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token.secret}"}
    return httpx.request(method, srv.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


BODY = {
    "name": "email_vs_control",
    "title": "Onboarding emails against the other market",
    "owner": "growth-team",
    "kpis": [{"kpi": "signup_rate", "direction": "up", "expected": "+10%"}],
    "start": "2026-12-14T00:00:00Z",
    "control": {"kpi": "other_rate"},
}


def test_create_needs_admin_and_bad_bodies_store_nothing(server) -> None:  # type: ignore[no-untyped-def]
    srv, tokens = server
    assert _call(srv, tokens["read"], "POST", "/api/v1/initiatives", json=BODY).status_code == 403
    wrong = BODY | {"name": "x", "kpis": [{"kpi": "signup_rate", "direction": "left"}]}
    got = _call(srv, tokens["admin"], "POST", "/api/v1/initiatives", json=wrong)
    assert got.status_code == 400 and "kpis[0].direction" in got.json()["error"]
    unknown = BODY | {"name": "y", "control": {"kpi": "nope"}}
    got = _call(srv, tokens["admin"], "POST", "/api/v1/initiatives", json=unknown)
    assert got.status_code == 400 and "control.kpi: unknown KPI 'nope'" in got.json()["error"]
    taken = BODY | {"name": "onboarding_emails"}
    got = _call(srv, tokens["admin"], "POST", "/api/v1/initiatives", json=taken)
    assert got.status_code == 400 and "exists already" in got.json()["error"]
    listed = _call(srv, tokens["read"], "GET", "/api/v1/initiatives").json()["data"]
    assert [i["name"] for i in listed] == ["onboarding_emails"]


def test_an_initiative_is_created_listed_and_its_impact_measured(server) -> None:  # type: ignore[no-untyped-def]
    srv, tokens = server
    got = _call(srv, tokens["admin"], "POST", "/api/v1/initiatives", json=BODY)
    assert got.status_code == 200, got.text
    one = _call(srv, tokens["read"], "GET", "/api/v1/initiatives/email_vs_control").json()["data"]
    assert one["control"] == {"kpi": "other_rate", "segment": None}
    assert one["kpis"][0]["expected"] == pytest.approx(0.10)
    assert one["start_ms"] == START
    for name, method in (("email_vs_control", "did"), ("onboarding_emails", "its")):
        data = _call(srv, tokens["read"], "GET", f"/api/v1/initiatives/{name}/impact").json()
        (kpi,) = data["data"]["impact"]
        assert kpi["method"] == method and kpi["verdict"] == "improved", kpi["explanation"]
        assert kpi["relative_low"] < 0.10 < kpi["relative_high"], kpi["explanation"]
        assert kpi["post_points"] == 21
        post = [p for p in kpi["points"] if p[0] >= START]
        assert all(p[2] is not None and p[1] > p[2] - 0.02 for p in post)
    missing = _call(srv, tokens["read"], "GET", "/api/v1/initiatives/nope/impact")
    assert missing.status_code == 404 and "onboarding_emails" in missing.json()["error"]
    bad = _call(srv, tokens["read"], "GET", "/api/v1/initiatives/onboarding_emails/impact?pre=2d")
    assert bad.status_code == 400 and "pre" in bad.json()["error"]
    json.dumps(data)


def cli(srv: ServerProcess, token: NewToken, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "opsmetrics", "initiatives", *args, "--url", srv.url]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OPSMETRICS_TOKEN": token.secret}
    return run_bounded(command, 60, env)


def test_the_cli_lists_initiatives_and_prints_the_impact(server) -> None:  # type: ignore[no-untyped-def]
    srv, tokens = server
    listed = cli(srv, tokens["read"], "list")
    assert listed.returncode == 0, listed.stderr
    assert "onboarding_emails" in listed.stdout and "signup_rate ↑" in listed.stdout
    got = cli(srv, tokens["read"], "impact", "onboarding_emails")
    assert got.returncode == 0, got.stderr
    assert "improved" in got.stdout and "+10.0%" in got.stdout  # the expected effect
    missing = cli(srv, tokens["read"], "impact", "nope")
    assert missing.returncode != 0 and "not defined" in missing.stdout + missing.stderr


def test_dashboard_kpi_charts_mark_the_initiative(server) -> None:  # type: ignore[no-untyped-def]
    srv, tokens = server
    got = _call(srv, tokens["read"], "GET", "/api/v1/dashboards/growth/data")
    assert got.status_code == 200, got.text
    text = json.dumps(got.json())
    assert '"title": "Initiative: Onboarding emails"' in text
    assert f'"ts": {START}' in text
