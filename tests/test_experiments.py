"""Experiments: definitions (catalog/experiments.py), the readout from stored events
(analysis/experiments.py over the storage's arm moments) checked against per-user arrays
computed here with scipy/statsmodels, and the HTTP API of the real server end to end."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

from opsmetrics.analysis.experiments import readout
from opsmetrics.catalog.experiments import Experiment, get_experiment, load_experiments
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError, NotFoundError
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from tests.server import ServerProcess

DAY = 86_400_000
NOW = 1_760_000_000_000
#: The real server's clock starts here; its exposures began three days earlier, on a Friday.
SERVED_NOW = 1_772_411_400_000  # Monday 2026-03-02 00:30 UTC
DEMO = Path(__file__).parent.parent / "opsmetrics" / "demo" / "config"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, limits=Limits(events_late_window_ms=400 * DAY))
    services = open_services(settings, FakeClock(NOW))
    try:
        yield services
    finally:
        services.close()


def demo_experiment() -> Experiment:
    return load_experiments(DEMO)["checkout_redesign"]


# --- definitions ----------------------------------------------------------------------------
def test_demo_experiment_loads() -> None:
    exp = demo_experiment()
    assert exp.control == "control" and exp.split == [0.5, 0.5]
    assert exp.primary.kind == "proportion" and exp.primary.within_ms == DAY
    assert exp.cuped is not None and exp.cuped.pre_period_ms == 14 * DAY
    assert exp.exposure_where() == {"experiment": "checkout_redesign"}


def test_bad_definition_names_file_line_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "x.yaml").write_text(
        "name: x\nvariants: [a, b]\nprimary:\n  name: conv\n  kind: median\n  event: buy\n"
    )
    with pytest.raises(ConfigError) as err:
        load_experiments(tmp_path)
    assert "x.yaml:5: primary.kind:" in err.value.message
    from opsmetrics.catalog.validate import validate_config_dir

    assert any("x.yaml:5: primary.kind:" in p for p in validate_config_dir(tmp_path))
    with pytest.raises(NotFoundError, match="checkout_redesign"):
        get_experiment(DEMO, "nope")


# --- readout against an oracle ----------------------------------------------------------------
BASE = NOW - 20 * DAY


def simulate(
    rng: np.random.Generator, users: int, p_treat: float = 0.5
) -> tuple[list[Event], dict[str, Any]]:
    """Events, and per user: arm, converted (within 1d of first exposure), revenue, purchases,
    pre-period converted (14 days before)."""
    arm = np.where(rng.random(users) < p_treat, "treatment", "control")
    events = [ev for u in range(users) for ev in user_events(rng, u, str(arm[u]))]
    return events, oracle(events, users) | {"arm": arm}


def user_events(rng: np.random.Generator, u: int, arm: str) -> list[Event]:
    t0, e = BASE + u * 60_000, f"u{u}"
    props: dict[str, str | int | float | bool | None] = {
        "experiment": "checkout_redesign",
        "variant": arm,
    }
    other = "control" if arm == "treatment" else "treatment"  # a later re-exposure: ignored
    out = [
        Event("experiment_exposure", t0, e, None, props),
        Event("experiment_exposure", t0 + DAY, e, None, props | {"variant": other}),
        Event("experiment_exposure", t0 - 1000, e, None, {"experiment": "other"}),
    ]
    for _ in range(int(rng.poisson(1.0))):  # noise purchases over two days
        out.append(
            Event("purchase", t0 + int(rng.integers(0, 2 * DAY)), e, float(rng.integers(10, 200)))
        )
    if rng.random() < (0.25 if arm == "treatment" else 0.2):
        out.append(Event("purchase", t0 + 3_600_000, e, float(rng.integers(10, 200))))
    if rng.random() < 0.4:
        out.append(Event("purchase", t0 - int(rng.integers(1, 20)) * DAY, e, 50.0))
    return out


def oracle(events: list[Event], users: int) -> dict[str, Any]:
    conv, revenue, count, pre = (np.zeros(users) for _ in range(4))
    for ev in events:
        if ev.name != "purchase":
            continue
        u = int(ev.entity[1:])
        t0 = BASE + u * 60_000
        if t0 <= ev.ts <= t0 + DAY:
            conv[u], revenue[u], count[u] = 1, revenue[u] + (ev.value or 0), count[u] + 1
        elif t0 - 14 * DAY <= ev.ts < t0:
            pre[u] = 1
    return {"conv": conv, "revenue": revenue, "count": count, "pre": pre}


def write(svc: Services, events: list[Event]) -> None:
    svc.ingestor.write(WriteRequest("t", events=events))


def comparison(metric: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = metric["comparisons"][0]
    return item


def test_readout_matches_per_user_oracle(svc: Services) -> None:
    events, o = simulate(np.random.default_rng(1), 3000)
    write(svc, events)
    r = readout(svc.storage, demo_experiment(), NOW)
    t = o["arm"] == "treatment"
    assert r["exposures"] == {"control": int((~t).sum()), "treatment": int(t.sum())}
    assert r["srm"]["p_value"] == pytest.approx(sps.chisquare([(~t).sum(), t.sum()]).pvalue)

    prim = comparison(r["primary"])
    z, p = proportions_ztest([o["conv"][t].sum(), o["conv"][~t].sum()], [t.sum(), (~t).sum()])
    assert prim["p_value"] == pytest.approx(p) and prim["statistic"] == pytest.approx(z)
    assert prim["control"] == pytest.approx(o["conv"][~t].mean())

    revenue = comparison(r["guardrails"][0])
    ref = sps.ttest_ind(o["revenue"][t], o["revenue"][~t], equal_var=False)
    assert revenue["p_value"] == pytest.approx(ref.pvalue)
    aov = r["guardrails"][1]["arms"]
    assert aov["control"]["value"] == pytest.approx(o["revenue"][~t].sum() / o["count"][~t].sum())

    x, y = o["pre"], o["conv"]
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    assert prim["cuped"]["theta"] == pytest.approx(theta)
    adjusted = y[t].mean() - theta * (x[t].mean() - x.mean())
    assert prim["cuped"]["treatment"] == pytest.approx(adjusted)
    seq = prim["sequential"]
    assert seq["ci_low"] < prim["ci_low"] and seq["ci_high"] > prim["ci_high"]


def test_readout_flags_sample_ratio_mismatch(svc: Services) -> None:
    events, _ = simulate(np.random.default_rng(2), 2000, p_treat=0.6)
    write(svc, events)
    r = readout(svc.storage, demo_experiment(), NOW)
    assert r["srm"]["mismatch"]
    assert any("sample ratio mismatch" in w for w in r["warnings"])


def test_readout_without_exposures_is_empty_not_an_error(svc: Services) -> None:
    r = readout(svc.storage, demo_experiment(), NOW)
    assert r["exposures"] == {"control": 0, "treatment": 0} and r["srm"] is None
    assert "error" in comparison(r["primary"])


# --- HTTP end to end ----------------------------------------------------------------------------
@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerProcess]:
    config = tmp_path / "config"
    shutil.copytree(DEMO / "experiments", config / "experiments")
    srv = ServerProcess(tmp_path / "data", config, now_ms=SERVED_NOW).start()
    try:
        yield srv
    finally:
        srv.kill()


def post(srv: ServerProcess, path: str, body: Any) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=30)


@pytest.mark.e2e
def test_http_calculators_and_readout(live: ServerProcess) -> None:
    ab = post(
        live,
        "/api/v1/analysis/ab",
        {
            "metric": "proportion",
            "control": {"n": 2400, "successes": 120},
            "treatment": {"n": 2400, "successes": 150},
            "alpha": 0.05,
            "expected_split": [1, 1],
        },
    )
    assert ab.status_code == 200, ab.text
    data = ab.json()["data"]
    z, p = proportions_ztest([150, 120], [2400, 2400])
    assert data["p_value"] == pytest.approx(p) and data["srm_p_value"] == pytest.approx(1.0)
    assert data["ci_low"] < data["absolute_effect"] < data["ci_high"]
    assert data["relative_effect"] == pytest.approx(0.25)

    mean = post(
        live,
        "/api/v1/analysis/ab",
        {
            "metric": "mean",
            "control": {"n": 100, "mean": 10, "std": 2},
            "treatment": {"n": 120, "mean": 11, "std": 3},
        },
    )
    ref = sps.ttest_ind_from_stats(11, 3, 120, 10, 2, 100, equal_var=False)
    assert mean.json()["data"]["p_value"] == pytest.approx(ref.pvalue)

    size = post(
        live,
        "/api/v1/analysis/sample-size",
        {"baseline": 0.05, "mde": 0.0125, "alpha": 0.05, "power": 0.8},
    )
    assert size.json()["data"]["per_arm"] == 5318
    means = post(live, "/api/v1/analysis/sample-size", {"std": 12.5, "mde": 1.0})
    ref_n = TTestIndPower().solve_power(1.0 / 12.5, alpha=0.05, power=0.8)
    assert means.json()["data"]["per_arm"] == math.ceil(ref_n)
    achieved = post(
        live, "/api/v1/analysis/sample-size", {"baseline": 0.05, "mde": 0.0125, "n": 2000}
    )
    ref_power = NormalIndPower().power(proportion_effectsize(0.0625, 0.05), 2000, 0.05)
    assert achieved.json()["data"]["power"] == pytest.approx(ref_power)
    neither = post(live, "/api/v1/analysis/sample-size", {"mde": 1.0})
    assert neither.status_code == 400 and "baseline" in neither.json()["error"]

    bad = post(
        live,
        "/api/v1/analysis/ab",
        {"metric": "proportion", "control": {"n": 10}, "treatment": {"n": 10, "successes": 1}},
    )
    assert bad.status_code == 400
    assert bad.json()["errorType"] == "bad_data" and "successes" in bad.json()["error"]

    rng = np.random.default_rng(4)
    hours = np.arange(24 * 21)
    a = np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.1, len(hours))
    b = np.concatenate([[0.0, 0.0], a[:-2]]) + rng.normal(0, 0.1, len(hours))
    corr = post(
        live,
        "/api/v1/analysis/correlation",
        {"a": a.tolist(), "b": b.tolist(), "step": "1h", "max_lag": 6},
    )
    assert corr.status_code == 200, corr.text
    cdata = corr.json()["data"]
    assert cdata["pearson"]["r"] == pytest.approx(sps.pearsonr(a, b).statistic)
    assert cdata["best_lag"]["steps"] == 2 and cdata["finding"]

    now = SERVED_NOW
    events = []
    for u in range(400):
        variant = "treatment" if u % 2 else "control"
        t0 = now - 3 * DAY + u * 1000
        events.append(
            {
                "name": "experiment_exposure",
                "ts": t0,
                "entity": f"u{u}",
                "props": {"experiment": "checkout_redesign", "variant": variant},
            }
        )
        if u % 5 == 0 or (variant == "treatment" and u % 7 == 0):
            events.append({"name": "purchase", "ts": t0 + 60_000, "entity": f"u{u}", "value": 30})
    assert httpx.post(live.url + "/api/v1/events", json=events, timeout=30).status_code == 200
    listed = httpx.get(live.url + "/api/v1/analysis/experiments", timeout=30).json()["data"]
    assert [e["name"] for e in listed] == ["checkout_redesign"]
    got = httpx.get(
        live.url + "/api/v1/analysis/experiment", params={"name": "checkout_redesign"}, timeout=30
    )
    assert got.status_code == 200, got.text
    r = got.json()["data"]
    assert r["exposures"] == {"control": 200, "treatment": 200}
    conv = np.array([u % 5 == 0 or (u % 2 == 1 and u % 7 == 0) for u in range(400)])
    arms = r["primary"]["arms"]
    assert arms["treatment"]["value"] == pytest.approx(conv[1::2].mean())
    missing = httpx.get(live.url + "/api/v1/analysis/experiment", params={"name": "x"}, timeout=30)
    assert missing.status_code == 404


@pytest.mark.e2e
def test_http_correlation_of_promql_series_and_cli_readout(live: ServerProcess) -> None:
    import typer
    from typer.testing import CliRunner

    from opsmetrics.cli.analyze_stats import register

    now = SERVED_NOW // 15_000 * 15_000
    ts = [now - 50 * 60_000 + i * 15_000 for i in range(196)]
    rng = np.random.default_rng(9)
    a = rng.normal(0, 1, len(ts) + 3)
    lat, conv = a[3:], -0.5 * a[:-3] + rng.normal(0, 0.1, len(ts))  # conv follows by 3 steps
    body = [
        {
            "name": "p95_ms",
            "type": "gauge",
            "samples": [[t, float(v)] for t, v in zip(ts, lat, strict=True)],
        },
        {
            "name": "conv",
            "type": "gauge",
            "samples": [[t, float(v)] for t, v in zip(ts, conv, strict=True)],
        },
    ]
    wrote = httpx.post(live.url + "/api/v1/samples", json=body, timeout=30)
    assert wrote.status_code in (200, 204), wrote.text
    got = post(
        live,
        "/api/v1/analysis/correlation",
        {
            "a": {"query": "p95_ms"},
            "b": {"query": "conv"},
            "start": ts[0] / 1000,
            "end": ts[-1] / 1000,
            "step": "15s",
            "max_lag": 8,
        },
    )
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["best_lag"]["steps"] == 3 and data["best_lag"]["seconds"] == 45
    assert data["impact"]["slope"] < 0 and data["finding"]
    missing = post(live, "/api/v1/analysis/correlation", {"a": {"query": "p95_ms"}, "b": [1, 2]})
    assert missing.status_code == 400 and missing.json()["errorType"] == "bad_data"
    unknown = post(
        live,
        "/api/v1/analysis/correlation",
        {
            "a": {"kpi": "nope"},
            "b": {"query": "conv"},
            "start": ts[0] / 1000,
            "end": ts[-1] / 1000,
            "step": "15s",
        },
    )
    assert unknown.status_code == 400 and '"a.kpi"' in unknown.json()["error"]

    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["experiment", "checkout_redesign", "--url", live.url])
    assert out.exit_code == 0, out.output
    assert "purchase_conversion" in out.output and "exposures" in out.output


def test_value_props_filters_and_harmed_guardrail(svc: Services) -> None:
    exp = Experiment.model_validate(
        {
            "name": "refunds_test",
            "variants": ["a", "b"],
            "exposure": {"event": "seen", "variant_prop": "arm", "where": {"test": 7}},
            "primary": {
                "name": "eur_spend",
                "kind": "mean",
                "event": "paid",
                "value": "amount",
                "where": {"currency": "EUR"},
                "within": "2h",
            },
            "guardrails": [
                {
                    "name": "refunds",
                    "kind": "mean",
                    "agg": "count",
                    "event": "refund",
                    "within": "2h",
                    "direction": "lower_is_better",
                }
            ],
        }
    )
    events: list[Event] = []
    for u in range(200):
        arm, t0, e = ("b" if u % 2 else "a"), NOW - DAY + u * 1000, f"u{u}"
        events.append(Event("seen", t0, e, None, {"test": 7, "arm": arm}))
        events.append(Event("paid", t0 + 60_000, e, None, {"currency": "EUR", "amount": u % 10}))
        events.append(Event("paid", t0 + 60_000, e, None, {"currency": "USD", "amount": 1000}))
        events.append(Event("paid", t0 + 3 * 3_600_000, e, None, {"currency": "EUR", "amount": 99}))
        refunds = (3 if arm == "b" else 1) if u % 3 == 0 else 0
        events += [Event("refund", t0 + 5_000 + k, e) for k in range(refunds)]
    events.append(Event("seen", NOW - DAY, "stray", None, {"test": 7, "arm": "c"}))
    write(svc, events)
    r = readout(svc.storage, exp, NOW)
    assert r["exposures"] == {"a": 100, "b": 100}
    assert r["warnings"] == [
        "exposures with variants not in the definition were left out: {'c': 1}"
    ]
    amounts = np.array([u % 10 for u in range(200)], dtype=float)
    assert r["primary"]["arms"]["a"]["value"] == pytest.approx(amounts[0::2].mean())
    assert r["primary"]["arms"]["b"]["value"] == pytest.approx(amounts[1::2].mean())
    refunds = r["guardrails"][0]
    counts = np.array([(3 if u % 2 else 1) if u % 3 == 0 else 0 for u in range(200)], float)
    assert refunds["arms"]["b"]["value"] == pytest.approx(counts[1::2].mean())
    assert comparison(refunds)["harmed"]  # more refunds in b, and lower is better
