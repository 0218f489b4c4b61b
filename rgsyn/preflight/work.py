"""What each preflight row's stage does in the full run, and how its measured step projects onto it.

A row measured `seconds` for one step that did `measured` FLOPs (the step at the counts it ran
with: shrunk on CPU, see `shrunk`); the stage does `total` FLOPs in the full run (every run of the
row's stage for its domain). Then

    projected seconds = seconds x total / measured        (the measured throughput, extrapolated)
    FLOP-based seconds = total / (assumed TFLOP/s)         (what `rgsyn estimate` assumes)
    scale = full-size step FLOPs / measured step FLOPs     (> 1: the row ran shrunk and was scaled)

(the measured FLOPs of a cold start include the latent cache of the images it cached, so that
the cache of the whole training set projects at the same throughput).

The steps and FLOPs come from the functions the stages and `rgsyn estimate` size themselves by:
`rgsyn.estimate`'s per-step FLOP functions (`coldstart_step_flops`, `rl_update_flops`, ...) over its
network costs (`shared_costs`) and dataset sizes, the tasks' `steps` / `real_batch`
(`rgsyn.downstream.tasks`), `rl_trained_step_count`, `train_step_flops` of every variant.
Rows without FLOPs (the data check, loading a pretrained prior, an evaluation batch) project by
their count instead: images to evaluate in the full run / images in the batch.
"""
from __future__ import annotations

import dataclasses
import math

from rgsyn import estimate as est
from rgsyn.config import Params

DOMAIN_BENCHMARKS = {"persons": ("market1501", "cuhk03"), "faces": ("casia_face",)}
FACE_EVAL_BATCH = 256   # rgsyn.downstream.face.embed_images' default batch: a face evaluation batch


def shrunk(params: Params) -> Params:
    """The per-step counts a CPU runs a step at: 2 cold-start images, 2 x 2 RL trajectories with 2
    sampler steps and 2 reference images per identity, generation batches of 2, re-ID batches of
    P x K = 4 x 2, face batches of 8, evaluation batches of 16. Sizes of images and networks are kept."""
    r = dataclasses.replace
    p = params
    return r(p, prior=r(p.prior, batch_size=min(p.prior.batch_size, 2)),
             sampler=r(p.sampler, num_inference_steps=min(p.sampler.num_inference_steps, 2)),
             coldstart=r(p.coldstart, batch_size=min(p.coldstart.batch_size, 2)),
             rl=r(p.rl, ids_per_step=min(p.rl.ids_per_step, 2), samples_per_id=min(p.rl.samples_per_id, 2),
                  ref_images_per_id=2),
             generate=r(p.generate, batch_size=min(p.generate.batch_size, 2)),
             reid=r(p.reid, P=min(p.reid.P, 4), K=min(p.reid.K, 2), eval_batch_size=min(p.reid.eval_batch_size, 16)),
             face=r(p.face, batch_size=min(p.face.batch_size, 8)))


def _runs(params: Params) -> int:
    """`train` runs per benchmark: the seeds of every variant (`Params.seeds_of`)."""
    return sum(len(params.seeds_of(name)) for name in [*params.variants, *params.syn_variants])


def row_work(params: Params, s, row: dict) -> dict:
    """{"steps", "measured", "total", "full_step"} (FLOPs) of a row result, or {"steps", "ratio"} for a
    row projected by count. `s` = `rgsyn.estimate.shared_costs(params)` (full-size params)."""
    stage, d, u = row["stage"], row["domain"], row["units"]
    images = {k: v["images"] for k, v in s.sizes.items()}
    if stage == "prior":
        if "load" in u:
            return {"steps": 1, "ratio": 1.0}
        full, step = est.prior_step_flops(s, params.prior.batch_size), est.prior_step_flops(s, u["batch"])
        return {"steps": params.prior.steps, "measured": step + est.latent_cache_flops(s, u["cache_images"]),
                "measured_step": step, "total": params.prior.steps * full, "full_step": full}
    if stage == "coldstart":
        cs, n = params.coldstart, sum(images[b] for b in DOMAIN_BENCHMARKS[d])
        full = est.coldstart_step_flops(s, cs.batch_size)
        step = est.coldstart_step_flops(s, u["batch"])
        return {"steps": cs.steps, "full_step": full, "measured_step": step,
                "measured": est.latent_cache_flops(s, u["cache_images"]) + step,
                "total": est.latent_cache_flops(s, n) + cs.steps * full}
    if stage in ("encoder", "train"):
        return _downstream_work(params, s, stage, d, u["batch"], images)
    if stage == "rl":
        rl = params.rl
        n_var = len(rl.reward_variants)
        full = est.rl_update_flops(s, d, rl.ids_per_step * rl.samples_per_id, params.sampler.num_inference_steps,
                                   est.rl_trained_step_count(params))
        measured = est.rl_update_flops(s, d, u["trajectories"], u["sampler_steps"], u["trained_steps"])
        return {"steps": n_var * rl.steps, "measured": measured, "total": n_var * rl.steps * full, "full_step": full}
    if stage == "generate":
        g, T = params.generate, params.sampler.num_inference_steps
        gens = len(params.generators())
        per_bench = [s.sizes[b]["ids"] * g.per_identity for b in DOMAIN_BENCHMARKS[d]]
        return {"steps": gens * sum(math.ceil(n / g.batch_size) for n in per_bench),
                "measured": est.generate_flops(s, d, u["images"], u["sampler_steps"]),
                "total": gens * sum(est.generate_flops(s, d, n, T) for n in per_bench),
                "full_step": est.generate_flops(s, d, g.batch_size, T)}
    if stage == "eval":
        batch = params.reid.eval_batch_size if d == "persons" else FACE_EVAL_BATCH
        total = _runs(params) * sum(u["images_per_run"].values())
        return {"steps": _runs(params) * sum(math.ceil(n / batch) for n in u["images_per_run"].values()),
                "ratio": total / max(1, u["images"])}
    return {"steps": 1, "ratio": 1.0}   # the data check: once


def _downstream_work(params: Params, s, stage: str, d: str, batch: int, images: dict) -> dict:
    from rgsyn.downstream.tasks import benchmark_task, domain_task

    measured = est.encoder_step_flops(s, d, batch)
    if stage == "encoder":
        task = domain_task(params, d)
        steps = 2 * task.steps(sum(images[b] for b in DOMAIN_BENCHMARKS[d]))   # reward + gold
        full = est.encoder_step_flops(s, d, task.real_batch())
        return {"steps": steps, "measured": measured, "total": steps * full, "full_step": full}
    steps, total = 0, 0.0
    for bench in DOMAIN_BENCHMARKS[d]:
        task = benchmark_task(params, bench)
        for name in [*params.variants, *params.syn_variants]:
            n = len(params.seeds_of(name)) * task.steps(images[bench])
            steps += n
            total += n * est.train_step_flops(params, params.variant(name), task, s.nets[d])
    return {"steps": steps, "measured": measured, "total": total,
            "full_step": est.encoder_step_flops(s, d, benchmark_task(params, DOMAIN_BENCHMARKS[d][0]).real_batch())}


def project(row: dict, work: dict, tflops: float) -> dict:
    """The row's projections (seconds) from its work: see the module docstring."""
    if "ratio" in work:
        return {"projected_s": row["seconds"] * work["ratio"], "flop_s": None, "scale": 1.0}
    measured = max(work["measured"], 1.0)
    step = max(work.get("measured_step", measured), 1.0)
    return {"projected_s": row["seconds"] * work["total"] / measured, "flop_s": work["total"] / (tflops * 1e12),
            "scale": work["full_step"] / step}
