"""`opsmetrics rules test` (promtool-style rule unit tests) and `opsmetrics alerts list`."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from opsmetrics.alerting.rule_tests import format_duration, run_test_file
from opsmetrics.alerting.series_notation import MISSING, parse_series, parse_values
from opsmetrics.cli.main import app
from opsmetrics.errors import BadDataError
from opsmetrics.model import is_stale
from tests.server import ServerProcess, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "rules_unit"
runner = CliRunner()


# --- series notation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2+4x3", [-2, 2, 6, 10]),
        (" 1-2x4", [1, -1, -3, -5, -7]),
        ("1x4", [1, 1, 1, 1, 1]),
        ("1 _x3 5", [1, MISSING, MISSING, MISSING, 5]),
        ("_ 1.5e3 -.5", [MISSING, 1500, -0.5]),
        ("0+0.5x2", [0, 0.5, 1]),
    ],
)
def test_expanding_notation(text: str, expected: list[object]) -> None:
    assert parse_values(text) == expected


def test_special_values() -> None:
    values = parse_values("stale Inf -Inf NaN")
    floats = np.array(values, dtype=np.float64)
    assert is_stale(floats).tolist() == [True, False, False, False]
    assert values[1] == math.inf and values[2] == -math.inf and math.isnan(floats[3])


def test_bad_values_and_series_are_explained() -> None:
    with pytest.raises(BadDataError, match=r"'1\+x3' is not a value"):
        parse_values("1 1+x3")
    with pytest.raises(BadDataError, match="only `=`"):
        parse_series('up{job=~"a.*"}')
    assert parse_series('{__name__="up", job="a"}') == (("__name__", "up"), ("job", "a"))


def test_durations_print_as_prometheus() -> None:
    assert [format_duration(ms) for ms in (0, 90_000, 3_900_000, 1500)] == [
        "0s",
        "1m30s",
        "1h5m",
        "1s500ms",
    ]


# --- running test files ---------------------------------------------------------------------
def test_passing_file_reports_success() -> None:
    result = run_test_file(FIXTURES / "pass.yaml")
    assert result.failures == []
    assert result.report() == f"Unit Testing:  {FIXTURES / 'pass.yaml'}\n  SUCCESS\n"


def test_failing_file_lists_each_failure_like_promtool() -> None:
    result = run_test_file(FIXTURES / "fail.yaml")
    alert, expr = result.failures
    assert alert.startswith("    alertname: InstanceDown, time: 3m, \n        exp:[")
    assert 'Labels:{alertname="InstanceDown", instance="localhost:9090"' in alert
    assert alert.endswith("got:[]")  # pending, not firing, after 3 of 5 minutes
    assert expr == (
        '    expr: "up", time: 1m,\n'
        '        exp: {__name__="up", instance="localhost:9090", job="prometheus"} 1.0\n'
        '        got: {__name__="up", instance="localhost:9090", job="prometheus"} 0.0'
    )


def test_bad_test_file_points_at_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("rule_files: [missing.yaml]\ntests:\n  - interval: soon\n")
    result = run_test_file(bad)
    assert result.failures == [
        f"    {bad}:3: tests[0].interval: 'soon' is not a duration; use e.g. 30s, 1m or 1h30m"
    ]


def test_missing_rule_file_is_reported(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text("rule_files: [nope.yaml]\ntests: []\n")
    (failure,) = run_test_file(spec).failures
    assert "rule_files: no file matches ['nope.yaml']" in failure


def test_cli_exit_codes() -> None:
    ok = runner.invoke(app, ["rules", "test", str(FIXTURES / "pass.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "SUCCESS" in ok.output
    both = runner.invoke(
        app, ["rules", "test", str(FIXTURES / "pass.yaml"), str(FIXTURES / "fail.yaml")]
    )
    assert both.exit_code == 1
    assert both.output.count("Unit Testing:") == 2 and "FAILED:" in both.output


# --- alerts list against the real server ----------------------------------------------------
@pytest.mark.e2e
def test_alerts_list_shows_firing_rule_alerts(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True)
    (config / "rules" / "a.yaml").write_text(
        "groups:\n  - name: fast\n    interval: 1s\n    rules:\n"
        "      - alert: AlwaysOn\n        expr: vector(1)\n"
        "        labels: {severity: info}\n"
        "        annotations: {summary: 'value is {{ $value }}'}\n"
    )
    srv = ServerProcess(tmp_path / "data", config_dir=config).start()
    try:

        def alerts() -> list[dict[str, object]]:
            return list(httpx.get(srv.url + "/api/v1/alerts").json()["data"]["alerts"])

        try:
            wait_until(alerts, "an alert from the rule", timeout_s=20)
        except AssertionError:
            print(srv.log())
            raise
        result = runner.invoke(app, ["alerts", "list", "--url", srv.url])
        assert result.exit_code == 0, result.output
        assert "AlwaysOn" in result.output and "firing" in result.output
        assert "value is 1" in result.output
        series = httpx.get(srv.url + "/api/v1/series", params={"match[]": "ALERTS"}).json()
        assert series["data"] == [
            {"__name__": "ALERTS", "alertname": "AlwaysOn", "alertstate": "firing",
             "severity": "info"}
        ]  # fmt: skip
    finally:
        srv.kill()
