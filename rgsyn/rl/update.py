"""The DPOK policy update of one RL step (PAPER.md step 3) over minibatches of trajectories.

The trajectories are split into the plan's random minibatches (``rgsyn.rl.rollout.plan_step``);
each minibatch is one optimizer step, and the whole split is repeated for ``inner_epochs``. A step
accumulates the gradient of, for every trained denoising step ``i`` (a subset of the
well-conditioned ones, drawn once per update):

    L_i = dpok_loss(log pi_theta(x_{i+1} | x_i), logp_old, A, clip_range, KL(pi_theta || pi_ref), kl_coef) / n_i

(``rgsyn.rl.dpok``; ``n_i`` = the number of trained steps, so the gradient is an unbiased, rescaled
estimate of the sum over them). The reference ``pi_ref`` is the same network with its LoRA switched
off. The first optimizer step of an update is on-policy (ratio 1); later ones see ratios != 1, and
the clipping acts.

Several processes: each rank updates on its own trajectories and the LoRA gradients are averaged
once per optimizer step (the transformer is called through the sampler, many forward/backward
passes per step, not through a DDP wrapper). A non-finite loss or gradient norm stops every rank
together. Under fp16 a step whose loss scale overflowed is skipped by the scaler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rgsyn import distributed
from rgsyn.errors import TrainingDiverged
from rgsyn.generator.lora import adapter_disabled
from rgsyn.generator.sampler import gaussian_log_prob
from rgsyn.rl.dpok import dpok_loss, gaussian_kl


@dataclass
class UpdateStats:
    """What one update measured on this rank."""

    stats: dict[str, float]                 # ratio_mean/min/max, clip_frac, pg_loss, kl over all terms
    per_step: dict[int, dict[str, float]]   # {"kl", "clip_frac"} of each trained denoising step
    grad_norm: float                        # mean over the optimizer steps taken (nan if none)


def minibatch_backward(sampler, traj, advantages: Tensor, labels: Tensor, idx: Tensor,
                       trained_steps: list[int], rl, precision, accelerator=None):
    """Backward of the DPOK loss of the trajectories ``idx`` over the trained denoising steps.

    ``advantages`` and ``labels`` are this rank's, on the policy's device. Returns
    ``(records, bad)``: ``(step index, dpok statistics)`` per term, and the first non-finite loss
    as a message (None when every loss was finite; the terms after it are not taken)."""
    device = sampler.device
    idx_d = idx.to(device)
    records, n_train = [], len(trained_steps)
    for i in trained_steps:
        x_t = traj.latents[i][idx].to(device)
        x_prev = traj.latents[i + 1][idx].to(device)
        with torch.no_grad(), adapter_disabled(sampler.transformer):
            mean_ref, std_ref = sampler.step_mean_std(x_t, i, labels[idx_d])
        mean, std = sampler.step_mean_std(x_t, i, labels[idx_d])
        logp = gaussian_log_prob(x_prev, mean, std)
        kl = gaussian_kl(mean, std, mean_ref, std_ref)
        loss, st = dpok_loss(logp, traj.log_probs[i][idx].to(device), advantages[idx_d], rl.clip_range, kl,
                             rl.kl_coef)
        if not torch.isfinite(loss):
            return records, f"DPOK loss is {float(loss)} (denoising step {i})"
        precision.backward(loss / n_train, accelerator)
        records.append((i, st))
    return records, None


def _accumulate(agg: dict, per_step: dict, records: list, n_terms: int, n_i: int) -> None:
    """Add one minibatch's terms: means over all terms, min / max of the ratio extremes."""
    for i, st in records:
        per_step[i]["kl"] += st["kl"] / n_i
        per_step[i]["clip_frac"] += st["clip_frac"] / n_i
        for k, v in st.items():
            if k == "ratio_min":
                agg[k] = min(agg.get(k, math.inf), v)
            elif k == "ratio_max":
                agg[k] = max(agg.get(k, -math.inf), v)
            else:
                agg[k] = agg.get(k, 0.0) + v / n_terms


def policy_update(sampler, optimizer, lora: list[torch.nn.Parameter], traj, advantages: Tensor,
                  labels: Tensor, trained_steps: list[int], chunks, rl, precision, accelerator=None,
                  where: str = "rl") -> UpdateStats:
    """DPOK on the LoRA parameters ``lora`` from this rank's trajectories ``traj`` (``labels``
    and ``advantages`` on the policy's device): one optimizer step per minibatch of ``chunks``, for
    ``rl.inner_epochs`` epochs, with ``rl``'s clip_range, kl_coef and max_grad_norm. ``where``
    names the update in the error when the loss or the gradient is not finite."""
    n_mb = len(chunks)
    n_terms, n_i = len(trained_steps) * n_mb * rl.inner_epochs, n_mb * rl.inner_epochs
    agg: dict[str, float] = {}
    per_step = {i: {"kl": 0.0, "clip_frac": 0.0} for i in trained_steps}
    norms = []
    for _epoch in range(rl.inner_epochs):
        for idx in chunks:
            optimizer.zero_grad(set_to_none=True)
            records, bad = minibatch_backward(sampler, traj, advantages, labels, idx, trained_steps, rl,
                                              precision, accelerator)
            _accumulate(agg, per_step, records, n_terms, n_i)
            if distributed.any_rank(bad is not None):
                raise TrainingDiverged(f"{bad} at {where}; stopping" if bad else
                                       f"DPOK loss is not finite on another process at {where}; stopping")
            distributed.mean_gradients(lora)
            gn = precision.step(optimizer, lora, rl.max_grad_norm, accelerator)
            if precision.overflowed(gn):
                continue   # fp16 loss-scale overflow: the scaler skipped this step
            norms.append(gn)
            if not math.isfinite(norms[-1]):
                raise TrainingDiverged(f"gradient norm is {norms[-1]} at {where}; stopping")
    return UpdateStats(agg, per_step, float(np.mean(norms)) if norms else math.nan)
