"""The statistics of the tables (workflow/scripts/stats.py): bootstrap and t intervals of a mean
and of paired differences, reproducible and undefined for a single value."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import stats  # noqa: E402


def sample(n: int, seed: int = 0) -> np.ndarray:
    """n values with mean 90 and sample std exactly 1 (so that only n changes the width)."""
    x = np.random.default_rng(seed).normal(0, 1, n)
    return 90 + (x - x.mean()) / x.std(ddof=1)


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    widths = []
    for n in (3, 10, 100):
        x = sample(n)
        low, high = stats.bootstrap_mean_ci(x)
        assert low <= x.mean() <= high
        assert x.min() <= low < high <= x.max()
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_is_reproducible_and_depends_on_the_seed():
    x = sample(5)
    assert stats.bootstrap_mean_ci(x) == stats.bootstrap_mean_ci(list(x))  # same numbers, bit for bit
    assert stats.bootstrap_mean_ci(x, seed=1) != stats.bootstrap_mean_ci(x)


def test_one_value_has_no_interval():
    for ci in (stats.bootstrap_mean_ci([90.0]), stats.t_interval([90.0]), stats.bootstrap_mean_ci([])):
        assert all(math.isnan(v) for v in ci)
    assert all(math.isnan(v) for v in stats.bootstrap_mean_ci([90.0, math.nan]))  # NaN is no value


def test_two_values_give_their_range():
    assert stats.bootstrap_mean_ci([1.0, 3.0]) == (1.0, 3.0)


def test_t_interval_and_quantiles():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = stats.t_interval(x)
    half = 3.182446 * x.std(ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 30, 31, 45, 200, 10_000):
        assert stats.t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-5)


def test_paired_difference_of_a_constant_shift():
    base = np.array([88.1, 90.4, 89.7, 91.0])
    diff, low, high, n = stats.paired_bootstrap(base + 2.0, base)
    assert n == 4 and (diff, low, high) == pytest.approx((2.0, 2.0, 2.0))
    assert stats.t_interval(base + 2.0 - base) == pytest.approx((2.0, 2.0))


def test_paired_bootstrap_drops_missing_pairs_and_needs_aligned_inputs():
    diff, low, high, n = stats.paired_bootstrap([91.0, math.nan, 93.0], [90.0, 80.0, 90.0])
    assert n == 2 and diff == pytest.approx(2.0) and (low, high) == pytest.approx((1.0, 3.0))
    assert stats.paired_bootstrap([], [])[3] == 0
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1.0, 2.0], [1.0])


def test_pairing_removes_what_the_seeds_share():
    """A seed effect shared by both methods widens the unpaired intervals, not the paired one."""
    seed_effect = np.array([-3.0, 0.0, 3.0, 1.5, -1.5])
    a, b = 90 + seed_effect + np.array([1.1, 0.9, 1.0, 1.05, 0.95]), 89 + seed_effect
    _, low, high, _ = stats.paired_bootstrap(a, b)
    a_low, a_high = stats.bootstrap_mean_ci(a)
    assert high - low < 0.25 < a_high - a_low
