"""Sampling a benchmark's identities with a DiT generator (the library of `rgsyn generate`,
whose command is `rgsyn.stages.generate`).

For every training identity of B (rows of the generator's `identities.json` with that benchmark),
`generate.per_identity` images are sampled with the stochastic DDIM + CFG sampler and written in
the layout of `rgsyn.generator.synthetic_set`. Image n of identity row r is sampled from its own
seed `generate.seed * 10**9 + r * 10**4 + n` (`image_seed`), so it does not depend on the batch it
fell in.

Streaming and resume (`generate_images`): images go to a work folder batch by batch; after a
batch's images are written (atomically) its manifest part is written, which marks the batch done.
A re-run skips done batches. Under several processes the batches are split across ranks; the
images do not depend on the process count.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from rgsyn import distributed, io, paths
from rgsyn.config import Params
from rgsyn.errors import ConfigError, DataError
from rgsyn.generator.sampler import PolicySampler
from rgsyn.generator.synthetic_set import file_name, read_manifest, to_pil, write_manifest


def generator_dir(domain: str, generator: str, params: Params) -> Path:
    if generator == "cold":
        return paths.coldstart_dir(domain)
    if generator.startswith("rl-") and generator[3:] in params.rl.reward_variants:
        return paths.rl_dir(domain, generator[3:])
    raise ConfigError(f"--generator: {generator!r} is not allowed; choose 'cold', 'oracle' or 'rl-<name>' with "
                      f"<name> in rl.reward_variants {sorted(params.rl.reward_variants)}")


def image_seed(base: int, row: int, n: int) -> int:
    return base * 10**9 + row * 10**4 + n


def check_identities_match(ids: list[dict], real_labels: list, benchmark: str, src: Path) -> None:
    gen = {str(d["label"]) for d in ids}
    real = {str(x) for x in real_labels}
    if gen != real:
        missing, extra = sorted(real - gen)[:3], sorted(gen - real)[:3]
        raise DataError(
            f"{src}/identities.json has {len(gen)} {benchmark} identities but the {benchmark} training "
            f"split has {len(real)} (missing e.g. {missing}, unknown e.g. {extra}); re-run coldstart on "
            "this dataset")


def sampling_plan(identities: list[dict], benchmark: str, per_identity: int, seed: int, sha: str) -> list[dict]:
    """Manifest rows (path, identity, row, seed, checkpoint_sha256) of every image to sample."""
    return [{"path": file_name(benchmark, d["label"], n), "identity": str(d["label"]), "row": int(d["row"]),
             "seed": image_seed(seed, int(d["row"]), n), "checkpoint_sha256": sha}
            for d in identities for n in range(per_identity)]


def generate_images(bundle, sampler: PolicySampler, plan: list[dict], work: Path, batch_size: int,
                    size: tuple[int, int], desc: str = "generate", rank: int = 0,
                    world: int = 1) -> tuple[list[dict] | None, int]:
    """Sample `plan` (dicts with path/identity/row/seed) into `work/out`; returns (manifest rows,
    number of images actually sampled in this call).

    Under `world` processes rank r samples the batches r, r + world, ... and writes their images
    and manifest parts; the batches do not depend on the process count, so a run resumes under any
    number of processes. The manifest rows are then read on rank 0 after all ranks are done (None
    on the other ranks)."""
    out, parts = work / "out", work / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    n_batches = (len(plan) + batch_size - 1) // batch_size
    done_now = 0
    for k in tqdm(range(rank, n_batches, world), desc=desc, leave=False, disable=rank > 0):
        part = parts / f"batch_{k:06d}.csv"
        if part.is_file():
            continue
        items = plan[k * batch_size:(k + 1) * batch_size]
        labels = torch.tensor([it["row"] for it in items], dtype=torch.long)
        gens = [torch.Generator().manual_seed(int(it["seed"])) for it in items]
        traj = sampler.sample(labels, gens, record=False)
        for it, img in zip(items, traj.images):
            io.save_image(out / it["path"], to_pil(img, size), quality=95)
        write_manifest(part, items)
        done_now += len(items)
        distributed.rank_log("generate", {"batch": k, "paths": [it["path"] for it in items]})
    distributed.barrier()
    if rank > 0:
        return None, done_now
    rows = []
    for k in range(n_batches):
        rows += read_manifest(parts / f"batch_{k:06d}.csv")
    return rows, done_now
