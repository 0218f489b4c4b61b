"""The toy re-ID backbone: resnet18 (the old default) against small_resnet (the new), side by side.

    python benchmarks/bench_reid_backbone.py [--threads 2] [--rounds 5]        # step time
    python benchmarks/bench_reid_backbone.py --train [--seeds 0 1 2]          # + the real train stage

Step time: one Adam step of each backbone at the toy input (64x32, 80 images: a 16x4 PK batch plus
16 synthetic), the two alternating within every round so that machine noise hits both; the table
gives the median and the ratio (> 1: small_resnet is faster).

`--train` also runs the real stage, `rgsyn train --benchmark B --variant real --seed S`, for each
backbone with its learning rate (resnet18 1e-3, the old toy value; small_resnet the params' value)
on the toy world of this workspace (`rgsyn data` first), each in a scratch folder that links
`data/`; it prints mAP and rank-1 per seed, their mean, and the stage's training seconds. The
re-ID backbone is a toy choice: what matters is that the real-only baseline learns as well and
varies as little between seeds, since the verdicts compare variants across seeds.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

CASES = {"resnet18": 1e-3, "small_resnet": None}    # backbone -> lr (None: the params' value)


def _step_time(backbone: str, height: int, width: int, steps: int = 3) -> float:
    from rgsyn.downstream.reid import build_reid_model

    torch.manual_seed(0)
    net = build_reid_model(backbone, 48, height, width)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(80, 3, height, width)
    y = torch.randint(0, 48, (80,))
    t0 = 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = F.cross_entropy(net(x, y), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def step_times(threads: int, rounds: int, height: int, width: int) -> None:
    torch.set_num_threads(threads)
    times = {b: [] for b in CASES}
    for r in range(rounds):
        for b in (list(CASES) if r % 2 == 0 else list(CASES)[::-1]):
            times[b].append(_step_time(b, height, width))
    med = {b: statistics.median(v) * 1e3 for b, v in times.items()}
    print(f"torch {torch.__version__}, {threads} threads, {rounds} rounds, {height}x{width}, 80 images")
    print("| backbone | step (ms) | resnet18 / it |\n|---|---|---|")
    for b in CASES:
        print(f"| {b} | {med[b]:.1f} | {med['resnet18'] / med[b]:.2f}x |")


def train_runs(params_path: Path, seeds: list[int], benchmarks: list[str]) -> None:
    base = yaml.safe_load(params_path.read_text())
    data = Path("data").resolve()
    if not (data / "world" / "summary.json").exists():
        sys.exit("no toy world here: run `rgsyn data` (or `dvc repro data`) first")
    print("| backbone | lr | benchmark | mAP per seed | mean mAP | mean rank-1 | mean train s |")
    print("|---|---|---|---|---|---|---|")
    for backbone, lr in CASES.items():
        p = copy.deepcopy(base)
        p["reid"]["backbone"] = backbone
        p["reid"]["lr"] = lr if lr is not None else base["reid"]["lr"]
        with tempfile.TemporaryDirectory(prefix="rgsyn-bench-") as tmp:
            ws = Path(tmp)
            (ws / "data").symlink_to(data)
            (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
            for bench in benchmarks:
                res = []
                for s in seeds:
                    r = subprocess.run([sys.executable, "-m", "rgsyn", "train", "--benchmark", bench, "--variant",
                                        "real", "--seed", str(s)], cwd=ws, capture_output=True, text=True,
                                       env={**os.environ, "RGSYN_WARM": "0"})
                    if r.returncode:
                        sys.exit(f"{backbone} {bench} seed {s} failed:\n{r.stderr[-3000:]}")
                    res.append(json.loads((ws / "results" / "train" / bench / "real" / f"seed{s}.json").read_text()))
                maps = [r["mAP"] * 100 for r in res]
                print(f"| {backbone} | {p['reid']['lr']:g} | {bench} | {', '.join(f'{m:.1f}' for m in maps)} | "
                      f"{statistics.mean(maps):.1f} | {statistics.mean(r['rank1'] * 100 for r in res):.1f} | "
                      f"{statistics.mean(r['train_seconds'] for r in res):.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train", action="store_true", help="also run the real train stage per backbone")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--benchmarks", nargs="+", default=["market1501", "cuhk03"])
    args = ap.parse_args()
    from rgsyn.config import Params

    p = Params()
    step_times(args.threads, args.rounds, p.reid.height, p.reid.width)
    if args.train:
        train_runs(args.params, args.seeds, args.benchmarks)


if __name__ == "__main__":
    main()
