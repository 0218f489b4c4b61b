"""The multi-objective reward of the RL stage (PAPER.md, step 4).

All rewards are computed on identity-encoder features (L2-normalised rows). Notation: ``f_g`` a
generated sample's feature, ``y`` its identity, ``p_y`` the identity prototype (mean real feature),
``F_ref`` the real features of identity ``y``, ``F_gen`` the other generated features of identity
``y`` in the rollout batch (a rollout is grouped by identity: ``samples_per_id`` trajectories per
identity), ``k`` an RBF kernel.

- ``R_sem = (cos(f_g, p_y) + 1) / 2``, in [0, 1] (semantic consistency: ``rgsyn.metrics.identity``,
  the one definition that the generation metrics and the gold check share).
- ``coverage_diversity``: ``R_cov = mean_k(f_g, F_ref) - alpha * mean_k(f_g, F_gen)``.
  ``F_gen`` excludes the sample itself. The value is already per-sample given the rest of the
  group, and that is the attribution used for the policy gradient.
- ``expression_richness``: ``R_exp = -((S_g - (1 + eps) * S_r) / tau)^2`` with ``S`` the trace of the
  feature covariance (unbiased, ``sum ||f - mean||^2 / (n - 1)``; 0 for fewer than two rows) of the
  generated group (g) and of the identity's real images (r). This is a set-level quantity.
  **Per-sample attribution** (``expression_richness_loo``): the sample's marginal contribution to
  its identity group, ``R_exp(G) - R_exp(G without i)`` (leave-one-out). A sample that moves the
  group's spread towards ``(1 + eps) * S_r`` gets a positive share, one that moves it away a
  negative share. The group-level value is what the curves log as ``reward_exp``.

Combination (``combine_rewards``): each per-sample reward is standardised over the batch,
``R~ = (R - mean) / std`` (0 where the batch has no spread), then
``R = tanh(l_sem * R_sem~ + l_cov * R_cov~ + l_exp * R_exp~)``; the weights of a reward variant are
``params.rl.reward_variants[<name>]`` (paper: 1.0 / 0.75 / 0.25; an ablation sets one to 0).

RBF kernel: ``k(a, b) = exp(-||a - b||^2 / (2 h^2))``. ``h`` is ``rl.rbf_bandwidth`` or, when that is 0,
the median heuristic: the median of the non-zero pairwise distances among all features of the call
(generated and reference together), so the whole batch is scored with one bandwidth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rgsyn.metrics.identity import identity_agreement, identity_prototypes

REWARD_NAMES = ("sem", "cov", "exp")


def median_bandwidth(*feats: Tensor) -> float:
    """Median heuristic: median of the non-zero pairwise Euclidean distances (1.0 if all coincide)."""
    x = torch.cat([f.float() for f in feats if f.numel()], 0)
    d = torch.cdist(x, x)
    iu = torch.triu_indices(len(x), len(x), offset=1)
    d = d[iu[0], iu[1]]
    d = d[d > 1e-12]
    return float(d.median()) if d.numel() else 1.0


def rbf_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    """``k(a, b) = exp(-||a - b||^2 / (2 h^2))`` for all pairs -> (len(a), len(b))."""
    d2 = torch.cdist(a.float(), b.float()).pow(2)
    return torch.exp(-d2 / (2.0 * bandwidth ** 2))


def coverage_diversity(f_g: Tensor, f_ref: Tensor, alpha: float, bandwidth: float = 0.0) -> Tensor:
    """``R_cov = mean_k(f_g, F_ref) - alpha * mean_k(f_g, F_gen)`` for one identity group.

    f_g: (n, D) the group's generated features; f_ref: (m, D) the identity's real features.
    ``F_gen`` for row i is the other n - 1 generated rows (0 repulsion if n == 1).
    bandwidth: the RBF ``h``; 0 = median heuristic over ``f_g`` and ``f_ref``. -> (n,)
    """
    h = bandwidth if bandwidth > 0 else median_bandwidth(f_g, f_ref)
    attract = rbf_kernel(f_g, f_ref, h).mean(1)
    n = f_g.shape[0]
    if n < 2:
        return attract
    k_gg = rbf_kernel(f_g, f_g, h)
    repel = (k_gg.sum(1) - k_gg.diagonal()) / (n - 1)
    return attract - alpha * repel


def feature_spread(f: Tensor) -> Tensor:
    """``S = trace(cov(f))`` (unbiased); 0 for fewer than two rows."""
    n = f.shape[0]
    if n < 2:
        return f.new_zeros(())
    f = f.float()
    return (f - f.mean(0)).pow(2).sum() / (n - 1)


def expression_richness(f_g: Tensor, s_r: Tensor | float, eps: float, tau: float) -> Tensor:
    """Set-level ``R_exp = -((S_g - (1 + eps) * S_r) / tau)^2`` of one identity group (scalar).

    f_g: (n, D) generated features of the group; s_r: ``S_r`` of the identity's real features
    (``feature_spread`` of them).
    """
    return -((feature_spread(f_g) - (1.0 + eps) * s_r) / tau) ** 2


def expression_richness_loo(f_g: Tensor, s_r: Tensor | float, eps: float, tau: float) -> Tensor:
    """Per-sample ``R_exp``: leave-one-out marginal contribution ``R_exp(G) - R_exp(G without i)``. -> (n,)"""
    full = expression_richness(f_g, s_r, eps, tau)
    n = f_g.shape[0]
    out = []
    for i in range(n):
        rest = torch.cat([f_g[:i], f_g[i + 1:]], 0)
        out.append(full - expression_richness(rest, s_r, eps, tau))
    return torch.stack(out)


@dataclass
class IdentityReference:
    """Real-data reference of the identities: prototypes, real features and spreads.

    prototypes: (n_ids, D) mean real feature per identity (L2-normalised);
    feats: list of (m_i, D) real features per identity; spread: (n_ids,) ``S_r`` per identity.
    """

    prototypes: Tensor
    feats: list[Tensor]
    spread: Tensor

    @classmethod
    def from_features(cls, feats: list[Tensor]) -> "IdentityReference":
        protos = identity_prototypes(feats)
        spread = torch.stack([feature_spread(f) for f in feats])
        return cls(protos, [f.float() for f in feats], spread)


def compute_rewards(f_g: Tensor, labels: Tensor, ref: IdentityReference, alpha: float, eps: float,
                    tau: float, bandwidth: float = 0.0) -> dict[str, Tensor]:
    """The raw per-sample rewards of a rollout batch grouped by identity.

    Returns ``{"sem", "cov", "exp"}`` per sample (N,) (``exp`` is the leave-one-out share) and
    ``"exp_group"`` (N,): each sample's group-level ``R_exp`` (for logging).
    """
    f_g = f_g.float()
    labels = labels.long().cpu()
    sem, _ = identity_agreement(f_g, labels, ref.prototypes)
    if bandwidth <= 0:
        used = [ref.feats[int(y)] for y in labels.unique()]
        bandwidth = median_bandwidth(f_g, *[u.to(f_g.device) for u in used])
    cov = torch.empty_like(sem)
    exp = torch.empty_like(sem)
    exp_group = torch.empty_like(sem)
    for y in labels.unique().tolist():
        idx = torch.nonzero(labels == y).flatten().to(f_g.device)
        fy = f_g[idx]
        real = ref.feats[y].to(f_g.device)
        s_r = ref.spread[y].to(f_g.device)
        cov[idx] = coverage_diversity(fy, real, alpha, bandwidth)
        exp[idx] = expression_richness_loo(fy, s_r, eps, tau)
        exp_group[idx] = expression_richness(fy, s_r, eps, tau)
    return {"sem": sem, "cov": cov, "exp": exp, "exp_group": exp_group}


def standardise(r: Tensor, eps: float = 1e-8) -> Tensor:
    """``(r - mean) / std`` over the batch; zeros where the batch has (numerically) no spread."""
    r = r.float()
    std = r.std(unbiased=False) if r.numel() > 1 else r.new_zeros(())
    if std < 1e-6:
        return torch.zeros_like(r)
    return (r - r.mean()) / (std + eps)


def combine_rewards(raw: dict[str, Tensor], weights) -> tuple[Tensor, dict[str, Tensor]]:
    """``R = tanh(l_sem * R_sem~ + l_cov * R_cov~ + l_exp * R_exp~)``.

    raw: per-sample ``{"sem","cov","exp"}``; weights: an object with ``.sem/.cov/.exp`` (a
    ``RewardWeights``) or a dict. Returns the combined (N,) reward and the standardised terms.
    """
    w = weights if isinstance(weights, dict) else {k: getattr(weights, k) for k in REWARD_NAMES}
    std = {k: standardise(raw[k]) for k in REWARD_NAMES}
    total = sum(float(w[k]) * std[k] for k in REWARD_NAMES)
    return torch.tanh(total), std


def group_advantages(reward: Tensor, labels: Tensor, eps: float = 1e-8) -> Tensor:
    """Advantages: the combined reward standardised within each identity group (the group mean is
    the baseline; a group with no spread gets 0)."""
    adv = torch.zeros_like(reward, dtype=torch.float32)
    for y in labels.unique():
        m = labels == y
        r = reward[m].float()
        if r.numel() < 2:
            continue
        s = r.std(unbiased=False)
        adv[m] = 0.0 if s < 1e-6 else (r - r.mean()) / (s + eps)
    return adv
