"""Deterministic mode with and without filling uninitialised memory, side by side in one run.

    python benchmarks/bench_deterministic_fill.py [--threads 2] [--rounds 7]

The downstream train stages run under `torch.use_deterministic_algorithms(True)`. With it, torch
also fills every tensor that `torch.empty` allocates (`torch.utils.deterministic.
fill_uninitialized_memory`, on by default), and the CPU kernels allocate their outputs that way,
so every op of a training step writes its output twice. The fill only guards against reading
memory that was never written; no rgsyn code does that, so the values are the same without it
(this script checks that the losses agree bit for bit).

Times one optimiser step of the toy re-ID model (`reid.backbone`, 64x32, 80 images, Adam; resnet18
before the toy default moved to small_resnet, when the figures in the README were taken) and
of the toy face model (small_resnet, 32 px, 80 images, SGD) in three modes: deterministic off,
deterministic with the fill (the old stage), deterministic without it (the stage now). The modes
alternate within every round, so machine noise hits all of them; the table gives the median per
mode and the ratio to the old stage (> 1: faster than it).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

MODES = ("off", "deterministic+fill", "deterministic")


def _set_mode(mode: str) -> None:
    torch.use_deterministic_algorithms(mode != "off", warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = mode == "deterministic+fill"


def _nets():
    from rgsyn.config import Params
    from rgsyn.downstream.face import build_face_model
    from rgsyn.downstream.reid import build_reid_model

    p = Params()
    return {"reid step": (lambda: build_reid_model(p.reid.backbone, 48, p.reid.height, p.reid.width),
                          (3, p.reid.height, p.reid.width), 48, "adam"),
            "face step": (lambda: build_face_model(p.face, 64), (3, p.face.size, p.face.size), 64, "sgd")}


def _run(build, shape, classes, optim, steps: int = 3) -> tuple[float, list[float]]:
    """Seconds per step (after one warm-up step) and the losses, from a fixed start."""
    torch.manual_seed(0)
    net = build()
    net.train()
    opt = (torch.optim.Adam(net.parameters(), lr=1e-3) if optim == "adam"
           else torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, *shape, generator=g)
    y = torch.randint(0, classes, (80,), generator=g)
    losses, t0 = [], 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        logits = net(x, y)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return (time.perf_counter() - t0) / steps, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    was = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds")
    print("| case | " + " | ".join(f"{m} (ms)" for m in MODES) + " | old / now |")
    print("|---|" + "---|" * (len(MODES) + 1))
    try:
        for name, (build, shape, classes, optim) in _nets().items():
            times = {m: [] for m in MODES}
            losses = {}
            for r in range(args.rounds):
                for m in (MODES if r % 2 == 0 else MODES[::-1]):
                    _set_mode(m)
                    s, losses[m] = _run(build, shape, classes, optim)
                    times[m].append(s)
            assert losses["deterministic"] == losses["deterministic+fill"], \
                f"{name}: losses differ without the fill: {losses}"
            med = {m: statistics.median(v) * 1e3 for m, v in times.items()}
            print(f"| {name} | " + " | ".join(f"{med[m]:.1f}" for m in MODES)
                  + f" | {med['deterministic+fill'] / med['deterministic']:.2f}x |")
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = was[1]


if __name__ == "__main__":
    main()
