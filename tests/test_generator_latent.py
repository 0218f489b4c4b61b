"""The paper's latent DiT as the hub ships it: legacy config class, learned sigma, SD-VAE latents,
sampled at 256 px (persons) and 128 px (faces, a 16x16 latent), x0 never clipped."""
from __future__ import annotations

import pytest
import torch

from fakes.models import write_dit_hub
from rgsyn.config import PriorParams
from rgsyn.generator import bundle, identity_head
from rgsyn.generator.prior import load_pretrained
from rgsyn.generator.sampler import PolicySampler


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_dit_hub(tmp_path_factory.mktemp("hub") / "DiT-XL-2-256")


def _prior(hub):
    pp = PriorParams(pretrained=str(hub), vae=str(hub / "vae"))
    pp.arch.sample_size, pp.arch.in_channels, pp.arch.patch_size, pp.arch.num_classes = 32, 4, 2, 1000
    return load_pretrained(pp)


def test_hub_layout_loads_and_never_clips_x0(hub):
    import json

    assert json.loads((hub / "transformer" / "config.json").read_text())["_class_name"] == "Transformer2DModel"
    assert json.loads((hub / "scheduler" / "scheduler_config.json").read_text()).get("clip_sample", True)
    b = _prior(hub)
    assert b.autoencoder.kind == "vae" and b.image_size == 256
    assert b.transformer.config.out_channels == 8 and identity_head.num_labels(b.transformer) == 1000
    assert b.scheduler.config.clip_sample is False
    s = PolicySampler(b.transformer, b.scheduler, b.autoencoder, 2, 1.0, 4.0)
    assert s._clip is None


@pytest.mark.parametrize("side, px", [(None, 256), (16, 128)])
def test_samples_at_256_and_128_px(hub, tmp_path, side, px):
    b = _prior(hub)
    b.sample_size = side
    b.transformer.eval()
    s = PolicySampler(b.transformer, b.scheduler, b.autoencoder, 2, 1.0, 4.0, sample_size=b.latent_size)
    traj = s.sample(torch.tensor([3, 999]), torch.Generator().manual_seed(0))
    assert traj.latents.shape == (3, 2, 4, px // 8, px // 8)
    assert traj.images.shape == (2, 3, px, px) and torch.isfinite(traj.log_probs).all()
    bundle.save_generator(b, tmp_path / "bundle")
    back = bundle.load_generator(tmp_path / "bundle")
    assert back.image_size == px and back.latent_size == px // 8
    assert back.transformer.config.sample_size == 32          # the position grid's base is kept
    assert back.scheduler.config.clip_sample is False
    s2 = PolicySampler(back.transformer, back.scheduler, back.autoencoder, 2, 1.0, 4.0, sample_size=back.latent_size)
    again = s2.sample(torch.tensor([3, 999]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.images, traj.images)
