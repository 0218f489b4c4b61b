"""Precision and work-done-once, measured side by side in one CPU run.

1. RL update time, bf16 autocast against fp32, at the toy DiT size (params defaults: 32 px,
   patch 4, 4 layers, 4 x 16 heads): one DPOK update = policy forward + reference forward
   (adapter off) + fp32 Gaussian log-prob and KL + backward, over `--timesteps` recorded denoising
   steps of a rollout of `--trajectories` trajectories, then the optimizer step; the rollout
   (sampling with log-probs) is timed too. Precisions alternate within each repeat; medians.
2. Cold-start step time with and without the latent cache (`train_denoising(latent_cache=...)`),
   in pixel space (the toy; the cache is the scaled images) and in latent space with a small
   random AutoencoderKL (SD-VAE layout, narrower), which is what the cache exists for; the
   one-off cost of building the cache is reported separately.
3. Bundle sizes: a tiny RL bundle saved as before (full transformer + adapter) and as an adapter
   bundle (adapter + reference), measured on disk; the same two at paper scale, computed from the
   DiT-XL/2 parameter count (meta device) and the paper's rl.lora.

Run:  python benchmarks/bench_precision.py [--repeats 5] [--trajectories 16] [--timesteps 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from copy import deepcopy
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")   # no progress bars in the measurements' output (read at import)

import torch  # noqa: E402

from rgsyn import config  # noqa: E402
from rgsyn.generator import architecture, bundle, identity_head  # noqa: E402
from rgsyn.generator.autoencoder import PixelAutoencoder, VaeAutoencoder  # noqa: E402
from rgsyn.generator.datasets import ImageSet  # noqa: E402
from rgsyn.generator.lora import adapter_disabled, attach_lora  # noqa: E402
from rgsyn.generator.sampler import PolicySampler, gaussian_log_prob  # noqa: E402
from rgsyn.generator.training import encode_latents, train_denoising  # noqa: E402
from rgsyn.precision import Precision  # noqa: E402
from rgsyn.rl.dpok import dpok_loss, gaussian_kl  # noqa: E402


def toy_generator(params, n_ids: int = 8, arch=None):
    torch.manual_seed(0)
    arch = arch or params.prior.arch
    t = architecture.build_dit(arch if arch.num_classes else _classes(arch))
    with torch.no_grad():   # a trained-looking model: non-zero adaLN gates and output layer
        for p in t.parameters():
            p.add_(0.05 * torch.randn_like(p))
    identity_head.swap_identity_head(t, n_ids)
    with torch.no_grad():
        for e in identity_head.label_embedders(t):
            e.embedding_table.weight.normal_(0, 0.5)
    return t


def _classes(arch):
    from dataclasses import replace

    return replace(arch, num_classes=10)


def rl_update_seconds(params, precision: str, n_traj: int, timesteps: int) -> tuple[float, float]:
    """(rollout seconds, update seconds) of one DPOK update at the toy size."""
    t = toy_generator(params)
    lora = attach_lora(t, params.rl.lora)
    opt = torch.optim.Adam(lora, lr=1e-3)
    prec = Precision(precision, "cpu")
    sp = params.sampler
    sampler = PolicySampler(t, architecture.build_scheduler(params.prior.num_train_timesteps), PixelAutoencoder(),
                            sp.num_inference_steps, sp.eta, sp.guidance_scale, precision=prec)
    labels = torch.arange(n_traj) % 8
    t0 = time.perf_counter()
    traj = sampler.sample(labels, torch.Generator().manual_seed(1), record=True)
    t1 = time.perf_counter()
    adv = torch.randn(n_traj)
    opt.zero_grad(set_to_none=True)
    for i in range(timesteps):
        x_t, x_prev = traj.latents[i], traj.latents[i + 1]
        with torch.no_grad(), adapter_disabled(t):
            mean_ref, std_ref = sampler.step_mean_std(x_t, i, labels)
        mean, std = sampler.step_mean_std(x_t, i, labels)
        loss, _ = dpok_loss(gaussian_log_prob(x_prev, mean, std), traj.log_probs[i], adv,
                            params.rl.clip_range, gaussian_kl(mean, std, mean_ref, std_ref), params.rl.kl_coef)
        prec.backward(loss / timesteps)
    prec.step(opt, lora, params.rl.max_grad_norm)
    return t1 - t0, time.perf_counter() - t1


def _images(n: int, size: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                    torch.arange(n) % 8, [{"row": i} for i in range(8)], [""] * n)


def small_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=(32, 64, 64), norm_num_groups=16,
                        down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3).eval().requires_grad_(False)
    return VaeAutoencoder(vae)


def coldstart_step_seconds(params, autoencoder, image_size: int, steps: int, cache: bool) -> float:
    a = params.prior.arch
    side = image_size // autoencoder.downscale
    from dataclasses import replace

    arch = replace(a, sample_size=side, in_channels=autoencoder.latent_channels,
                   patch_size=min(a.patch_size, side), num_classes=10)
    t = toy_generator(params, arch=arch)
    head = identity_head.freeze_backbone(t)
    stats = train_denoising(transformer=t, trainable=head, data=_images(256, image_size),
                            autoencoder=autoencoder, scheduler=architecture.build_scheduler(1000), steps=steps,
                            batch_size=params.coldstart.batch_size, lr=1e-3, seed=0, null_label=identity_head.null_label(t),
                            checkpointer=None, checkpoint_every=10 ** 9, device="cpu", latent_cache=cache)
    return stats["seconds"] / steps


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bundle_sizes(params, paper) -> dict:
    from rgsyn.estimate import _lora_params, vae_costs

    t = toy_generator(params)
    with tempfile.TemporaryDirectory() as d:
        cold = bundle.save_generator(bundle.GeneratorBundle(t, architecture.build_scheduler(1000), PixelAutoencoder()),
                                  Path(d) / "cold")
        rl = bundle.load_generator(cold)
        attach_lora(rl.transformer, params.rl.lora)
        full = _bytes(bundle.save_generator(deepcopy(rl), Path(d) / "full"))
        adapter = _bytes(bundle.save_generator(rl, Path(d) / "adapter", base=cold))
    a = paper.prior.arch
    with torch.device("meta"):
        xl = architecture.build_dit(a, out_channels=2 * a.in_channels)
    n_xl = sum(p.numel() for p in xl.parameters())
    n_lora = _lora_params(xl, paper.rl.lora)
    vae_n = vae_costs(paper)[2]
    n_rl = len(paper.rl.reward_variants) * 2
    return {"toy_full_bytes": full, "toy_adapter_bytes": adapter,
            "paper_dit_params": n_xl, "paper_lora_params": n_lora,
            "paper_full_bytes": 4 * (n_xl + n_lora + vae_n), "paper_adapter_bytes": 4 * n_lora,
            "paper_rl_bundles": n_rl}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--trajectories", type=int, default=16)
    ap.add_argument("--timesteps", type=int, default=2)
    ap.add_argument("--coldstart-steps", type=int, default=10)
    args = ap.parse_args(argv)
    params = config.from_dict({})
    paper = config.from_dict(config.profile_dict("paper"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    times = {p: ([], []) for p in ("fp32", "bf16")}
    rl_update_seconds(params, "fp32", args.trajectories, args.timesteps)   # warm-up
    for _ in range(args.repeats):
        for p in times:
            r, u = rl_update_seconds(params, p, args.trajectories, args.timesteps)
            times[p][0].append(r)
            times[p][1].append(u)
    med = {p: (statistics.median(r), statistics.median(u)) for p, (r, u) in times.items()}
    print(f"\n1. RL at the toy size ({args.trajectories} trajectories, {params.sampler.num_inference_steps} "
          f"steps, {args.timesteps} trained steps), median of {args.repeats}:")
    for p, (r, u) in med.items():
        print(f"   {p}: rollout {r * 1e3:.1f} ms, update {u * 1e3:.1f} ms")
    print(f"   bf16 / fp32 update time: {med['bf16'][1] / med['fp32'][1]:.2f}; "
          f"rollout: {med['bf16'][0] / med['fp32'][0]:.2f}")

    print(f"\n2. Cold-start step time (batch {params.coldstart.batch_size}), median of {args.repeats}:")
    for name, ae, size in (("pixel space (toy)", PixelAutoencoder(), 32), ("small VAE, 64 px", small_vae(), 64)):
        res = {c: [] for c in (False, True)}
        for _ in range(args.repeats):
            for c in res:
                res[c].append(coldstart_step_seconds(params, ae, size, args.coldstart_steps, c))
        off, on = statistics.median(res[False]), statistics.median(res[True])
        t0 = time.perf_counter()
        encode_latents(_images(256, size), ae, "cpu")
        build = time.perf_counter() - t0
        print(f"   {name}: without cache {off * 1e3:.1f} ms/step, with cache {on * 1e3:.1f} ms/step "
              f"(ratio {on / off:.2f}); building the cache for 256 images: {build * 1e3:.0f} ms")

    s = bundle_sizes(params, paper)
    mb = 2 ** 20
    print("\n3. RL bundle size, before (transformer copy + adapter) -> after (adapter + reference):")
    print(f"   toy, measured: {s['toy_full_bytes'] / mb:.2f} MiB -> {s['toy_adapter_bytes'] / mb:.3f} MiB")
    print(f"   paper, computed (DiT {s['paper_dit_params'] / 1e6:.0f} M params, LoRA {s['paper_lora_params'] / 1e6:.2f} M, "
          f"fp32): {s['paper_full_bytes'] / 2 ** 30:.2f} GiB -> {s['paper_adapter_bytes'] / mb:.1f} MiB per bundle; "
          f"{s['paper_rl_bundles']} bundles {s['paper_rl_bundles'] * s['paper_full_bytes'] / 2 ** 30:.1f} GiB -> "
          f"{s['paper_rl_bundles'] * s['paper_adapter_bytes'] / mb:.0f} MiB")


if __name__ == "__main__":
    main()
