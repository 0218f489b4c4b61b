"""Statistics over seeds on cases with a known answer: intervals, the sign-flip test, the detectable
effect, the three verdicts and Fieller's ratio interval."""
import math

import numpy as np
import pytest

from rgsyn import stats

T975_1, T975_2 = 12.7062047361747, 4.30265272974946     # t quantiles, 1 and 2 degrees of freedom
T80_2 = 1.06066017177982                                 # t_{0.8, 2}


def _seeds(values):
    return {f"seed{i}": float(v) for i, v in enumerate(values)}


def test_summary_interval_is_the_t_interval():
    s = stats.summarise([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0)
    assert s.half_width == pytest.approx(T975_2 / math.sqrt(3))
    assert (s.low, s.high) == pytest.approx((2.0 - T975_2 / math.sqrt(3), 2.0 + T975_2 / math.sqrt(3)))
    one = stats.summarise([0.7])
    assert one.n == 1 and one.mean == 0.7 and one.std is None and one.half_width is None
    assert stats.summarise([]).mean is None


def test_constant_difference():
    """Every seed gains exactly 2: zero spread, the interval is the point 2, so it excludes 0; the
    exact sign-flip p is 2/2^n (only the all-plus and all-minus patterns are as extreme)."""
    better = _seeds([12.0, 15.0, 11.0, 20.0])
    than = _seeds([10.0, 13.0, 9.0, 18.0])
    c = stats.compare(better, than)
    assert c.n == 4 and c.diff.mean == pytest.approx(2.0) and c.diff.std == pytest.approx(0.0, abs=1e-12)
    assert c.diff.low == pytest.approx(2.0) and c.diff.high == pytest.approx(2.0)
    assert c.p == pytest.approx(2 / 16) and c.p_exact
    assert c.mde == pytest.approx(0.0, abs=1e-9)
    assert stats.verdict(c) == stats.REPRODUCED


def test_zero_mean_difference():
    """Differences -1, 0, +1: mean 0, interval ±t_{0.975,2}/sqrt(3), p = 1 (every sign pattern is
    at least as extreme as 0), detectable effect (t_{0.975,2} + t_{0.8,2}) / sqrt(3)."""
    c = stats.compare(_seeds([4.0, 5.0, 7.0]), _seeds([5.0, 5.0, 6.0]))
    assert c.diff.mean == pytest.approx(0.0) and c.diff.std == pytest.approx(1.0)
    assert (c.diff.low, c.diff.high) == pytest.approx((-T975_2 / math.sqrt(3), T975_2 / math.sqrt(3)))
    assert c.p == pytest.approx(1.0)
    assert c.mde == pytest.approx((T975_2 + T80_2) / math.sqrt(3))
    assert stats.verdict(c) == stats.INCONCLUSIVE
    assert stats.compare(_seeds([1.0, 2.0]), _seeds([1.0, 2.0])).p == 1.0     # all differences exactly 0


def test_two_seeds():
    """d = 1, 3: mean 2, s = sqrt(2), interval 2 ± t_{0.975,1}; sign patterns give means 2, 1, -1, -2,
    so p = 2/4."""
    c = stats.compare(_seeds([1.0, 3.0]), _seeds([0.0, 0.0]))
    assert c.n == 2 and c.diff.mean == pytest.approx(2.0)
    assert (c.diff.low, c.diff.high) == pytest.approx((2.0 - T975_1, 2.0 + T975_1))
    assert c.p == pytest.approx(0.5)
    assert stats.verdict(c) == stats.INCONCLUSIVE


def test_one_seed_is_inconclusive_with_no_interval():
    c = stats.compare({"seed0": 0.5}, {"seed0": 0.3})
    assert c.n == 1 and c.diff.mean == pytest.approx(0.2)
    assert c.diff.low is None and c.p is None and c.mde is None
    assert stats.verdict(c) == stats.INCONCLUSIVE
    assert stats.published_inside(c, 0.2) is None


def test_seeds_are_paired_by_name():
    c = stats.compare({"seed0": 5.0, "seed1": 7.0, "seed2": 1.0}, {"seed1": 6.0, "seed0": 4.0})
    assert c.seeds == ("seed0", "seed1") and c.diff.mean == pytest.approx(1.0)


@pytest.mark.parametrize("diffs,published,expected", [
    ([2.0, 2.5, 3.0, 2.2], None, stats.REPRODUCED),        # direction only: better > than holds
    ([2.0, 2.5, 3.0, 2.2], 1.0, stats.REPRODUCED),
    ([-2.0, -2.5, -3.0, -2.2], 1.0, stats.CONTRADICTED),   # the opposite direction, clear of 0
    ([-2.0, -2.5, -3.0, -2.2], -1.5, stats.REPRODUCED),    # a published decrease, reproduced
    ([2.0, -2.5, 3.0, -2.2], 1.0, stats.INCONCLUSIVE),     # the interval contains 0
])
def test_three_verdicts(diffs, published, expected):
    c = stats.compare(_seeds(diffs), _seeds([0.0] * len(diffs)))
    assert stats.verdict(c, stats.expected_sign(published)) == expected


def test_published_inside_and_permutation_p_against_enumeration():
    rng = np.random.default_rng(3)
    d = rng.normal(1.0, 1.0, size=6)
    c = stats.compare(_seeds(d), _seeds(np.zeros(6)))
    # enumerate all 2^6 sign patterns by hand: the share at least as extreme as |mean(d)|
    signs = np.array(np.meshgrid(*[[-1, 1]] * 6)).reshape(6, -1).T
    null = np.abs((signs * d).mean(axis=1))
    assert c.p == pytest.approx(np.mean(null >= abs(d.mean()) - 1e-12))
    assert stats.published_inside(c, c.diff.mean) is True
    assert stats.published_inside(c, c.diff.high + 1.0) is False
    big = stats.compare(_seeds(rng.normal(1.0, 1.0, 20)), _seeds(np.zeros(20)))
    assert not big.p_exact and 0.0 < big.p <= 1.0


def test_detectable_effect_shrinks_with_seeds():
    few, many = stats.minimum_detectable_effect(1.0, 3), stats.minimum_detectable_effect(1.0, 30)
    assert few == pytest.approx((T975_2 + T80_2) / math.sqrt(3))
    assert many < few / 3
    assert stats.minimum_detectable_effect(1.0, 1) is None


def test_fieller_ratio_interval():
    # a = b / 2 exactly: the ratio is 0.5 with no uncertainty about it
    b = [2.0, 3.0, 4.0]
    r = stats.ratio_interval([x / 2 for x in b], b)
    assert r.estimate == pytest.approx(0.5) and r.low == pytest.approx(0.5) and r.high == pytest.approx(0.5)
    # noisy: the interval holds the estimate and is bounded while b is clearly non-zero
    r = stats.ratio_interval([1.0, 1.2, 0.8], [2.0, 2.1, 1.9])
    assert r.estimate == pytest.approx(0.5) and r.low < r.estimate < r.high
    # the same rho bounds make the paired t statistic of a - rho*b exactly t_{0.975, 2}
    for rho in (r.low, r.high):
        d = np.array([1.0, 1.2, 0.8]) - rho * np.array([2.0, 2.1, 1.9])
        assert abs(d.mean()) / (d.std(ddof=1) / math.sqrt(3)) == pytest.approx(T975_2)
    # the denominator's interval contains 0: no bounded interval
    u = stats.ratio_interval([1.0, 1.2, 0.8], [2.0, -2.1, 1.9])
    assert u.low is None and u.high is None
    assert stats.ratio_interval([1.0], [2.0]).low is None
