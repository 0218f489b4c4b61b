"""The rewards of one rollout (PAPER.md step 4) and the advantages the policy update uses.

The decoded images go through the reward encoder; the features of every rank are gathered, so that
each rank computes the batch-level terms (``rgsyn.rl.rewards.compute_rewards``) of the whole batch,
the combined reward of the variant's weights, and its advantages (standardised within each
identity group, ``group_advantages``); each rank keeps its own rows. Next to them, ``gold`` is the
identity accuracy of the same images under the held-out gold encoder (nearest gold prototype,
``rgsyn.metrics.identity``), which the policy never optimises: the reward-hacking guard compares it
with the reward. A non-finite reward term stops the stage.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rgsyn import distributed
from rgsyn.errors import TrainingDiverged
from rgsyn.metrics.identity import identity_agreement
from rgsyn.rl.rewards import REWARD_NAMES, IdentityReference, combine_rewards, compute_rewards, group_advantages


@dataclass
class RolloutRewards:
    raw: dict[str, Tensor]   # per-sample {"sem", "cov", "exp", "exp_group"} of the whole batch
    combined: Tensor         # (N,) the variant's combined reward of the whole batch
    advantages: Tensor       # this rank's rows, on the policy's device
    gold: float              # gold-encoder identity accuracy of the whole batch


def gold_accuracy(gold_feats: Tensor, labels: Tensor, gold_protos: Tensor) -> float:
    """Share of images whose nearest gold prototype (cosine) is their own identity."""
    return float(identity_agreement(gold_feats, labels, gold_protos)[1].float().mean())


def reward_rollout(images: Tensor, labels: Tensor, mine: slice, reward_enc, gold_enc,
                   ref: IdentityReference, gold_ref: IdentityReference, rl, weights, precision,
                   device, where: str) -> RolloutRewards:
    """Score this rank's ``images`` (rows ``mine`` of the batch labelled ``labels``): rewards with
    ``rl``'s alpha / eps / tau / rbf_bandwidth and the variant's ``weights``; ``where`` names the
    update in the error when a reward is not finite."""
    with torch.no_grad(), precision.autocast():
        f_g = distributed.gather_cat(reward_enc.encode(images).float().cpu())
        raw = compute_rewards(f_g, labels, ref, rl.alpha, rl.eps, rl.tau, rl.rbf_bandwidth)
        combined, _ = combine_rewards(raw, weights)
        gold = gold_accuracy(distributed.gather_cat(gold_enc.encode(images).cpu()), labels, gold_ref.prototypes)
    for k in (*REWARD_NAMES, "exp_group"):
        if not torch.isfinite(raw[k]).all():
            raise TrainingDiverged(f"reward R_{k} is not finite at {where}; stopping")
    if not torch.isfinite(combined).all():
        raise TrainingDiverged(f"combined reward is not finite at {where}; stopping")
    return RolloutRewards(raw, combined, group_advantages(combined, labels)[mine].to(device), gold)
