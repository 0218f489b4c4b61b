"""Speed of `rgsyn.metrics.evaluate_reid` against torchreid's Python `eval_market1501`.

Market-1501 sized random data: 3,368 queries x 15,913 gallery, 512-d features (751 ids, 6 cameras).
Run either way:
    python benchmarks/bench_reid_eval.py [--device cuda] [--skip-reference]
    pytest benchmarks/bench_reid_eval.py --benchmark-enable
Goal: >= 20x faster than torchreid on the same CPU (and < 0.3 s on a datacenter GPU).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from rgsyn.metrics import evaluate_reid

NUM_Q, NUM_G, DIM, N_IDS, N_CAMS = 3368, 15913, 512, 751, 6


def market_sized_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    qf = torch.nn.functional.normalize(torch.randn(NUM_Q, DIM, generator=gen), dim=1)
    gf = torch.nn.functional.normalize(torch.randn(NUM_G, DIM, generator=gen), dim=1)
    distmat = (2 - 2 * qf @ gf.T).numpy()
    return (distmat, rng.integers(1, N_IDS + 1, NUM_Q), rng.integers(0, N_IDS + 1, NUM_G),
            rng.integers(0, N_CAMS, NUM_Q), rng.integers(0, N_CAMS, NUM_G))


def torchreid_eval(distmat, qp, gp, qc, gc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics.rank import eval_market1501
    return eval_market1501(distmat, qp, gp, qc, gc, 50)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-reference", action="store_true", help="do not time torchreid (~70 s)")
    args = ap.parse_args(argv)
    case = market_sized_case()
    d = torch.from_numpy(case[0]).to(args.device)
    evaluate_reid(d, *case[1:])  # warm-up
    times = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        ours = evaluate_reid(d, *case[1:])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    result = {"device": args.device, "threads": torch.get_num_threads(), "ours_s": min(times),
              "ours_mAP": ours["mAP"]}
    print(f"evaluate_reid on {args.device}: {min(times):.3f} s (best of {args.repeats}), mAP {ours['mAP']:.6f}")
    if not args.skip_reference:
        t = time.perf_counter()
        cmc, mAP = torchreid_eval(*case)
        ref = time.perf_counter() - t
        result.update(torchreid_s=ref, speedup=ref / min(times), abs_diff_mAP=abs(mAP - ours["mAP"]),
                      abs_diff_cmc=float(np.abs(cmc - ours["cmc"]).max()))
        print(f"torchreid eval_market1501: {ref:.1f} s, speed-up {ref / min(times):.1f}x, "
              f"|mAP diff| {result['abs_diff_mAP']:.2e}, max |CMC diff| {result['abs_diff_cmc']:.2e}")
    return result


def test_bench_evaluate_reid(benchmark):
    case = market_sized_case()
    out = benchmark.pedantic(evaluate_reid, args=case, rounds=3, iterations=1)
    t = time.perf_counter()
    cmc, mAP = torchreid_eval(*case)
    ref = time.perf_counter() - t
    benchmark.extra_info.update(torchreid_s=ref, speedup=ref / benchmark.stats.stats.min)
    assert abs(out["mAP"] - mAP) < 1e-6


if __name__ == "__main__":
    main()
