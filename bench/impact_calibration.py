"""Initiative impact calibration: how often the 95% interval of analysis/impact.py holds the
truth on simulated daily KPIs (tests/impact_sim.py: weekly season, trend, AR(1) noise).

Run: .venv/bin/python bench/impact_calibration.py            (1,000 simulations per row)
Quick: .venv/bin/python bench/impact_calibration.py --runs 200 --no-write

For each row: the share of no-effect series whose interval holds 0 (should be ~95%), and the
share of +10% series whose interval holds the planted +10% and excludes 0. The same figures for
OLS with Newey-West (HAC) covariance on the same design show why the product does not use it.
Writes the `## Initiative impact calibration` section of BENCHMARKS.md; leaves the rest alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import statsmodels
import statsmodels.api as sm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.facts import write_section  # noqa: E402
from opsmetrics.analysis import impact  # noqa: E402
from opsmetrics.analysis.series import DAY_MS  # noqa: E402
from tests.impact_sim import calibrate, simulate  # noqa: E402

SECTION = "## Initiative impact calibration"
ROWS = ((56, 28, 0.5), (84, 28, 0.5), (56, 14, 0.5), (56, 28, 0.3), (56, 28, 0.7), (15, 15, 0.5))


def hac(runs: int, seed: int, n_pre: int, n_post: int, phi: float) -> tuple[float, float]:
    """OLS + Newey-West (lag 4, the usual floor(4(n/100)^(2/9))), t intervals."""
    rng = np.random.default_rng(seed)
    covered = found = 0
    for _ in range(runs):
        for effect in (0.0, 0.10):
            series, truth = simulate(rng, n_pre, n_post, effect, phi)
            x = impact._design(
                series.ts.astype(np.float64), float(series.ts[0]), DAY_MS, trend=n_pre >= 28
            )
            x = np.column_stack([x, (np.arange(len(series)) >= n_pre).astype(float)])
            fit = sm.OLS(series.values, x).fit(cov_type="HAC", cov_kwds={"maxlags": 4}, use_t=True)
            lo, hi = fit.conf_int()[-1] / float(np.mean(x[n_pre:, :-1] @ fit.params[:-1]))
            if effect == 0.0:
                covered += bool(lo <= 0 <= hi)
            else:
                found += bool(0 < lo <= truth <= hi)
    return covered / runs, found / runs


def measure(runs: int, seed: int) -> list[tuple[str, ...]]:
    rows = []
    for n_pre, n_post, phi in ROWS:
        t0 = time.monotonic()
        got = calibrate(runs, seed, n_pre, n_post, phi)
        spent = time.monotonic() - t0
        h_cov, h_found = hac(runs, seed, n_pre, n_post, phi)
        rows.append(
            (
                f"{n_pre} / {n_post}",
                f"{phi}",
                f"**{got.null_covered:.1%}**",
                f"**{got.effect_found:.1%}**",
                f"{h_cov:.1%}",
                f"{h_found:.1%}",
                f"{spent / (2 * runs) * 1000:.1f} ms",
            )
        )
        print(rows[-1], flush=True)
    return rows


def report(args: argparse.Namespace, rows: list[tuple[str, ...]]) -> str:
    command = f"`.venv/bin/python bench/impact_calibration.py --runs {args.runs}`"
    head = (
        "| pre / post days | AR(1) phi | 0 covered (no effect) | +10% found | "
        "HAC: 0 covered | HAC: +10% found | time per fit |"
    )
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: {command} (seed {args.seed}). Measured {time.strftime('%Y-%m-%d')}, "
            "while other engineers' jobs may have shared the machine.",
            f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc); Python "
            f"{platform.python_version()}, numpy {np.__version__}, statsmodels "
            f"{statsmodels.__version__}; load average at the start {os.getloadavg()[0]:.1f}",
            "",
            f"{args.runs:,} simulated daily series per row and per case (tests/impact_sim.py: "
            "level 100, trend +0.05/day, weekday pattern, AR(1) noise with innovations of sd 3). "
            "'0 covered' is the share of no-effect series whose 95% interval of the relative "
            "effect holds 0 (target 93-97%); '+10% found' the share of series with a planted +10% "
            "whose "
            "interval holds +10% and excludes 0 (target >= 90%). The product's fit is "
            "Prais-Winsten GLS with AR(1) errors (REML coefficient, Kendall's bias correction, "
            "its uncertainty "
            "in the variance); the HAC columns are OLS with Newey-West covariance on the same "
            "design, for comparison. tests/test_impact.py asserts the first row over 200 runs.",
            "",
            head,
            "|---|---|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
            "",
            "HAC under-covers at these lengths (a few dozen days, a persistent regressor), as "
            "is known of HAC in small samples; that is why the product fits the AR errors. At "
            "phi 0.7 the +10% is found a little less often: the noise is larger, not the bias. The "
            "15 / 15 row is the demo's case (30 days of history, the start 15 days ago): the "
            "pre-period is too short for a trend term (method its_level), so the simulated "
            "trend (+0.05/day) leaks into the effect and a null effect is covered less often.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--no-write", action="store_true", help="print, do not edit the file")
    args = parser.parse_args()
    part = report(args, measure(args.runs, args.seed))
    print(part)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", SECTION.removeprefix("## "), part)


if __name__ == "__main__":
    main()
