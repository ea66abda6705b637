"""An initiative on a segment of a KPI, controlled by another segment of it: events of a real
DuckDB store (in process, fixed clock). DE gets +30% signups from the start; FR does not, and
both share a market-wide +20% the week after the start, which DiD removes and ITS does not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from opsmetrics.analysis.impact_api import impact_request
from opsmetrics.catalog.initiatives import Control, Initiative, InitiativeKpi
from opsmetrics.catalog.kpis import load_catalog
from opsmetrics.clock import FakeClock
from opsmetrics.model import Event
from opsmetrics.params import Params
from opsmetrics.storage.base import StoredEvent, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

#: Wednesday 2026-12-02 00:20 UTC.
NOW = 1_796_170_800_000 + 20 * 60_000
DAY = 86_400_000
TODAY = NOW - NOW % DAY
START = TODAY - 21 * DAY
KPIS = """\
- name: signups
  title: Signups
  owner: growth
  unit: count
  direction: higher_is_better
  grain: day
  event: {name: signup, agg: count}
  dimensions: [country]
"""


def _events() -> list[StoredEvent]:
    rng = np.random.default_rng(3)
    out: list[StoredEvent] = []
    for day in range(-35, 21):
        shared = 1.2 if 0 <= day < 7 else 1.0
        for country, lift in (("DE", 1.3), ("FR", 1.0)):
            n = rng.poisson(300 * shared * (lift if day >= 0 else 1.0))
            for i in range(n):
                ts = START + day * DAY + i * 1000
                event = Event("signup", ts, f"{country}{day}-{i}", props={"country": country})
                out.append(StoredEvent(len(out) + 1, event))
    return out


def test_a_segment_against_a_control_segment(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "k.yaml").write_text(KPIS)
    catalog = load_catalog(config)
    store = DuckDBStorage(tmp_path / "data", now_ms=NOW)
    try:
        store.write(WriteBatch(events=_events()))
        fields = {
            "name": "de_launch", "title": "DE launch", "owner": "growth",
            "kpis": [InitiativeKpi(kpi="signups", direction="up", expected=0.3)],
            "start": datetime.fromtimestamp(START / 1000, UTC), "segment": {"country": "DE"},
        }  # fmt: skip
        did = Initiative(**fields, control=Control(segment={"country": "FR"}))
        its = Initiative(**fields)
        clock = FakeClock(NOW)
        (with_control,) = impact_request(did, Params([]), store, catalog, clock)["impact"]
        (alone,) = impact_request(its, Params([]), store, catalog, clock)["impact"]
    finally:
        store.close()
    assert with_control["method"] == "did", with_control["explanation"]
    assert with_control["relative_low"] < 0.3 < with_control["relative_high"], with_control[
        "explanation"
    ]
    assert with_control["verdict"] == "improved"
    # Without the control the shared week counts as effect: ITS reads more than +30%.
    assert alone["method"] == "its" and alone["relative"] > with_control["relative"]
