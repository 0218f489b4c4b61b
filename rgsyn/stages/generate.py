"""`rgsyn generate --benchmark B --generator cold|rl-<rewards>|oracle`: synthesise identities of B.

- `cold` / `rl-<rewards>`: the cold-start or RL-tuned DiT samples `generate.per_identity` images of
  every training identity of B (`rgsyn.generator.synthesis`: per-image seeds, batch resume in a work
  folder `.rgsyn/work/generate-B-G/`, outside the DVC output);
- `oracle` (toy/smoke only): the toy world itself re-renders the identities
  (`rgsyn.generator.oracle`), the perfect generator.

Either way the images are written in the layout the downstream readers expect, with `manifest.csv`
(`rgsyn.generator.synthetic_set`); the generation metrics are measured on the gold and reward
encoders (`rgsyn.generator.generation_metrics`) and written to `paths.generation_metrics(B, G)`;
the work folder is then moved onto `paths.synthetic_dir(B, G)` in one rename, and MLflow gets the
metrics and a sample grid.

Several processes (`accelerate launch`): the batches are split across ranks, each rank writes its
own images and manifest parts, and after a barrier rank 0 computes the metrics and publishes the
folder (the one rename); the images do not depend on the process count.
"""
from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

from rgsyn import distributed, io, paths, tracking
from rgsyn.checkpoint import WORK_ROOT, fingerprint
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError
from rgsyn.generator.datasets import benchmark_real_paths
from rgsyn.generator.generation_metrics import check_encoders, generation_metrics
from rgsyn.generator.oracle import check_same_identities, oracle_plan, render
from rgsyn.generator.synthesis import check_identities_match, generate_images, generator_dir, sampling_plan
from rgsyn.generator.synthetic_set import MANIFEST_FIELDS, output_size, publish_and_report, write_manifest


def run(params: Params, benchmark: str, generator: str) -> dict:
    if generator == "oracle":   # the toy world as a perfect generator
        return run_oracle(params, benchmark)
    if benchmark not in paths.DOMAIN_OF or benchmark == "rfw_bias":
        raise ConfigError(f"--benchmark: {benchmark!r} has no training identities to synthesise")
    domain = paths.DOMAIN_OF[benchmark]
    src = generator_dir(domain, generator, params)
    check_encoders(domain)
    from rgsyn.distributed import make_accelerator

    accelerator = make_accelerator(params.device)   # one device per rank under a launcher
    device = accelerator.device
    with tracking.stage_run(params, "generate", run_name=f"generate-{benchmark}-{generator}",
                            extra_tags={"rgsyn.benchmark": benchmark, "rgsyn.generator": generator}) as run:
        run.log_params({"generate": to_dict(params)["generate"], "sampler": to_dict(params)["sampler"],
                        "benchmark": benchmark, "generator": generator, "device": str(device)})
        t0 = time.time()
        job = sampling_job(params, benchmark, generator, src, device)
        tg = time.time()
        rows, sampled = generate_images(job.bundle, job.sampler, job.plan, job.work, params.generate.batch_size,
                                        job.size, desc=f"generate {benchmark} {generator}",
                                        rank=accelerator.process_index, world=accelerator.num_processes)
        gen_seconds = time.time() - tg
        sampled = sum(distributed.gather_objects(sampled))
        if not distributed.is_main():   # rank 0 measures, publishes and logs; the others get its metrics
            return distributed.broadcast_object(None)
        write_manifest(job.work / "out" / "manifest.csv", rows)
        metrics = _measure(params, benchmark, job.work, rows, job.real, job.size, device)
        metrics.update({"n_images": len(rows), "n_identities": len(job.ids),
                        "images_per_second": sampled / gen_seconds if sampled else 0.0,
                        "seconds": time.time() - t0})
        publish_and_report(run, job.work, benchmark, generator, metrics, rows, *job.real,
                           [str(d["label"]) for d in job.ids[:params.generate.grid_identities]], job.size)
        return distributed.broadcast_object(metrics)


def sampling_job(params: Params, benchmark: str, generator: str, src, device) -> SimpleNamespace:
    """The generator's bundle and sampler, the plan of every image and the work folder (emptied
    when it was made by another generator or other params)."""
    from rgsyn.generator.bundle import checkpoint_sha256, load_generator
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.precision import Precision

    gp, sp = params.generate, params.sampler
    bundle = load_generator(src, device=device)
    sha = checkpoint_sha256(src)
    ids = [d for d in bundle.identities if d["benchmark"] == benchmark]
    if not ids:
        raise CheckpointError(f"{src}/identities.json has no {benchmark} identities; expected the "
                              f"{paths.DOMAIN_OF[benchmark]} generator cold-started on {benchmark}'s training split")
    real = benchmark_real_paths(params, benchmark)
    check_identities_match(ids, real[1], benchmark, src)
    size = output_size(params, benchmark)
    plan = sampling_plan(ids, benchmark, gp.per_identity, gp.seed, sha)
    sampler = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder,
                            sp.num_inference_steps, sp.eta, sp.guidance_scale,
                            precision=Precision(params.compute.precision, device),
                            compile=params.compute.compile, sample_size=bundle.latent_size)
    work = WORK_ROOT / f"generate-{benchmark}-{generator}"
    state = {"sha": sha, "plan": fingerprint(plan), "sampler": to_dict(params)["sampler"],
             "batch_size": gp.batch_size, "size": list(size)}
    if distributed.is_main():
        if (work / "state.json").is_file() and io.read_json(work / "state.json") != state:
            shutil.rmtree(work)     # made by another generator/params: never mix
        io.write_json(work / "state.json", state)
    distributed.barrier()
    return SimpleNamespace(bundle=bundle, sampler=sampler, plan=plan, ids=ids, real=real, size=size, work=work)


def _measure(params: Params, benchmark: str, work, rows: list[dict], real, size, device) -> dict:
    """The generation metrics of the images in `work/out` against the real training split."""
    return generation_metrics(paths.DOMAIN_OF[benchmark], real[0], real[1],
                              [str(work / "out" / r["path"]) for r in rows], [r["identity"] for r in rows],
                              size, device, params.generate.memorisation_threshold)


def run_oracle(params: Params, benchmark: str) -> dict:
    """`--generator oracle`: render the training identities with the toy world, then measure and
    publish them as any generator's."""
    from rgsyn.generator.training import resolve_device

    if benchmark not in paths.TRAINED_BENCHMARKS:
        raise ConfigError(f"--benchmark: {benchmark!r} has no training identities to render")
    plan = oracle_plan(params, benchmark)
    check_encoders(paths.DOMAIN_OF[benchmark])
    device = resolve_device(params.device)
    with tracking.stage_run(params, "generate", run_name=f"generate-{benchmark}-oracle",
                            extra_tags={"rgsyn.benchmark": benchmark, "rgsyn.generator": "oracle"}) as run:
        run.log_params({"generate": to_dict(params)["generate"], "benchmark": benchmark, "generator": "oracle",
                        "device": device})
        t0 = time.time()
        real = benchmark_real_paths(params, benchmark)
        check_same_identities(plan, real[1], benchmark)
        size = output_size(params, benchmark)
        work = WORK_ROOT / f"generate-{benchmark}-oracle"
        shutil.rmtree(work, ignore_errors=True)
        tg = time.time()
        render(params, plan, work / "out")
        gen_seconds = time.time() - tg
        rows = [{k: r[k] for k in MANIFEST_FIELDS} for r in plan]
        write_manifest(work / "out" / "manifest.csv", rows)
        metrics = _measure(params, benchmark, work, rows, real, size, device)
        metrics.update({"n_images": len(rows), "n_identities": len({r["identity"] for r in rows}),
                        "images_per_second": len(rows) / max(gen_seconds, 1e-9), "seconds": time.time() - t0})
        syn_ids = sorted({r["identity"] for r in rows})
        publish_and_report(run, work, benchmark, "oracle", metrics, rows, *real,
                           syn_ids[:params.generate.grid_identities], size)
        return metrics
