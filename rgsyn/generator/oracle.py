"""The perfect generator of the toy world (`rgsyn generate --benchmark B --generator oracle`).

The toy world renders, for every training identity of B, `generate.per_identity` new images with
the identity's own factors and fresh nuisance draws (`rgsyn.data.toy.world.oracle_jobs`). This is
what a generator that had learnt the identities exactly would give, so `syn_oracle` minus `real`
is the ceiling of what synthetic data can add on the toy world, and the share of it that `syn_rl`
and `ours` recover says how far the method is from it. It exists only where the world does
(`data.world: true`, toy and smoke); with real data there is nothing to render and `oracle_plan`
refuses.

The images go through exactly the synthetic path of the DiT generators
(`rgsyn.generator.synthetic_set`, `rgsyn.generator.generation_metrics`): the same file names and
layout (`paths.synthetic_dir(B, "oracle")`, Market-style names with the real pid, or one folder per
face identity), the same `manifest.csv` columns (row = the identity's index in the sorted training
labels, seed = the world seed, checkpoint_sha256 = "toy-world"), the same quality/memorisation
metrics (gold encoder, plus the reward encoder's accuracy; `paths.generation_metrics(B, "oracle")`,
the same keys) and the same sample grid. Rendering is fast (milliseconds an image), so the command
(`rgsyn.stages.generate`) renders into a work folder and publishes it in one rename, without batch
resume.
"""
from __future__ import annotations

from pathlib import Path

from rgsyn import io
from rgsyn.config import Params
from rgsyn.errors import ConfigError, DataError
from rgsyn.generator.synthetic_set import file_name, output_size

CHECKPOINT = "toy-world"


def oracle_plan(params: Params, benchmark: str) -> list[dict]:
    """Manifest rows (path, identity, row, seed, checkpoint_sha256, plus the render job) of the
    oracle images of `benchmark`."""
    from rgsyn.data.toy.world import oracle_jobs

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
