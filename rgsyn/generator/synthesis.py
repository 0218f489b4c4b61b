"""`rgsyn generate --benchmark B --generator cold|rl-<rewards>|oracle`: synthesise identities of B.

(`oracle`, toy/smoke only, is the toy world itself re-rendering the identities: rgsyn.generator.oracle.)

For every training identity of B (rows of the generator's `identities.json` with that benchmark),
`generate.per_identity` images are sampled with the stochastic DDIM + CFG sampler and written in
the layout the downstream readers expect:

- persons (market1501, cuhk03): `bounding_box_train/{pid:04d}_c1s9_{n:06d}_00.jpg` (the real pid,
  camera 1, sequence s9 = synthetic), resized to the ReID input `reid.height x reid.width`;
- faces (casia_face): `<identity>/syn_{n:04d}.jpg`, resized to `face.size`;

plus `manifest.csv` (path, identity, row, seed, checkpoint_sha256). Image n of identity row r is
sampled from its own seed `generate.seed * 10**9 + r * 10**4 + n`, so it does not depend on the
batch it fell in.

Streaming and resume: images go to a work folder (`.rgsyn/work/generate-B-G/`, outside the DVC
output) batch by batch; after a batch's images are written (atomically) its manifest part is
written, which marks the batch done. A re-run skips done batches. At the end the folder is moved
onto `paths.synthetic_dir(B, G)` in one rename.

Several processes (`accelerate launch`): the batches are split across ranks, each rank writes its
own images and manifest parts, and after a barrier rank 0 computes the metrics and publishes the
folder (the one rename); the images do not depend on the process count.

Quality and privacy (`generation_metrics`), on the features of the held-out **gold** identity encoder
(`paths.encoder_path(domain, "gold")`, never optimised against): feature Frechet distance and
density/coverage of synthetic vs the real training split, memorisation (nearest-real-train cosine;
share above `generate.memorisation_threshold`) and the nearest-prototype identity accuracy. Next to
them, on the **reward** encoder the RL optimises: its identity accuracy (`identity_accuracy_reward`)
and the mean semantic-consistency reward `(cos(f_g, p_y) + 1) / 2`. Reward accuracy rising while
gold accuracy falls is reward hacking, and the report flags it.
Written to `paths.generation_metrics(B, G)`, logged to MLflow with a sample grid PNG (per row: the
synthetic images of one identity, then real images of the same identity).
"""
from __future__ import annotations

import csv
import io as _io
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rgsyn import distributed, io, paths, tracking
from rgsyn.checkpoint import WORK_ROOT, fingerprint
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError, DataError
from rgsyn.generator import dit
from rgsyn.generator.datasets import benchmark_real_paths
from rgsyn.generator.sampler import PolicySampler
from rgsyn.distributed import make_accelerator
from rgsyn.precision import Precision

MANIFEST_FIELDS = ("path", "identity", "row", "seed", "checkpoint_sha256")
GRID_COLS = 4


def load_identity_encoder(path, device="cpu"):
    from rgsyn.downstream.encoder import load_identity_encoder as _load

    return _load(path, device=device)


def generator_dir(domain: str, generator: str, params: Params) -> Path:
    if generator == "cold":
        return paths.coldstart_dir(domain)
    if generator.startswith("rl-") and generator[3:] in params.rl.reward_variants:
        return paths.rl_dir(domain, generator[3:])
    raise ConfigError(f"--generator: {generator!r} is not allowed; choose 'cold', 'oracle' or 'rl-<name>' with "
                      f"<name> in rl.reward_variants {sorted(params.rl.reward_variants)}")


def image_seed(base: int, row: int, n: int) -> int:
    return base * 10**9 + row * 10**4 + n


def output_size(params: Params, benchmark: str) -> tuple[int, int]:
    """(height, width) of the written images: the downstream input size."""
    if paths.DOMAIN_OF[benchmark] == "persons":
        return params.reid.height, params.reid.width
    return params.face.size, params.face.size


def file_name(benchmark: str, label, n: int) -> str:
    if paths.DOMAIN_OF[benchmark] == "persons":
        return f"bounding_box_train/{int(label):04d}_c1s9_{n:06d}_00.jpg"
    return f"{label}/syn_{n:04d}.jpg"


def to_pil(image: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr)
    h, w = size
    return im if im.size == (w, h) else im.resize((w, h), Image.BICUBIC)


def check_identities_match(ids: list[dict], real_labels: list, benchmark: str, src: Path) -> None:
    gen = {str(d["label"]) for d in ids}
    real = {str(x) for x in real_labels}
    if gen != real:
        missing, extra = sorted(real - gen)[:3], sorted(gen - real)[:3]
        raise DataError(
            f"{src}/identities.json has {len(gen)} {benchmark} identities but the {benchmark} training "
            f"split has {len(real)} (missing e.g. {missing}, unknown e.g. {extra}); re-run coldstart on "
            "this dataset")


# ------------------------------------------------------------------------------- generation
def _write_part(path: Path, rows: list[dict]) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS)
    w.writeheader()
    w.writerows(rows)
    io.write_text(path, buf.getvalue())


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
        _write_part(part, items)
        done_now += len(items)
        distributed.rank_log("generate", {"batch": k, "paths": [it["path"] for it in items]})
    distributed.barrier()
    if rank > 0:
        return None, done_now
    rows = []
    for k in range(n_batches):
        rows += _read_csv(parts / f"batch_{k:06d}.csv")
    return rows, done_now


# --------------------------------------------------------------------------------- metrics
def _load_batch(paths_: list[str], size: tuple[int, int]) -> torch.Tensor:
    from rgsyn.data.images import load_image

    ims = []
    for p in paths_:
        im = load_image(p)
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        ims.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
    return torch.stack(ims).float() / 255


@torch.no_grad()
def encode_paths(encoder, image_paths: list[str], size: tuple[int, int], device, batch: int = 128) -> torch.Tensor:
    feats = []
    for i in range(0, len(image_paths), batch):
        x = _load_batch(image_paths[i:i + batch], size).to(device)
        feats.append(encoder.encode(x).float().cpu())
    return torch.cat(feats) if feats else torch.zeros(0, 1)


ENCODERS = ("gold", "reward")


def check_encoders(domain: str) -> None:
    for which in ENCODERS:
        enc_path = paths.encoder_path(domain, which)
        if not Path(enc_path).is_file():
            raise CheckpointError(f"identity encoder {enc_path} is missing; the generation metrics need the "
                                  f"{domain} gold and reward encoders (run `rgsyn encoder --domain {domain}` first)")


def generation_metrics(domain: str, real_paths: list[str], real_labels: list, syn_paths: list[str],
                       syn_labels: list, size: tuple[int, int], device, threshold: float) -> dict:
    """`quality_metrics` on the gold encoder's features, plus the reward encoder's identity accuracy
    (`identity_accuracy_reward`) and mean R_sem (`mean_reward_sem`, the reward as RL sees it)."""
    out = {}
    for which in ENCODERS:
        encoder = load_identity_encoder(paths.encoder_path(domain, which), device=device)
        real_f = encode_paths(encoder, real_paths, size, device)
        syn_f = encode_paths(encoder, syn_paths, size, device)
        m = quality_metrics(real_f, real_labels, syn_f, syn_labels, threshold)
        if which == "gold":
            out.update({k: v for k, v in m.items() if k != "mean_reward_sem"})
        else:
            out.update({"identity_accuracy_reward": m["identity_accuracy"], "mean_reward_sem": m["mean_reward_sem"]})
    return out


def quality_metrics(real_f: torch.Tensor, real_labels: list, syn_f: torch.Tensor, syn_labels: list,
                    threshold: float) -> dict:
    from rgsyn.metrics.generation import density_coverage, frechet_distance, memorisation, real_reference

    k = max(1, min(5, real_f.shape[0] - 1))
    dc = density_coverage(real_f.numpy(), syn_f.numpy(), k=k)
    mem = memorisation(real_f.numpy(), syn_f.numpy(), threshold)
    ref = real_reference(real_f.numpy(), threshold)
    keys = sorted({str(x) for x in real_labels})
    index = {key: i for i, key in enumerate(keys)}
    ry = torch.tensor([index[str(x)] for x in real_labels])
    sy = torch.tensor([index[str(x)] for x in syn_labels])
    protos = torch.zeros(len(keys), real_f.shape[1]).index_add_(0, ry, real_f)
    protos = torch.nn.functional.normalize(protos, dim=1)
    sims = torch.nn.functional.normalize(syn_f, dim=1) @ protos.T
    r_sem = (sims[torch.arange(len(sy)), sy] + 1) / 2   # PAPER.md R_sem
    return {"frechet": frechet_distance(real_f.numpy(), syn_f.numpy()), "density": dc["density"],
            "coverage": dc["coverage"], "density_coverage_k": k,
            "nn_sim_mean": mem["nn_sim_mean"], "nn_sim_max": mem["nn_sim_max"],
            "nn_sim_share_above": mem["share_above"], "nn_threshold": mem["threshold"],
            "real_nn_sim_mean": ref["nn_sim_mean"], "real_nn_share_above": ref["share_above"],
            "mean_reward_sem": float(r_sem.mean()),
            "identity_accuracy": float((sims.argmax(1) == sy).float().mean())}


def sample_grid(syn_by_id: dict[str, list[str]], real_by_id: dict[str, list[str]], labels: list[str],
                size: tuple[int, int], out: Path) -> Path:
    """Rows = identities; GRID_COLS synthetic images, a gap, then GRID_COLS real images."""
    h, w = size
    gap = max(2, w // 4)
    canvas = Image.new("RGB", (2 * GRID_COLS * w + gap, len(labels) * h), (255, 255, 255))
    from rgsyn.data.images import load_image

    for r, lab in enumerate(labels):
        for j, p in enumerate(syn_by_id.get(lab, [])[:GRID_COLS]):
            canvas.paste(load_image(p).resize((w, h)), (j * w, r * h))
        for j, p in enumerate(real_by_id.get(lab, [])[:GRID_COLS]):
            canvas.paste(load_image(p).resize((w, h)), (GRID_COLS * w + gap + j * w, r * h))
    scale = max(1, 256 // max(h, 1))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    io.save_image(out, canvas)
    return out


# ------------------------------------------------------------------------------------ stage
def run(params: Params, benchmark: str, generator: str) -> dict:
    if generator == "oracle":   # the toy world as a perfect generator (rgsyn.generator.oracle)
        from rgsyn.generator.oracle import run as run_oracle

        return run_oracle(params, benchmark)
    if benchmark not in paths.DOMAIN_OF or benchmark == "rfw_bias":
        raise ConfigError(f"--benchmark: {benchmark!r} has no training identities to synthesise")
    domain = paths.DOMAIN_OF[benchmark]
    gp = params.generate
    src = generator_dir(domain, generator, params)
    check_encoders(domain)
    accelerator = make_accelerator(params.device)   # one device per rank under a launcher
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    with tracking.stage_run(params, "generate", run_name=f"generate-{benchmark}-{generator}",
                            extra_tags={"rgsyn.benchmark": benchmark, "rgsyn.generator": generator}) as run:
        run.log_params({"generate": to_dict(params)["generate"], "sampler": to_dict(params)["sampler"],
                        "benchmark": benchmark, "generator": generator, "device": str(device)})
        t0 = time.time()
        bundle = dit.load_generator(src, device=device)
        sha = dit.checkpoint_sha256(src)
        ids = [d for d in bundle.identities if d["benchmark"] == benchmark]
        if not ids:
            raise CheckpointError(f"{src}/identities.json has no {benchmark} identities; expected the "
                                  f"{domain} generator cold-started on {benchmark}'s training split")
        real_paths, real_labels = benchmark_real_paths(params, benchmark)
        check_identities_match(ids, real_labels, benchmark, src)
        size = output_size(params, benchmark)
        plan = [{"path": file_name(benchmark, d["label"], n), "identity": str(d["label"]), "row": int(d["row"]),
                 "seed": image_seed(gp.seed, int(d["row"]), n), "checkpoint_sha256": sha}
                for d in ids for n in range(gp.per_identity)]
        sp = params.sampler
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
        tg = time.time()
        rows, sampled = generate_images(bundle, sampler, plan, work, gp.batch_size, size,
                                        desc=f"generate {benchmark} {generator}", rank=rank, world=world)
        gen_seconds = time.time() - tg
        sampled = sum(distributed.gather_objects(sampled))
        if not distributed.is_main():   # rank 0 measures, publishes and logs; the others get its metrics
            return distributed.broadcast_object(None)
        buf = _io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS)
        wr.writeheader()
        wr.writerows(rows)
        io.write_text(work / "out" / "manifest.csv", buf.getvalue())

        metrics = generation_metrics(domain, real_paths, real_labels, [str(work / "out" / r["path"]) for r in rows],
                                     [r["identity"] for r in rows], size, device, gp.memorisation_threshold)
        metrics.update({"n_images": len(rows), "n_identities": len(ids),
                        "images_per_second": sampled / gen_seconds if sampled else 0.0,
                        "seconds": time.time() - t0})

        publish_and_report(run, work, benchmark, generator, metrics, rows, real_paths, real_labels,
                           [str(d["label"]) for d in ids[:gp.grid_identities]], size)
        return distributed.broadcast_object(metrics)


def publish_and_report(run, work: Path, benchmark: str, generator: str, metrics: dict, rows: list[dict],
                       real_paths: list[str], real_labels, grid_ids: list[str], size) -> None:
    """Publish `work/out` as the generator's synthetic folder in one rename, write its metrics JSON
    and sample grid (synthetic | real per identity), and log them to the stage's MLflow run."""
    dest = paths.synthetic_dir(benchmark, generator)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    (work / "out").rename(dest)
    shutil.rmtree(work, ignore_errors=True)

    out_json = paths.generation_metrics(benchmark, generator)
    io.write_json(out_json, metrics)
    io.write_json(paths.synthetic_digest(benchmark, generator), {"benchmark": benchmark, "generator": generator,
                                                                 **io.tree_digest(dest)})
    syn_by_id: dict[str, list[str]] = {}
    for r in rows:
        syn_by_id.setdefault(r["identity"], []).append(str(dest / r["path"]))
    real_by_id: dict[str, list[str]] = {}
    for p, lab in zip(real_paths, real_labels):
        real_by_id.setdefault(str(lab), []).append(p)
    grid = sample_grid(syn_by_id, real_by_id, grid_ids, size, out_json.with_name(out_json.stem + "-grid.png"))
    run.log_metrics({f"generate/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.log_artifact(grid)
    run.log_artifact(out_json)
    run.log_artifact(dest / "manifest.csv")
