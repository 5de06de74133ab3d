"""Statistics over seeds: mean ± std, stratified percentile bootstrap intervals, probability of improvement.

Every bootstrap draws from its own generator seeded with ``SEED``, so a result never depends on what was
computed before it and the same input always gives the same interval (reports must be byte-identical).

A comparison's verdict needs its interval to exclude the null *and* the matching test to agree at p < 0.05:
Student's t-test (variances pooled) for the difference of means, the exact Mann-Whitney test for the
probability of improvement (its statistic is U / (n_x n_y)). With 2-3 seeds a side a percentile bootstrap
sees a handful of distinct resamples and its interval is too narrow; the tests know their sample sizes (the
t quantile at 2 degrees of freedom is 4.3; the rank test cannot reach p < 0.05 below 4 seeds a side). The
t-test pools the variances because the groups compared differ in one setting and their seeds in the same
training noise; Welch's unpooled version falls to about 1 degree of freedom at 2 seeds a side.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu, ttest_ind

N_BOOT = 10_000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than 2 values) of ``n`` finite values."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile interval; ``low``/``high`` are NaN when no interval exists.
    ``p_value``: the two-sided p of the test that backs a verdict on it (NaN: no test)."""

    estimate: float
    low: float
    high: float
    p_value: float = math.nan

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def verdict(self, null: float) -> str:
        """'higher' / 'lower' when the interval excludes ``null`` and the test, if any, agrees (p < 0.05);
        'inconclusive' otherwise."""
        if not self.has_interval:
            return "no interval"
        if not self.test_agrees:
            return "inconclusive"
        if self.low > null:
            return "higher"
        if self.high < null:
            return "lower"
        return "inconclusive"

    @property
    def test_agrees(self) -> bool:
        return math.isnan(self.p_value) or self.p_value < 1.0 - CONFIDENCE


@dataclass(frozen=True)
class Comparison:
    """Sample X (a model's seeds) against sample Y (the baseline's): mean(X) - mean(Y) and P(X > Y)."""

    n_x: int
    n_y: int
    difference: Interval
    improvement: Interval


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite entries of ``values`` as float64 (a run that did not measure a metric carries NaN)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    x = finite(values)
    if x.size == 0:
        return Summary(math.nan, math.nan, 0)
    std = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    return Summary(float(np.mean(x)), std, int(x.size))


def stratified_bootstrap(
    strata: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> np.ndarray:
    """Replicates of ``statistic`` under resampling *within* each stratum.

    Each stratum (e.g. one model's seeds) is resampled with replacement to its own size, independently of
    the others, so a replicate never moves a value from one model to another. ``statistic`` receives one
    array per stratum of shape [n_boot, n_i] and returns [n_boot] values.
    """
    rng = np.random.default_rng(seed)
    resampled = [s[rng.integers(0, s.size, size=(n_boot, s.size))] for s in strata]
    return np.asarray(statistic(*resampled), dtype=np.float64)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_interval(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE
                  ) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean over seeds; (NaN, NaN) for fewer than 2 values."""
    x = finite(values)
    if x.size < 2:
        return math.nan, math.nan
    return percentile_interval(stratified_bootstrap([x], lambda xb: xb.mean(axis=1)), confidence)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """P(X > Y) + P(X = Y) / 2 = U_x / (n_x n_y), with U_x the Mann-Whitney statistic of ``x``.

    ``x`` [..., n_x] and ``y`` [..., n_y] are compared along the last axis (batched for the bootstrap).
    """
    n_x, n_y = x.shape[-1], y.shape[-1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # The p-value is not used; constant samples make its normal approximation divide by zero.
        warnings.simplefilter("ignore", RuntimeWarning)
        u_x = mannwhitneyu(x, y, axis=-1, method="asymptotic").statistic
    return u_x / (n_x * n_y)


def compare(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Comparison:
    """Difference of means and probability of improvement of X over Y, each with a stratified bootstrap
    interval (X and Y resampled separately). Fewer than 2 finite values on either side: no interval."""
    xs, ys = finite(x), finite(y)
    if xs.size == 0 or ys.size == 0:
        nan = Interval(math.nan, math.nan, math.nan)
        return Comparison(int(xs.size), int(ys.size), nan, nan)
    diff = float(xs.mean() - ys.mean())
    p = float(probability_of_improvement(xs, ys))
    if xs.size < 2 or ys.size < 2:
        return Comparison(int(xs.size), int(ys.size), Interval(diff, math.nan, math.nan),
                          Interval(p, math.nan, math.nan))
    diffs = stratified_bootstrap([xs, ys], lambda xb, yb: xb.mean(axis=1) - yb.mean(axis=1),
                                 n_boot=n_boot, seed=seed)
    probs = stratified_bootstrap([xs, ys], probability_of_improvement, n_boot=n_boot, seed=seed)
    return Comparison(
        int(xs.size),
        int(ys.size),
        Interval(diff, *percentile_interval(diffs, confidence), p_value=student_p(xs, ys)),
        Interval(p, *percentile_interval(probs, confidence), p_value=rank_p(xs, ys)),
    )


def student_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of Student's t-test of mean(x) = mean(y), variances pooled (2+ values a side); 0 or 1 when
    neither side varies (the t statistic is undefined: the means differ for certain, or not at all)."""
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return 0.0 if x[0] != y[0] else 1.0
    return float(ttest_ind(x, y, equal_var=True).pvalue)


def rank_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of the Mann-Whitney test of P(X > Y) = 1/2: exact without ties, else the normal
    approximation with tie correction (scipy's choice); 1 when every value ties."""
    if np.ptp(np.concatenate([x, y])) == 0:
        return 1.0
    return float(mannwhitneyu(x, y, alternative="two-sided", method="auto").pvalue)
