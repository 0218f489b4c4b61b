"""Measure how far the smoke metrics move across instruction sets and seeds; remake the goldens.

A trained smoke model's metrics are not bit-stable across CPUs: a 4-step training run turns a
last-bit difference of one kernel (AVX-512 vs AVX2 vs scalar code paths, see README "Smoke goldens")
into a different ranking of a handful of queries. This script runs the whole smoke pipeline
(tests/pipeline_runner.py, the stages of dvc.yaml) once per configuration, each in a fresh process
whose environment is set before torch loads:

    isa-<cap>   ATEN_CPU_CAPABILITY=<cap>, the smoke's own seeds (a stand-in for another machine)
    seed-<s>    the machine's default code path, generator_seed=s and downstream seeds 2s, 2s+1
                (renamed seed0, seed1 so that they line up with the goldens' keys)

and writes every run's flattened metrics to OUT/<config>.json (a run already there is reused: delete
it to re-measure). With --write-goldens it writes benchmarks/<name>/golden_smoke.json from them:

    expected  = the value of the first isa run (the reference: this machine's default code path)
    spread    = max - min over all runs (isa and seed runs together)
    tolerance = 0                               if spread == 0 (an exact count or a world property)
              = max(K * spread, resolution)     otherwise, K = 1.5
    resolution = the smallest non-zero gap between two measured values (the metric's step: 1/n for
                 a share of n queries or pairs)

Seed runs are part of the spread because, at 4 training steps, a last-bit difference is as good as
a new seed: two instruction sets give one sample of the drift, a few seeds give its range.

    python benchmarks/smoke_spread.py OUT [--isa default avx2 avx512] [--seeds 1 2] [--write-goldens]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

K = 1.5
THREADS = 2          # the smoke's pinned thread count (tests/test_regression_smoke.py SMOKE_THREADS)
BENCHMARKS = ("market1501", "cuhk03", "casia_face", "rfw_bias")


def run_one(out: Path, generator_seed: int) -> None:
    """Run the smoke pipeline in this process into out/work; write out/metrics.json (flattened)."""
    import yaml

    from pipeline_runner import prepare, run_all
    from test_regression_smoke import flatten

    work = prepare(out / "work")
    params = yaml.safe_load((work / "params.yaml").read_text())
    base = list(params["seeds"])
    shift = {f"seed{2 * generator_seed + i}": f"seed{s}" for i, s in enumerate(base)}
    if generator_seed:
        params["generator_seed"] = generator_seed
        params["seeds"] = [2 * generator_seed + i for i in range(len(base))]
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    t0 = time.perf_counter()
    timings = run_all(work)
    metrics = {}
    for bench in BENCHMARKS:
        flat = flatten(json.loads((work / "benchmarks" / bench / "metrics.json").read_text()))
        rename = (lambda k: re.sub(r"seed\d+", lambda m: shift[m.group(0)], k)) if generator_seed else str
        metrics[bench] = {rename(k): v for k, v in flat.items()}
    record = {"env": {k: os.environ.get(k) for k in ENV_KEYS}, "generator_seed": generator_seed,
              "seconds": time.perf_counter() - t0, "stage_seconds": timings, "metrics": metrics}
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")


ENV_KEYS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def measure(out: Path, name: str, env: dict[str, str], generator_seed: int) -> dict:
    """One configuration's record, from OUT/<name>.json or by running the smoke in a subprocess."""
    dest = out / f"{name}.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    from rgsyn import threads

    full = dict(os.environ, RGSYN_WARM="0", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    full.update({v: str(THREADS) for v in ("RGSYN_THREADS", *threads.THREAD_ENV)})
    full.update(env)
    run_dir = out / name
    full["MLFLOW_TRACKING_URI"] = f"sqlite:///{run_dir}/mlflow.db"
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, str(run_dir), "--run-one", str(generator_seed)]
    with open(run_dir / "log.txt", "w") as log:
        rc = subprocess.run(cmd, env=full, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"{name}: the smoke pipeline exited {rc}; see {run_dir / 'log.txt'}")
    (run_dir / "metrics.json").rename(dest)
    return json.loads(dest.read_text())


def golden_entry(values: list[float]) -> dict:
    """expected (the reference run's value), spread and tolerance by the module's rule."""
    ref = values[0]
    spread = max(values) - min(values)
    if spread == 0:
        return {"expected": ref, "tolerance": 0.0, "spread": 0.0}
    distinct = sorted(set(values))
    resolution = min(b - a for a, b in zip(distinct, distinct[1:]))
    return {"expected": ref, "tolerance": max(K * spread, resolution), "spread": spread}


def goldens(records: list[dict]) -> dict[str, dict[str, dict]]:
    out = {}
    for bench in BENCHMARKS:
        ref = records[0]["metrics"][bench]
        for r in records[1:]:
            if set(r["metrics"][bench]) != set(ref):
                raise SystemExit(f"{bench}: the runs report different metrics: "
                                 f"{sorted(set(r['metrics'][bench]) ^ set(ref))[:5]}")
        out[bench] = {k: golden_entry([r["metrics"][bench][k] for r in records]) for k in sorted(ref)}
    return out


def summary(records: list[dict], names: list[str], golden: dict) -> str:
    lines = ["run seconds: " + ", ".join(f"{n} {r['seconds']:.0f}" for n, r in zip(names, records))]
    for bench, entries in golden.items():
        moving = {k: e for k, e in entries.items() if e["spread"] > 0}
        isa = [r for n, r in zip(names, records) if n.startswith("isa-")]
        isa_moving = [k for k in entries if len({r["metrics"][bench][k] for r in isa}) > 1]
        top = sorted(moving.items(), key=lambda kv: -kv[1]["spread"])[:3]
        lines.append(f"{bench}: {len(entries)} metrics, {len(entries) - len(moving)} identical in every run, "
                     f"{len(isa_moving)} move across instruction sets; widest: "
                     + ", ".join(f"{k} {e['spread']:.3g}" for k, e in top))
    return "\n".join(lines)


def parse_env_config(text: str) -> tuple[str, dict[str, str], int]:
    name, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
    if not name or not env or len(env) != len(assignments.split(",")):
        raise SystemExit(f"--env {text!r}: expected NAME:VAR=VALUE[,VAR=VALUE...]")
    return f"env-{name}", env, 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder for the runs (reused: a finished run is not re-run)")
    ap.add_argument("--isa", nargs="+", default=["default-path", "avx2", "default"],
                    help="ATEN_CPU_CAPABILITY values; 'default-path' leaves it unset (the first is the reference)")
    ap.add_argument("--env", nargs="*", default=[], metavar="NAME:VAR=VAL,...",
                    help="further configurations, e.g. pinned:ATEN_CPU_CAPABILITY=avx2,MKL_CBWR=AVX2")
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2], help="extra generator seeds (>= 1)")
    ap.add_argument("--write-goldens", action="store_true", help="rewrite benchmarks/*/golden_smoke.json")
    ap.add_argument("--run-one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one is not None:
        run_one(args.out, args.run_one)
        return 0
    if any(s < 1 for s in args.seeds):
        ap.error("--seeds: generator seeds must be >= 1 (0 is the smoke's own seed, measured by --isa)")
    args.out.mkdir(parents=True, exist_ok=True)
    configs = [(f"isa-{c}", {} if c == "default-path" else {"ATEN_CPU_CAPABILITY": c}, 0) for c in args.isa]
    configs += [parse_env_config(c) for c in args.env]
    configs += [(f"seed-{s}", {}, s) for s in args.seeds]
    records = []
    for name, env, seed in configs:
        print(f"{name}: running the smoke pipeline ...", flush=True)
        records.append(measure(args.out, name, env, seed))
    golden = goldens(records)
    print(summary(records, [c[0] for c in configs], golden))
    if args.write_goldens:
        for bench, entries in golden.items():
            path = REPO / "benchmarks" / bench / "golden_smoke.json"
            path.write_text(json.dumps(entries, indent=2) + "\n")
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
