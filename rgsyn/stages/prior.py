"""`rgsyn prior`: the class-conditional DiT prior (PAPER.md step 1).

- paper profile (`prior.pretrained` set): load DiT-XL/2-256 from a local diffusers folder or hub id,
  the SD VAE from `prior.vae`, check that they fit `prior.arch`, and save the bundle (steps = 0).
- toy profile: build a small pixel-space DiT (`prior.arch`, no VAE) and pretrain it with the
  denoising loss on the generic prior domain (`data.paths.prior`, one folder per class), the
  stand-in for ImageNet.

Output: `paths.prior_dir()`, a generator bundle (`rgsyn.generator.bundle`).
"""
from __future__ import annotations

import time

import torch

from rgsyn import distributed, paths, tracking
from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError
from rgsyn.generator.bundle import save_generator
from rgsyn.generator.datasets import prior_set, read_class_folders
from rgsyn.generator.identity_head import null_label, num_labels
from rgsyn.generator.prior import build_toy, load_pretrained
from rgsyn.generator.training import resolve_device, train_denoising


def run(params: Params) -> None:
    pp = params.prior
    seed = params.generator_seed
    device = resolve_device(params.device)
    with tracking.stage_run(params, "prior") as run:
        run.log_params({"prior": to_dict(params)["prior"], "device": device})
        t0 = time.time()
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
            if pp.pretrained and len(data.identities) != num_labels(bundle.transformer):
                raise CheckpointError(
                    f"prior.pretrained has {num_labels(bundle.transformer)} classes but "
                    f"{params.data.paths.prior} has {len(data.identities)}; fine-tuning needs one per class")
            trainable = list(bundle.transformer.parameters())
            ck = Checkpointer("prior", {"prior": to_dict(params)["prior"], "seed": seed,
                                        "data": str(params.data.paths.prior)})
            stats = train_denoising(
                transformer=bundle.transformer, trainable=trainable, data=data,
                autoencoder=bundle.autoencoder, scheduler=bundle.scheduler, steps=pp.steps,
                batch_size=pp.batch_size, lr=pp.lr, seed=seed,
                null_label=null_label(bundle.transformer), checkpointer=ck,
                checkpoint_every=pp.checkpoint_every, device=device, run=run, desc="prior",
                precision=params.compute.precision)
            bundle.identities = data.identities
        bundle.transformer.to("cpu")
        if distributed.is_main():   # every rank holds the same weights; one writes them
            save_generator(bundle, paths.prior_dir())
        distributed.barrier()   # the bundle exists before any rank moves on
        if pp.steps > 0:
            ck.clear()
        n_params = sum(p.numel() for p in bundle.transformer.parameters())
        run.log_metrics({"prior/seconds": time.time() - t0, "prior/n_params": n_params,
                         **({"prior/final_loss": stats["final_loss"]} if stats else {})})
