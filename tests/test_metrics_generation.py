"""Generation metrics on hand-made feature sets with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from rgsyn.metrics.generation import density_coverage, frechet_distance, memorisation, real_reference


def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_shifted_set_is_squared_shift():
    x = np.random.default_rng(1).normal(size=(300, 3))
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), abs=1e-6)


def test_frechet_scaled_isotropic_gaussians_closed_form():
    # two points per axis make the sample covariance exact: X = {+-e_i * a}, cov = diag(a^2 * 2/(2n-1))
    # Use a direct closed form instead: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(s1) - sqrt(s2))^2
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 2))
    y = 3 * x
    s = np.cov(x, rowvar=False)
    ev = np.linalg.eigvalsh(s)
    expected = float(((np.sqrt(ev) - np.sqrt(9 * ev)) ** 2).sum())  # same eigvecs, mean ~0 both
    mu = x.mean(0)
    expected += float((mu - 3 * mu) @ (mu - 3 * mu))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_density_coverage_hand_computed():
    # real points on a line at 0, 1, 2, 3, 10; k=1 radii = NN distance: 1, 1, 1, 1, 7
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    gen = np.array([[0.5], [9.0], [100.0]])
    # 0.5: inside balls of 0 (|0.5|<1), 1 (0.5<1) -> 2; 9.0: inside ball of 10 (1<7) and of 3 (6<1? no) -> 1
    # 100: none. density = (2 + 1 + 0) / (1 * 3) = 1.0
    # coverage: real 0 (0.5 inside) yes, 1 yes, 2 (nearest gen 0.5, 1.5 < 1? no), 3 (2.5? no; 6? no) no,
    # 10 (1 < 7) yes -> 3/5
    out = density_coverage(real, gen, k=1)
    assert out["density"] == pytest.approx(1.0)
    assert out["coverage"] == pytest.approx(0.6)


def test_density_coverage_same_distribution_near_one_and_collapsed_low_coverage():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 2))
    gen = rng.normal(size=(400, 2))
    same = density_coverage(real, gen, k=5)
    assert 0.8 < same["density"] < 1.2 and same["coverage"] > 0.9
    collapsed = density_coverage(real, np.zeros((400, 2)), k=5)
    assert collapsed["coverage"] < 0.2


def test_memorisation_copies_and_far_samples():
    train = np.eye(4)
    gen = np.array([[1.0, 0, 0, 0],           # exact copy -> 1.0
                    [2.0, 0, 0, 0],           # scaled copy -> cosine 1.0
                    [1.0, 1.0, 0, 0],         # cos = 1/sqrt(2)
                    [-1.0, -1.0, -1.0, -1.0]])  # nearest cos = -0.5
    out = memorisation(train, gen, threshold=0.95)
    sims = np.array([1.0, 1.0, 1 / np.sqrt(2), -0.5])
    assert out["nn_sim_mean"] == pytest.approx(sims.mean())
    assert out["nn_sim_max"] == pytest.approx(1.0)
    assert out["share_above"] == pytest.approx(0.5)
    assert out["threshold"] == 0.95


def test_real_reference_leaves_each_sample_out():
    # two near-duplicates (one person photographed twice) and two lone samples
    train = np.array([[1.0, 0, 0], [0.99, 0.141, 0], [0, 1.0, 0], [0, 0, 1.0]])
    out = real_reference(train, threshold=0.95)
    c = 0.99 / np.hypot(0.99, 0.141)                     # cosine of the pair, ~0.99
    nn = np.array([c, c, 0.141 / np.hypot(0.99, 0.141), 0.0])
    assert out["nn_sim_mean"] == pytest.approx(nn.mean())
    assert out["share_above"] == pytest.approx(0.5)      # not 1.0: nobody is its own neighbour
    with pytest.raises(ValueError, match="at least 2 rows"):
        real_reference(np.ones((1, 3)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="dims differ"):
        memorisation(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="at least 6 rows"):
        density_coverage(np.ones((5, 2)), np.ones((5, 2)), k=5)
