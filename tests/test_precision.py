"""compute.precision: autocast and scaler, the on-policy log-prob under bf16, SDPA attention,
torch.compile wiring, and the cold-start latent cache."""
from __future__ import annotations

import pytest
import torch

from rgsyn.errors import ConfigError
from rgsyn.generator import identity_head
from rgsyn.generator.datasets import ImageSet
from rgsyn.generator.sampler import PolicySampler
from rgsyn.generator.training import _batch, encode_latents, train_denoising
from rgsyn.precision import Precision
from test_generator_dit import identity_bundle


@pytest.fixture(scope="module")
def bundle():
    return identity_bundle(seed=5)


def test_precision_modes_and_bad_name():
    bf, hf, f32 = Precision("bf16", "cpu"), Precision("fp16", "cpu"), Precision("fp32", "cpu")
    assert not bf.scaler.is_enabled() and hf.scaler.is_enabled() and not f32.scaler.is_enabled()
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with bf.autocast():
        assert lin(x).dtype == torch.bfloat16
    with f32.autocast():
        assert lin(x).dtype == torch.float32
    with pytest.raises(ConfigError, match="compute.precision"):
        Precision("fp8", "cpu")


def test_fp16_scaler_scales_the_loss_and_unscales_before_clipping():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.0)
    prec = Precision("fp16", "cpu")
    loss = lin(torch.ones(3, 4)).sum()
    prec.backward(loss)
    scale = prec.scaler.get_scale()
    assert scale > 1
    assert torch.allclose(lin.bias.grad, torch.tensor([3.0 * scale]))   # scaled
    norm = prec.step(opt, list(lin.parameters()), max_norm=0.0)
    assert torch.allclose(lin.bias.grad, torch.tensor([3.0]))           # unscaled
    assert norm == pytest.approx(float(torch.tensor([3.0] * 5).norm()), rel=1e-5)


def test_recomputed_log_prob_equals_recorded_under_bf16_autocast(bundle):
    """The on-policy identity holds under bf16: the recorded and the recomputed log-probs come
    from the same bf16 forward, and the log-prob itself is fp32 arithmetic on its output."""
    s = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder, 4, 1.0, 2.0,
                      precision="bf16")
    y = torch.tensor([0, 1, 2, 3, 1])
    traj = s.sample(y, torch.Generator().manual_seed(0), record=True)
    assert traj.log_probs.dtype == torch.float32 and traj.latents.dtype == torch.float32
    ref = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder, 4, 1.0, 2.0)
    gap_fp32 = 0.0
    for i in range(4):
        lp = s.log_prob(traj.latents[i], traj.latents[i + 1], i, y)
        assert lp.dtype == torch.float32 and lp.requires_grad
        assert torch.allclose(lp.detach(), traj.log_probs[i], rtol=0, atol=1e-4)
        mean, _ = s.step_mean_std(traj.latents[i], i, y)
        assert mean.dtype == torch.float32
        with torch.no_grad():
            gap_fp32 = max(gap_fp32, float((ref.log_prob(traj.latents[i], traj.latents[i + 1], i, y)
                                            - traj.log_probs[i]).abs().max()))
    # the bf16 forward really ran: the fp32 policy scores the same transitions differently
    assert gap_fp32 > 1e-3


def test_dit_attention_goes_through_sdpa(bundle, monkeypatch):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    procs = [m.processor for m in bundle.transformer.modules() if isinstance(m, Attention)]
    assert len(procs) == len(bundle.transformer.transformer_blocks)
    assert all(isinstance(p, AttnProcessor2_0) for p in procs)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*a, **k):
        calls.append(1)
        return sdpa(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        bundle.transformer(torch.randn(1, 3, 8, 8), timestep=torch.tensor([3]),
                           class_labels=torch.tensor([0]))
    assert len(calls) == len(procs)


def test_compile_option_wraps_the_transformer(bundle):
    s = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder, 2, 1.0, 2.0, compile=True)
    assert isinstance(s._forward, torch._dynamo.eval_frame.OptimizedModule)
    assert s.transformer is bundle.transformer          # parameters, LoRA toggles and saving use it
    plain = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder, 2, 1.0, 2.0)
    assert plain._forward is bundle.transformer


def _image_set(n=12, size=8, seed=0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 4
    return ImageSet(images, labels, [{"row": i} for i in range(4)], [""] * n)


def test_latent_cache_pixel_space_equals_per_step_batches():
    from rgsyn.generator.autoencoder import PixelAutoencoder

    data = _image_set()
    cache = encode_latents(data, PixelAutoencoder(), "cpu", hflip=True, batch_size=5)
    assert cache.flipped is None and len(cache) == 12      # pixel space: no second copy
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x, y = _batch(data, 7, g1, True)
    idx = torch.randint(len(data), (7,), generator=g2)
    flip = torch.rand(7, generator=g2) < 0.5
    assert flip.any() and not flip.all()
    assert torch.equal(cache.batch(idx, flip), x)


def test_latent_cache_vae_encodes_both_orientations_once():
    from diffusers import AutoencoderKL

    from rgsyn.generator.autoencoder import VaeAutoencoder

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8),
                        latent_channels=4, norm_num_groups=4, sample_size=8).eval()
    ae = VaeAutoencoder(vae)
    data = _image_set()
    calls = []
    encode = ae.encode
    ae.encode = lambda x: (calls.append(x.shape[0]), encode(x))[1]
    cache = encode_latents(data, ae, "cpu", hflip=True, batch_size=8)
    assert sum(calls) == 2 * len(data)            # each image and its mirror, once
    assert cache.latents.shape == (12, 4, 4, 4) and cache.flipped is not None
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    x, _ = _batch(data, 6, g1, True)
    idx = torch.randint(len(data), (6,), generator=g2)
    flip = torch.rand(6, generator=g2) < 0.5
    with torch.no_grad():
        direct = encode(x)
    assert torch.allclose(cache.batch(idx, flip), direct, atol=1e-5)
    # the VAE does not commute with mirroring, so flipping z would have been wrong
    assert not torch.allclose(cache.flipped, cache.latents.flip(-1), atol=1e-3)


def test_train_denoising_cache_on_and_off_identical_in_pixel_space(bundle):
    from copy import deepcopy

    data = _image_set()
    losses = []
    for use_cache in (True, False):
        t = deepcopy(bundle.transformer)
        head = identity_head.freeze_backbone(t)
        torch.manual_seed(0)
        stats = train_denoising(transformer=t, trainable=head, data=data, autoencoder=bundle.autoencoder,
                                scheduler=bundle.scheduler, steps=4, batch_size=4, lr=1e-2, seed=1,
                                null_label=identity_head.null_label(t), checkpointer=None, checkpoint_every=100,
                                device="cpu", latent_cache=use_cache)
        losses.append((stats["final_loss"], [p.detach().clone() for p in head]))
    assert losses[0][0] == losses[1][0]
    assert all(torch.equal(a, b) for a, b in zip(losses[0][1], losses[1][1]))
