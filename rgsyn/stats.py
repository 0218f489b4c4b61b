"""Statistics over seeds: summaries, paired comparisons, verdicts and ratio intervals.

Every number here comes from scipy.stats; nothing hand-rolls a quantile.

- `summarise(values)`: n, mean, sample std (ddof=1) and the 95% t-interval
  mean ± t_{0.975, n-1} · s / sqrt(n).
- `compare(better, than)`: the per-seed paired difference d_i = better_i - than_i (seeds matched
  by name), its mean, 95% t-interval, the two-sided p-value of an exact sign-flip permutation
  test (scipy.stats.permutation_test, permutation_type='samples' on the paired data: all 2^n sign
  patterns of d, exact while 2^n <= EXACT_LIMIT), and the minimum detectable effect at the observed
  spread, t-based for a paired two-sided test at alpha = 0.05 and power 0.8 (Bloom 1995, "Minimum
  detectable effects"):  MDE = (t_{1-alpha/2, n-1} + t_{power, n-1}) · s_d / sqrt(n).
- `verdict(comparison, published)`: reproduced (the published direction holds and the interval
  excludes 0), contradicted (the opposite direction, the interval excludes 0) or inconclusive
  (the interval contains 0, or is undefined with fewer than 2 seeds).
- `ratio_interval(a, b)`: Fieller's interval for mean(a) / mean(b) from paired samples (the share
  of the oracle gain that a variant recovers): the rho with
  (ā - rho·b̄)^2 <= t^2/n · var(a_i - rho·b_i), i.e. the paired t-test of a - rho·b inverted.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
POWER = 0.8
EXACT_LIMIT = 1 << 16          # up to 16 seeds every sign pattern is enumerated
RANDOM_RESAMPLES = 9999        # beyond that, a seeded Monte Carlo permutation test
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
VERDICT_CODES = {REPRODUCED: 1, INCONCLUSIVE: 0, CONTRADICTED: -1}


@dataclass(frozen=True)
class Summary:
    """n, mean, std and the 95% interval (low, high); std/low/high are None with n < 2."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2.0


def _t_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    if std == 0.0:                       # no spread: scipy would divide by a zero scale
        return mean, mean
    lo, hi = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(lo), float(hi)


def summarise(values) -> Summary:
    arr = np.asarray(list(values), dtype=float)
    n = len(arr)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = float(arr.mean())
    if n < 2:
        return Summary(1, mean, None, None, None)
    std = float(arr.std(ddof=1))
    return Summary(n, mean, std, *_t_interval(mean, std, n))


@dataclass(frozen=True)
class Comparison:
    """The paired difference better - than over the seeds both have."""

    n: int
    seeds: tuple[str, ...]
    diff: Summary
    p: float | None            # two-sided sign-flip permutation p-value (None with n < 2)
    p_exact: bool
    mde: float | None          # minimum detectable effect (alpha 0.05, power 0.8), None with n < 2

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d


def minimum_detectable_effect(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """(t_{1-alpha/2, n-1} + t_{power, n-1}) · std / sqrt(n) for a paired two-sided t-test."""
    if n < 2:
        return None
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * std / math.sqrt(n))


def sign_flip_p(d: np.ndarray) -> tuple[float, bool]:
    """Two-sided p of H0 'the paired difference is symmetric about 0' (statistic: the mean)."""
    n = len(d)
    exact = 2 ** n <= EXACT_LIMIT
    if not np.any(d):
        return 1.0, exact                # every sign pattern gives the observed mean 0
    res = stats.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis=axis),
                                 permutation_type="samples", vectorized=True, alternative="two-sided",
                                 n_resamples=np.inf if exact else RANDOM_RESAMPLES,
                                 random_state=np.random.default_rng(0))
    return float(res.pvalue), exact


def compare(better: dict[str, float], than: dict[str, float]) -> Comparison:
    """Pair by seed name: only seeds both variants ran count."""
    seeds = tuple(s for s in better if s in than)
    d = np.asarray([better[s] - than[s] for s in seeds], dtype=float)
    diff = summarise(d)
    if diff.n < 2:
        return Comparison(diff.n, seeds, diff, None, True, None)
    p, exact = sign_flip_p(d)
    return Comparison(diff.n, seeds, diff, p, exact, minimum_detectable_effect(diff.std, diff.n))


def verdict(c: Comparison, expected_sign: float = 1.0) -> str:
    """expected_sign: +1 when the claim says better > than (the default, a claim without a
    number), the sign of the published difference otherwise."""
    if c.diff.low is None:
        return INCONCLUSIVE
    if c.diff.low > 0 or c.diff.high < 0:
        return REPRODUCED if c.diff.mean * expected_sign > 0 else CONTRADICTED
    return INCONCLUSIVE


def expected_sign(published: float | None) -> float:
    return -1.0 if published is not None and published < 0 else 1.0


def published_inside(c: Comparison, published: float | None, scale: float = 1.0) -> bool | None:
    """Whether a published difference (in the published unit; `scale` maps a fraction onto it)
    lies inside the reproduced interval; None when either is undefined."""
    if published is None or c.diff.low is None:
        return None
    return bool(c.diff.low * scale <= published <= c.diff.high * scale)


@dataclass(frozen=True)
class Ratio:
    """mean(a) / mean(b) with its Fieller 95% interval; low/high None when the interval is
    unbounded (the denominator's interval contains 0) or n < 2."""

    n: int
    estimate: float | None
    low: float | None
    high: float | None


def ratio_interval(a, b) -> Ratio:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n == 0 or len(b) != n:
        return Ratio(n, None, None, None)
    ma, mb = float(a.mean()), float(b.mean())
    est = ma / mb if mb != 0 else None
    if n < 2:
        return Ratio(n, est, None, None)
    cov = np.cov(np.vstack([a, b]), ddof=1)
    q = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) ** 2 / n
    qa = mb * mb - q * cov[1, 1]                      # rho^2 coefficient
    qb = -2.0 * (ma * mb - q * cov[0, 1])
    qc = ma * ma - q * cov[0, 0]
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:                           # b's mean is not clear of 0: unbounded
        return Ratio(n, est, None, None)
    root = math.sqrt(disc)
    return Ratio(n, est, float((-qb - root) / (2 * qa)), float((-qb + root) / (2 * qa)))
