"""Channels-last against NCHW for the downstream conv nets, side by side in one run.

    python benchmarks/bench_channels_last.py [--threads 2] [--rounds 7]

Times one optimiser step of the toy re-ID model (torchreid resnet18, 64x32, a P x K batch plus
synthetic candidates: 80 images), one step of the toy face model (small_resnet, 32 px, 80 images)
and one face evaluation batch (256 images, no grad), each with weights and inputs in NCHW and in
channels-last layout. The layouts alternate within every round, so machine noise hits both;
the table gives the median per layout and the ratio NCHW / channels-last (> 1: channels-last faster).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _nets():
    from rgsyn.config import Params
    from rgsyn.downstream.face import build_face_model
    from rgsyn.downstream.reid import build_reid_model

    p = Params()
    return (build_reid_model("resnet18", 48, p.reid.height, p.reid.width).backbone,
            (3, p.reid.height, p.reid.width), build_face_model(p.face, 64).backbone, (3, p.face.size, p.face.size))


def _train_step(net, opt, x, y, head):
    out = net(x)
    out = out[0] if isinstance(out, tuple) else out
    loss = F.cross_entropy(head(out), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _case(net, shape, batch, classes, train: bool, layout):
    net = net.to(memory_format=layout)
    x = torch.randn(batch, *shape).contiguous(memory_format=layout)
    if not train:
        net.eval()

        def run():
            with torch.no_grad():
                net(x)
        return run
    net.train()
    y = torch.randint(classes, (batch,))
    probe = net(x[:2])
    dim = (probe[0] if isinstance(probe, tuple) else probe).shape[1]
    head = torch.nn.Linear(dim, classes)
    opt = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), 1e-3)
    return lambda: _train_step(net, opt, x, y, head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5, help="steps timed per round and layout")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    rows = []
    for name, pick, batch, classes, train in (("reid resnet18 train step", 0, 80, 48, True),
                                               ("face small_resnet train step", 2, 80, 64, True),
                                               ("face small_resnet eval batch", 2, 256, 64, False)):
        cases = {}
        for lay, fmt in layouts.items():
            torch.manual_seed(0)
            nets = _nets()
            cases[lay] = _case(nets[pick], nets[pick + 1], batch, classes, train, fmt)
            for _ in range(2):   # warm-up
                cases[lay]()
        times = {lay: [] for lay in layouts}
        for _ in range(args.rounds):
            for lay, run in cases.items():
                t0 = time.perf_counter()
                for _ in range(args.reps):
                    run()
                times[lay].append((time.perf_counter() - t0) / args.reps)
        med = {lay: statistics.median(v) for lay, v in times.items()}
        rows.append((name, med["nchw"], med["channels_last"], med["nchw"] / med["channels_last"]))
    print(f"threads {args.threads}, {args.rounds} rounds x {args.reps} steps, median seconds per step\n")
    print("| case | NCHW (s) | channels-last (s) | NCHW / channels-last |\n|---|---|---|---|")
    for name, a, b, r in rows:
        print(f"| {name} | {a:.4f} | {b:.4f} | {r:.2f} |")


if __name__ == "__main__":
    main()
