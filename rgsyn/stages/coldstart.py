"""`rgsyn coldstart --domain persons|faces`: adapt the prior to the training identities.

PAPER.md step 2. The class-label table of every DiT block is replaced by an identity table (one
zero-initialised row per training identity + the null row of classifier-free guidance), the
backbone is frozen, and only the identity head (plus, when `coldstart.train_lora`, a LoRA adapter,
merged into the weights at the end) trains with the denoising loss on the real training images.

- persons: Market-1501 train + CUHK03-NP train (`data.paths.cuhk03_mode`); rows = Market pids,
  then CUHK03 pids (`identities.json` says which row is which).
- faces: the CASIA-style id folders.

Every training image (and its mirror) goes through the VAE encoder once, before the loop (the
latent cache of `rgsyn.generator.training`); the steps run under `compute.precision`.

Output: `paths.coldstart_dir(domain)`, a generator bundle with `identities.json`.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from rgsyn import distributed, paths, tracking
from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError
from rgsyn.generator.bundle import checkpoint_sha256, load_generator, save_generator
from rgsyn.generator.coldstart import check_identities, identity_model
from rgsyn.generator.datasets import domain_set
from rgsyn.generator.identity_head import null_label, num_labels
from rgsyn.generator.lora import has_lora, merge_lora
from rgsyn.generator.training import resolve_device, train_denoising


def adaptation(params: Params, domain: str) -> SimpleNamespace:
    """The prior bundle at the domain's image size, the domain's training set and the model the
    cold start trains (identity head swapped in; LoRA when `coldstart.train_lora`) with its
    trainable parameters. Seeds torch first: peft draws its initial A matrices from it."""
    cp = params.coldstart
    torch.manual_seed(params.generator_seed)
    bundle = load_generator(paths.prior_dir(), device="cpu")
    if has_lora(bundle.transformer):
        raise CheckpointError(f"{paths.prior_dir()}: the prior bundle carries a LoRA adapter; "
                              "expected a plain DiT prior")
    side = cp.image_size.get(domain, 0)
    if side:
        step = int(bundle.autoencoder.downscale) * int(bundle.transformer.config.patch_size)
        if side % step:
            raise ConfigError(f"coldstart.image_size.{domain}: {side} px is not a multiple of {step} "
                              "(autoencoder downscale x DiT patch size)")
        bundle.sample_size = side // int(bundle.autoencoder.downscale)
    data = domain_set(params, domain, bundle.image_size)
    check_identities(data.identities, data.labels, f"{domain} training set")
    transformer, trainable = identity_model(bundle.transformer, len(data.identities), cp)
    return SimpleNamespace(bundle=bundle, data=data, n_ids=len(data.identities), transformer=transformer,
                           trainable=trainable)


def save_adapted(job: SimpleNamespace, domain: str) -> None:
    """Merge the LoRA (if any) into the trained model and write the domain's cold-start bundle (rank 0)."""
    transformer = job.transformer
    merge_lora(transformer)
    transformer.requires_grad_(False)
    transformer.to("cpu")
    if num_labels(transformer) != job.n_ids:
        raise CheckpointError(f"coldstart-{domain}: the DiT has {num_labels(transformer)} identity "
                              f"rows but the training set has {job.n_ids} identities")
    job.bundle.transformer = transformer
    job.bundle.identities = job.data.identities
    if distributed.is_main():   # every rank holds the same weights; one writes them
        save_generator(job.bundle, paths.coldstart_dir(domain))


def run(params: Params, domain: str) -> None:
    cp = params.coldstart
    seed = params.generator_seed
    device = resolve_device(params.device)
    with tracking.stage_run(params, "coldstart", run_name=f"coldstart-{domain}",
                            extra_tags={"rgsyn.domain": domain}) as run:
        run.log_params({"coldstart": to_dict(params)["coldstart"], "domain": domain, "device": device})
        t0 = time.time()
        job = adaptation(params, domain)
        data, n_ids = job.data, job.n_ids
        run.log_metrics({"coldstart/n_identities": n_ids, "coldstart/n_images": len(data),
                         "coldstart/n_trainable": sum(p.numel() for p in job.trainable)})
        ck = Checkpointer(f"coldstart-{domain}", {
            "coldstart": to_dict(params)["coldstart"], "seed": seed, "n_ids": n_ids,
            "identities": data.identities, "prior": checkpoint_sha256(paths.prior_dir())})
        stats = {}
        if cp.steps > 0:
            torch.manual_seed(seed)
            stats = train_denoising(
                transformer=job.transformer, trainable=job.trainable, data=data,
                autoencoder=job.bundle.autoencoder, scheduler=job.bundle.scheduler, steps=cp.steps,
                batch_size=cp.batch_size, lr=cp.lr, seed=seed, null_label=null_label(job.transformer),
                checkpointer=ck, checkpoint_every=cp.checkpoint_every, device=device, run=run,
                desc=f"coldstart-{domain}", precision=params.compute.precision)
        save_adapted(job, domain)
        ck.clear()
        distributed.barrier()   # the bundle exists before any rank moves on
        run.log_metrics({"coldstart/seconds": time.time() - t0,
                         **({"coldstart/final_loss": stats["final_loss"]} if stats else {})})
