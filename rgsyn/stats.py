"""Statistics over seeds: summaries, the paired test, verdicts, Holm's correction and Fieller's set.

Every number here comes from scipy.stats; nothing hand-rolls a quantile.

- `summarise(values)`: n, mean, sample std (ddof=1) and the 95% t-interval
  mean ± t_{0.975, n-1} · s / sqrt(n).
- `compare(better, than)`: the per-seed paired difference d_i = better_i - than_i (seeds matched
  by name). One test decides: the two-sided paired t-test (scipy.stats.ttest_1samp of d against 0);
  its p and its 95% interval are the same test, so p < 0.05 exactly when the interval excludes 0.
  From `SIGN_FLIP_MIN_SEEDS` seeds on, the exact sign-flip permutation p (all 2^n sign patterns of
  d, scipy.stats.permutation_test) is added as a robustness check; below that its smallest value
  (2/2^n) cannot reach 0.05, so it is not offered. Identical differences on every seed (no spread)
  give no test: the t statistic is undefined, and agreement of coarse metrics over few seeds can be
  chance, so such a comparison is never read as certain.
- `detectable_effect(std, n)`: the true paired difference that a two-sided paired t-test at
  alpha = 0.05 detects with power 0.8 at spread `std`, from the exact noncentral t:
  power(delta) = P(|T'| > t_{1-alpha/2, n-1}), T' ~ nct(n - 1, delta · sqrt(n) / std), solved for delta.
- `direction_verdict(c, sign)`: reproduced (the interval excludes 0 on the claimed side),
  contradicted (it excludes 0 on the other side) or inconclusive.
- `size_verdict(c, published)`: a signed claim judged against its published size (paper profile).
  With s the sign of the published value and [lo, hi] the interval mirrored by s (so that the claim
  reads as positive): inconclusive (lo <= 0 <= hi), contradicted (hi < 0: the wrong sign),
  consistent (lo <= |published| <= hi), smaller (0 < hi < |published|), larger (lo > |published|).
  A negative claim (a published decrease) is the mirror image: 'smaller' is then a smaller decrease.
- `holm(ps)`: Holm's step-down adjusted p-values within one family of tests.
- `ratio_interval(a, b)`: Fieller's 95% set for mean(a) / mean(b) from paired samples (the share of
  the oracle gain that a variant recovers): the rho with (ā - rho·b̄)^2 <= t^2/n · var(a_i - rho·b_i),
  the paired t-test of a - rho·b inverted. The set is an interval, the complement of an interval
  (two half-lines), a half-line or the whole line, and is reported as such.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
POWER = 0.8
SIGN_FLIP_MIN_SEEDS = 6        # 2/2^6 = 0.031: the first n at which the sign-flip p can fall below 0.05
EXACT_LIMIT = 1 << 16          # up to 16 seeds every sign pattern is enumerated
RANDOM_RESAMPLES = 9999        # beyond that, a seeded Monte Carlo permutation test
NO_SPREAD_RTOL = 1e-9          # differences equal to this relative precision count as identical

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
CONSISTENT, SMALLER, LARGER = "consistent", "smaller", "larger"
SUPPORTING = (REPRODUCED, CONSISTENT)       # the verdicts that count as the claim holding
VERDICT_CODES = {REPRODUCED: 1, CONSISTENT: 1, SMALLER: 0, LARGER: 0, INCONCLUSIVE: 0, CONTRADICTED: -1}


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
    diffs: tuple[float, ...]           # per seed, in the order of `seeds`
    diff: Summary
    p: float | None                    # two-sided paired t-test p (None: n < 2 or no spread)
    sign_flip_p: float | None          # exact sign-flip p, only from SIGN_FLIP_MIN_SEEDS seeds on
    sign_flip_exact: bool
    mde: float | None                  # detectable effect (alpha 0.05, power 0.8), None: n < 2 or no spread

    @property
    def no_spread(self) -> bool:
        """Every seed gave the same difference: the interval has zero width and there is no test."""
        return self.diff.std is not None and self.diff.std <= NO_SPREAD_RTOL * max(1.0, abs(self.diff.mean))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seeds"], d["diffs"], d["no_spread"] = list(self.seeds), list(self.diffs), self.no_spread
        return d


def _power(nc: float, df: int, alpha: float) -> float:
    """P(|T'| > t_{1-alpha/2, df}) for T' ~ nct(df, nc), nc >= 0."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    lower = float(stats.nct.cdf(-crit, df, nc))      # the far tail: scipy returns nan once it underflows
    return float(stats.nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)


def detectable_effect(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The true mean difference at which the two-sided paired t-test over n seeds with spread `std`
    has the given power (exact noncentral t); None with n < 2 or no spread."""
    if n < 2 or not std > 0:
        return None
    df = n - 1
    hi = 1.0
    while _power(hi, df, alpha) < power:
        hi *= 2.0
    nc = optimize.brentq(lambda x: _power(x, df, alpha) - power, 0.0, hi, xtol=1e-12)
    return float(nc * std / math.sqrt(n))


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
    c = Comparison(diff.n, seeds, tuple(float(x) for x in d), diff, None, None, True, None)
    if diff.n < 2 or c.no_spread:
        return c
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    flip, exact = sign_flip_p(d) if diff.n >= SIGN_FLIP_MIN_SEEDS else (None, True)
    return Comparison(diff.n, seeds, c.diffs, diff, p, flip, exact, detectable_effect(diff.std, diff.n))


def expected_sign(published: float | None) -> float:
    return -1.0 if published is not None and published < 0 else 1.0


def direction_verdict(c: Comparison, sign: float = 1.0) -> str:
    """sign: +1 when the claim says better > than, -1 when it says better < than."""
    if c.p is None or c.p >= ALPHA:
        return INCONCLUSIVE
    return REPRODUCED if c.diff.mean * sign > 0 else CONTRADICTED


def size_verdict(c: Comparison, published: float) -> str:
    """A signed claim against its published size (see the module docstring)."""
    if c.p is None or c.p >= ALPHA:
        return INCONCLUSIVE
    s = expected_sign(published)
    lo, hi = sorted((c.diff.low * s, c.diff.high * s))
    target = abs(published)
    if hi < 0:
        return CONTRADICTED
    if lo > target:
        return LARGER
    return CONSISTENT if hi >= target else SMALLER


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values: sorted p_(1) <= ... <= p_(m), adjusted
    p~_(i) = max_{j <= i} min(1, (m - j + 1) · p_(j)). None (no test) stays None and is not counted in m."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m, out, running = len(idx), list(ps), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def chance_flags(m: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Expected number of rows flagged at level alpha among m independent tests of true nulls, and
    the probability that at least one is: (m · alpha, 1 - (1 - alpha)^m)."""
    return m * alpha, 1.0 - (1.0 - alpha) ** m


# ------------------------------------------------------------------------------- Fieller
INTERVAL, COMPLEMENT, HALF_LINE, WHOLE_LINE = "interval", "complement", "half-line", "whole line"


@dataclass(frozen=True)
class Ratio:
    """mean(a) / mean(b) with Fieller's 95% set. kind: interval [low, high]; complement
    (-inf, low] ∪ [high, inf); half-line [low, inf) or (-inf, high] (the other bound None); whole
    line; None with n < 2. estimate None when mean(b) is 0."""

    n: int
    estimate: float | None
    low: float | None
    high: float | None
    kind: str | None


def ratio_interval(a, b) -> Ratio:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if len(b) != n:
        raise ValueError(f"ratio_interval: a and b must be paired, got {n} and {len(b)} values")
    if n == 0:
        return Ratio(0, None, None, None, None)
    ma, mb = float(a.mean()), float(b.mean())
    est = ma / mb if mb != 0 else None
    if n < 2:
        return Ratio(n, est, None, None, None)
    cov = np.cov(np.vstack([a, b]), ddof=1)
    q = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) ** 2 / n
    # the set {rho : qa·rho^2 + qb·rho + qc <= 0}
    qa = mb * mb - q * cov[1, 1]
    qb = -2.0 * (ma * mb - q * cov[0, 1])
    qc = ma * ma - q * cov[0, 0]
    disc = qb * qb - 4 * qa * qc
    if qa == 0.0:                                     # linear: a half-line (or all of it)
        if qb == 0.0:
            return Ratio(n, est, None, None, WHOLE_LINE)
        edge = -qc / qb
        return Ratio(n, est, edge, None, HALF_LINE) if qb < 0 else Ratio(n, est, None, edge, HALF_LINE)
    if disc < 0 and qa < 0:                           # the parabola is below 0 everywhere
        return Ratio(n, est, None, None, WHOLE_LINE)
    disc = max(disc, 0.0)                             # qa > 0: the estimate is always inside, so disc >= 0 but for rounding
    root = math.sqrt(disc)
    r1, r2 = sorted(((-qb - root) / (2 * qa), (-qb + root) / (2 * qa)))
    return Ratio(n, est, float(r1), float(r2), INTERVAL if qa > 0 else COMPLEMENT)
