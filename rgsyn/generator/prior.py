"""`rgsyn prior`: the class-conditional DiT prior (PAPER.md step 1).

- paper profile (`prior.pretrained` set): load DiT-XL/2-256 from a local diffusers folder or hub id,
  the SD VAE from `prior.vae`, check that they fit `prior.arch`, and save the bundle (steps = 0).
- toy profile: build a small pixel-space DiT (`prior.arch`, no VAE) and pretrain it with the
  denoising loss on the generic prior domain (`data.paths.prior`, one folder per class), the
  stand-in for ImageNet.

Output: `paths.prior_dir()`, a generator bundle (see `rgsyn.generator.dit`).
"""
from __future__ import annotations

import time

from rgsyn import distributed, paths, tracking
from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError
from rgsyn.generator import architecture, bundle, identity_head
from rgsyn.generator.autoencoder import PixelAutoencoder, build_autoencoder
from rgsyn.generator.datasets import prior_set, read_class_folders
from rgsyn.generator.training import resolve_device, train_denoising


def load_pretrained(pp) -> bundle.GeneratorBundle:
    """DiT + VAE + scheduler from `prior.pretrained` / `prior.vae` (folders or hub ids)."""
    from diffusers import DDIMScheduler

    autoencoder = build_autoencoder(pp.vae)
    arch = pp.arch
    transformer = architecture.load_transformer(
        pp.pretrained, subfolder="transformer", in_channels=autoencoder.latent_channels,
        sample_size=arch.sample_size, n_labels=arch.num_classes or None)
    try:
        scheduler = DDIMScheduler.from_pretrained(pp.pretrained, subfolder="scheduler")
    except (OSError, ValueError):
        # DiT was trained with a linear beta schedule over 1000 steps (Peebles & Xie 2023)
        scheduler = architecture.build_scheduler(pp.num_train_timesteps, beta_schedule="linear", clip_sample=False)
    return bundle.GeneratorBundle(transformer, architecture.policy_scheduler(scheduler, latent=autoencoder.kind == "vae"),
                               autoencoder)


def build_toy(pp, n_classes: int) -> bundle.GeneratorBundle:
    arch = pp.arch
    if arch.num_classes and arch.num_classes != n_classes:
        raise ConfigError(f"prior.arch.num_classes: {arch.num_classes} but the prior domain has "
                          f"{n_classes} class folders; set it to {n_classes} or 0 (= one per folder)")
    if arch.in_channels != PixelAutoencoder.latent_channels:
        raise ConfigError(f"prior.arch.in_channels: {arch.in_channels}; a pixel-space DiT (prior.vae "
                          "empty) needs 3")
    from dataclasses import replace

    transformer = architecture.build_dit(replace(arch, num_classes=n_classes))
    scheduler = architecture.build_scheduler(pp.num_train_timesteps, prediction_type=pp.prediction_type)
    return bundle.GeneratorBundle(transformer, scheduler, PixelAutoencoder())


def run(params: Params) -> None:
    pp = params.prior
    seed = params.generator_seed
    device = resolve_device(params.device)
    with tracking.stage_run(params, "prior") as run:
        run.log_params({"prior": to_dict(params)["prior"], "device": device})
        t0 = time.time()
        import torch

        torch.manual_seed(seed)   # before building: the toy DiT's initial weights come from it
        if pp.pretrained:
            bundle = load_pretrained(pp)
        else:
            if pp.vae:
                raise ConfigError("prior.vae is set but prior.pretrained is empty; a VAE-space prior "
                                  "must be loaded (set prior.pretrained), the toy prior is pixel space")
            classes, _ = read_class_folders(params.data.paths.prior)
            bundle = build_toy(pp, len(classes))
        stats = {}
        if pp.steps > 0:
            torch.manual_seed(seed)
            data = prior_set(params.data.paths.prior, bundle.image_size)
            if pp.pretrained and len(data.identities) != identity_head.num_labels(bundle.transformer):
                raise CheckpointError(
                    f"prior.pretrained has {identity_head.num_labels(bundle.transformer)} classes but "
                    f"{params.data.paths.prior} has {len(data.identities)}; fine-tuning needs one per class")
            trainable = list(bundle.transformer.parameters())
            ck = Checkpointer("prior", {"prior": to_dict(params)["prior"], "seed": seed,
                                        "data": str(params.data.paths.prior)})
            stats = train_denoising(
                transformer=bundle.transformer, trainable=trainable, data=data,
                autoencoder=bundle.autoencoder, scheduler=bundle.scheduler, steps=pp.steps,
                batch_size=pp.batch_size, lr=pp.lr, seed=seed,
                null_label=identity_head.null_label(bundle.transformer), checkpointer=ck,
                checkpoint_every=pp.checkpoint_every, device=device, run=run, desc="prior",
                precision=params.compute.precision)
            bundle.identities = data.identities
        bundle.transformer.to("cpu")
        if distributed.is_main():   # every rank holds the same weights; one writes them
            bundle.save_generator(bundle, paths.prior_dir())
        distributed.barrier()   # the bundle exists before any rank moves on
        if pp.steps > 0:
            ck.clear()
        n_params = sum(p.numel() for p in bundle.transformer.parameters())
        run.log_metrics({"prior/seconds": time.time() - t0, "prior/n_params": n_params,
                         **({"prior/final_loss": stats["final_loss"]} if stats else {})})
