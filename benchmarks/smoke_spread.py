"""Measure how far the smoke metrics move across instruction sets and seeds; remake the goldens.

A trained smoke model's metrics are not bit-stable across CPUs: a few training steps turn a
last-bit difference of one kernel (AVX-512 vs AVX2 vs scalar code paths; benchmarks/SMOKE_GOLDENS.md)
into a different ranking of a handful of queries. This script runs the whole smoke pipeline
(tests/pipeline_runner.py, the stages of dvc.yaml) once per configuration, each in a fresh process
whose environment is set before torch loads, at the smoke test's pinned 2 threads:

    isa-<cap>   ATEN_CPU_CAPABILITY=<cap> ('default-path': unset), the smoke's own seeds: a stand-in
                for another machine
    env-<name>  any other environment (--env), e.g. MKL_CBWR / ONEDNN_MAX_CPU_ISA pins
    seed-<s>    the machine's default code path, generator_seed=s and downstream seeds 10s, 10s+1, ...
                for `seeds` then `control_seeds` (renamed to the smoke's own seed names, so that
                they line up with the goldens' keys)

and writes every run's flattened metrics to OUT/<config>.json (a run already there is reused: delete
it to re-measure). The metrics checked are those of metrics.json plus the within-run comparisons of
tests/test_regression_smoke.py `derived_metrics` (seed means, variant minus real, generator minus
cold start). With --write-goldens it writes benchmarks/<name>/golden_smoke.json from them:

    expected   = the value of the first run (the reference: this machine's default code path)
    spread     = the larger of max - min over all runs and, for the metrics of downstream models,
                 the spread over the downstream seeds inside one run (`seed_spread`)
    family     = the metric with its generator, variant and seed left out (`generation.*.frechet`):
                 a metric that happened not to move here may move on another machine as much as
                 its family does elsewhere, so the tolerance uses the family's largest spread
                 (over the four benchmarks) when that is larger than the metric's own
    tolerance  = max(K * spread', resolution)    if the family moved, spread' = max(spread, family
                                                 spread) >= spread, K = 1.5
               = 0                               if it never moved and is a count or setting (n_*,
                                                 density_coverage_k, nn_threshold) or a difference
                                                 that is 0 by construction (real_nn_* of two generators)
               = one step of the share (1/n, n from the values' denominators; 0.05 when the values
                 are all 0 or 1)                 if it never moved otherwise: no run moved it here,
                                                 but a trained model's share may move one step elsewhere
    resolution = the smallest non-zero gap between two measured values (the metric's step, 1/n for
                 a share of n queries or pairs, when the runs differ by one step)

Seed runs belong in the spread because, at a few training steps, a last-bit difference is as good
as a new seed: two instruction sets give one sample of the drift, a few seeds give its range.
ATEN_CPU_CAPABILITY=default (scalar ATen kernels) is not in the default --isa list: it slows the
smoke's transformer training by about 40x.

    python benchmarks/smoke_spread.py OUT [--isa default-path avx2] [--seeds 1 2] [--write-goldens]
    python benchmarks/smoke_spread.py --check OUT/isa-avx2.json     # a recorded run against the goldens
"""
from __future__ import annotations

import argparse
import json
import math
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
    n_seeds, base = len(params["seeds"]), [*params["seeds"], *params.get("control_seeds", [])]
    new = [10 * generator_seed + i for i in range(len(base))]
    shift = {f"seed{n}": f"seed{s}" for n, s in zip(new, base)}
    if generator_seed:
        params["generator_seed"] = generator_seed
        params["seeds"], params["control_seeds"] = new[:n_seeds], new[n_seeds:]
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


def _over_seeds(flat: dict[str, float], variant: str, name: str) -> list[float]:
    pattern = re.compile(rf"variants\.{re.escape(variant)}\.seed\d+\.{re.escape(name)}")
    return [v for k, v in flat.items() if pattern.fullmatch(k)]


def seed_spread(flat: dict[str, float], key: str) -> float:
    """The spread one run shows across its downstream seeds (the smoke trains every variant at two):
    for `variants.<v>.seed<N>.<m>` the max - min over the seeds; for a seed mean that range over
    sqrt(n seeds); for `paired.<v>_minus_real.<m>` the two ranges added in quadrature over sqrt(n).
    0 for the rest (the generation metrics come from one generator seed)."""
    m = re.fullmatch(r"variants\.([^.]+)\.seed\d+\.(.+)", key)
    if m:
        values = _over_seeds(flat, *m.groups())
        return max(values) - min(values)
    m = re.fullmatch(r"seedmean\.([^.]+)\.(.+)", key) or re.fullmatch(r"paired\.(.+)_minus_real\.(.+)", key)
    if not m:
        return 0.0
    groups = [m.groups()] + ([("real", m.group(2))] if key.startswith("paired.") else [])
    ranges = [max(vs) - min(vs) for vs in (_over_seeds(flat, *g) for g in groups)]
    n = len(_over_seeds(flat, *m.groups()))
    return math.sqrt(sum(r * r for r in ranges) / n)


FAMILIES = ((r"generation\.[^.]+\.", "generation.*."), (r"variants\.[^.]+\.seed\d+\.", "variants.*.seed*."),
            (r"seedmean\.[^.]+\.", "seedmean.*."), (r"paired\.[^.]+_minus_real\.", "paired.*_minus_real."))
# `paired.<generator>_minus_cold.<m>` stays apart per generator: the RL generator starts from the
# cold start and moves with it, the oracle does not, so their differences move very differently


def family(key: str) -> str:
    """The metric with its generator, variant and seed left out (`generation.*.frechet`); the four
    benchmarks share a family."""
    for pattern, repl in FAMILIES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    return key


COUNTS = ("n_", "density_coverage_k", "nn_threshold")   # counts and settings: exact by construction
REAL_SET = ("real_nn_",)   # properties of the real images: a difference of two generators' is 0 by construction
UNMOVED_FALLBACK = 0.05   # the step of a share whose runs gave no denominator (all 0 or 1)


def share_step(values: list[float]) -> float:
    """1/n for the smallest n <= 512 that makes every value a multiple of 1/n (a share of n queries,
    images or pairs), UNMOVED_FALLBACK when no n >= 2 is needed or none is found."""
    for n in range(2, 513):
        if all(abs(v * n - round(v * n)) < 1e-9 for v in values) and not all(float(v).is_integer() for v in values):
            return 1.0 / n
    return UNMOVED_FALLBACK


def golden_entry(key: str, ref: float, spread: float, family_spread: float, resolution: float,
                 family_values: list[float]) -> dict:
    """expected (the reference run's value), spread and tolerance by the module's rule."""
    if family_spread == 0:
        name = key.rsplit(".", 1)[-1]
        exact = name.startswith(COUNTS) or key.startswith("paired.") and name.startswith(REAL_SET)
        return {"expected": ref, "tolerance": 0.0 if exact else share_step(family_values), "spread": 0.0}
    return {"expected": ref, "tolerance": max(K * family_spread, resolution), "spread": spread}


def checked(record: dict, bench: str) -> dict[str, float]:
    from test_regression_smoke import checked_metrics

    return checked_metrics(record["metrics"][bench])


def goldens(records: list[dict]) -> dict[str, dict[str, dict]]:
    runs = {bench: [checked(r, bench) for r in records] for bench in BENCHMARKS}
    spread, resolution, family_spread, family_values = {}, {}, {}, {}
    for bench, rs in runs.items():
        for r in rs[1:]:
            if set(r) != set(rs[0]):
                raise SystemExit(f"{bench}: the runs report different metrics: {sorted(set(r) ^ set(rs[0]))[:5]}")
        for k in rs[0]:
            values = [r[k] for r in rs]
            s = max(max(values) - min(values), *(seed_spread(r, k) for r in rs))
            distinct = sorted(set(values))
            spread[bench, k] = s
            resolution[bench, k] = min((b - a for a, b in zip(distinct, distinct[1:])), default=s)
            family_spread[family(k)] = max(family_spread.get(family(k), 0.0), s)
            family_values.setdefault(family(k), []).extend(values)
    return {bench: {k: golden_entry(k, rs[0][k], spread[bench, k], family_spread[family(k)], resolution[bench, k],
                                    family_values[family(k)]) for k in sorted(rs[0])}
            for bench, rs in runs.items()}


def check(paths: list[Path]) -> int:
    """Compare recorded runs with the committed goldens, as the smoke test does; print the failures."""
    from test_regression_smoke import verify_results

    bad = 0
    for path in paths:
        record = json.loads(path.read_text())
        failures = []
        for bench in BENCHMARKS:
            golden = json.loads((REPO / "benchmarks" / bench / "golden_smoke.json").read_text())
            failures += verify_results(checked(record, bench), golden, bench)
        print(f"{path}: {len(failures)} metric(s) outside their golden tolerance")
        print("\n".join(f"  {f}" for f in failures))
        bad += bool(failures)
    return 1 if bad else 0


def summary(records: list[dict], names: list[str], golden: dict) -> str:
    lines = ["run seconds: " + ", ".join(f"{n} {r['seconds']:.0f}" for n, r in zip(names, records))]
    for bench, entries in golden.items():
        moving = {k: e for k, e in entries.items() if e["spread"] > 0}
        isa = [r for n, r in zip(names, records) if n.startswith("isa-")]
        isa_runs = [checked(r, bench) for r in isa]
        isa_moving = [k for k in entries if len({r[k] for r in isa_runs}) > 1]
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
    ap.add_argument("out", type=Path, nargs="?", help="folder for the runs (reused: a finished run is not re-run)")
    ap.add_argument("--isa", nargs="+", default=["default-path", "avx2"],
                    help="ATEN_CPU_CAPABILITY values; 'default-path' leaves it unset (the first is the reference)")
    ap.add_argument("--env", nargs="*", default=[], metavar="NAME:VAR=VAL,...",
                    help="further configurations, e.g. pinned:ATEN_CPU_CAPABILITY=avx2,MKL_CBWR=AVX2")
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2], help="extra generator seeds (>= 1)")
    ap.add_argument("--write-goldens", action="store_true", help="rewrite benchmarks/*/golden_smoke.json")
    ap.add_argument("--check", nargs="+", type=Path, metavar="RECORD",
                    help="only compare recorded runs (OUT/<config>.json) with the committed goldens")
    ap.add_argument("--run-one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one is not None:
        run_one(args.out, args.run_one)
        return 0
    if args.check:
        return check(args.check)
    if args.out is None:
        ap.error("OUT is required (unless --check)")
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
