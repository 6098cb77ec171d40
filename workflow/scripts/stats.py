"""Statistics of the tables over seeds: 95 % confidence intervals of a mean (percentile
bootstrap and Student t) and of paired differences. Pure numpy, no SciPy (not a dependency).

Every bootstrap draws its resamples from a numpy Generator with a fixed seed, and the draw
depends only on n, not on the values or on which other cells a table has: a table rebuilt from
the same runs has the same numbers, byte for byte.
"""

import math
from typing import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
SEED = 15  # issue #15; any fixed value gives reproducible tables

#: t_{0.975, df} for df = 1..30 (scipy.stats.t.ppf, 6 decimals); beyond 30 a series in 1/df
T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
        2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
        2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
Z975 = 1.959963985

NAN_PAIR = (math.nan, math.nan)


def finite_values(values: Sequence[float]) -> np.ndarray:
    """`values` as a float array without NaN/inf (a missing accuracy is no observation)."""
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def bootstrap_mean_ci(values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = SEED) -> tuple[float, float]:
    """Percentile-bootstrap CI (low, high) of the mean of the finite `values`; (nan, nan) for
    n < 2, where resampling one value says nothing about its spread.

    All `resamples` resamples are drawn at once as an index matrix (no loop per resample).
    With few values the interval is coarse and optimistic: with n = 2 it is [min, max]."""
    x = finite_values(values)
    if x.size < 2:
        return NAN_PAIR
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the table for df <= 30, else the Cornish-Fisher series (error < 1e-6)."""
    if df < 1:
        return math.nan
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95 % Student-t CI of the mean of the finite `values`: mean ± t_{0.975, n-1} s/√n;
    (nan, nan) for n < 2. Assumes roughly normal values; wide with few of them, as it should be."""
    x = finite_values(values)
    if x.size < 2:
        return NAN_PAIR
    mean = float(x.mean())
    half = t_quantile_975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean - half, mean + half


def paired_differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """a - b element by element (a[i] and b[i] measured on the same seed); pairs with a
    missing value on either side are dropped."""
    a_, b_ = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_.shape != b_.shape:
        raise ValueError(f"paired values need equal lengths, got {a_.size} and {b_.size}")
    d = a_ - b_
    return d[np.isfinite(d)]


def paired_bootstrap(a: Sequence[float], b: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                     seed: int = SEED) -> tuple[float, float, float, int]:
    """(mean difference, CI low, CI high, n) of a - b over the pairs (a[i], b[i]): the
    percentile bootstrap resamples whole pairs (seeds), so what the two share cancels."""
    d = paired_differences(a, b)
    if d.size == 0:
        return math.nan, math.nan, math.nan, 0
    low, high = bootstrap_mean_ci(d, level=level, resamples=resamples, seed=seed)
    return float(d.mean()), low, high, int(d.size)
