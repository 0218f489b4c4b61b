"""One RL rollout (PAPER.md step 3): the update's draws, then trajectories with their log-probs.

Every draw of update ``step`` comes from one generator seeded with ``(seed, step)``, in this order:
the ``ids_per_step`` identities (sorted), the rollout seed, the subset of ``train_timesteps``
denoising steps the update trains on (among the well-conditioned ones,
``rgsyn.rl.dpok.well_conditioned_steps``; 0 = all of them) and the permutation that splits the
trajectories into ``minibatches``. So an update is a function of (seed, step) alone, and a resumed
run reproduces the uninterrupted one.

Several processes: every rank draws the same identities and rolls out its own contiguous share of
whole identity groups (``samples_per_id`` trajectories each) from its own seed
(``distributed.rank_seed``); the batch-level rewards are computed on the gathered features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rgsyn import distributed
from rgsyn.errors import ConfigError


@dataclass
class StepPlan:
    """The draws of one RL update on one rank."""

    ids: Tensor                  # (k,) identity rows of the update, sorted, the same on every rank
    labels: Tensor               # (k * samples_per_id,) labels of the whole batch, grouped by identity
    local_ids: Tensor            # this rank's identities
    local_labels: Tensor         # this rank's trajectories' labels
    mine: slice                  # this rank's rows of the whole batch
    rollout_seed: int
    trained_steps: list[int]     # indices into the sampler's schedule, ascending
    chunks: tuple[Tensor, ...]   # minibatches of indices into this rank's trajectories


def check_plan(eligible: list[int], min_sigma_ratio: float, ids_per_step: int, world: int) -> None:
    """Refuse a set-up no update can run with: no denoising step left to train on, or identity
    groups that cannot be split evenly over the processes."""
    if not eligible:
        raise ConfigError(f"rl.min_sigma_ratio: {min_sigma_ratio} leaves no denoising step to train on")
    if ids_per_step % world:
        raise ConfigError(f"rl.ids_per_step: {ids_per_step} identities per update cannot be split evenly over "
                          f"{world} processes (each rank rolls out whole identity groups); use a multiple of {world}")


def trained_step_count(n_eligible: int, train_timesteps: int) -> int:
    """How many denoising steps an update trains on: all ``n_eligible`` well-conditioned ones, or
    ``train_timesteps`` of them when that is positive and smaller (``rl.train_timesteps``)."""
    return n_eligible if train_timesteps <= 0 else min(n_eligible, train_timesteps)


def plan_step(seed: int, step: int, n_ids: int, ids_per_step: int, samples_per_id: int,
              eligible: list[int], train_timesteps: int, minibatches: int, rank: int = 0,
              world: int = 1) -> StepPlan:
    """The draws of update ``step`` (see the module docstring); ``eligible`` are the denoising
    steps the update may train on (the stage refuses set-ups ``check_plan`` rejects first)."""
    rng = np.random.default_rng([seed, step])
    ids = torch.from_numpy(np.sort(rng.choice(n_ids, size=ids_per_step, replace=False)))
    k_local = ids_per_step // world
    local_ids = ids[rank * k_local:(rank + 1) * k_local]
    local_labels = local_ids.repeat_interleave(samples_per_id)
    n_local = local_labels.numel()
    rollout_seed = distributed.rank_seed(int(rng.integers(2 ** 62)), rank)
    n_train = trained_step_count(len(eligible), train_timesteps)
    trained = sorted(eligible[j] for j in rng.choice(len(eligible), size=n_train, replace=False))
    chunks = torch.from_numpy(rng.permutation(n_local)).chunk(max(1, min(minibatches, n_local)))
    return StepPlan(ids, ids.repeat_interleave(samples_per_id), local_ids, local_labels,
                    slice(rank * n_local, (rank + 1) * n_local), rollout_seed, trained, chunks)


def roll_out(sampler, plan: StepPlan):
    """This rank's trajectories of the update: latents x_T..x_0, per-step log-probs and the decoded
    images (a ``rgsyn.generator.sampler.Trajectory``), from the plan's rollout seed."""
    g = torch.Generator(device="cpu").manual_seed(plan.rollout_seed)
    return sampler.sample(plan.local_labels, g, record=True)
