"""Level shifts: binary segmentation with a penalty on the deseasonalised series.

Steps: subtract the median seasonal profile (hour-of-day × day-of-week with two weeks of data,
else hour-of-day), average into at most MAX_BLOCKS blocks (speed, and it damps single-point
spikes), then split recursively where a change in mean lowers the squared error by more than
`penalty × σ² × log n` and the means differ by more than `min_shift` σ. σ is estimated from the
first differences of the blocks (MAD), so slow drift and short spikes are not shifts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Float64Array, Series

MAX_BLOCKS = 1000
DEFAULT_PENALTY = 4.0
MIN_SHIFT_SIGMA = 3.0
#: A segment lasts at least this long (and at least MIN_BLOCKS blocks).
MIN_SEGMENT_MS = 6 * HOUR_MS
MIN_BLOCKS = 4


@dataclass(frozen=True, slots=True)
class ChangePoint:
    ts: int
    before: float
    after: float
    explanation: str

    @property
    def delta(self) -> float:
        return self.after - self.before


def deseasonalised(series: Series, values: Float64Array) -> Float64Array:
    """`values` minus their median profile per UTC hour-of-day × day-of-week (2+ weeks of
    data) or per hour-of-day; the profile is taken after removing each week's (day's) median,
    so a level shift does not leak into it."""
    ts = series.ts
    if series.step_ms >= DAY_MS:
        cycle = 7 * DAY_MS if series.step_ms == DAY_MS and len(ts) >= 28 else 0
    else:
        cycle = 7 * DAY_MS if ts[-1] - ts[0] >= 14 * DAY_MS else DAY_MS
    if cycle == 0:
        return values.copy()
    # Calendar weeks start on Monday: the epoch was a Thursday.
    period = (ts + 3 * DAY_MS) // cycle
    detrended = values - _group_median(period, values)
    slot = ((ts + 3 * DAY_MS) % cycle) // max(HOUR_MS, series.step_ms)
    return np.asarray(values - _group_median(slot, detrended), dtype=np.float64)


def _group_median(keys: np.ndarray, values: Float64Array) -> Float64Array:
    """Each point's group median (NaN-aware; all-gap groups give 0)."""
    out = np.zeros(len(values))
    order = np.argsort(keys, kind="stable")
    uniq, first = np.unique(keys[order], return_index=True)
    bounds = np.append(first, len(keys))
    for i in range(len(uniq)):
        idx = order[bounds[i] : bounds[i + 1]]
        ref = values[idx]
        ref = ref[~np.isnan(ref)]
        out[idx] = float(np.median(ref)) if len(ref) else 0.0
    return out


def change_points(
    series: Series, *, penalty: float | None = None, min_shift: float = MIN_SHIFT_SIGMA
) -> list[ChangePoint]:
    """Level shifts in `series`, oldest first, with the mean level before and after."""
    if int(np.isfinite(series.values).sum()) < 2 * MIN_BLOCKS:
        return []
    logged = _positive(series.values)
    resid = deseasonalised(series, np.log(series.values) if logged else series.values)
    blocks, starts = _blocks(resid, len(series))
    keep = ~np.isnan(blocks)
    blocks, starts = blocks[keep], starts[keep]
    per_block_ms = series.step_ms * max(1, len(series) // MAX_BLOCKS)
    min_size = max(MIN_BLOCKS, math.ceil(MIN_SEGMENT_MS / max(per_block_ms, 1)))
    if len(blocks) < 2 * min_size:
        return []
    sigma = _sigma(blocks)
    beta = (DEFAULT_PENALTY if penalty is None else penalty) * sigma**2 * math.log(len(blocks))
    cuts = sorted(_segment(blocks, 0, len(blocks), beta, min_size, min_shift * sigma))
    return _describe(series, blocks, starts, cuts, logged)


def _positive(values: Float64Array) -> bool:
    """Positive data is segmented in log space: seasonality and shifts are then additive."""
    finite = values[~np.isnan(values)]
    return bool(len(finite) and np.all(finite > 0))


def _blocks(values: Float64Array, n: int) -> tuple[Float64Array, np.ndarray]:
    size = max(1, math.ceil(n / MAX_BLOCKS))
    count = math.ceil(n / size)
    padded = np.full(count * size, np.nan)
    padded[:n] = values
    with warnings.catch_warnings():
        # An all-gap block is "mean of empty slice": it becomes NaN and is dropped.
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(padded.reshape(count, size), axis=1)
    return means, np.arange(count) * size


def _sigma(blocks: Float64Array) -> float:
    diffs = np.diff(blocks)
    sigma = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2)
    if sigma <= 0:
        sigma = max(float(np.std(blocks)) * 0.01, 1e-9)
    return sigma


def _segment(
    y: Float64Array, lo: int, hi: int, beta: float, min_size: int, min_delta: float
) -> list[int]:
    """Split points (absolute indices) in y[lo:hi], recursively."""
    seg = y[lo:hi]
    n = len(seg)
    if n < 2 * min_size:
        return []
    csum = np.cumsum(seg)
    total = csum[-1]
    k = np.arange(min_size, n - min_size + 1)
    left = csum[k - 1]
    # Reduction in squared error from splitting at k: n_l n_r / n (mean_l - mean_r)².
    mean_l = left / k
    mean_r = (total - left) / (n - k)
    gain = k * (n - k) / n * (mean_l - mean_r) ** 2
    best = int(np.argmax(gain))
    if gain[best] <= beta or abs(mean_l[best] - mean_r[best]) <= min_delta:
        return []
    cut = lo + int(k[best])
    return (
        _segment(y, lo, cut, beta, min_size, min_delta)
        + [cut]
        + _segment(y, cut, hi, beta, min_size, min_delta)
    )


def _describe(
    series: Series, blocks: Float64Array, starts: np.ndarray, cuts: list[int], logged: bool
) -> list[ChangePoint]:
    from opsmetrics.analysis.anomalies import fmt, unit_suffix

    edges = [0, *cuts, len(blocks)]
    means = [float(np.mean(blocks[a:b])) for a, b in zip(edges, edges[1:], strict=False)]
    level = float(np.nanmedian(series.values))
    means = [level * math.exp(m) for m in means] if logged else [level + m for m in means]
    out = []
    for j, cut in enumerate(cuts):
        ts = int(series.ts[min(int(starts[cut]), len(series) - 1)])
        before, after = means[j], means[j + 1]
        pct = f" ({(after / before - 1) * 100:+.0f}%)" if before else ""
        unit = unit_suffix(series.unit)
        text = (
            f"level shift from about {fmt(before, series.unit)}{unit} to "
            f"{fmt(after, series.unit)}{unit}{pct}"
        )
        out.append(ChangePoint(ts, before, after, text))
    return out
