"""The toy generator's resolution: 32 px in 4x4 patches (the old default) against 16 px in 2x2 (the new).

    python benchmarks/bench_generator_resolution.py [--threads 2] [--rounds 5]     # step time
    python benchmarks/bench_generator_resolution.py --ceiling                     # + what 16 px keeps

Both DiTs have 64 tokens, so a denoising step costs about the same; the table gives the median
time of one cold-start step (identity head + LoRA, as `rgsyn coldstart` trains it) of each, the two
alternating within every round so that machine noise hits both, and the ratio.

`--ceiling`, in a workspace where the toy pipeline has run (the gold encoders, the real images and
the oracle renders on disk): the gold encoder's identity accuracy (`identity_accuracy` of
`rgsyn.generator.generation_metrics.quality_metrics`, the metric of the generation table) on the oracle
renders as they are, and on the same renders taken down to S x S pixels and back up (bicubic), for
S = 32 and 16. That is the accuracy a generator that draws the identity exactly, but at S px, could
reach: the ceiling the generator's resolution sets, before any modelling error.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CASES = {"32px/patch4": (32, 4), "16px/patch2": (16, 2)}


def _coldstart_model(side: int, patch: int, n_ids: int = 80):
    from rgsyn.config import ColdstartParams, DiTArch
    from rgsyn.generator import architecture
    from rgsyn.generator.coldstart import identity_model

    torch.manual_seed(0)
    prior = architecture.build_dit(DiTArch(sample_size=side, patch_size=patch, num_classes=10))
    model, trainable = identity_model(prior, n_ids, ColdstartParams())
    return model.train(), trainable


def step_times(threads: int, rounds: int, steps: int = 10, batch: int = 32) -> dict[str, list[float]]:
    torch.set_num_threads(threads)
    built = {name: _coldstart_model(*sp) for name, sp in CASES.items()}
    opts = {name: torch.optim.AdamW(tr, lr=1e-3) for name, (_, tr) in built.items()}
    g = torch.Generator().manual_seed(0)

    def run(name: str, n: int) -> float:
        (model, trainable), opt = built[name], opts[name]
        side = CASES[name][0]
        t0 = time.perf_counter()
        for _ in range(n):
            x = torch.randn(batch, 3, side, side, generator=g)
            t = torch.randint(0, 1000, (batch,), generator=g)
            y = torch.randint(0, 80, (batch,), generator=g)
            loss = F.mse_loss(model(x, timestep=t, class_labels=y).sample[:, :3], x)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return (time.perf_counter() - t0) / n

    for name in CASES:
        run(name, 3)    # warm-up
    out: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name in CASES:
            out[name].append(run(name, steps))
    return out


def ceiling(sides=(32, 16)) -> list[dict]:
    from PIL import Image

    from rgsyn import config, paths
    from rgsyn.generator.datasets import benchmark_real_paths
    from rgsyn.generator.generation_metrics import encode_paths, load_identity_encoder, quality_metrics
    from rgsyn.generator.synthetic_set import output_size

    params = config.load("params.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bench, domain in paths.DOMAIN_OF.items():
            if bench == "rfw_bias":
                continue
            folder = paths.synthetic_dir(bench, "oracle")
            if not (folder / "manifest.csv").is_file():
                sys.exit(f"{folder}/manifest.csv is missing: run the toy pipeline (`dvc repro`) in this workspace first")
            enc = load_identity_encoder(paths.encoder_path(domain, "gold"))
            size = output_size(params, bench)
            real_paths, real_labels = benchmark_real_paths(params, bench)
            real_f = encode_paths(enc, real_paths, size, "cpu")
            manifest = list(csv.DictReader(open(folder / "manifest.csv")))
            syn = [str(folder / r["path"]) for r in manifest]
            labels = [r["identity"] for r in manifest]

            def accuracy(image_paths: list[str]) -> float:
                feats = encode_paths(enc, image_paths, size, "cpu")
                return quality_metrics(real_f, real_labels, feats, labels, 0.95)["identity_accuracy"]

            row = {"benchmark": bench, "oracle": accuracy(syn)}
            for side in sides:
                degraded = []
                for i, p in enumerate(syn):
                    im = Image.open(p).convert("RGB")
                    small = im.resize((side, side), Image.BICUBIC).resize(im.size, Image.BICUBIC)
                    q = Path(tmp) / f"{bench}-{side}-{i}.png"
                    small.save(q)
                    degraded.append(str(q))
                row[f"oracle at {side}x{side}"] = accuracy(degraded)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ceiling", action="store_true")
    args = ap.parse_args()
    times = step_times(args.threads, args.rounds)
    med = {name: statistics.median(v) * 1000 for name, v in times.items()}
    print(f"cold-start step, batch 32, {args.threads} threads, median of {args.rounds} rounds")
    print("| DiT | ms per step |\n|---|---|")
    for name, ms in med.items():
        print(f"| {name} | {ms:.1f} |")
    print(f"ratio 32px/patch4 : 16px/patch2 = {med['32px/patch4'] / med['16px/patch2']:.2f}")
    if args.ceiling:
        rows = ceiling()
        keys = list(rows[0])
        print("\ngold identity accuracy of the oracle renders (%)")
        print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in rows:
            print("| " + " | ".join([r["benchmark"]] + [f"{100 * r[k]:.1f}" for k in keys[1:]]) + " |")


if __name__ == "__main__":
    sys.exit(main())
