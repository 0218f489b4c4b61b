"""Fixed cost per stage kind, a no-op `dvc repro`, and two queued experiments with -j 2 vs in sequence.

    python benchmarks/bench_stage_overhead.py --workspace WS --before /path/to/old/checkout [--reps 2]

WS is a finished smoke pipeline (a git clone of this repo, `rgsyn params --profile smoke --out
params.yaml` committed, `dvc repro` run). Every stage command runs inside WS with
PYTHONPATH=<before> (the old code) or PYTHONPATH=<after> (this checkout; `python -P`, so WS's own copy of rgsyn is never imported), interleaved rep by rep,
so both see the same machine load; medians are reported, with the load average before and after.

Fixed cost of a stage = its process wall time minus its work, where the work is the time of a
second, identical call of the stage inside the same process (imports and one-time set-up already
paid; the stage clears its checkpoints when it finishes, so the second call redoes all the work):
  before: one process runs the stage twice: fixed = wall - 2 * second call
  after:  the stage as DVC runs it (`rgsyn ...`, through the warm server) minus the second call of
          an in-process probe of the same code
`python -c "import torch"` is measured in the same reps; the target is fixed - torch <= 1.5 s.
`--before` may be this checkout itself: "before" then reads as "the same code in its own cold
process" (`RGSYN_WARM=0`), against "forked from the warm server".
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One command per stage kind, from the smoke pipeline's dvc.yaml.
KINDS = {
    "data": "data", "prior": "prior", "coldstart": "coldstart --domain persons",
    "encoder": "encoder --domain persons", "rl": "rl --domain persons --rewards full",
    "generate": "generate --benchmark market1501 --generator cold",
    "train": "train --benchmark market1501 --variant real --seed 0",
    "collect": "collect --benchmark market1501", "report": "report",
}
PROBE = ("import sys, time, json\nfrom rgsyn.cli import main\nargv = sys.argv[1:]\n"
         "t0 = time.perf_counter(); assert main(argv) == 0; t1 = time.perf_counter()\n"
         "assert main(argv) == 0; t2 = time.perf_counter()\n"
         "print('PROBE ' + json.dumps({'first': t1 - t0, 'second': t2 - t1}))\n")


def _env(pythonpath: str, warm: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath, RGSYN_WARM="1" if warm else "0")
    env.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    return env


def _timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    return wall, out.stdout


def probe(code: str, args: str, ws: Path) -> tuple[float, float]:
    """(process wall, second in-process call) of a cold process running the stage twice."""
    wall, out = _timed([sys.executable, "-P", "-c", PROBE, *shlex.split(args)], ws, _env(code, warm=False))
    rec = json.loads(next(line for line in out.splitlines() if line.startswith("PROBE "))[6:])
    return wall, rec["second"]


def rgsyn_cmd() -> list[str]:
    return [sys.executable, "-P", "-c", "import sys; from rgsyn.cli import main; sys.exit(main())"]


def fixed_costs(ws: Path, before: str, after: str, reps: int, kinds: list[str]) -> dict:
    res: dict = {k: {"before": [], "after": [], "work": []} for k in kinds}
    res["torch"] = []
    # start the after-code warm server (its first stage runs cold) and wait until it listens
    _timed([*rgsyn_cmd(), *shlex.split(KINDS["collect"])], ws, _env(after, warm=True))
    sock = subprocess.run([sys.executable, "-P", "-c", "from rgsyn import warm; print(warm.socket_path())"],
                          env=_env(after, True), capture_output=True, text=True).stdout.strip()
    for _ in range(240):
        if Path(sock).exists():
            break
        time.sleep(1)
    for rep in range(reps):
        res["torch"].append(_timed([sys.executable, "-P", "-c", "import torch"], ws, _env(after, False))[0])
        for k in kinds:
            w_b, second_b = probe(before, KINDS[k], ws)
            _, second_a = probe(after, KINDS[k], ws)
            w_a, _ = _timed([*rgsyn_cmd(), *shlex.split(KINDS[k])], ws, _env(after, warm=True))
            res[k]["before"].append(w_b - 2 * second_b)
            res[k]["after"].append(w_a - second_a)
            res[k]["work"].append(second_a)
            print(f"rep {rep} {k}: before fixed {w_b - 2 * second_b:.2f} s, after fixed {w_a - second_a:.2f} s, "
                  f"work {second_a:.2f} s", flush=True)
    return res


def dvc_noop(ws: Path, after: str, reps: int) -> dict:
    env = _env(after, warm=True)
    out = {"status": [], "repro": []}
    _timed(["dvc", "repro"], ws, env)   # the fixed-cost reps re-ran stages (new train_seconds): settle first
    for _ in range(reps):
        out["status"].append(_timed(["dvc", "status"], ws, env)[0])
        out["repro"].append(_timed(["dvc", "repro"], ws, env)[0])
    return out


def queue(ws: Path, after: str, values: list[int]) -> dict:
    """Two experiments (generator_seed changed: prior onward re-runs) in sequence, then two more
    (other values, so DVC's run-cache cannot serve them) queued and run with -j 2."""
    env = _env(after, warm=True)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)   # each stage decides its own share (rgsyn.threads)
    t0 = time.perf_counter()
    for v in values[:2]:
        _timed(["dvc", "exp", "run", "-S", f"generator_seed={v}"], ws, env)
    seq = time.perf_counter() - t0
    for v in values[2:4]:
        _timed(["dvc", "exp", "run", "--queue", "-S", f"generator_seed={v}"], ws, env)
    t0 = time.perf_counter()
    _timed(["dvc", "queue", "start", "-j", "2"], ws, env)
    while True:
        time.sleep(5)
        st = subprocess.run(["dvc", "queue", "status"], cwd=ws, env=env, capture_output=True, text=True).stdout
        if not any(w in st for w in ("Running", "Queued")):
            break
    par = time.perf_counter() - t0
    failed = "Failed" in st
    return {"sequential_s": seq, "parallel_j2_s": par, "queue_status": st, "failed": failed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--before", required=True, help="PYTHONPATH of the code before (e.g. the main branch)")
    ap.add_argument("--after", default=str(REPO), help="PYTHONPATH of the code after (default: this checkout)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--parts", default="fixed,noop,queue")
    ap.add_argument("--queue-values", default="101,102,103,104")
    ap.add_argument("--out", type=Path, default=None, help="write the raw numbers as JSON")
    args = ap.parse_args()
    ws, parts = args.workspace.resolve(), args.parts.split(",")
    report: dict = {"load_before": os.getloadavg()}
    if "fixed" in parts:
        fc = fixed_costs(ws, args.before, args.after, args.reps, args.kinds.split(","))
        torch_s = statistics.median(fc.pop("torch"))
        print(f"\nimport torch: {torch_s:.2f} s (median of {args.reps})")
        print(f"{'stage':10s} {'before fixed':>13s} {'after fixed':>12s} {'after - torch':>14s} {'work':>7s}")
        for k, v in fc.items():
            b, a, w = (statistics.median(v[x]) for x in ("before", "after", "work"))
            print(f"{k:10s} {b:13.2f} {a:12.2f} {a - torch_s:14.2f} {w:7.2f}")
        report["fixed"], report["torch_s"] = fc, torch_s
    if "noop" in parts:
        nd = dvc_noop(ws, args.after, max(args.reps, 3))
        print(f"\nno-op: dvc status {statistics.median(nd['status']):.2f} s, dvc repro "
              f"{statistics.median(nd['repro']):.2f} s (medians of {len(nd['status'])})")
        report["noop"] = nd
    if "queue" in parts:
        q = queue(ws, args.after, [int(v) for v in args.queue_values.split(",")])
        print(f"\ntwo smoke experiments: one after the other {q['sequential_s']:.0f} s, "
              f"queued with -j 2 {q['parallel_j2_s']:.0f} s (failed: {q['failed']})")
        report["queue"] = q
    report["load_after"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {report['load_before']}, after {report['load_after']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
