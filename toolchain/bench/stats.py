"""Latency statistics shared by every runner.

All functions take the per-inference samples in the runner's unit (``ms``, ``us``,
``instructions``, ``cycles``, ``ticks``) and never convert units themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from toolchain.errors import BenchmarkError

#: Relative spread (p90 - p10) / median above which the numbers are flagged as noisy.
NOISY_SPREAD = 0.10
#: Temperature rise (°C) between before and after a run above which it is flagged.
HOT_RISE_C = 5.0


@dataclass(frozen=True)
class Summary:
    """Summary statistics of ``n`` samples, all in ``unit``."""

    unit: str
    n: int
    median: float
    mean: float
    std: float
    min: float
    max: float
    p10: float
    p90: float
    p99: float
    ci_low: float
    ci_high: float
    ci_level: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def summarize(
    samples: Sequence[float],
    unit: str,
    *,
    ci_level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Summary:
    """Median/mean/std/min/max/p10/p90/p99 and a bootstrap CI of the median.

    The bootstrap is seeded, so the same samples give the same interval (reports stay
    deterministic). Raises :class:`BenchmarkError` when ``samples`` is empty or not finite.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise BenchmarkError("no samples: the benchmark recorded no inference")
    if not np.all(np.isfinite(x)):
        raise BenchmarkError("non-finite latency samples; the device's timer output is corrupt")
    lo, hi = bootstrap_median_ci(x, level=ci_level, n_boot=n_boot, seed=seed)
    return Summary(
        unit=unit,
        n=int(x.size),
        median=float(np.median(x)),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        p10=float(np.percentile(x, 10)),
        p90=float(np.percentile(x, 90)),
        p99=float(np.percentile(x, 99)),
        ci_low=lo,
        ci_high=hi,
        ci_level=ci_level,
    )


#: the most resampled values held at once by :func:`bootstrap_median_ci` (16 MB of int64)
BOOT_BLOCK = 1 << 21


def bootstrap_median_ci(
    x: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median.

    The ``n_boot`` resamples are drawn and reduced a block of rows at a time (at most
    :data:`BOOT_BLOCK` values in memory), so 300,000 runs cost tens of MB, not gigabytes;
    the random stream, and so the interval, is the same as drawing them all at once."""
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    rows = max(1, BOOT_BLOCK // x.size)
    medians = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)
        idx = rng.integers(0, x.size, size=(k, x.size))
        medians[start : start + k] = np.median(x[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(medians, alpha)), float(np.quantile(medians, 1.0 - alpha))


def trust_warnings(
    summary: Summary,
    *,
    temp_before_c: float | None = None,
    temp_after_c: float | None = None,
    spread_limit: float = NOISY_SPREAD,
    hot_rise_c: float = HOT_RISE_C,
    runs_per_sample: int = 1,
) -> list[str]:
    """Human-readable reasons not to trust the numbers (empty when they look sound).

    ``runs_per_sample`` > 1 says that each sample is the mean of that many inferences (one
    benchmark_model round): the sample count then counts rounds, not runs."""
    warnings: list[str] = []
    if summary.n < 5 and runs_per_sample > 1:
        warnings.append(
            f"only {summary.n} samples (rounds of {runs_per_sample} runs each): too few for a "
            "stable spread and median CI (use --rounds 5+)"
        )
    elif summary.n < 5:
        warnings.append(f"only {summary.n} runs: too few for stable statistics (use --runs 20+)")
    if summary.median > 0:
        spread = (summary.p90 - summary.p10) / summary.median
        if spread > spread_limit:
            warnings.append(
                f"noisy: p10..p90 spread is {spread:.0%} of the median (limit {spread_limit:.0%}); "
                "check CPU governor, background load, thermal throttling"
            )
        if summary.max > 2 * summary.median:
            warnings.append(
                f"outliers: max {summary.max:g} is more than twice the median {summary.median:g}"
            )
    if temp_before_c is not None and temp_after_c is not None:
        rise = temp_after_c - temp_before_c
        if rise > hot_rise_c:
            warnings.append(
                f"device warmed by {rise:.1f} °C during the run (limit {hot_rise_c:.1f} °C): "
                "later runs may be throttled; add a cool-down"
            )
    if not math.isfinite(summary.std):
        warnings.append("standard deviation is not finite")
    return warnings
