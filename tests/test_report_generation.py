"""The generation table: gold and reward identity accuracy side by side, and the reward-hacking flag."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from rgsyn import io, paths
from rgsyn.report.figures import per_timestep_figure
from rgsyn.report.generation import HACKING_COLUMN, hacking_flag, table_generation
from rgsyn.report.inputs import load_benchmarks


def _gen(gold: float, reward: float) -> dict:
    return {"identity_accuracy": gold, "identity_accuracy_reward": reward, "frechet": 1.0, "n_images": 96}


@pytest.mark.parametrize("cold, rl, expect", [
    ((0.40, 0.50), (0.30, 0.70), "**HACKING**: reward +20.0, gold -10.0 pts"),   # reward up, gold down past 5
    ((0.40, 0.50), (0.37, 0.70), "no (reward +20.0, gold -3.0 pts)"),            # gold down, within tolerance
    ((0.40, 0.50), (0.30, 0.45), "no (reward -5.0, gold -10.0 pts)"),            # both down: worse, not hacking
    ((0.40, 0.50), (0.55, 0.60), "no (reward +10.0, gold +15.0 pts)"),           # both up
])
def test_hacking_flag(cold, rl, expect):
    gens = {"cold": _gen(*cold), "rl-full": _gen(*rl)}
    assert hacking_flag(gens, "rl-full", 0.05) == expect
    assert hacking_flag(gens, "cold", 0.05) == "—"


def test_hacking_flag_without_cold_or_reward_accuracy():
    assert hacking_flag({"rl-full": _gen(0.3, 0.7)}, "rl-full", 0.05) == "no cold-start row to compare"
    gens = {"cold": {"identity_accuracy": 0.4}, "rl-full": {"identity_accuracy": 0.3}}   # an older metrics file
    assert hacking_flag(gens, "rl-full", 0.05) == "not measured"


def test_generation_table_puts_reward_next_to_gold_and_flags(tmp_path):
    gens = {"cold": _gen(0.40, 0.50), "rl-full": _gen(0.30, 0.70), "rl-no_sem": _gen(0.42, 0.49),
            "oracle": _gen(0.875, 0.9)}
    for bench in paths.BENCHMARKS:
        io.write_json(tmp_path / paths.benchmark_metrics(bench),
                      {"variants": {}, "generation": gens if bench == "market1501" else {}})
    df = table_generation(load_benchmarks(tmp_path), "toy", tolerance=0.05).df
    assert list(df["Generator"]) == ["cold", "rl-full", "rl-no_sem", "oracle (toy-world renders)"]
    assert list(df["Identity acc., gold (%)"]) == ["40.0", "30.0", "42.0", "87.5"]
    assert list(df["Identity acc., reward (%)"]) == ["50.0", "70.0", "49.0", "90.0"]
    assert [c.startswith("**HACKING**") for c in df[HACKING_COLUMN]] == [False, True, False, False]
    # a wider tolerance clears the flag
    df = table_generation(load_benchmarks(tmp_path), "toy", tolerance=0.2).df
    assert not any(c.startswith("**HACKING**") for c in df[HACKING_COLUMN])


def test_generation_metrics_use_gold_for_quality_and_reward_for_r_sem(tmp_path, monkeypatch):
    """identity_accuracy comes from the gold encoder, identity_accuracy_reward from the reward one."""
    from rgsyn.generator import generation_metrics as synthesis

    labels = ["1", "1", "2", "2"]
    good = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])   # identities well apart
    swapped = good.flip(1)                                                 # every synthetic image on the other id
    feats = {("gold", "real"): good, ("gold", "syn"): good, ("reward", "real"): good, ("reward", "syn"): swapped}
    monkeypatch.setattr(synthesis, "load_identity_encoder", lambda path, device="cpu": "gold" if "gold" in str(path) else "reward")
    monkeypatch.setattr(synthesis, "encode_paths",
                        lambda enc, ps, size, device: feats[(enc, "syn" if ps[0].startswith("syn") else "real")])
    m = synthesis.generation_metrics("persons", ["r1", "r2", "r3", "r4"], labels, ["syn1", "syn2", "syn3", "syn4"],
                                     labels, (16, 8), "cpu", 0.95)
    assert m["identity_accuracy"] == 1.0 and m["identity_accuracy_reward"] == 0.0
    assert m["mean_reward_sem"] < 0.6   # R_sem on the reward features: the swapped images score low


def test_per_timestep_figure(tmp_path):
    stats = pd.DataFrame([{"run": r, "timestep": i, "sigma": s, "metric": m, "value": v}
                          for r in ("rl-persons-full", "rl-faces-full")
                          for i, s in ((0, 0.9), (3, 0.4), (7, 0.15))
                          for m, v in (("kl", 0.01 * (i + 1)), ("clip_frac", 0.1))])
    out = per_timestep_figure(stats, tmp_path / "f.png")
    assert out is not None and out.stat().st_size > 1000
    assert per_timestep_figure(stats.iloc[0:0], tmp_path / "g.png") is None and not (tmp_path / "g.png").exists()
