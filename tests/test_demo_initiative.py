"""The demo's checkout campaign: 30 days of demo history (hourly steps) in a real DuckDB data
directory; the simulator plants +15 % to pay from midnight 15 days before NOW, and the impact
request finds it on checkout_conversion_rate with the right sign and about the right size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import opsmetrics.demo
from opsmetrics.analysis.impact_api import impact_request
from opsmetrics.catalog.initiatives import get_initiative
from opsmetrics.clock import FakeClock
from opsmetrics.demo.incidents import CHECKOUT_CAMPAIGN_DAYS
from opsmetrics.demo.initiatives import NAME
from opsmetrics.demo.runner import DemoRunner
from opsmetrics.params import Params
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings

#: Sunday 2026-12-06 00:30 UTC: just after midnight, on a weekend.
NOW = 1_796_517_000_000
DAY = 86_400_000
CONFIG = Path(opsmetrics.demo.__file__).parent / "config"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("initiative"), config_dir=CONFIG)
    services = open_services(settings, FakeClock(NOW))
    DemoRunner(services, days=30, step_s=3600).load_history()
    yield services
    services.close()


def test_the_campaign_is_stored_from_midnight_fifteen_days_ago(demo: Services) -> None:
    names = set(demo.catalog.names())
    got = get_initiative(CONFIG, names, demo.storage.initiatives(), NAME)
    assert got.start_ms == (NOW // DAY - CHECKOUT_CAMPAIGN_DAYS) * DAY
    assert [k.kpi for k in got.kpis] == ["checkout_conversion_rate"]


def test_the_planted_lift_is_found_with_its_sign_and_size(demo: Services) -> None:
    names = set(demo.catalog.names())
    initiative = get_initiative(CONFIG, names, demo.storage.initiatives(), NAME)
    got = impact_request(initiative, Params([]), demo.storage, demo.catalog, FakeClock(NOW))
    (kpi,) = got["impact"]
    assert kpi["post_points"] == CHECKOUT_CAMPAIGN_DAYS, kpi["explanation"]
    assert kpi["verdict"] == "improved", kpi["explanation"]
    assert 0.07 < kpi["relative"] < 0.23, kpi["explanation"]
    assert kpi["relative_low"] < 0.15 < kpi["relative_high"], kpi["explanation"]
