"""A tiny end-to-end `rl` run on a tiny generator: outputs, curve, resume, NaN stop, hacking guard."""
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rgsyn import paths
from rgsyn.config import DiTArch, Params
from rgsyn.errors import TrainingDiverged
from rgsyn.rl import encoders, rollout_rewards
from rgsyn.rl.curves import hacking_signal
from rgsyn.stages import rl as stage

IDS = ["id_a", "id_b", "id_c"]
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230)]


class ColourEncoder(torch.nn.Module):
    """A fixed random projection of channel means/stds: enough to tell the toy identities apart."""

    input_size = (16, 16)

    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(6, 8, generator=g)

    def encode(self, images):
        x = images.float()
        h = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) - 0.4
        return F.normalize(h @ self.w, dim=1)


def _params(tmp_path, **rl):
    p = Params()
    p.device = "cpu"
    p.data.paths.casia_face = str(tmp_path / "casia")
    p.sampler.num_inference_steps = 3
    for k, v in {**dict(steps=4, ids_per_step=2, samples_per_id=3, checkpoint_every=2, train_timesteps=2,
                        lr=1e-3, hacking_guard="warn", minibatches=2), **rl}.items():
        setattr(p.rl, k, v)
    p.rl.lora.rank = 2
    return p


@pytest.fixture()
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    make_world(tmp_path)
    monkeypatch.setattr(encoders, "reward_encoder", lambda params, domain, device: ColourEncoder(1))
    monkeypatch.setattr(encoders, "gold_encoder", lambda params, domain, device: ColourEncoder(2))
    return tmp_path


def make_world(tmp_path):
    """Three colour identities (real images) and a tiny cold-start bundle, under `tmp_path` (= cwd)."""
    rs = np.random.default_rng(0)
    for ident, col in zip(IDS, COLOURS):
        (tmp_path / "casia" / ident).mkdir(parents=True)
        for n in range(3):
            arr = np.clip(np.array(col)[None, None] + rs.normal(0, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "casia" / ident / f"{n:03d}.png")
    from rgsyn.generator.autoencoder import PixelAutoencoder
    from rgsyn.generator.architecture import build_dit, build_scheduler
    from rgsyn.generator.bundle import GeneratorBundle, save_generator
    from rgsyn.generator.identity_head import label_embedders, swap_identity_head

    torch.manual_seed(0)
    dit = build_dit(DiTArch(sample_size=8, patch_size=4, num_layers=1, num_attention_heads=2,
                            attention_head_dim=8, num_classes=4))
    with torch.no_grad():  # a trained model: adaLN-Zero gates and the output layer are no longer 0
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    swap_identity_head(dit, len(IDS))
    with torch.no_grad():  # give the identity rows some signal, as a cold start would
        for emb in label_embedders(dit):
            emb.embedding_table.weight[:len(IDS)].normal_(0, 0.5)
    identities = [{"row": i, "benchmark": "casia_face", "label": n} for i, n in enumerate(IDS)]
    save_generator(GeneratorBundle(dit, build_scheduler(100), PixelAutoencoder(), identities),
                   paths.coldstart_dir("faces"))


def _curve(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_rl_end_to_end(world):
    params = _params(world)
    summary = stage.run(params, "faces", "full")
    out = paths.rl_dir("faces", "full")
    assert (out / "lora" / "adapter_model.safetensors").is_file()
    # an adapter bundle: the LoRA and a hash-checked reference to the cold start, no DiT copy
    assert not (out / "transformer").exists() and (out / "base.json").is_file()
    assert json.loads((out / "base.json").read_text())["path"] == str(paths.coldstart_dir("faces"))
    rows = _curve(paths.rl_curve("faces", "full"))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert list(rows[0])[:9] == ["step", "reward", "reward_sem", "reward_cov", "reward_exp", "kl", "gold",
                                 "clip_frac", "grad_norm"]
    # LoRA B = 0: the first policy is the reference; only the second minibatch of update 0 sees a
    # moved policy, so the KL starts near 0 and grows
    assert 0.0 <= float(rows[0]["kl"]) < float(rows[-1]["kl"])
    assert all(0.0 <= float(r["gold"]) <= 1.0 for r in rows)
    assert all(0.0 <= float(r["reward_sem"]) <= 1.0 for r in rows)
    assert summary["trajectories_per_s"] > 0 and summary["seconds_per_update"] > 0
    # the LoRA moved away from its zero-B init
    from safetensors.torch import load_file

    lora = load_file(str(out / "lora" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in lora.items())
    # the RL bundle loads back with its adapter, which changes the model's output
    from rgsyn.generator.bundle import load_generator
    from rgsyn.generator.lora import has_lora
    from rgsyn.generator.lora import adapter_disabled

    rl_bundle = load_generator(out)
    assert has_lora(rl_bundle.transformer)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([50, 50]), torch.tensor([0, 1])
    with torch.no_grad():
        adapted = rl_bundle.transformer(x, timestep=t, class_labels=y).sample
        with adapter_disabled(rl_bundle.transformer):
            base = rl_bundle.transformer(x, timestep=t, class_labels=y).sample
    assert (adapted - base).abs().max() > 1e-6


@pytest.mark.slow
def test_rl_resume_after_kill(world, monkeypatch):
    params = _params(world)
    stage.run(params, "faces", "full")
    rows = _curve(paths.rl_curve("faces", "full"))
    # kill after the checkpoint at update 2, re-run: same curve as the uninterrupted run
    orig = rollout_rewards.gold_accuracy
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(rollout_rewards, "gold_accuracy", dying)
    paths.rl_curve("faces", "full").unlink()
    with pytest.raises(KeyboardInterrupt):
        stage.run(params, "faces", "full")
    assert not paths.rl_curve("faces", "full").exists()
    monkeypatch.setattr(rollout_rewards, "gold_accuracy", orig)
    stage.run(params, "faces", "full")
    rows2 = _curve(paths.rl_curve("faces", "full"))
    for a, b in zip(rows, rows2):
        for k in ("reward", "reward_sem", "gold", "kl", "grad_norm"):
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-6), (a["step"], k)


def test_rl_nan_reward_stops_with_step(world, monkeypatch):
    orig = rollout_rewards.compute_rewards

    def nan_rewards(*a, **k):
        out = orig(*a, **k)
        out["cov"][0] = float("nan")
        return out

    monkeypatch.setattr(rollout_rewards, "compute_rewards", nan_rewards)
    with pytest.raises(TrainingDiverged, match="R_cov is not finite at rl step 0"):
        stage.run(_params(world, steps=1), "faces", "no_sem")


def test_hacking_signal():
    assert hacking_signal([0, 0, 1, 1], [0.9, 0.9, 0.5, 0.5], window=2, tolerance=0.05)
    assert not hacking_signal([0, 0, 1, 1], [0.9, 0.9, 0.88, 0.9], window=2, tolerance=0.05)
    assert not hacking_signal([1, 1, 0, 0], [0.9, 0.9, 0.5, 0.5], window=2, tolerance=0.05)
    assert not hacking_signal([0, 1, 2], [1, 0, 0], window=2, tolerance=0.05)   # too short
