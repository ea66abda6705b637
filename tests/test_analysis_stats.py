"""Experiment statistics and correlation (opsmetrics/analysis/) against independent oracles:
scipy.stats and statsmodels on random inputs, R `pwr` values quoted in statsmodels' own tests,
hand-worked examples, and fixed-seed simulations for CUPED, confidence sequences and lags."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from opsmetrics.analysis import abtest, power
from opsmetrics.analysis.correlation import Labels, correlate, fisher_ci, pair
from opsmetrics.analysis.cuped import cuped
from opsmetrics.analysis.sequential import half_width_factor, sequential
from opsmetrics.analysis.stats import Moments
from opsmetrics.errors import BadDataError

HOUR = 3_600_000
arms = st.integers(min_value=20, max_value=100_000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=1, max_value=n - 1))
)


# --- proportions ----------------------------------------------------------------------------
def test_proportion_hand_worked_example() -> None:
    # pooled p = 270/4800 = 0.05625; se0 = sqrt(.05625 * .94375 * 2/2400) = 0.0066512
    # z = 0.0125 / 0.0066512 = 1.8794; p = 2 * (1 - Phi(1.8794)) = 0.0602
    c = abtest.proportion_test(2400, 120, 2400, 150)
    assert c.absolute_effect == pytest.approx(0.0125)
    assert c.statistic == pytest.approx(1.8794, abs=1e-4)
    assert c.p_value == pytest.approx(0.0602, abs=1e-4)
    # unpooled se = sqrt(.05*.95/2400 + .0625*.9375/2400) = 0.0066487; CI = 0.0125 ± 1.96 se
    assert c.ci_low == pytest.approx(0.0125 - 1.959964 * 0.0066487, abs=1e-6)
    assert c.relative_effect == pytest.approx(0.25)
    assert not c.significant


@settings(max_examples=60, deadline=None)
@given(arms, arms)
def test_proportion_matches_statsmodels(c: tuple[int, int], t: tuple[int, int]) -> None:
    res = abtest.proportion_test(c[0], c[1], t[0], t[1])
    z, p = proportions_ztest([t[1], c[1]], [t[0], c[0]])
    assert res.statistic == pytest.approx(z, rel=1e-9, abs=1e-12)
    assert res.p_value == pytest.approx(p, rel=1e-9, abs=1e-12)
    low, high = confint_proportions_2indep(t[1], t[0], c[1], c[0], method="wald", compare="diff")
    assert (res.ci_low, res.ci_high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(arms, arms)
def test_swapping_arms_flips_the_sign_and_keeps_p(c: tuple[int, int], t: tuple[int, int]) -> None:
    ab, ba = abtest.proportion_test(*c, *t), abtest.proportion_test(*t, *c)
    assert ba.absolute_effect == pytest.approx(-ab.absolute_effect)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))
    assert ba.p_value == pytest.approx(ab.p_value)


def test_proportion_rejects_impossible_counts() -> None:
    with pytest.raises(BadDataError, match="treatment.successes"):
        abtest.proportion_test(100, 5, 100, 101)
    with pytest.raises(BadDataError, match="control.n"):
        abtest.proportion_test(0, 0, 100, 1)


# --- means and ratios -----------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    st.integers(5, 400),
    st.integers(5, 400),
    st.floats(0.1, 10),
    st.floats(-3, 3),
    st.integers(0, 2**31),
)
def test_welch_matches_scipy(n1: int, n2: int, scale: float, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(0, 1, n1), rng.normal(shift, scale, n2)
    res = abtest.mean_test_moments(Moments.of(x), Moments.of(y))
    ref = sps.ttest_ind(y, x, equal_var=False)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-7)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
    assert res.df == pytest.approx(ref.df, rel=1e-7)
    ci = ref.confidence_interval(0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_ratio_delta_method_matches_simulated_spread() -> None:
    rng = np.random.default_rng(7)
    estimates, predicted = [], []
    for _ in range(400):
        sessions = rng.poisson(3, 800) + 1
        revenue = sessions * rng.gamma(2.0, 5.0, 800)
        m = Moments.of(revenue, sessions)
        est = abtest.ratio_estimate(m)
        estimates.append(est.estimate)
        predicted.append(est.se)
    assert np.std(estimates) == pytest.approx(np.mean(predicted), rel=0.1)


def test_relative_ci_delta_method_matches_simulated_spread() -> None:
    rng = np.random.default_rng(3)
    rel, se = [], []
    for _ in range(1000):
        sc, st_ = rng.binomial(5000, 0.1), rng.binomial(5000, 0.12)
        c = abtest.proportion_test(5000, int(sc), 5000, int(st_))
        rel.append(c.relative_effect)
        se.append((c.relative_ci_high - c.relative_effect) / 1.959964)
    assert np.mean(rel) == pytest.approx(0.2, abs=0.01)
    assert np.std(rel) == pytest.approx(np.mean(se), rel=0.08)


# --- SRM ------------------------------------------------------------------------------------
def test_srm_flags_52_48_with_100k_users() -> None:
    res = abtest.srm_test([52_000, 48_000], [0.5, 0.5])
    assert res.p_value == pytest.approx(sps.chisquare([52_000, 48_000]).pvalue)
    assert res.mismatch
    fine = abtest.srm_test([50_100, 49_900])
    assert not fine.mismatch
    planned = abtest.srm_test([30_100, 69_900], [0.3, 0.7])
    ref = sps.chisquare([30_100, 69_900], [30_000, 70_000])
    assert planned.p_value == pytest.approx(ref.pvalue)


# --- power ----------------------------------------------------------------------------------
def test_power_matches_r_pwr_values_quoted_by_statsmodels() -> None:
    # pwr.2p.test(h=0.3, n=80, sig.level=0.05): power 0.475100870572638
    assert power.normal_power(0.3, 80, 0.05) == pytest.approx(0.475100870572638, abs=1e-12)
    # pwr.t.test(d=0.1, n=20, sig.level=0.05, type="two.sample"): power 0.06095912465411235
    assert power.t_power(0.1, 20, 0.05) == pytest.approx(0.06095912465411235, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.01, 0.6),
    st.floats(0.05, 0.5),
    st.sampled_from([0.01, 0.05, 0.1]),
    st.sampled_from([0.8, 0.9]),
)
def test_proportion_sample_size_matches_statsmodels(
    baseline: float, rel_mde: float, alpha: float, pw: float
) -> None:
    mde = baseline * rel_mde
    n = power.proportion_sample_size(baseline, mde, alpha, pw)
    h = proportion_effectsize(baseline + mde, baseline)
    ref = NormalIndPower().solve_power(h, alpha=alpha, power=pw, ratio=1.0)
    assert n == math.ceil(ref - 1e-6)
    assert power.proportion_power(baseline, mde, n, alpha) >= pw
    assert power.proportion_power(baseline, mde, n - 1, alpha) < pw


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 2.0), st.floats(0.5, 20.0))
def test_mean_sample_size_and_mde_match_statsmodels(d: float, std: float) -> None:
    n = power.mean_sample_size(std, d * std, 0.05, 0.8)
    ref = TTestIndPower().solve_power(d, alpha=0.05, power=0.8, ratio=1.0)
    assert n == max(math.ceil(ref - 1e-6), 2)
    mde = power.mean_mde(std, max(n, 3), 0.05, 0.8)
    assert TTestIndPower().power(mde / std, max(n, 3), 0.05) == pytest.approx(0.8, abs=1e-9)
    ref_mde = std * TTestIndPower().solve_power(None, max(n, 3), 0.05, 0.8)
    assert mde == pytest.approx(ref_mde, rel=1e-4)  # statsmodels' solver stops a bit earlier


def test_sample_size_worked_example_and_mde_round_trip() -> None:
    # 5 % → 6.25 %: h = 2 asin(√.0625) − 2 asin(√.05) = 0.05485; n = ((1.95996 + 0.84162)/h)² · 2
    n = power.proportion_sample_size(0.05, 0.0125)
    assert n == 5318
    assert power.proportion_mde(0.05, n) == pytest.approx(0.0125, abs=2e-5)
    with pytest.raises(BadDataError, match="baseline"):
        power.proportion_sample_size(1.5, 0.01)


def test_solve_finds_the_missing_one_of_n_mde_power() -> None:
    n = power.solve(baseline=0.05, std=None, mde=0.0125, n=None)["per_arm"]
    assert n == 5318
    got = power.solve(baseline=0.05, std=None, mde=0.0125, n=5318)["power"]
    assert isinstance(got, float) and 0.8 <= got < 0.8001
    mde = power.solve(baseline=None, std=12.5, mde=None, n=2454)["mde"]
    assert mde == pytest.approx(12.5 * TTestIndPower().solve_power(None, 2454, 0.05, 0.8), rel=1e-4)
    with pytest.raises(BadDataError, match="mde"):
        power.solve(baseline=0.05, std=None, mde=None, n=None)


# --- CUPED ----------------------------------------------------------------------------------
def test_cuped_reduces_variance_and_stays_unbiased() -> None:
    rng = np.random.default_rng(11)
    raw, adjusted = [], []
    for _ in range(300):
        pre = rng.gamma(2.0, 10.0, 1000)
        arm = rng.random(1000) < 0.5
        post = 0.8 * pre + rng.normal(0, 6, 1000) + np.where(arm, 2.0, 0.0)
        c, t = Moments.of(post[~arm], pre[~arm]), Moments.of(post[arm], pre[arm])
        raw.append(t.mean_y - c.mean_y)
        adj = cuped([c, t])
        adjusted.append(adj.arms[1].estimate - adj.arms[0].estimate)
    assert np.var(adjusted) < 0.5 * np.var(raw)
    assert np.mean(adjusted) == pytest.approx(2.0, abs=3 * np.std(adjusted) / math.sqrt(300))
    theta = cuped([Moments.of(post, pre)]).theta
    assert theta == pytest.approx(np.cov(pre, post)[0, 1] / np.var(pre, ddof=1))


# --- confidence sequences -------------------------------------------------------------------
def test_confidence_sequence_covers_under_peeking_on_aa_data() -> None:
    rng = np.random.default_rng(5)
    runs, n, alpha = 400, 4000, 0.05
    peeks = np.unique(np.geomspace(50, n, 40).astype(int))
    a = rng.normal(0, 1, (runs, n)).cumsum(axis=1)[:, peeks - 1]
    b = rng.normal(0, 1, (runs, n)).cumsum(axis=1)[:, peeks - 1]
    diff = (b - a) / peeks
    se = np.sqrt(2 / peeks)
    cs = np.array([half_width_factor(2 * k, alpha, 2000) for k in peeks])
    cs_errors = (np.abs(diff) > cs * se).any(axis=1).mean()
    naive_errors = (np.abs(diff) > 1.959964 * se).any(axis=1).mean()
    assert cs_errors <= alpha
    assert naive_errors > 2 * alpha  # why the sequence exists: peeking breaks fixed CIs


def test_sequential_interval_is_wider_than_fixed_and_labelled() -> None:
    c = abtest.proportion_test(20_000, 1000, 20_000, 1130)
    s = sequential(c, 40_000, 5000)
    assert s.ci_low < c.ci_low < c.ci_high < s.ci_high
    assert "confidence sequence" in s.to_dict()["method"]


# --- correlation ----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(10, 300), st.floats(-1, 1), st.integers(0, 2**31))
def test_pearson_spearman_match_scipy(n: int, k: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    y = k * x + rng.normal(0, 1, n)
    p = pair(x, y)
    ref = sps.pearsonr(x, y)
    assert p.pearson_r == pytest.approx(ref.statistic, abs=1e-12)
    assert p.pearson_p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    z = math.atanh(ref.statistic)
    assert p.ci_low == pytest.approx(math.tanh(z - 1.959964 / math.sqrt(n - 3)), abs=1e-6)
    assert p.spearman_rho == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_fisher_ci_hand_worked() -> None:
    # r = .5, n = 28: atanh(.5) = .5493, ± 1.96/5 → tanh(.1573) = .156, tanh(.9413) = .736
    low, high = fisher_ci(0.5, 28)
    assert (low, high) == pytest.approx((0.1560, 0.7364), abs=1e-3)


def _daily(n: int) -> np.ndarray:
    hours = np.arange(n)
    return np.sin(2 * np.pi * hours / 24) + 0.3 * np.sin(2 * np.pi * hours / 168)


def test_shared_daily_cycle_is_not_a_link() -> None:
    rng = np.random.default_rng(21)
    n = 24 * 42
    ts = np.arange(n, dtype=np.int64) * HOUR
    a = 100 + 30 * _daily(n) + rng.normal(0, 3, n)
    b = 5 + 2 * _daily(n) + rng.normal(0, 0.2, n)
    res = correlate(a, b, ts, HOUR)
    assert res.raw.pearson_r > 0.9
    assert abs(res.residual.pearson_r) < 0.1
    assert res.finding is None


def test_planted_lagged_link_is_found_with_impact() -> None:
    rng = np.random.default_rng(8)
    n = 24 * 42
    ts = np.arange(n, dtype=np.int64) * HOUR
    latency = 200 + 40 * _daily(n) + rng.normal(0, 20, n)
    shifted = np.concatenate([np.full(3, 200.0), latency[:-3]])  # conversion follows 3 h later
    conversion = 3.0 + 0.5 * _daily(n) - 0.004 * (shifted - 200) + rng.normal(0, 0.05, n)
    labels = Labels("p95 latency", "conversion", "ms", "pp", per=100)
    res = correlate(latency, conversion, ts, HOUR, max_lag=12, labels=labels)
    assert res.best_lag == 3
    assert res.impact is not None
    assert res.impact.ci_low < -0.4 < res.impact.ci_high  # -0.004 pp per ms × 100 ms
    assert res.finding is not None and "+100 ms of p95 latency" in res.finding
    assert res.to_dict()["best_lag"]["seconds"] == 3 * 3600


# --- CLI (the commands registered on a typer group, run in process) -------------------------
def test_cli_sample_size_and_ab() -> None:
    import typer
    from typer.testing import CliRunner

    from opsmetrics.cli.analyze_stats import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    size = runner.invoke(app, ["sample-size", "--baseline", "0.05", "--mde", "0.0125"])
    assert size.exit_code == 0, size.output
    assert "5,318" in size.output
    ab = runner.invoke(app, ["ab", "--control", "2400:120", "--treatment", "2400:150", "--json"])
    assert ab.exit_code == 0, ab.output
    assert '"p_value": 0.0601' in ab.output
    welch = runner.invoke(app, ["ab", "--control", "100:10:2", "--treatment", "120:11:3"])
    assert welch.exit_code == 0 and "Welch" in welch.output
