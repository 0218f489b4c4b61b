"""Overhead of dynamic sample selection on a downstream training epoch (toy ReID setting).

Times one epoch of ReID training steps (OSNet-x0.25 from torchreid at 64x32, P x K = 16 x 4 real
images + 16 synthetic per step, Adam, identity cross-entropy) with each selector:

- ``none``: 16 synthetic samples per step, no scoring;
- ``random``: 32 candidates, keep 16;
- ``lookahead`` with ``virtual_params`` = ``head`` | ``head_last_block`` | ``all``: 32 candidates,
  virtual update on the real batch, keep the 16 with the smallest loss change.

Run:  python benchmarks/bench_selection_overhead.py [--steps 20] [--threads 2]
or as an opt-in pytest-benchmark: pytest benchmarks/bench_selection_overhead.py --benchmark-enable

Measured (1 torch thread, CPU seconds per step, min of 2 interleaved rounds of 4 steps, on a shared
2-core machine, so +-10 points of noise):

    none                                   0.553   +0%
    random                                 0.543   -2%
    lookahead/head, rescore_every=1        0.613   +11%   <- default
    lookahead/head, rescore_every=2        0.705   +27%   (noise: it does strictly less work)
    lookahead/head_last_block              0.825   +49%
    lookahead/all                          0.908   +64%

Profiled alone (same shapes): one `select` of the default costs 0.13 CPU s against 0.38 CPU s for
the forward + backward of the 80-image training batch, i.e. about 34% of the bare step and less of
a real epoch step (data loading, augmentation and the triplet loss come on top).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.config import SelectionParams
from rgsyn.selection import build_selector


class ReidNet(nn.Module):
    """torchreid backbone with its classifier; net(images, labels) -> logits (train mode)."""

    def __init__(self, n_ids: int, name: str = "osnet_x0_25"):
        super().__init__()
        from torchreid.reid.models import build_model

        self.model = build_model(name, num_classes=n_ids, loss="softmax", pretrained=False)

    def forward(self, x, y=None):
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def make_batches(steps: int, n_ids: int, syn: int, mult: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield (torch.rand(64, 3, h, w, generator=g), torch.randint(n_ids, (64,), generator=g),
               torch.rand(syn * mult, 3, h, w, generator=g), torch.randint(n_ids, (syn * mult,), generator=g))


def time_epoch(kind: str, virtual_params: str = "head", steps: int = 20, n_ids: int = 80,
               syn_per_batch: int = 16, h: int = 64, w: int = 32, warmup: int = 2,
               rescore_every: int = 1, virtual_batch: int = 16) -> float:
    """CPU seconds per training step (after `warmup` untimed steps).

    CPU time of this process (all its threads), not wall time: on a shared machine the wall time
    swings with other load, while the CPU time a step needs is what the overhead is about."""
    torch.manual_seed(0)
    net = ReidNet(n_ids).train()
    opt = torch.optim.Adam(net.parameters(), lr=3.5e-4, weight_decay=5e-4)
    params = SelectionParams(fraction=0.5, candidate_multiplier=2, virtual_params=virtual_params,
                             rescore_every=rescore_every, virtual_batch=virtual_batch)
    sel = build_selector(kind, params, seed=0)
    n_cand = sel.n_candidates(syn_per_batch)
    t_total = 0.0
    for i, (xr, yr, xc, yc) in enumerate(make_batches(steps + warmup, n_ids, syn_per_batch,
                                                       n_cand // syn_per_batch, h, w)):
        t0 = time.process_time()
        keep = sel.select(net, (xr, yr), (xc, yc), i)
        x = torch.cat([xr, xc[keep]])
        y = torch.cat([yr, yc[keep]])
        loss = F.cross_entropy(net(x, y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            t_total += time.process_time() - t0
    return t_total / steps


# (kind, virtual_params, rescore_every, virtual_batch)
CASES = [("none", "head", 1, 16), ("random", "head", 1, 16), ("lookahead", "head", 1, 16),
         ("lookahead", "head", 2, 16), ("lookahead", "head_last_block", 1, 16), ("lookahead", "all", 1, 16)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the minimum is reported")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the toy downstream default; also keeps idle OpenMP "
                         "threads from spinning into the CPU time)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    times: dict[tuple, list[float]] = {c: [] for c in CASES}
    time_epoch("none", steps=1)   # one-time costs (imports, allocator, kernel caches) off the clock
    for r in range(args.rounds):   # interleaved, so a change in machine load hits every case alike
        for case in CASES:
            times[case].append(time_epoch(case[0], case[1], steps=args.steps, rescore_every=case[2],
                                          virtual_batch=case[3]))
            print(f"round {r} {case}: {times[case][-1]:.4f} s/step", flush=True)
    med = {c: min(v) for c, v in times.items()}   # the least disturbed run
    base = med[CASES[0]]
    for (kind, vp, every, vb), s in med.items():
        label = kind if kind != "lookahead" else f"lookahead/{vp}/every={every}/vbatch={vb}"
        print(f"{label:40s} {s:.4f} CPU s/step   overhead {100 * (s / base - 1):+.1f}%", flush=True)


def test_bench_lookahead_overhead(benchmark):  # opt-in: pytest --benchmark-enable
    benchmark.pedantic(lambda: time_epoch("lookahead", "head", steps=5), rounds=1, iterations=1)


if __name__ == "__main__":
    main()
