"""Rewards on hand-made feature sets whose values are known in closed form."""
import math

import pytest
import torch
import torch.nn.functional as F

from rgsyn.config import RewardWeights
from rgsyn.metrics.identity import identity_agreement, identity_prototypes
from rgsyn.rl.rewards import (IdentityReference, combine_rewards, compute_rewards, coverage_diversity,
                              expression_richness, expression_richness_loo, feature_spread,
                              group_advantages, median_bandwidth, standardise)


def e(i, d=4):
    v = torch.zeros(d)
    v[i] = 1.0
    return v


def test_semantic_consistency_known_values():
    f = torch.stack([e(0), -e(0), e(1), F.normalize(e(0) + e(1), dim=0)])
    p = torch.stack([e(0)] * 4)
    r_sem, hit = identity_agreement(f, torch.zeros(4, dtype=torch.long), p[:1])
    torch.testing.assert_close(r_sem, torch.tensor([1.0, 0.0, 0.5, (1 / math.sqrt(2) + 1) / 2]))
    assert hit.all()   # a single prototype is every row's nearest


def test_identity_agreement_nearest_prototype_and_prototypes():
    protos = identity_prototypes([torch.stack([2 * e(0), 2 * e(0) + e(1)]), torch.stack([e(1)])])
    torch.testing.assert_close(protos[0], F.normalize(2 * e(0) + 0.5 * e(1), dim=0))
    f = torch.stack([e(0), 5 * e(1), e(1), F.normalize(e(0) + e(1), dim=0)])
    r_sem, hit = identity_agreement(f, torch.tensor([0, 1, 0, 1]), protos)
    assert hit.tolist() == [True, True, False, False]   # row 3 is nearer identity 0 (0.5 > 0 on e1)
    torch.testing.assert_close(r_sem[1], torch.tensor(1.0))   # the norm of f does not matter
    with pytest.raises(ValueError, match="no real images"):
        identity_prototypes([torch.zeros(0, 4)])


def test_coverage_identical_features_is_one_minus_alpha():
    f = torch.stack([e(0)] * 3)
    r = coverage_diversity(f, f.clone(), alpha=0.5, bandwidth=0.0)   # median heuristic degenerate -> 1
    torch.testing.assert_close(r, torch.full((3,), 0.5))


def test_coverage_hand_computed():
    # h = 1: k(e0,e0) = 1, k(e0,e1) = exp(-2/2) = e^-1
    f_g = torch.stack([e(0), e(1)])
    f_ref = torch.stack([e(0)])
    r = coverage_diversity(f_g, f_ref, alpha=0.5, bandwidth=1.0)
    k = math.exp(-1)
    torch.testing.assert_close(r, torch.tensor([1 - 0.5 * k, k - 0.5 * k]))


def test_coverage_collapsed_batch_scores_below_spread_batch():
    ref = torch.stack([e(i) for i in range(4)])
    collapsed = torch.stack([e(0)] * 4)
    spread = ref.clone()
    h = 1.0
    r_col = coverage_diversity(collapsed, ref, alpha=0.5, bandwidth=h)
    r_spr = coverage_diversity(spread, ref, alpha=0.5, bandwidth=h)
    k = math.exp(-1)
    # collapsed: attract (1 + 3k)/4, repel 1;  spread: attract (1 + 3k)/4, repel k
    torch.testing.assert_close(r_col, torch.full((4,), (1 + 3 * k) / 4 - 0.5))
    torch.testing.assert_close(r_spr, torch.full((4,), (1 + 3 * k) / 4 - 0.5 * k))


def test_median_bandwidth():
    x = torch.tensor([[0.0], [1.0], [3.0]])   # distances 1, 3, 2 -> median 2
    assert median_bandwidth(x) == pytest.approx(2.0)
    assert median_bandwidth(torch.zeros(3, 2)) == 1.0


def test_expression_richness_known_values():
    collapsed = torch.stack([e(0)] * 4)
    spread = torch.stack([e(i) for i in range(4)])
    assert float(feature_spread(collapsed)) == 0.0
    # unbiased trace of covariance of the 4 basis vectors: sum ||e_i - 1/4||^2 / 3 = 4 * 0.75 / 3 = 1
    assert float(feature_spread(spread)) == pytest.approx(1.0)
    s_r = 1.0
    assert float(expression_richness(spread, s_r, eps=0.1, tau=1.0)) == pytest.approx(-(0.1 ** 2))
    assert float(expression_richness(collapsed, s_r, eps=0.1, tau=1.0)) == pytest.approx(-(1.1 ** 2))
    # tau scales the penalty
    assert float(expression_richness(collapsed, s_r, eps=0.1, tau=2.0)) == pytest.approx(-(1.1 / 2) ** 2)


def test_expression_richness_loo_rewards_the_outlier_of_a_collapsed_group():
    # three near-identical samples and one different one: the group spread is below target, and
    # the outlier is the one that raises it -> positive share; duplicates -> smaller shares.
    f = torch.stack([e(0), e(0), e(0), e(1)])
    loo = expression_richness_loo(f, s_r=1.0, eps=0.1, tau=1.0)
    assert loo[3] > 0
    assert (loo[3] > loo[:3]).all()
    torch.testing.assert_close(loo[0], loo[1])
    full = expression_richness(f, 1.0, 0.1, 1.0)
    torch.testing.assert_close(loo[3], full - expression_richness(f[:3], 1.0, 0.1, 1.0))


def test_standardise_and_combine():
    assert torch.equal(standardise(torch.ones(5)), torch.zeros(5))
    z = standardise(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(z, torch.tensor([-1.2247449, 0.0, 1.2247449]))
    raw = {"sem": torch.tensor([1.0, 2.0, 3.0]), "cov": torch.tensor([3.0, 2.0, 1.0]),
           "exp": torch.tensor([5.0, 5.0, 5.0])}
    r, std = combine_rewards(raw, RewardWeights(sem=1.0, cov=0.75, exp=0.25))
    expect = torch.tanh(0.25 * torch.tensor([-1.2247449, 0.0, 1.2247449]))
    torch.testing.assert_close(r, expect)
    assert torch.equal(std["exp"], torch.zeros(3))
    # ablation: no_sem drops the term entirely
    r2, _ = combine_rewards(raw, RewardWeights(sem=0.0))
    torch.testing.assert_close(r2, torch.tanh(0.75 * torch.tensor([1.2247449, 0.0, -1.2247449])))


def test_compute_rewards_grouped_batch():
    real = [torch.stack([e(0), F.normalize(e(0) + 0.1 * e(2), dim=0)]),
            torch.stack([e(1), F.normalize(e(1) + 0.1 * e(3), dim=0)])]
    ref = IdentityReference.from_features(real)
    f_g = torch.stack([e(0), e(0), e(1), e(0)])     # the last sample is labelled 1 but looks like 0
    labels = torch.tensor([0, 0, 1, 1])
    out = compute_rewards(f_g, labels, ref, alpha=0.5, eps=0.1, tau=1.0, bandwidth=1.0)
    assert out["sem"][0] > 0.99 and out["sem"][3] < 0.6
    assert out["cov"][2] > out["cov"][3]
    # identity 0's group is collapsed (two identical samples): repulsion is maximal (1)
    torch.testing.assert_close(out["cov"][0], rbf_mean(e(0), real[0]) - 0.5)
    assert out["exp_group"][0] == out["exp_group"][1]
    adv = group_advantages(out["sem"], labels)
    assert adv[0] == 0 and adv[1] == 0          # no spread within group 0
    assert adv[2] > 0 > adv[3]


def rbf_mean(x, ref, h=1.0):
    return torch.exp(-((ref - x) ** 2).sum(1) / (2 * h * h)).mean()
