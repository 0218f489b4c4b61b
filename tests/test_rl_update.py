"""The DPOK policy update (`rgsyn.rl.update.policy_update`) and the update's draws
(`rgsyn.rl.rollout.plan_step`) on a fixed batch of a tiny LoRA policy."""
from __future__ import annotations

import math

import pytest
import torch

from rgsyn.config import LoraParams, RLParams
from rgsyn.errors import ConfigError, TrainingDiverged
from rgsyn.generator.lora import attach_lora, lora_parameters
from rgsyn.generator.sampler import PolicySampler
from rgsyn.precision import Precision
from rgsyn.rl.rollout import check_plan, plan_step, roll_out
from rgsyn.rl.update import policy_update
from test_generator_dit import identity_bundle

STEPS = 3


def policy(lr=1e-3):
    """A tiny cold-start DiT (4 identities) with a fresh LoRA, its sampler and optimizer."""
    b = identity_bundle(seed=5)
    torch.manual_seed(0)
    lora = attach_lora(b.transformer, LoraParams(rank=2, alpha=2.0))
    sampler = PolicySampler(b.transformer, b.scheduler, b.autoencoder, STEPS, 1.0, 2.0)
    return sampler, lora, torch.optim.Adam(lora, lr=lr)


def fixed_batch(sampler):
    """Six trajectories (3 identities x 2), advantages with known signs, all steps trained."""
    plan = plan_step(seed=7, step=0, n_ids=4, ids_per_step=3, samples_per_id=2, eligible=list(range(STEPS)),
                     train_timesteps=0, minibatches=1)
    traj = roll_out(sampler, plan)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])
    return plan, traj, adv


def rl_params(**kw):
    rl = RLParams()
    for k, v in {"clip_range": 0.2, "kl_coef": 0.1, "max_grad_norm": 0.0, "inner_epochs": 1, **kw}.items():
        setattr(rl, k, v)
    return rl


def test_first_step_is_on_policy_and_its_gradient_is_the_policy_gradient():
    sampler, lora, opt = policy()
    plan, traj, adv = fixed_batch(sampler)
    rl = rl_params()
    # the expected gradient, by hand: on-policy the ratio is 1 and its gradient is d log pi; the KL
    # to the reference and its gradient are 0 (LoRA B = 0); the loss is averaged over the 3 steps
    opt.zero_grad()
    total = sum(-(adv * torch.exp(sampler.log_prob(traj.latents[i], traj.latents[i + 1], i, plan.local_labels)
                                  - traj.log_probs[i])).mean() for i in range(STEPS)) / STEPS
    total.backward()
    expected = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in lora))
    assert expected > 0
    before = [p.detach().clone() for p in lora]
    opt.zero_grad()
    out = policy_update(sampler, opt, lora, traj, adv, plan.local_labels, plan.trained_steps, plan.chunks, rl,
                        Precision("fp32"))
    assert out.grad_norm == pytest.approx(expected, rel=1e-5)
    assert out.stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert out.stats["clip_frac"] == 0.0 and out.stats["kl"] == pytest.approx(0.0, abs=1e-12)
    # on-policy pg_loss = -mean(A), 0 for these advantages
    assert out.stats["pg_loss"] == pytest.approx(0.0, abs=1e-6)
    assert sorted(out.per_step) == [0, 1, 2]
    # Adam's first step moves every parameter with a gradient by lr (up to its epsilon)
    moved = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(lora, before)])
    assert moved.max() == pytest.approx(1e-3, rel=1e-3)


def test_later_minibatches_see_the_moved_policy_and_clip():
    sampler, lora, opt = policy(lr=0.05)
    plan = plan_step(seed=7, step=0, n_ids=4, ids_per_step=3, samples_per_id=2, eligible=list(range(STEPS)),
                     train_timesteps=2, minibatches=3)
    traj = roll_out(sampler, plan)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])
    out = policy_update(sampler, opt, lora, traj, adv, plan.local_labels, plan.trained_steps, plan.chunks,
                        rl_params(inner_epochs=2, clip_range=0.01), Precision("fp32"))
    assert len(plan.chunks) == 3 and len(plan.trained_steps) == 2 and sorted(out.per_step) == plan.trained_steps
    assert out.stats["ratio_min"] < 1.0 < out.stats["ratio_max"]
    assert 0.0 < out.stats["clip_frac"] < 1.0
    assert out.stats["kl"] > 0.0
    # the statistics are means over the 2 steps x 3 minibatches x 2 epochs: the per-step KLs average to it
    assert sum(v["kl"] for v in out.per_step.values()) / 2 == pytest.approx(out.stats["kl"], rel=1e-6)


def test_update_stops_on_a_non_finite_loss():
    sampler, lora, opt = policy()
    plan, traj, adv = fixed_batch(sampler)
    adv[2] = float("nan")
    with pytest.raises(TrainingDiverged, match="DPOK loss is nan .* at rl step 4; stopping"):
        policy_update(sampler, opt, lora, traj, adv, plan.local_labels, plan.trained_steps, plan.chunks,
                      rl_params(), Precision("fp32"), where="rl step 4")


def test_plan_is_a_function_of_seed_and_step_and_ranks_share_the_batch():
    kw = dict(n_ids=10, ids_per_step=4, samples_per_id=3, eligible=[0, 1, 3, 5], train_timesteps=2, minibatches=2)
    a, b = plan_step(1, 5, **kw), plan_step(1, 5, **kw)
    assert torch.equal(a.ids, b.ids) and a.rollout_seed == b.rollout_seed and a.trained_steps == b.trained_steps
    assert not torch.equal(plan_step(1, 6, **kw).ids, a.ids) or plan_step(1, 6, **kw).rollout_seed != a.rollout_seed
    assert a.ids.tolist() == sorted(a.ids.tolist()) and len(set(a.ids.tolist())) == 4
    assert a.labels.tolist() == [y for y in a.ids.tolist() for _ in range(3)]
    assert set(a.trained_steps) <= {0, 1, 3, 5} and a.trained_steps == sorted(a.trained_steps)
    assert sorted(torch.cat(a.chunks).tolist()) == list(range(12))
    r0, r1 = plan_step(1, 5, **kw, rank=0, world=2), plan_step(1, 5, **kw, rank=1, world=2)
    assert torch.equal(torch.cat([r0.local_labels, r1.local_labels]), a.labels)
    assert torch.equal(a.labels[r1.mine], r1.local_labels) and r0.rollout_seed != r1.rollout_seed
    assert r0.trained_steps == r1.trained_steps == a.trained_steps


def test_check_plan_refuses_what_no_update_can_run():
    with pytest.raises(ConfigError, match="rl.min_sigma_ratio: 0.9 leaves no denoising step"):
        check_plan([], 0.9, 4, 1)
    with pytest.raises(ConfigError, match="rl.ids_per_step: 3 identities .* over 2 processes"):
        check_plan([0], 0.1, 3, 2)


def test_lora_parameters_are_the_trainable_ones():
    sampler, lora, _ = policy()
    assert [id(p) for p in lora] == [id(p) for p in lora_parameters(sampler.transformer)]
    assert all(p.requires_grad for p in lora)
    assert not any(p.requires_grad for n, p in sampler.transformer.named_parameters() if "lora_" not in n)
