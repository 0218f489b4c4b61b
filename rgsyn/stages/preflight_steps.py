"""One real step of each generator stage's inner loop, for `rgsyn preflight` (rgsyn.stages.preflight).

Each function runs in its own process (rgsyn.preflight.measure) with the working directory in the
preflight's scratch folder, so the stages' relative outputs (`models/`, `.rgsyn/work/`) land there.
It builds the stage's models exactly as the stage does, through the stage's own set-up functions,
times one step and writes what the next stage reads (as the stage would), so that the rows run in
pipeline order form a small pipeline in the scratch folder:

- `prior_step`: `load_pretrained` (paper) or `build_toy` (toy); with `prior.steps` > 0, one
  denoising step (`rgsyn.generator.training.DenoisingTrainer.step`); writes `models/prior`.
- `coldstart_step`: `rgsyn.stages.coldstart.adaptation` (the prior at the domain's size, the
  identity head), the latent cache of `batch_size` training images, one denoising step at
  `coldstart.batch_size`; writes `models/coldstart/<domain>`.
- `rl_step`: `rgsyn.stages.rl.load_policy` / `load_references` / `one_update`: one rollout of
  `ids_per_step x samples_per_id` trajectories and one policy update.
- `generate_step`: `rgsyn.stages.generate.sampling_job` and one batch of
  `rgsyn.generator.synthesis.generate_images` (sampler + VAE decode), from the cold-start bundle.

Each returns a list of row results: {"row", "stage", "domain", "seconds", "units"}; `units` says
how much work the timed step did (images, trajectories, steps), from which rgsyn.preflight.work
takes its FLOPs. Time is wall time, with the device synchronised before each clock read.
"""
from __future__ import annotations

import time

import torch

from rgsyn import paths
from rgsyn.config import Params


def sync(device) -> float:
    """A clock read after the device's queued work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _row(stage: str, domain: str | None, seconds: float, **units) -> dict:
    return {"row": stage if domain is None else f"{stage}/{domain}", "stage": stage, "domain": domain,
            "seconds": seconds, "units": units}


def _subset(data, n: int):
    from rgsyn.generator.datasets import ImageSet

    n = max(1, min(n, len(data)))
    return ImageSet(data.images[:n], data.labels[:n], data.identities, data.paths[:n])


def _one_denoising_step(params: Params, transformer, trainable, data, bundle, steps: int, batch_size: int,
                        lr: float, cache_images: int) -> tuple[float, int]:
    """(seconds, images cached) of the latent cache of `cache_images` images and one step."""
    from rgsyn.generator.identity_head import null_label
    from rgsyn.generator.training import DenoisingTrainer, resolve_device

    device = resolve_device(params.device)
    sub = _subset(data, cache_images)
    torch.manual_seed(params.generator_seed)
    t0 = sync(device)
    trainer = DenoisingTrainer(transformer=transformer, trainable=trainable, data=sub,
                               autoencoder=bundle.autoencoder, scheduler=bundle.scheduler, steps=steps,
                               batch_size=batch_size, lr=lr, seed=params.generator_seed,
                               null_label=null_label(transformer), device=device,
                               precision=params.compute.precision)
    trainer.step(0)
    seconds = sync(device) - t0
    trainer.finish()
    return seconds, len(sub)


def prior_step(params: Params, domain: str | None = None) -> list[dict]:
    from rgsyn.generator.bundle import save_generator
    from rgsyn.generator.datasets import prior_set, read_class_folders
    from rgsyn.generator.prior import build_toy, load_pretrained

    import diffusers  # noqa: F401 - imported before the clock starts: the row times the load, not the imports

    pp = params.prior
    torch.manual_seed(params.generator_seed)
    t0 = time.perf_counter()
    if pp.pretrained:
        bundle = load_pretrained(pp)
    else:
        bundle = build_toy(pp, len(read_class_folders(params.data.paths.prior)[0]))
    rows = [_row("prior", None, time.perf_counter() - t0, load=1)]
    if pp.steps > 0:
        data = prior_set(params.data.paths.prior, bundle.image_size)
        seconds, cached = _one_denoising_step(params, bundle.transformer, list(bundle.transformer.parameters()),
                                              data, bundle, pp.steps, pp.batch_size, pp.lr, pp.batch_size)
        rows = [_row("prior", None, seconds, batch=pp.batch_size, cache_images=cached)]
        bundle.identities = data.identities
    bundle.transformer.to("cpu")
    save_generator(bundle, paths.prior_dir())
    return rows


def coldstart_step(params: Params, domain: str) -> list[dict]:
    from rgsyn.stages.coldstart import adaptation, save_adapted

    cp = params.coldstart
    job = adaptation(params, domain)
    seconds, cached = _one_denoising_step(params, job.transformer, job.trainable, job.data, job.bundle, cp.steps,
                                          cp.batch_size, cp.lr, cp.batch_size)
    save_adapted(job, domain)
    return [_row("coldstart", domain, seconds, batch=cp.batch_size, cache_images=cached)]


def rl_step(params: Params, domain: str) -> list[dict]:
    from rgsyn.rl.rollout import check_plan
    from rgsyn.stages.rl import load_policy, load_references, one_update

    rl = params.rl
    pol = load_policy(params, domain)
    check_plan(pol.eligible, rl.min_sigma_ratio, min(rl.ids_per_step, pol.n_ids), pol.accelerator.num_processes)
    refs = load_references(params, domain, pol.bundle.identities, pol.accelerator.device)
    weights = next(iter(rl.reward_variants.values()))
    plan, *_, dt_roll, dt_upd = one_update(params, pol, refs, 0, weights, f"preflight rl ({domain})")
    return [_row("rl", domain, dt_roll + dt_upd, trajectories=int(plan.labels.numel()),
                 sampler_steps=params.sampler.num_inference_steps, trained_steps=len(plan.trained_steps),
                 rollout_seconds=dt_roll, update_seconds=dt_upd)]


GENERATED_BENCHMARK = {"persons": "market1501", "faces": "casia_face"}


def generate_step(params: Params, domain: str) -> list[dict]:
    from rgsyn.distributed import make_accelerator
    from rgsyn.generator.synthesis import generate_images
    from rgsyn.stages.generate import sampling_job

    benchmark, gp = GENERATED_BENCHMARK[domain], params.generate
    device = make_accelerator(params.device).device
    job = sampling_job(params, benchmark, "cold", paths.coldstart_dir(domain), device)
    plan = job.plan[:gp.batch_size]
    t0 = sync(device)
    generate_images(job.bundle, job.sampler, plan, job.work, gp.batch_size, job.size, desc="preflight generate")
    return [_row("generate", domain, sync(device) - t0, images=len(plan),
                 sampler_steps=params.sampler.num_inference_steps)]
