"""`rgsyn generate --benchmark B --generator oracle`: the perfect generator of the toy world.

The toy world renders, for every training identity of B, `generate.per_identity` new images with
the identity's own factors and fresh nuisance draws (`rgsyn.data.toy.world.oracle_jobs`). This is
what a generator that had learnt the identities exactly would give, so `syn_oracle` minus `real`
is the ceiling of what synthetic data can add on the toy world, and the share of it that `syn_rl`
and `ours` recover says how far the method is from it. It exists only where the world does
(`data.world: true`, toy and smoke); with real data there is nothing to render and the stage
refuses.

The images go through exactly the synthetic path of `rgsyn.generator.synthesis`: the same file
names and layout (`paths.synthetic_dir(B, "oracle")`, Market-style names with the real pid, or
one folder per face identity), the same `manifest.csv` columns (row = the identity's index in the
sorted training labels, seed = the world seed, checkpoint_sha256 = "toy-world"), the same
quality/memorisation metrics (gold encoder, plus the reward encoder's accuracy) (`paths.generation_metrics(B,
"oracle")`, the same keys) and the same sample grid. Rendering is fast (milliseconds an image), so
the stage writes into a work folder and publishes it in one rename, without batch resume.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from rgsyn import io, paths, tracking
from rgsyn.checkpoint import WORK_ROOT
from rgsyn.config import Params, to_dict
from rgsyn.errors import ConfigError, DataError

CHECKPOINT = "toy-world"


def oracle_plan(params: Params, benchmark: str) -> list[dict]:
    """Manifest rows (path, identity, row, seed, checkpoint_sha256, plus the render job) of the
    oracle images of `benchmark`."""
    from rgsyn.data.toy.world import oracle_jobs
    from rgsyn.generator.synthesis import file_name, output_size

    if not params.data.world:
        raise ConfigError("--generator oracle: needs the toy world (data.world: true); with real data the "
                          "oracle is not applicable")
    jobs = oracle_jobs(params.data, benchmark, params.generate.per_identity, params.data.paths.cuhk03_mode,
                       size=output_size(params, benchmark))
    rows = {lab: r for r, lab in enumerate(sorted({lab for lab, _, _ in jobs}))}
    return [{"path": file_name(benchmark, lab, k), "identity": lab, "row": rows[lab], "seed": params.data.seed,
             "checkpoint_sha256": CHECKPOINT, "job": job} for lab, k, job in jobs]


def check_same_identities(plan: list[dict], real_labels: list, benchmark: str) -> None:
    """The world the params describe must be the one on disk (data.paths), identity for identity."""
    gen, real = {str(r["identity"]) for r in plan}, {str(x) for x in real_labels}
    if gen != real:
        raise DataError(f"oracle: the toy world of params.data has {len(gen)} {benchmark} training identities, "
                        f"the training split on disk has {len(real)} (e.g. missing {sorted(real - gen)[:3]}, "
                        f"extra {sorted(gen - real)[:3]}); re-run `rgsyn data` with these params")


def render(params: Params, plan: list[dict], out: Path) -> None:
    from rgsyn.data.toy.world import render_job

    for r in plan:
        io.write_bytes(out / r["path"], render_job(params.data.seed, r["job"]))


def run(params: Params, benchmark: str) -> dict:
    from rgsyn.generator.datasets import benchmark_real_paths
    from rgsyn.generator.synthesis import (MANIFEST_FIELDS, _write_part, check_encoders, generation_metrics,
                                           output_size, publish_and_report)
    from rgsyn.generator.training import resolve_device

    if benchmark not in paths.TRAINED_BENCHMARKS:
        raise ConfigError(f"--benchmark: {benchmark!r} has no training identities to render")
    domain = paths.DOMAIN_OF[benchmark]
    plan = oracle_plan(params, benchmark)
    check_encoders(domain)
    device = resolve_device(params.device)
    with tracking.stage_run(params, "generate", run_name=f"generate-{benchmark}-oracle",
                            extra_tags={"rgsyn.benchmark": benchmark, "rgsyn.generator": "oracle"}) as run:
        run.log_params({"generate": to_dict(params)["generate"], "benchmark": benchmark, "generator": "oracle",
                        "device": device})
        t0 = time.time()
        real_paths, real_labels = benchmark_real_paths(params, benchmark)
        check_same_identities(plan, real_labels, benchmark)
        size = output_size(params, benchmark)
        work = WORK_ROOT / f"generate-{benchmark}-oracle"
        shutil.rmtree(work, ignore_errors=True)
        tg = time.time()
        render(params, plan, work / "out")
        gen_seconds = time.time() - tg
        rows = [{k: r[k] for k in MANIFEST_FIELDS} for r in plan]
        _write_part(work / "out" / "manifest.csv", rows)

        metrics = generation_metrics(domain, real_paths, real_labels, [str(work / "out" / r["path"]) for r in rows],
                                     [r["identity"] for r in rows], size, device, params.generate.memorisation_threshold)
        metrics.update({"n_images": len(rows), "n_identities": len({r["identity"] for r in rows}),
                        "images_per_second": len(rows) / max(gen_seconds, 1e-9), "seconds": time.time() - t0})

        syn_ids = sorted({r["identity"] for r in rows})
        publish_and_report(run, work, benchmark, "oracle", metrics, rows, real_paths, real_labels,
                           syn_ids[:params.generate.grid_identities], size)
        return metrics
