"""`rgsyn estimate`: FLOPs counted on meta-device models, checked against a hand count."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rgsyn import cli, config
from rgsyn.estimate import count_flops, dit_costs, estimate_table, saved_bytes, stage_costs


def test_flop_count_of_a_known_model_equals_the_hand_count():
    # Linear(16->32) + ReLU + Linear(32->4) on a batch of 5: 2*5*16*32 + 2*5*32*4 FLOPs forward;
    # backward: grad input of the second layer + weight grads of both (the first input needs none)
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        x = torch.randn(5, 16)
    fwd = 2 * 5 * 16 * 32 + 2 * 5 * 32 * 4
    with torch.no_grad():
        assert count_flops(lambda: model(x)) == fwd
    bwd = 2 * 5 * 32 * 4 + 2 * 5 * 16 * 32 + 2 * 5 * 32 * 4
    assert count_flops(lambda: model(x).sum().backward()) == fwd + bwd
    # a 3x3 conv, 8->16 channels, on 1x8x10x10 with padding 1: 2 * 16*8*9 * 100
    with torch.device("meta"):
        conv, img = nn.Conv2d(8, 16, 3, padding=1, bias=False), torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        assert count_flops(lambda: conv(img)) == 2 * 16 * 8 * 9 * 100


def test_saved_activation_bytes_of_a_known_model():
    with torch.device("meta"):
        lin = nn.Linear(16, 32, bias=False)
        x = torch.randn(5, 16, requires_grad=True)
    # a linear layer saves its input (for the weight grad) and its weight (for the input grad)
    assert saved_bytes(lambda: lin(x), 4) == 4 * (5 * 16 + 32 * 16)


def test_dit_cost_scales_with_the_arch():
    small = config.from_dict({})
    big = config.from_dict({"prior": {"arch": {"num_layers": 8}}})
    s, b = dit_costs(small, 4)["head"], dit_costs(big, 4)["head"]
    assert b.forward > 1.8 * s.forward and b.forward < 2.2 * s.forward   # blocks dominate
    assert 0 < s.backward and s.trainable < s.params


def test_rl_flops_are_linear_in_steps_and_double_with_cfg():
    base = {r.stage: r.flops for r in stage_costs(config.from_dict({}))}
    more = {r.stage: r.flops for r in stage_costs(config.from_dict({"rl": {"steps": 32}}))}
    no_cfg = {r.stage: r.flops for r in stage_costs(config.from_dict({"sampler": {"guidance_scale": 1.0}}))}
    assert more["rl"] == pytest.approx(2 * base["rl"])
    assert more["generate"] == base["generate"]
    assert no_cfg["rl"] < 0.6 * base["rl"]


def test_table_totals_and_bad_flags():
    df, md = estimate_table(config.from_dict({}), tflops=100, gpus=4)
    body = df[df["stage"] != "total"]
    total = df[df["stage"] == "total"].iloc[0]
    assert total["GPU-hours"] == pytest.approx(body["GPU-hours"].sum())
    assert total["wall h on 4 GPUs"] == pytest.approx(total["GPU-hours"] / 4)
    assert body["GPU-hours"].iloc[0] == pytest.approx(body["PFLOP"].iloc[0] * 1e15 / 100e12 / 3600)
    assert "| rl" in md and "100 TFLOP/s" in md
    from rgsyn.errors import ConfigError

    with pytest.raises(ConfigError, match="--tflops"):
        estimate_table(config.from_dict({}), tflops=0)


def test_cli_estimate_runs_on_the_paper_profile(tmp_path, capsys):
    params = tmp_path / "paper.yaml"
    assert cli.main(["params", "--profile", "paper", "--out", str(params)]) == 0
    capsys.readouterr()
    assert cli.main(["estimate", "--params", str(params), "--gpus", "8", "--json"]) == 0
    rows = {r["stage"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"coldstart", "encoder", "rl", "generate", "train", "total"} <= set(rows)
    # DiT-XL/2 with 50 CFG steps dominates: RL and generation are most of the compute
    assert rows["rl"]["PFLOP"] + rows["generate"]["PFLOP"] > 0.8 * rows["total"]["PFLOP"]
    assert rows["total"]["peak GiB/GPU"] < 141   # fits one H200


# ------------------------------------------------- the estimate's work equals the stages' work
def _labelled(n_per_label: list[int], side: tuple[int, int]):
    from rgsyn.downstream.datasets import LabelledImages

    labels = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(n_per_label)])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(labels), 3, *side), generator=g, dtype=torch.uint8)
    return LabelledImages(images, labels, camids=torch.zeros_like(labels), pids=labels.clone())


@pytest.mark.parametrize("bench,counts,epochs", [
    ("casia_face", [5, 4, 6, 3], 2),        # 18 images, batch 4: 4 batches an epoch, one image left over
    ("casia_face", [2, 1], 3),              # fewer images than a batch: one short batch an epoch
    ("market1501", [4, 4, 6, 2, 4, 4], 2),  # 12 chunks of K=2 over 6 ids, P=2: 6 PK batches an epoch
])
def test_train_steps_equal_the_optimizer_steps_of_a_training_run(bench, counts, epochs):
    import dataclasses

    from rgsyn.downstream import engine
    from rgsyn.downstream.tasks import benchmark_task
    from rgsyn.estimate import train_steps

    params = config.from_dict({"device": "cpu"})
    params.face = dataclasses.replace(params.face, size=16, epochs=epochs, steps=0, batch_size=4, embedding_dim=8, width=4)
    params.reid = dataclasses.replace(params.reid, backbone="osnet_x0_25", height=32, width=16, epochs=epochs, steps=0,
                                      P=2, K=2, warmup_epochs=1)
    task = benchmark_task(params, bench)
    side = (16, 16) if bench == "casia_face" else (32, 16)
    data = _labelled(counts, side)
    seen = []
    _, info = engine.train(task, data, len(counts), 0, progress=False, on_step=lambda s, rec: seen.append(s))
    expected = train_steps(params, bench, len(data))
    assert info["steps"] == len(info["history"]) == len(seen) == expected
    assert info["completed"] and expected >= epochs


@pytest.mark.parametrize("min_sigma_ratio,train_timesteps,minibatches", [(0.0, 0, 1), (0.3, 0, 2), (0.0, 2, 1)])
def test_rl_trained_steps_equal_what_the_update_trains_on(min_sigma_ratio, train_timesteps, minibatches):
    from rgsyn.config import LoraParams
    from rgsyn.estimate import rl_trained_step_count
    from rgsyn.generator.lora import attach_lora
    from rgsyn.generator.prior import built_scheduler
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.precision import Precision
    from rgsyn.rl.dpok import well_conditioned_steps
    from rgsyn.rl.rollout import plan_step, roll_out
    from rgsyn.rl.update import policy_update
    from test_generator_dit import identity_bundle

    params = config.from_dict({
        "prior": {"num_train_timesteps": 100},
        "sampler": {"num_inference_steps": 5, "eta": 1.0, "guidance_scale": 2.0},
        "rl": {"min_sigma_ratio": min_sigma_ratio, "train_timesteps": train_timesteps,
               "minibatches": minibatches, "inner_epochs": 2}})
    rl, sp = params.rl, params.sampler
    b = identity_bundle(seed=5)
    b.scheduler = built_scheduler(params.prior)   # the toy prior's scheduler, as the prior stage builds it
    lora = attach_lora(b.transformer, LoraParams(rank=2, alpha=2.0))
    sampler = PolicySampler(b.transformer, b.scheduler, b.autoencoder, sp.num_inference_steps, sp.eta,
                            sp.guidance_scale)
    eligible = well_conditioned_steps(sampler.sigmas, rl.min_sigma_ratio)   # as the rl stage finds them
    plan = plan_step(0, 0, 4, 2, 2, eligible, rl.train_timesteps, rl.minibatches)
    traj = roll_out(sampler, plan)
    calls = []
    step_mean_std = sampler.step_mean_std
    sampler.step_mean_std = lambda x, i, y: calls.append(i) or step_mean_std(x, i, y)
    policy_update(sampler, torch.optim.Adam(lora, lr=1e-3), lora, traj, torch.tensor([1.0, -1.0, 0.5, -0.5]),
                  plan.local_labels, plan.trained_steps, plan.chunks, rl, Precision("fp32", torch.device("cpu")))
    n_trained = rl_trained_step_count(params)
    assert len(set(calls)) == n_trained == len(plan.trained_steps)
    # policy and reference forward per trained step, minibatch and inner epoch
    assert len(calls) == 2 * n_trained * rl.minibatches * rl.inner_epochs
    if min_sigma_ratio > 0 or train_timesteps > 0:
        assert n_trained < sp.num_inference_steps
