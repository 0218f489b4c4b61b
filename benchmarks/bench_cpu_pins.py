"""What the CPU-library pins cost, and which of them change a short training run's bits.

Each configuration (a set of environment variables: PyTorch's ATEN_CPU_CAPABILITY, MKL's
conditional numerical reproducibility MKL_CBWR, oneDNN's ONEDNN_MAX_CPU_ISA, the thread count) runs
in a fresh process, since the libraries read them once at load. In each, two training workloads of
the smoke's kinds run STEPS steps from a fixed seed:

    conv   SmallReidResNet (width 32, 64x32 crops, batch 32): the re-ID trainer's convolutions (oneDNN)
    attn   a 4-layer transformer encoder (256 wide, 64 tokens, batch 16): the DiT's matmuls (MKL)

and report the median step time and a SHA-256 of the trained weights. Two configurations with the
same hash follow the same code paths bit for bit; a run on another CPU agrees with this one only if
every pin that changes a hash here is pinned there too. Configurations run ROUNDS times, interleaved,
so that a shared machine's load falls on all of them alike.

    python benchmarks/bench_cpu_pins.py [--steps 8] [--rounds 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "unpinned": {},
    "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl_cbwr=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "mkl_cbwr=AVX2": {"MKL_CBWR": "AVX2"},
    "onednn=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all=avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all=lowest": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "threads=1": {"RGSYN_BENCH_THREADS": "1"},
}


def workload(kind: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "conv":
        from rgsyn.downstream.small_resnet import SmallReidResNet

        net = SmallReidResNet(num_classes=16, width=32).train()
        x = torch.rand(32, 3, 64, 32, generator=g)
        y = torch.randint(0, 16, (32,), generator=g)
        loss_fn = lambda: nn.functional.cross_entropy(net(x)[0], y)   # noqa: E731
    else:
        net = nn.TransformerEncoder(nn.TransformerEncoderLayer(256, 4, 512, dropout=0.0, batch_first=True), 4)
        x = torch.rand(16, 64, 256, generator=g)
        loss_fn = lambda: net(x).pow(2).mean()   # noqa: E731
    return net, loss_fn


def child(steps: int) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("RGSYN_BENCH_THREADS", "2")))
    out = {"capability": torch.backends.cpu.get_cpu_capability()}
    for kind in ("conv", "attn"):
        net, loss_fn = workload(kind)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        h = hashlib.sha256()
        for p in net.state_dict().values():
            h.update(p.detach().contiguous().numpy().tobytes())
        out[kind] = {"step_s": statistics.median(times[1:]), "sha": h.hexdigest()[:12]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME",
                    help="configurations to run (default: all); the first is the baseline of the ratios")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps)))
        return 0
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    base.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", PYTHONPATH=repo)
    results: dict[str, list[dict]] = {name: [] for name in args.only}
    for _ in range(args.rounds):
        for name in args.only:
            p = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)],
                               env={**base, **CONFIGS[name]}, capture_output=True, text=True, check=True)
            results[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
            r = results[name][-1]
            print(f"{name:22s} {r['capability']:8s} conv {r['conv']['step_s'] * 1e3:6.0f} ms {r['conv']['sha']}  "
                  f"attn {r['attn']['step_s'] * 1e3:6.0f} ms {r['attn']['sha']}", flush=True)
    ref = {k: statistics.median(r[k]["step_s"] for r in results[args.only[0]]) for k in ("conv", "attn")}
    print(f"medians over {args.rounds} round(s), ratio to {args.only[0]}:")
    for name, runs in results.items():
        conv = statistics.median(r["conv"]["step_s"] for r in runs)
        attn = statistics.median(r["attn"]["step_s"] for r in runs)
        print(f"{name:22s} conv {conv * 1e3:6.0f} ms (x{conv / ref['conv']:.2f})  attn {attn * 1e3:6.0f} ms "
              f"(x{attn / ref['attn']:.2f})  same bits as {args.only[0]}: "
              f"{runs[0]['conv']['sha'] == results[args.only[0]][0]['conv']['sha']}/"
              f"{runs[0]['attn']['sha'] == results[args.only[0]][0]['attn']['sha']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
