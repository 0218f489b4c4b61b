"""Statistics over seeds on cases with a known answer: intervals, the paired t-test and its verdicts,
size verdicts, Holm's correction, the sign-flip robustness check, the noncentral-t detectable effect,
zero-spread comparisons and Fieller's set."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from rgsyn import stats

T975_1, T975_2 = 12.7062047361747, 4.30265272974946     # t quantiles, 1 and 2 degrees of freedom
T80_2 = 1.06066017177982                                 # t_{0.8, 2}


def _seeds(values):
    return {f"seed{i}": float(v) for i, v in enumerate(values)}


def _diffs(d):
    return stats.compare(_seeds(d), _seeds([0.0] * len(d)))


def test_summary_interval_is_the_t_interval():
    s = stats.summarise([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0)
    assert s.half_width == pytest.approx(T975_2 / math.sqrt(3))
    assert (s.low, s.high) == pytest.approx((2.0 - T975_2 / math.sqrt(3), 2.0 + T975_2 / math.sqrt(3)))
    one = stats.summarise([0.7])
    assert one.n == 1 and one.mean == 0.7 and one.std is None and one.half_width is None
    assert stats.summarise([]).mean is None


def test_t_test_decides_and_prints_its_own_p():
    """d = 1, 1.1, 0.9: mean 1, s = 0.1, t = 1 / (0.1 / sqrt 3) = 17.32 at 2 df, p = 0.0033; a sign-flip
    test could not go below 2/2^3 = 0.25 here, and is not offered below 6 seeds."""
    c = _diffs([1.0, 1.1, 0.9])
    assert c.p == pytest.approx(0.0033, abs=5e-5)
    assert c.p == pytest.approx(2 * sps.t.sf(1.0 / (0.1 / math.sqrt(3)), 2))
    assert c.diffs == pytest.approx((1.0, 1.1, 0.9)) and c.sign_flip_p is None
    assert stats.direction_verdict(c) == stats.REPRODUCED
    assert stats.direction_verdict(c, -1.0) == stats.CONTRADICTED


def test_one_outlier_reads_inconclusive_by_the_t_test():
    """[1, 1, 1, 1, 1, 20]: the sign-flip p is 2/64 = 0.031 (every difference positive), but the t-test,
    which decides, gives p = 0.245: inconclusive. The sign-flip p is shown (6 seeds) as a robustness check."""
    c = _diffs([1, 1, 1, 1, 1, 20])
    assert c.p == pytest.approx(0.2453, abs=1e-4) and c.diff.low < 0 < c.diff.high
    assert stats.direction_verdict(c) == stats.INCONCLUSIVE
    assert c.sign_flip_p == pytest.approx(2 / 64) and c.sign_flip_exact


def test_sign_flip_p_against_enumeration():
    rng = np.random.default_rng(3)
    d = rng.normal(1.0, 1.0, size=6)
    c = _diffs(d)
    signs = np.array(np.meshgrid(*[[-1, 1]] * 6)).reshape(6, -1).T
    null = np.abs((signs * d).mean(axis=1))
    assert c.sign_flip_p == pytest.approx(np.mean(null >= abs(d.mean()) - 1e-12))
    big = _diffs(rng.normal(1.0, 1.0, 20))
    assert not big.sign_flip_exact and 0.0 < big.sign_flip_p <= 1.0


def test_zero_mean_difference():
    """Differences -1, 0, +1: mean 0, interval ±t_{0.975,2}/sqrt(3), t = 0 so p = 1."""
    c = stats.compare(_seeds([4.0, 5.0, 7.0]), _seeds([5.0, 5.0, 6.0]))
    assert c.diff.mean == pytest.approx(0.0) and c.diff.std == pytest.approx(1.0)
    assert (c.diff.low, c.diff.high) == pytest.approx((-T975_2 / math.sqrt(3), T975_2 / math.sqrt(3)))
    assert c.p == pytest.approx(1.0)
    assert stats.direction_verdict(c) == stats.INCONCLUSIVE


def test_zero_width_interval_is_no_spread_not_certainty():
    """Every seed gains exactly 2 (up to rounding of the scaled metrics): the interval has zero width,
    the t statistic is undefined; no p, no detectable effect, and the verdict is not 'reproduced'."""
    better = {f"seed{i}": (x + 0.02) * 100 for i, x in enumerate([0.41, 0.43, 0.47, 0.53])}
    than = {f"seed{i}": x * 100 for i, x in enumerate([0.41, 0.43, 0.47, 0.53])}
    c = stats.compare(better, than)
    assert c.n == 4 and c.diff.mean == pytest.approx(2.0) and c.no_spread
    assert c.diff.half_width == pytest.approx(0.0, abs=1e-9)
    assert c.p is None and c.mde is None
    assert stats.direction_verdict(c) == stats.INCONCLUSIVE
    assert stats.size_verdict(c, 2.0) == stats.INCONCLUSIVE
    assert not _diffs([1.0, 1.1, 0.9]).no_spread


def test_two_seeds_and_one_seed():
    c = _diffs([1.0, 3.0])
    assert (c.diff.low, c.diff.high) == pytest.approx((2.0 - T975_1, 2.0 + T975_1))
    assert c.p == pytest.approx(2 * sps.t.sf(2.0 / (math.sqrt(2) / math.sqrt(2)), 1))
    one = stats.compare({"seed0": 0.5}, {"seed0": 0.3})
    assert one.n == 1 and one.diff.mean == pytest.approx(0.2) and one.p is None and one.mde is None
    assert stats.direction_verdict(one) == stats.INCONCLUSIVE


def test_seeds_are_paired_by_name():
    c = stats.compare({"seed0": 5.0, "seed1": 7.0, "seed2": 1.0}, {"seed1": 6.0, "seed0": 4.0})
    assert c.seeds == ("seed0", "seed1") and c.diffs == (1.0, 1.0)


def _with_interval(mean, half, n=3):
    """Differences whose 95% t-interval is mean ± half (n seeds, symmetric spread)."""
    s = half * math.sqrt(n) / sps.t.ppf(0.975, n - 1)
    base = np.linspace(-1.0, 1.0, n)
    return _diffs(mean + s * base / base.std(ddof=1))


def test_published_size_against_the_interval():
    """Published +2.2 against the suite's [0.085, 0.135]: the right sign, far too small: 'smaller'."""
    c = _with_interval(0.11, 0.025)
    assert (c.diff.low, c.diff.high) == pytest.approx((0.085, 0.135))
    assert stats.size_verdict(c, 2.2) == stats.SMALLER
    assert stats.direction_verdict(c) == stats.REPRODUCED          # the toy profile's direction-only reading
    assert stats.size_verdict(c, 0.1) == stats.CONSISTENT
    assert stats.size_verdict(c, 0.05) == stats.LARGER             # the interval lies above the published value
    assert stats.size_verdict(_with_interval(-0.11, 0.025), 2.2) == stats.CONTRADICTED
    assert stats.size_verdict(_with_interval(0.11, 0.2), 2.2) == stats.INCONCLUSIVE


def test_negative_claims_mirror():
    """A published decrease of 1.5: an interval [-2, -1] holds it, [-0.5, -0.2] is a smaller decrease,
    a clear increase contradicts it."""
    assert stats.size_verdict(_with_interval(-1.5, 0.5), -1.5) == stats.CONSISTENT
    assert stats.size_verdict(_with_interval(-0.35, 0.15), -1.5) == stats.SMALLER
    assert stats.size_verdict(_with_interval(-3.0, 0.5), -1.5) == stats.LARGER
    assert stats.size_verdict(_with_interval(1.0, 0.5), -1.5) == stats.CONTRADICTED
    assert stats.direction_verdict(_with_interval(-1.5, 0.5), stats.expected_sign(-1.5)) == stats.REPRODUCED


def test_holm_against_a_hand_computation():
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4). Sorted: 0.005·4 = 0.02; 0.01·3 = 0.03; 0.03·2 = 0.06;
    0.04·1 = 0.04 -> 0.06 (running maximum). So 0.005 and 0.01 stand at 0.05, 0.03 and 0.04 do not."""
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.01, None, 0.2]) == [pytest.approx(0.02), None, pytest.approx(0.2)]
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_chance_flags():
    expected, any_flag = stats.chance_flags(21)
    assert expected == pytest.approx(1.05) and any_flag == pytest.approx(1 - 0.95 ** 21)
    assert any_flag == pytest.approx(0.659, abs=1e-3)


def test_detectable_effect_has_power_0_8_by_simulation():
    """The detectable effect at n = 3, s = 1: simulate the paired t-test at that true mean; it rejects
    80% of the time. The former approximation (t_{0.975} + t_{0.8}) s / sqrt(n) has power 0.77."""
    mde = stats.detectable_effect(1.0, 3)
    rng = np.random.default_rng(0)
    d = rng.normal(mde, 1.0, size=(200_000, 3))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(3))
    assert np.mean(np.abs(t) > T975_2) == pytest.approx(0.8, abs=0.004)
    approx = (T975_2 + T80_2) / math.sqrt(3)
    d = rng.normal(approx, 1.0, size=(200_000, 3))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(3))
    assert np.mean(np.abs(t) > T975_2) == pytest.approx(0.766, abs=0.004)
    assert mde > approx


def test_detectable_effect_against_the_noncentral_t_power():
    for n, s in ((2, 1.0), (3, 2.5), (6, 0.3), (30, 1.0)):
        mde = stats.detectable_effect(s, n)
        nc, crit = mde * math.sqrt(n) / s, sps.t.ppf(0.975, n - 1)
        far = np.nan_to_num(sps.nct.cdf(-crit, n - 1, nc))          # underflows to nan for large nc
        assert sps.nct.sf(crit, n - 1, nc) + far == pytest.approx(0.8, abs=1e-9)
    assert stats.detectable_effect(1.0, 30) < stats.detectable_effect(1.0, 3) / 3
    assert stats.detectable_effect(1.0, 1) is None and stats.detectable_effect(0.0, 5) is None
    assert _diffs([1.0, 1.1, 0.9]).mde == pytest.approx(stats.detectable_effect(0.1, 3))


def _t_of(a, b, rho):
    d = np.asarray(a) - rho * np.asarray(b)
    return abs(d.mean()) / (d.std(ddof=1) / math.sqrt(len(d)))


def test_fieller_interval():
    b = [2.0, 3.0, 4.0]
    r = stats.ratio_interval([x / 2 for x in b], b)            # a = b / 2 exactly
    assert r.kind == stats.INTERVAL and (r.estimate, r.low, r.high) == pytest.approx((0.5, 0.5, 0.5))
    a, b = [1.0, 1.2, 0.8], [2.0, 2.1, 1.9]
    r = stats.ratio_interval(a, b)
    assert r.kind == stats.INTERVAL and r.estimate == pytest.approx(0.5) and r.low < 0.5 < r.high
    for rho in (r.low, r.high):                               # the paired t-test of a - rho·b inverted
        assert _t_of(a, b, rho) == pytest.approx(T975_2)
    assert stats.ratio_interval([1.0], [2.0]).kind is None


def test_fieller_complement_and_whole_line():
    """The denominator's interval contains 0 but the numerator is clear of 0: the set is the complement
    of an interval, two half-lines that exclude the gap (and here 0). Both noisy: the whole line."""
    a, b = [2.0, 2.2, 1.9], [0.5, -0.3, 1.0]
    r = stats.ratio_interval(a, b)
    assert r.kind == stats.COMPLEMENT and r.low < 0 < r.high < r.estimate
    for rho in (r.low, r.high):
        assert _t_of(a, b, rho) == pytest.approx(T975_2)
    assert _t_of(a, b, 0.0) > T975_2                           # 0 is excluded: a ratio of 0 is rejected
    assert _t_of(a, b, r.low - 5.0) < T975_2 and _t_of(a, b, r.high + 50.0) < T975_2
    w = stats.ratio_interval([1.0, -1.0, 0.5], [0.5, -0.3, 1.0])
    assert w.kind == stats.WHOLE_LINE and w.low is None and w.high is None
    with pytest.raises(ValueError, match="paired"):
        stats.ratio_interval([1.0, 2.0], [1.0])
