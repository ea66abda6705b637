"""notify.yaml: schema, file:line errors, defaults, time intervals; validate on the demo."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsmetrics.catalog.mute_windows import interval_contains
from opsmetrics.catalog.notify import load_notify, parse_notify
from opsmetrics.catalog.validate import EXAMPLE_CONFIG, validate_config_dir
from opsmetrics.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_notify(text, "notify.yaml")
    return info.value.message.splitlines()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_schema_problems_name_file_line_and_field() -> None:
    found = problems(
        "channels:\n"
        "  - name: hook\n"
        "    type: sms\n"
        "routes:\n"
        "  - match: {severity: critical}\n"
        "    group_wait: soon\n"
        "    colour: red\n"
    )
    assert found[0].startswith("notify.yaml:3: channels[0].type:")
    assert found[1].startswith("notify.yaml:6: routes[0].group_wait: 'soon' is not a valid")
    assert found[2].startswith("notify.yaml:7: routes[0].colour: unknown field")


def test_references_and_secrets_are_checked() -> None:
    found = problems(
        "channels:\n"
        "  - {name: hook, type: webhook, url: 'https://u:secret@example.com/x'}\n"
        "  - {name: pd, type: pagerduty}\n"
        "  - {name: hook, type: slack, url_env: S, headers: {Authorization: Bearer x}}\n"
        "routes:\n"
        "  - channels: [hook, nope]\n"
        "    escalate_to: [gone]\n"
        "    mute_time_intervals: [never]\n"
    )
    assert "notify.yaml:4: channels[2].name: duplicate channel name 'hook'" in found
    assert any(p.startswith("notify.yaml:2: channels[0].url: holds a password") for p in found)
    assert "notify.yaml:3: channels[1]: a pagerduty channel needs routing_key_env" in found
    assert any(
        p.startswith("notify.yaml:6: routes[0].channels[1]: unknown channel 'nope'") for p in found
    )
    assert any(
        p.startswith("notify.yaml:7: routes[0].escalate_to[0]: unknown channel") for p in found
    )
    assert any("unknown time interval 'never'" in p for p in found)
    assert (
        "notify.yaml:4: channels[2].headers.Authorization: holds a secret; use headers_env "
        "instead" in found
    )


def test_severity_defaults_fill_unset_timings() -> None:
    cfg = parse_notify(
        "channels: [{name: h, type: webhook, url: 'http://x'}]\n"
        "routes:\n"
        "  - {match: {severity: critical}, channels: [h], escalate_to: [h]}\n"
        "  - {match: {severity: warning}, channels: [h], repeat_interval: 2h}\n",
        "n.yaml",
    )
    crit, warn = cfg.routes
    assert crit.timings.escalate_after_ms == 15 * 60_000
    assert crit.timings.repeat_interval_ms == 3_600_000
    assert warn.timings.repeat_interval_ms == 7_200_000 and warn.timings.escalate_after_ms is None
    assert warn.timings.group_interval_ms == 300_000


def test_time_intervals_in_alertmanager_format() -> None:
    cfg = parse_notify(
        "time_intervals:\n"
        "  - name: office\n"
        "    time_intervals:\n"
        "      - weekdays: ['monday:friday']\n"
        "        times: [{start_time: 09:00, end_time: 17:00}]\n"
        "        location: Europe/Berlin\n"
        "  - name: month-end\n"
        "    time_intervals: [{days_of_month: ['-1'], months: ['december']}]\n",
        "n.yaml",
    )
    office, month_end = cfg.time_intervals["office"], cfg.time_intervals["month-end"]
    assert interval_contains(office, ms("2026-11-23T08:30:00"))  # Monday 09:30 in Berlin
    assert not interval_contains(office, ms("2026-11-23T16:30:00"))  # 17:30 in Berlin
    assert not interval_contains(office, ms("2026-11-22T10:00:00"))  # Sunday
    assert interval_contains(month_end, ms("2026-12-31T12:00:00"))
    assert not interval_contains(month_end, ms("2026-12-30T12:00:00"))


def test_bad_time_interval_values() -> None:
    found = problems(
        "time_intervals:\n"
        "  - name: x\n"
        "    time_intervals:\n"
        "      - weekdays: [funday]\n"
        "        location: Mars/Base\n"
        "        times: [{start_time: '25:00', end_time: '26:00'}]\n"
    )
    text = "\n".join(found)
    assert "weekdays" in text and "funday" in text and "Mars/Base" in text and "25:00" in text


def test_no_file_means_dashboard_only(tmp_path: Path) -> None:
    cfg = load_notify(tmp_path)
    assert cfg.routes == () and cfg.channels == {}


def test_validate_reports_notify_problems(tmp_path: Path) -> None:
    (tmp_path / "notify.yaml").write_text("routes:\n  - channels: [ghost]\n")
    found = validate_config_dir(tmp_path)
    assert any(p.endswith("routes[0].channels[0]: unknown channel 'ghost'; define it in channels")
               for p in found)  # fmt: skip


def test_validate_passes_on_the_demo_config() -> None:
    assert (EXAMPLE_CONFIG / "notify.yaml").exists()
    cli = [sys.executable, "-m", "opsmetrics", "validate", str(EXAMPLE_CONFIG)]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_silence_and_ack_writes_need_admin_scope(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from opsmetrics.auth import new_token
    from opsmetrics.clock import FakeClock
    from opsmetrics.services import open_services
    from opsmetrics.settings import Settings
    from opsmetrics.storage.token_records import Scope
    from opsmetrics.web.app import create_app

    services = open_services(Settings(data_dir=tmp_path / "data"), FakeClock())
    secrets = {}
    for scope in (Scope.READ, Scope.ADMIN):
        token = new_token(scope.value, scope, 0)
        services.tokens.add(token.record)
        secrets[scope] = token.secret
    silence = {
        "matchers": [{"name": "alertname", "value": "X", "isRegex": False}],
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "t",
    }

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            read = {"authorization": f"Bearer {secrets[Scope.READ]}"}
            admin = {"authorization": f"Bearer {secrets[Scope.ADMIN]}"}
            return [
                (await c.get("/api/v1/silences", headers=read)).status_code,
                (await c.post("/api/v1/silences", json=silence, headers=read)).status_code,
                (await c.post("/api/v1/silences", json=silence, headers=admin)).status_code,
                (await c.post("/api/v1/alerts/abc/ack", headers=read)).status_code,
                (await c.post("/api/v1/alerts/abc/ack", headers=admin)).status_code,
                (await c.get("/api/v1/notifications?limit=0", headers=read)).status_code,
            ]

    try:
        assert asyncio.run(calls()) == [200, 403, 200, 403, 404, 400]
    finally:
        services.close()
