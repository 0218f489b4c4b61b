"""RL bundles as adapters: the LoRA plus a hash-checked reference to the cold-start bundle."""
from __future__ import annotations

import json

import pytest
import torch

from rgsyn.errors import CheckpointError
from rgsyn.generator import bundle, identity_head, lora
from rgsyn.generator.lora import attach_lora
from test_generator_dit import tiny_bundle

LORA = type("Lora", (), {"rank": 4, "alpha": 4.0, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]})


def _folder_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture
def cold_and_rl(tmp_path):
    b = tiny_bundle(seed=2)
    identity_head.swap_identity_head(b.transformer, 3)
    b.identities = [{"row": i, "benchmark": "casia_face", "label": f"id{i}"} for i in range(3)]
    cold = bundle.save_generator(b, tmp_path / "coldstart")
    rl = bundle.load_generator(cold)
    attach_lora(rl.transformer, LORA)
    with torch.no_grad():
        for n, p in rl.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    out = bundle.save_generator(rl, tmp_path / "rl", base=cold)
    return cold, out, rl


def test_adapter_bundle_holds_the_adapter_and_a_reference(cold_and_rl):
    cold, out, rl = cold_and_rl
    assert sorted(p.name for p in out.iterdir()) == ["base.json", "generator.json", "identities.json", "lora"]
    ref = json.loads((out / "base.json").read_text())
    assert ref == {"path": str(cold), "sha256": bundle.checkpoint_sha256(cold)}
    assert _folder_bytes(out) < _folder_bytes(cold) / 3
    loaded = bundle.load_generator(out)
    assert lora.has_lora(loaded.transformer) and loaded.identities == rl.identities
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([40, 40]), torch.tensor([0, 2])
    with torch.no_grad():
        want = rl.transformer(x, timestep=t, class_labels=y).sample
        got = loaded.transformer(x, timestep=t, class_labels=y).sample
    assert torch.allclose(got, want, atol=1e-6)
    # the manifest hash of the RL bundle covers the base through base.json
    assert bundle.checkpoint_sha256(out) != bundle.checkpoint_sha256(cold)


def test_changed_or_missing_cold_start_fails_clearly(cold_and_rl, tmp_path):
    cold, out, _ = cold_and_rl
    other = tiny_bundle(seed=9)
    identity_head.swap_identity_head(other.transformer, 3)
    other.identities = json.loads((cold / "identities.json").read_text())
    bundle.save_generator(other, cold)        # the cold start is re-made with other weights
    with pytest.raises(CheckpointError, match="changed since this adapter was trained"):
        bundle.load_generator(out)
    import shutil

    shutil.rmtree(cold)
    with pytest.raises(CheckpointError, match="base bundle .* is missing"):
        bundle.load_generator(out)


def test_adapter_bundle_needs_an_adapter(tmp_path):
    b = tiny_bundle(seed=1)
    cold = bundle.save_generator(b, tmp_path / "c")
    with pytest.raises(CheckpointError, match="needs a LoRA adapter"):
        bundle.save_generator(bundle.load_generator(cold), tmp_path / "r", base=cold)
    assert not (tmp_path / "r").exists()
