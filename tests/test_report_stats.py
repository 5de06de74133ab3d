"""Statistics of the reports on samples with known answers (closed forms where they exist)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ttest_ind

from mnc_bench.reporting.metrics import column, difference_text, mean_std, probability_text, spread
from mnc_bench.reporting.stats import (
    Interval,
    compare,
    mean_interval,
    probability_of_improvement,
    stratified_bootstrap,
    summarize,
)

AP = column("coco/segm/AP")


def _pairwise_p(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs: the definition, independent of scipy."""
    diff = x[:, None] - y[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_summary_is_mean_and_sample_std_of_finite_values():
    s = summarize([0.30, 0.34, np.nan, 0.32])
    assert s.n == 3
    assert s.mean == pytest.approx(0.32)
    assert s.std == pytest.approx(0.02)  # ddof=1: sqrt((0.0004 + 0.0004) / 2)
    one = summarize([0.4])
    assert one.n == 1 and math.isnan(one.std)
    assert summarize([np.nan]).n == 0


def test_probability_of_improvement_is_u_over_nx_ny_with_ties_half():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=7).astype(float)  # unequal sizes and many ties
    y = rng.integers(0, 6, size=4).astype(float)
    assert probability_of_improvement(x, y) == pytest.approx(_pairwise_p(x, y))
    assert probability_of_improvement(y, x) == pytest.approx(1 - _pairwise_p(x, y))


def test_fully_separated_samples_give_p_one_and_a_difference_interval_excluding_zero():
    x, y = np.array([0.52, 0.55, 0.53]), np.array([0.40, 0.41, 0.43, 0.39])
    c = compare(x, y)
    assert c.improvement.estimate == 1.0
    assert (c.improvement.low, c.improvement.high) == (1.0, 1.0)  # every resample stays separated
    # ... but 3 vs 4 seeds cannot show it: the exact rank test's smallest p is 2 / C(7, 3) = 0.057. At 4 vs 4
    # it is 2 / C(8, 4) = 0.029.
    assert c.improvement.p_value == pytest.approx(2 / 35) and c.improvement.verdict(0.5) == "inconclusive"
    assert compare(np.append(x, 0.54), y).improvement.verdict(0.5) == "higher"
    assert c.difference.estimate == pytest.approx(x.mean() - y.mean())
    assert c.difference.p_value == pytest.approx(ttest_ind(x, y).pvalue)
    # Resampled means stay within the samples' ranges: the interval lies in [min x - max y, max x - min y].
    assert x.min() - y.max() <= c.difference.low < c.difference.high <= x.max() - y.min()
    assert c.difference.verdict(0.0) == "higher"
    reverse = compare(y, x)
    assert reverse.improvement.estimate == 0.0 and reverse.difference.verdict(0.0) == "lower"


def test_identical_distributions_give_p_near_half_and_inconclusive():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.4, 0.01, 300), rng.normal(0.4, 0.01, 300)
    c = compare(x, y, n_boot=2000)
    assert c.improvement.estimate == pytest.approx(0.5, abs=0.06)
    assert c.improvement.verdict(0.5) == "inconclusive"
    assert c.difference.verdict(0.0) == "inconclusive"
    assert compare(x, x, n_boot=10).improvement.estimate == 0.5


def test_difference_interval_matches_the_normal_closed_form_for_large_samples():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0.45, 0.02, 400), rng.normal(0.40, 0.05, 250)
    c = compare(x, y, n_boot=4000)
    # The bootstrap resamples the empirical distributions: plug-in (ddof=0) variances.
    half = 1.959964 * math.sqrt(x.var() / x.size + y.var() / y.size)
    assert c.difference.low == pytest.approx(c.difference.estimate - half, abs=0.08 * half)
    assert c.difference.high == pytest.approx(c.difference.estimate + half, abs=0.08 * half)


def test_probability_interval_matches_delong_variance_for_large_samples():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.3, 1.0, 300), rng.normal(0.0, 1.0, 200)
    c = compare(x, y, n_boot=4000)
    kernel = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    # DeLong et al. (1988): variance of the Mann-Whitney AUC from its structural components.
    var = kernel.mean(axis=1).var(ddof=1) / x.size + kernel.mean(axis=0).var(ddof=1) / y.size
    half = 1.959964 * math.sqrt(var)
    assert c.improvement.estimate == pytest.approx(kernel.mean())
    assert c.improvement.high - c.improvement.low == pytest.approx(2 * half, rel=0.1)


def test_bootstrap_resamples_within_each_stratum():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    seen = {}

    def statistic(ra, rb):
        seen["a"], seen["b"] = ra, rb
        return ra.mean(axis=1) - rb.mean(axis=1)

    stratified_bootstrap([a, b], statistic, n_boot=500)
    assert seen["a"].shape == (500, 3) and seen["b"].shape == (500, 5)
    assert set(np.unique(seen["a"])) <= set(a) and set(np.unique(seen["b"])) <= set(b)
    # Constant strata: resampling within each leaves the difference exactly fixed; pooling would not.
    c = compare([0.5, 0.5, 0.5], [0.3] * 5)
    assert (c.difference.low, c.difference.high) == pytest.approx((0.2, 0.2))
    assert (c.improvement.low, c.improvement.high) == (1.0, 1.0)


def test_bootstrap_is_deterministic_and_independent_of_global_state():
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.41, 0.02, 20), rng.normal(0.40, 0.02, 15)  # continuous: intervals follow the stream
    first = compare(x, y, n_boot=2000)
    np.random.seed(99)
    np.random.default_rng(5).random(100)
    assert compare(x, y, n_boot=2000) == first
    assert compare(x, y, n_boot=2000, seed=1) != first  # the seed is what fixes the interval


def test_one_seed_has_no_interval_and_never_prints_plus_minus_zero():
    c = compare([0.45], [0.40, 0.41, 0.42])
    assert c.difference.estimate == pytest.approx(0.04)
    assert not c.difference.has_interval and c.difference.verdict(0.0) == "no interval"
    assert "no interval" in difference_text(c.difference, AP)
    assert "no interval" in probability_text(c.improvement)
    assert mean_std(summarize([0.45]), AP) == "45.0"
    assert math.isnan(mean_interval([0.45])[0])


def test_small_spread_is_not_printed_as_zero():
    assert spread(0.0002, AP) == "<0.1"  # under the column's last digit, no wider than its other spreads
    assert spread(0.0, AP) == "0.0"
    assert mean_std(summarize([0.4000, 0.4003]), AP) == "40.0 ± <0.1"


def test_interval_verdicts():
    assert Interval(0.5, 0.1, 0.9).verdict(0.0) == "higher"
    assert Interval(-0.5, -0.9, -0.1).verdict(0.0) == "lower"
    assert Interval(0.1, -0.1, 0.3).verdict(0.0) == "inconclusive"
    assert Interval(0.6, 0.5, 0.9).verdict(0.5) == "inconclusive"  # touching the null is not excluding it
    assert Interval(0.5, 0.1, 0.9, p_value=0.01).verdict(0.0) == "higher"
    assert Interval(0.5, 0.1, 0.9, p_value=0.2).verdict(0.0) == "inconclusive"  # the test disagrees
    assert Interval(0.1, -0.1, 0.3, p_value=0.01).verdict(0.0) == "inconclusive"  # the interval disagrees


def test_two_seeds_a_side_need_the_t_test_where_the_bootstrap_alone_would_decide():
    # 1 point apart, spread 0.6: the bootstrap interval (3 distinct means a side) excludes 0, the t-test not
    close = compare([0.34, 0.346], [0.35, 0.356])
    assert close.difference.high < 0 and close.difference.verdict(0.0) == "inconclusive"
    assert close.difference.p_value == pytest.approx(ttest_ind([0.34, 0.346], [0.35, 0.356]).pvalue)
    # one side steady, one spread by 2.4 points, 13 apart: pooled variances decide, Welch's would not
    far = compare([0.4985, 0.4995], [0.355, 0.389])
    assert far.difference.verdict(0.0) == "higher"
    assert ttest_ind([0.4985, 0.4995], [0.355, 0.389], equal_var=False).pvalue > 0.05
    # the rank test's smallest p at 2 vs 2 is 2 / C(4, 2) = 1/3: P's verdict needs more seeds
    assert far.improvement.p_value == pytest.approx(1 / 3) and far.improvement.verdict(0.5) == "inconclusive"
