"""Cost of one DPOK policy update against one rollout, on the toy-profile generator (CPU).

The toy profile's DiT (`prior.arch`, pixel space, 16 px) with an identity head of 32 rows and the
RL LoRA (`rl.lora`), the toy RL settings (`ids_per_step x samples_per_id` = 16 trajectories,
`sampler.num_inference_steps` = 10 with CFG, `train_timesteps` = 2, `minibatches` = 2,
`inner_epochs` = 1), random weights. Timed in the same run, alternately:

- the rollout: `PolicySampler.sample(record=True)` of the 16 trajectories (the reference; 10 CFG
  forwards per trajectory, no gradient);
- the update: `rgsyn.rl.update.policy_update` on that rollout (per minibatch and trained step, a
  reference forward with the LoRA off, a forward and a backward with it on, then an Adam step).

Printed: seconds of each (the minimum over rounds) and the ratio update / rollout. By the forward
counts the update costs about 2 x 2 x (1 + 1 + ~2) = 16 CFG forward-equivalents of half the batch
against the rollout's 10 of the whole batch, so a ratio near 0.8 is what the arithmetic predicts; a
much larger ratio means the update does work it should not.

Run:  python benchmarks/bench_rl_update.py [--rounds 3] [--threads 2]
or as an opt-in pytest-benchmark: pytest benchmarks/bench_rl_update.py --benchmark-enable
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from rgsyn.config import Params
from rgsyn.generator.architecture import build_dit, build_scheduler
from rgsyn.generator.autoencoder import PixelAutoencoder
from rgsyn.generator.identity_head import swap_identity_head
from rgsyn.generator.lora import attach_lora
from rgsyn.generator.sampler import PolicySampler
from rgsyn.precision import Precision
from rgsyn.rl.rollout import plan_step, roll_out
from rgsyn.rl.update import policy_update

N_IDS = 32


def toy_policy(params: Params):
    """(sampler, LoRA parameters, optimizer) of the toy profile with random weights."""
    torch.manual_seed(0)
    t = build_dit(replace(params.prior.arch, num_classes=10))
    with torch.no_grad():   # non-zero adaLN gates, as after training
        for p in t.parameters():
            p.add_(0.02 * torch.randn_like(p))
    swap_identity_head(t, N_IDS)
    t.eval()
    lora = attach_lora(t, params.rl.lora)
    sp = params.sampler
    sampler = PolicySampler(t, build_scheduler(params.prior.num_train_timesteps,
                                               prediction_type=params.prior.prediction_type),
                            PixelAutoencoder(), sp.num_inference_steps, sp.eta, sp.guidance_scale)
    return sampler, lora, torch.optim.Adam(lora, lr=params.rl.lr)


def one_round(params: Params, sampler, lora, optimizer, step: int) -> tuple[float, float]:
    """(rollout seconds, update seconds) of update `step`."""
    rl = params.rl
    plan = plan_step(0, step, N_IDS, rl.ids_per_step, rl.samples_per_id, list(range(sampler.num_inference_steps)),
                     rl.train_timesteps, rl.minibatches)
    t0 = time.perf_counter()
    traj = roll_out(sampler, plan)
    t1 = time.perf_counter()
    adv = torch.randn(plan.local_labels.numel(), generator=torch.Generator().manual_seed(step))
    policy_update(sampler, optimizer, lora, traj, adv, plan.local_labels, plan.trained_steps, plan.chunks, rl,
                  Precision("fp32"))
    return t1 - t0, time.perf_counter() - t1


def measure(rounds: int = 3) -> dict:
    params = Params()
    sampler, lora, optimizer = toy_policy(params)
    one_round(params, sampler, lora, optimizer, 0)   # warm-up
    times = [one_round(params, sampler, lora, optimizer, k + 1) for k in range(rounds)]
    roll, upd = min(t[0] for t in times), min(t[1] for t in times)
    return {"rollout_s": roll, "update_s": upd, "update_over_rollout": upd / roll}


def test_bench_rl_update(benchmark):   # opt-in: pytest --benchmark-enable
    params = Params()
    sampler, lora, optimizer = toy_policy(params)
    rl = params.rl
    plan = plan_step(0, 1, N_IDS, rl.ids_per_step, rl.samples_per_id, list(range(sampler.num_inference_steps)),
                     rl.train_timesteps, rl.minibatches)
    traj = roll_out(sampler, plan)
    adv = torch.randn(plan.local_labels.numel(), generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    roll_out(sampler, plan)
    rollout_s = time.perf_counter() - t0
    benchmark.pedantic(policy_update, args=(sampler, optimizer, lora, traj, adv, plan.local_labels,
                                            plan.trained_steps, plan.chunks, rl, Precision("fp32")),
                       rounds=3, iterations=1)
    benchmark.extra_info.update(rollout_s=rollout_s, update_over_rollout=benchmark.stats.stats.min / rollout_s)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = measure(args.rounds)
    print(f"rollout {r['rollout_s']:.3f} s   update {r['update_s']:.3f} s   "
          f"update / rollout {r['update_over_rollout']:.2f}")
