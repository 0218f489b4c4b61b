"""What DVC pays to rewrite dvc.lock after each stage, against the lock's size, side by side.

    dvc repro                                   # any finished pipeline (toy: 127 stages)
    python benchmarks/bench_dvc_lock.py [--lock dvc.lock] [--rounds 3]

After every stage it runs, DVC updates that stage's entry in dvc.lock with a round-trip YAML
parse and dump of the whole file (`dvc.utils.serialize.modify_yaml`), so the cost per stage grows
with the lock and the cost per run with its square. This script times that same call on copies
of the workspace's lock:
- the first quarter, half and all of its stages (the lock as it grows during a run);
- all stages with each stage's `params` entry replaced by one small file dependency per params
  section it lists, or by a single one per stage (what depending on digest files of the params,
  instead of the params, would write).
The cases alternate within every round; the table gives the median seconds per rewrite and the
lock's size. Nothing in the workspace is changed.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def _digest_deps(stage: dict, one_file: bool) -> dict:
    """The stage with its params replaced by file dependencies: one per params section, or one."""
    out = {k: v for k, v in stage.items() if k != "params"}
    deps = list(out.get("deps", []))
    keys = [key for ks in (stage.get("params") or {}).values() for key in ks]
    for key in (keys[:1] if one_file else keys):
        deps.append({"hash": "md5", "md5": "0" * 32, "path": f"config/{key}.json", "size": 100})
    out["deps"] = deps
    return out


def _cases(lock: dict) -> dict[str, dict]:
    names = list(lock["stages"])

    def first(n):
        return {**lock, "stages": {k: lock["stages"][k] for k in names[:n]}}

    n = len(names)

    def digests(one_file):
        return {**lock, "stages": {k: _digest_deps(v, one_file) for k, v in lock["stages"].items()}}

    return {f"{n // 4} stages": first(n // 4), f"{n // 2} stages": first(n // 2), f"{n} stages": lock,
            f"{n} stages, a file dep per params section": digests(False),
            f"{n} stages, one params file dep per stage": digests(True)}


def _rewrite_seconds(path: Path) -> float:
    from dvc.utils.serialize import modify_yaml

    t0 = time.perf_counter()
    with modify_yaml(path) as data:
        data["stages"]["_bench"] = {"cmd": "true"}
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", type=Path, default=Path("dvc.lock"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not args.lock.is_file():
        raise SystemExit(f"{args.lock}: no lock file; run `dvc repro` first")
    lock = yaml.load(args.lock.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    cases = _cases(lock)
    times: dict[str, list[float]] = {c: [] for c in cases}
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in (list(cases) if r % 2 == 0 else list(cases)[::-1]):
                f = Path(tmp) / "dvc.lock"
                text = yaml.safe_dump(cases[name], sort_keys=False)
                f.write_text(text)
                sizes[name] = len(text.encode())
                times[name].append(_rewrite_seconds(f))
    full = statistics.median(times[list(cases)[2]])
    print(f"{args.lock}: {len(lock['stages'])} stages, {args.rounds} rounds")
    print("| lock | size (KB) | rewrite per stage (s) | vs full lock |\n|---|---|---|---|")
    for name in cases:
        med = statistics.median(times[name])
        print(f"| {name} | {sizes[name] / 1024:.0f} | {med:.2f} | {full / med:.2f}x |")


if __name__ == "__main__":
    main()
