"""The oracle gain as a function of the real training-set size (real images per identity).

    python benchmarks/sweep_real_size.py                       # Market-style and faces, 3 sizes x 3 seeds
    python benchmarks/sweep_real_size.py --benchmarks market1501 --sizes market1501=2,4 --seeds 0 1

For every (benchmark, size) it makes a scratch project folder `.rgsyn/sweep/<benchmark>-<size>/`
and runs the real stage code there, in this order, with the toy params (`--params`, default
params.yaml) plus the size (`data.market.train_imgs_per_id`, `data.cuhk03.train_imgs_per_id` or
`data.faces.imgs_per_id`) and `threads: 1`:
1. the `data` stage (`rgsyn.stages.data.build_into`): the toy world at that size; the test split and
   the verification sets do not depend on it;
2. the oracle images, rendered and written exactly as `rgsyn generate --generator oracle` does
   (`rgsyn.generator.oracle.oracle_plan/render`), without the generation metrics: they need the
   identity encoder and do not enter the gain;
3. the `train` stage (`rgsyn.stages.train.train_and_evaluate`) for `real` and `syn_oracle`, and
   with `--rules` for `syn_oracle` again under each other candidate rule (`reid/face.syn_draw`).
Runs are sequential and single-threaded. A finished run is not re-run (its results file is read).

Writes `--out` (default benchmarks/sweep_real_size.csv), one row per run and headline metric:
`benchmark,real_per_id,variant,rule,seed,metric,value` (rule: the syn_draw rule of a synthetic
row, "" for real). `rgsyn.real_size.summary` turns it into paired gains with 95% intervals and
`rgsyn.real_size.gain_figure` into the figure (gain against real-data size).
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgsyn import config, io, paths  # noqa: E402

HEADLINE = {"market1501": "mAP", "cuhk03": "mAP", "casia_face": "avg"}
SIZE_KEY = {"market1501": ("market", "train_imgs_per_id"), "cuhk03": ("cuhk03", "train_imgs_per_id"),
            "casia_face": ("faces", "imgs_per_id")}
DEFAULT_SIZES = {"market1501": (2, 4, 8), "cuhk03": (2, 4, 8), "casia_face": (3, 6, 12)}
FIELDS = ("benchmark", "real_per_id", "variant", "rule", "seed", "metric", "value")


def sized_params(base: dict, benchmark: str, size: int, rule: str) -> config.Params:
    raw = copy.deepcopy(base)
    section, key = SIZE_KEY[benchmark]
    raw["data"][section][key] = size
    raw["reid"]["threads"] = raw["face"]["threads"] = 1
    raw["reid"]["syn_draw"] = raw["face"]["syn_draw"] = rule
    raw["device"] = "cpu"
    # the generic prior domain is not used here; a tiny one keeps the data stage short (its images
    # are keyed by their own class and index, so the benchmark sets are the same bytes)
    raw["data"]["prior"].update({"n_classes": 2, "imgs_per_class": 1, "people_per_class": 0})
    return config.from_dict(raw)


def run_one(params, benchmark: str, variant: str, seed: int) -> dict:
    from rgsyn.stages.train import train_and_evaluate

    f = paths.run_metrics(benchmark, variant, seed)
    if f.is_file():
        return io.read_json(f)
    t0 = time.time()
    m = train_and_evaluate(params, benchmark, variant, seed, progress=False)
    print(f"  {benchmark} {variant} seed{seed}: {HEADLINE[benchmark]} {m[HEADLINE[benchmark]]:.4f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return m


def prepare(params, benchmark: str) -> None:
    from rgsyn.stages.data import build_into
    from rgsyn.generator.oracle import oracle_plan, render
    from rgsyn.generator.synthetic_set import MANIFEST_FIELDS, write_manifest

    if not Path("data/world/summary.json").is_file():
        build_into(params, params.data.out, progress=False)
    dest = paths.synthetic_dir(benchmark, "oracle")
    if not (dest / "manifest.csv").is_file():
        plan = oracle_plan(params, benchmark)
        render(params, plan, dest)
        write_manifest(dest / "manifest.csv", [{k: r[k] for k in MANIFEST_FIELDS} for r in plan])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--benchmarks", nargs="+", default=["market1501", "casia_face"], choices=list(HEADLINE))
    ap.add_argument("--sizes", nargs="*", default=[], help="benchmark=s1,s2,... (default: %s)" % DEFAULT_SIZES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rules", nargs="*", default=["batch_ids"],
                    help="syn_draw rules for syn_oracle besides the params' own (reid/face.syn_draw)")
    ap.add_argument("--rule-benchmarks", nargs="*", default=["market1501"])
    ap.add_argument("--work", default=str(ROOT / ".rgsyn" / "sweep"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "sweep_real_size.csv"))
    args = ap.parse_args(argv)
    sizes = dict(DEFAULT_SIZES)
    for item in args.sizes:
        b, _, s = item.partition("=")
        sizes[b] = tuple(int(x) for x in s.split(","))
    base = config.to_dict(config.load(args.params))
    out = Path(args.out).resolve()
    rows: list[dict] = []
    here = os.getcwd()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.work).resolve()}/mlflow.db")
    try:
        for bench in args.benchmarks:
            # the params' own rule first (it trains `real` too), then the other candidate rules
            own = base["face" if bench == "casia_face" else "reid"]["syn_draw"]
            extra = [r for r in args.rules if r != own] if bench in args.rule_benchmarks else []
            for size in sizes[bench]:
                for rule in [own, *extra]:
                    work = Path(args.work) / f"{bench}-{size}" / rule
                    work.mkdir(parents=True, exist_ok=True)
                    first = Path(args.work) / f"{bench}-{size}" / own / "data" / "world"
                    if rule != own and not (work / "data" / "world").exists():
                        (work / "data").mkdir(exist_ok=True)   # the same world as the first rule's
                        (work / "data" / "world").symlink_to(first.resolve(), target_is_directory=True)
                    os.chdir(work)
                    params = sized_params(base, bench, size, rule)
                    print(f"{bench}: {size} real images per identity, rule {rule} ({work})", flush=True)
                    prepare(params, bench)
                    variants = ["real", "syn_oracle"] if rule == own else ["syn_oracle"]
                    for seed in args.seeds:
                        for v in variants:
                            m = run_one(params, bench, v, seed)
                            rows.append({"benchmark": bench, "real_per_id": size, "variant": v,
                                         "rule": "" if v == "real" else rule, "seed": seed,
                                         "metric": HEADLINE[bench], "value": m[HEADLINE[bench]]})
                    os.chdir(here)
                    _write(out, rows)
    finally:
        os.chdir(here)
    _write(out, rows)
    from rgsyn.real_size import format_summary, summary

    print(format_summary(summary(rows)))
    return 0


def _write(out: Path, rows: list[dict]) -> None:
    import io as _io

    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    io.write_text(out, buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
