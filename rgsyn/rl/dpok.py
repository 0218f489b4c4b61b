"""The DPOK objective (PAPER.md, step 3): clipped policy gradient over the denoising chain plus a
per-step KL penalty to the pre-RL model.

Every denoising step of the stochastic DDIM sampler is a Gaussian policy
``pi(x_{t-1} | x_t) = N(mu_theta(x_t, t, y), sigma_t^2 I)``. For a recorded transition with
log-probability ``logp_old`` (at rollout time) and ``logp_new`` (current weights):

    ratio = exp(logp_new - logp_old)
    L_pg  = mean( max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)) )        (PPO-style clipping)
    L     = L_pg + kl_coef * mean( KL(pi_theta(.|x_t) || pi_ref(.|x_t)) )

``A`` is the trajectory's advantage (every step of a trajectory shares it). The reference
``pi_ref`` is the same network with its LoRA adapter disabled (the cold-started generator;
``rgsyn.generator.lora.adapter_disabled``), and the
KL between two diagonal Gaussians is taken in closed form (``gaussian_kl``); with the same
``sigma_t`` for both it is ``||mu_theta - mu_ref||^2 / (2 sigma_t^2)``.

Clipping, as specified: for ``A > 0`` the gradient is zero once ``ratio > 1 + c``; for ``A < 0`` it is
zero once ``ratio < 1 - c``; on the other side the unclipped (pessimistic) term keeps its gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor


def gaussian_kl(mean_p: Tensor, std_p: Tensor | float, mean_q: Tensor, std_q: Tensor | float) -> Tensor:
    """``KL(N(mean_p, std_p^2) || N(mean_q, std_q^2))`` of diagonal Gaussians, summed over all but
    the first (batch) dimension; std may be a tensor broadcastable to the means or a float."""
    mean_p, mean_q = mean_p.float(), mean_q.float()
    std_p = torch.as_tensor(std_p, dtype=torch.float32, device=mean_p.device)
    std_q = torch.as_tensor(std_q, dtype=torch.float32, device=mean_p.device)
    var_p, var_q = std_p ** 2, std_q ** 2
    kl = torch.log(std_q / std_p) + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    kl = kl.expand_as(mean_p) if kl.shape != mean_p.shape else kl
    return kl.flatten(1).sum(1)


def clipped_policy_loss(logp_new: Tensor, logp_old: Tensor, advantages: Tensor,
                        clip_range: float) -> tuple[Tensor, dict[str, float]]:
    """``mean(max(-A * r, -A * clip(r, 1 - c, 1 + c)))`` with ``r = exp(logp_new - logp_old)``.

    All inputs have the same shape (any); returns the loss and ratio statistics
    (``ratio_mean/min/max``, ``clip_frac`` = share of entries with ``|r - 1| > c``).
    """
    log_ratio = logp_new.float() - logp_old.float().detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.float().detach()
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            "ratio_mean": float(ratio.mean()),
            "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()),
            "clip_frac": float(((ratio - 1.0).abs() > clip_range).float().mean()),
        }
    return loss, stats


def dpok_loss(logp_new: Tensor, logp_old: Tensor, advantages: Tensor, clip_range: float,
              kl: Tensor | None = None, kl_coef: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """``L_pg + kl_coef * mean(KL)``; ``kl`` is the per-transition closed-form KL (same shape as the
    log-probs) or None. Returns the loss and statistics (ratio, clip fraction, ``pg_loss``, ``kl``)."""
    pg, stats = clipped_policy_loss(logp_new, logp_old, advantages, clip_range)
    stats["pg_loss"] = float(pg.detach())
    if kl is None:
        stats["kl"] = 0.0
        return pg, stats
    kl_mean = kl.float().mean()
    stats["kl"] = float(kl_mean.detach())
    return pg + kl_coef * kl_mean, stats


def well_conditioned_steps(sigmas: Tensor, min_ratio: float) -> list[int]:
    """Indices of the denoising steps whose policy std is at least ``min_ratio`` times the mean
    std of the schedule.

    The others are ill-conditioned for the update: for a transition recorded at std sigma, the
    gradient of log p is (x - mu) / sigma^2 * d mu = z / sigma * d mu, and the closed-form KL to the
    reference is ||mu - mu_ref||^2 / (2 sigma^2), so a step with a tiny sigma (the last steps of a
    "leading" DDIM schedule: sigma 0.0093 and 0.0047 against 0.146 one step earlier in the toy
    schedule) dominates the loss by orders of magnitude. The mean, not the median, is the
    reference because with few steps (smoke: 4) half of them may be ill-conditioned.
    """
    s = sigmas.double()
    threshold = float(min_ratio) * float(s.mean())
    return [i for i in range(s.numel()) if float(s[i]) >= threshold]
