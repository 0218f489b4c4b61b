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
