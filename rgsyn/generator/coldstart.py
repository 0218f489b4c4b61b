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

import torch

from rgsyn import distributed, paths, tracking
from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError, DataError
from rgsyn.generator import bundle, identity_head, lora
from rgsyn.generator.datasets import domain_set
from rgsyn.generator.training import resolve_device, train_denoising


def check_identities(identities: list[dict], labels: torch.Tensor, where: str) -> None:
    """Rows must be 0..n-1 in order and every row must have at least one image."""
    rows = [int(d["row"]) for d in identities]
    if rows != list(range(len(identities))):
        raise DataError(f"{where}: identity rows are not 0..{len(identities) - 1} in order")
    counts = torch.bincount(labels, minlength=len(identities))
    if labels.numel() and int(labels.max()) >= len(identities):
        raise DataError(f"{where}: image label {int(labels.max())} outside the {len(identities)} identities")
    empty = [identities[i] for i in range(len(identities)) if counts[i] == 0]
    if empty:
        raise DataError(f"{where}: identity {empty[0]} has no training images")


def identity_model(transformer, n_ids: int, cp) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """The model the cold start trains and its trainable parameters: the identity head of `n_ids`
    rows swapped in, the backbone frozen, and with `cp.train_lora` a LoRA adapter (`cp.lora`) that
    trains with the head."""
    transformer = identity_head.swap_identity_head(transformer, n_ids)
    adapter = lora.attach_lora(transformer, cp.lora, key="coldstart.lora") if cp.train_lora else []
    trainable = identity_head.freeze_backbone(transformer)   # the head, after the backbone (and LoRA)
    for p in adapter:
        p.requires_grad_(True)
    return transformer, trainable + adapter


def run(params: Params, domain: str) -> None:
    cp = params.coldstart
    seed = params.generator_seed
    device = resolve_device(params.device)
    with tracking.stage_run(params, "coldstart", run_name=f"coldstart-{domain}",
                            extra_tags={"rgsyn.domain": domain}) as run:
        run.log_params({"coldstart": to_dict(params)["coldstart"], "domain": domain, "device": device})
        t0 = time.time()
        torch.manual_seed(seed)   # before the LoRA is added: peft draws its initial A matrices from it
        bundle = bundle.load_generator(paths.prior_dir(), device="cpu")
        if lora.has_lora(bundle.transformer):
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
        n_ids = len(data.identities)
        transformer, trainable = identity_model(bundle.transformer, n_ids, cp)
        run.log_metrics({"coldstart/n_identities": n_ids, "coldstart/n_images": len(data),
                         "coldstart/n_trainable": sum(p.numel() for p in trainable)})
        ck = Checkpointer(f"coldstart-{domain}", {
            "coldstart": to_dict(params)["coldstart"], "seed": seed, "n_ids": n_ids,
            "identities": data.identities, "prior": bundle.checkpoint_sha256(paths.prior_dir())})
        stats = {}
        if cp.steps > 0:
            torch.manual_seed(seed)
            stats = train_denoising(
                transformer=transformer, trainable=trainable, data=data,
                autoencoder=bundle.autoencoder, scheduler=bundle.scheduler, steps=cp.steps,
                batch_size=cp.batch_size, lr=cp.lr, seed=seed, null_label=identity_head.null_label(transformer),
                checkpointer=ck, checkpoint_every=cp.checkpoint_every, device=device, run=run,
                desc=f"coldstart-{domain}", precision=params.compute.precision)
        lora.merge_lora(transformer)
        transformer.requires_grad_(False)
        transformer.to("cpu")
        if identity_head.num_labels(transformer) != n_ids:
            raise CheckpointError(f"coldstart-{domain}: the DiT has {identity_head.num_labels(transformer)} identity "
                                  f"rows but the training set has {n_ids} identities")
        bundle.transformer = transformer
        bundle.identities = data.identities
        if distributed.is_main():   # every rank holds the same weights; one writes them
            bundle.save_generator(bundle, paths.coldstart_dir(domain))
        ck.clear()
        distributed.barrier()   # the bundle exists before any rank moves on
        run.log_metrics({"coldstart/seconds": time.time() - t0,
                         **({"coldstart/final_loss": stats["final_loss"]} if stats else {})})
