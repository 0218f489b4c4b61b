"""The class-conditional DiT prior (PAPER.md step 1): the bundle the `prior` command starts from.

- paper profile (`prior.pretrained` set): load DiT-XL/2-256 from a local diffusers folder or hub id,
  the SD VAE from `prior.vae`, check that they fit `prior.arch`, and save the bundle (steps = 0).
- toy profile: build a small pixel-space DiT (`prior.arch`, no VAE) and pretrain it with the
  denoising loss on the generic prior domain (`data.paths.prior`, one folder per class), the
  stand-in for ImageNet.

`load_pretrained` and `build_toy` make the bundle; the command (`rgsyn.stages.prior`) pretrains the
toy one and writes `paths.prior_dir()`, a generator bundle (`rgsyn.generator.bundle`).
"""
from __future__ import annotations

from rgsyn.errors import ConfigError
from rgsyn.generator import architecture
from rgsyn.generator.autoencoder import PixelAutoencoder, build_autoencoder
from rgsyn.generator.bundle import GeneratorBundle


def load_pretrained(pp) -> GeneratorBundle:
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
        scheduler = built_scheduler(pp)
    return GeneratorBundle(transformer, architecture.policy_scheduler(scheduler, latent=autoencoder.kind == "vae"),
                           autoencoder)


def build_toy(pp, n_classes: int) -> GeneratorBundle:
    arch = pp.arch
    if arch.num_classes and arch.num_classes != n_classes:
        raise ConfigError(f"prior.arch.num_classes: {arch.num_classes} but the prior domain has "
                          f"{n_classes} class folders; set it to {n_classes} or 0 (= one per folder)")
    if arch.in_channels != PixelAutoencoder.latent_channels:
        raise ConfigError(f"prior.arch.in_channels: {arch.in_channels}; a pixel-space DiT (prior.vae "
                          "empty) needs 3")
    from dataclasses import replace

    transformer = architecture.build_dit(replace(arch, num_classes=n_classes))
    return GeneratorBundle(transformer, built_scheduler(pp), PixelAutoencoder())


def built_scheduler(pp):
    """The DDIM scheduler built from `prior` params: for a pretrained DiT without a scheduler config of
    its own, DiT's linear beta schedule (Peebles & Xie 2023); for the toy prior, `prior.prediction_type`."""
    if pp.pretrained:
        return architecture.build_scheduler(pp.num_train_timesteps, beta_schedule="linear", clip_sample=False)
    return architecture.build_scheduler(pp.num_train_timesteps, prediction_type=pp.prediction_type)
