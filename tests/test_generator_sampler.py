"""PolicySampler: on-policy log-probs, determinism, timestep handling, DDIM agreement."""
from __future__ import annotations

import math

import pytest
import torch

from rgsyn.generator import architecture, identity_head
from rgsyn.generator.autoencoder import PixelAutoencoder
from rgsyn.generator.sampler import PolicySampler, gaussian_log_prob
from test_generator_dit import identity_bundle


@pytest.fixture(scope="module")
def bundle():
    return identity_bundle(seed=3)


def make(b, steps=4, eta=1.0, cfg=2.0, scheduler=None):
    return PolicySampler(b.transformer, scheduler or b.scheduler, b.autoencoder, steps, eta, cfg)


def test_recomputed_log_prob_equals_recorded(bundle):
    s = make(bundle)
    y = torch.tensor([0, 1, 2, 3, 0])
    traj = s.sample(y, torch.Generator().manual_seed(0), record=True)
    T = 4
    assert traj.latents.shape == (T + 1, 5, 3, 8, 8) and traj.latents.dtype == torch.float32
    assert traj.log_probs.shape == (T, 5) and traj.log_probs.dtype == torch.float32
    assert traj.images.shape == (5, 3, 8, 8) and traj.images.min() >= 0 and traj.images.max() <= 1
    assert torch.equal(traj.timesteps, s.scheduler.timesteps)
    for i in range(T):
        lp = s.log_prob(traj.latents[i], traj.latents[i + 1], i, y)
        assert lp.requires_grad  # differentiable under current weights
        assert torch.allclose(lp.detach(), traj.log_probs[i], rtol=0, atol=1e-5)
    # ... and it changes when the weights change (off-policy)
    emb = identity_head.label_embedders(bundle.transformer)[0].embedding_table.weight
    with torch.no_grad():
        emb.add_(0.5)
    try:
        lp = s.log_prob(traj.latents[0], traj.latents[1], 0, y).detach()
        assert (lp - traj.log_probs[0]).abs().max() > 1e-3
    finally:
        with torch.no_grad():
            emb.sub_(0.5)


def test_log_prob_gradient_reaches_identity_head(bundle):
    s = make(bundle)
    y = torch.tensor([1, 2])
    traj = s.sample(y, torch.Generator().manual_seed(1))
    emb = identity_head.label_embedders(bundle.transformer)[0].embedding_table.weight
    emb.requires_grad_(True)
    try:
        s.log_prob(traj.latents[1], traj.latents[2], 1, y).sum().backward()
        assert emb.grad is not None and emb.grad[1].abs().sum() > 0 and emb.grad[0].abs().sum() == 0
    finally:
        emb.grad = None
        emb.requires_grad_(False)


def test_same_seed_same_images_other_seed_differs(bundle):
    s = make(bundle)
    y = torch.tensor([0, 1, 2])
    a = s.sample(y, torch.Generator().manual_seed(7), record=False)
    b = s.sample(y, torch.Generator().manual_seed(7), record=True)
    c = s.sample(y, torch.Generator().manual_seed(8), record=False)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images)
    assert a.latents is None and a.log_probs is None


def test_per_sample_generators_make_images_batch_independent(bundle):
    s = make(bundle)
    gens = lambda seeds: [torch.Generator().manual_seed(k) for k in seeds]  # noqa: E731
    both = s.sample(torch.tensor([0, 3]), gens([11, 12]), record=False).images
    one = s.sample(torch.tensor([3]), gens([12]), record=False).images
    assert torch.allclose(both[1], one[0], atol=1e-5)


def test_gaussian_log_prob_matches_torch_distribution():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    std = torch.tensor(0.3)
    ref = torch.distributions.Normal(mean, std).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_log_prob(x, mean, std), ref, atol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_step_matches_diffusers_ddim_and_uses_timestep_list(bundle, prediction):
    """Mean equals diffusers' DDIMScheduler.step (noise 0) where its t - T/N arithmetic is right
    ("leading"); with "trailing" spacing the previous timestep comes from the list."""
    from diffusers import DDIMScheduler

    s = make(bundle, steps=4, scheduler=architecture.build_scheduler(100, prediction_type=prediction))
    ref = DDIMScheduler.from_config(s.scheduler.config)
    ref.set_timesteps(4)
    y = torch.tensor([0, 2])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for i in range(3):
            mean, std = s.step_mean_std(x, i, y)
            eps = s._model_output(x, i, y)
            out = ref.step(eps, ref.timesteps[i], x, eta=1.0, use_clipped_model_output=True,
                           variance_noise=torch.zeros_like(x)).prev_sample
            assert torch.allclose(mean, out, atol=1e-5)
            t, t_prev = int(s.timesteps[i]), int(s.timesteps[i + 1])
            a, ap = ref.alphas_cumprod[t].item(), ref.alphas_cumprod[t_prev].item()
            assert math.isclose(std.item(), math.sqrt((1 - ap) / (1 - a) * (1 - a / ap)), rel_tol=1e-4)
    trailing = DDIMScheduler.from_config({**dict(bundle.scheduler.config), "timestep_spacing": "trailing"})
    st = make(bundle, steps=3, scheduler=trailing)
    ts = st.timesteps.tolist()
    assert ts == [99, 66, 32]  # T=100 "trailing": t - T//N would step 66 -> 33, not to 32
    ac = st.scheduler.alphas_cumprod
    a, ap, wrong = ac[66].item(), ac[32].item(), ac[33].item()
    assert math.isclose(st.sigmas[1].item(), math.sqrt((1 - ap) / (1 - a) * (1 - a / ap)), rel_tol=1e-6)
    assert not math.isclose(st.sigmas[1].item(), math.sqrt((1 - wrong) / (1 - a) * (1 - a / wrong)),
                            rel_tol=1e-6)
    # the last step goes to final_alpha_cumprod, with a positive variance
    assert st.sigmas[-1] > 0


def test_rejects_eta_zero_and_guidance_one_skips_uncond(bundle):
    with pytest.raises(ValueError, match="eta"):
        make(bundle, eta=0.0)
    calls = []
    h = bundle.transformer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        make(bundle, cfg=1.0).sample(torch.tensor([0, 1]), torch.Generator().manual_seed(0), record=False)
        make(bundle, cfg=3.0).sample(torch.tensor([0, 1]), torch.Generator().manual_seed(0), record=False)
    finally:
        h.remove()
    assert calls[:4] == [2, 2, 2, 2] and calls[4:] == [4, 4, 4, 4]


@pytest.mark.benchmark(group="toy-sampling")
def test_bench_toy_sampling(benchmark):
    """Opt-in (`--benchmark-enable`): toy-profile DiT, 10 DDIM steps, CFG, batch 32, recorded."""
    from rgsyn.config import DiTArch

    torch.manual_seed(0)
    t = architecture.build_dit(DiTArch(num_classes=48))
    s = PolicySampler(t.eval(), architecture.build_scheduler(1000), PixelAutoencoder(), 10, 1.0, 2.0)
    y = torch.arange(32) % 48
    benchmark(lambda: s.sample(y, torch.Generator().manual_seed(0), record=True))
