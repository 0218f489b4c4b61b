"""`rgsyn collect`: the `collect` stage; merge one benchmark's per-run metrics into `benchmarks/<name>/metrics.json`.

Output schema (a DVC metrics file, `cache: false`)::

    {"variants": {<variant>: {"seed<k>": {<metric>: value, ...}}},
     "generation": {<generator>: {<metric>: value, ...}}}

For `rfw_bias` the run metrics are the `rfw` part of the `casia_face` runs (the RFW benchmark
evaluates the face models trained for CASIA). Only runs of the variants and seeds in the current
params are collected (`Params.seeds_of`: the control rows also have `control_seeds`), so a stale
file from an earlier configuration never leaks into a table.
"""
from __future__ import annotations

from rgsyn import io, paths
from rgsyn.config import Params
from rgsyn.errors import RgsynError

TRAINED_FROM = {"rfw_bias": "casia_face"}


def collect(params: Params, benchmark: str) -> dict:
    source = TRAINED_FROM.get(benchmark, benchmark)
    variants: dict[str, dict] = {}
    for variant in [*params.variants, *params.syn_variants]:
        for seed in params.seeds_of(variant):
            f = paths.run_metrics(source, variant, seed)
            if not f.is_file():
                continue
            run = io.read_json(f)
            if benchmark == "rfw_bias":
                if "rfw" not in run:
                    raise RgsynError(f"{f}: has no 'rfw' metrics; re-run `rgsyn train --benchmark casia_face`")
                run = run["rfw"]
            else:
                run = {k: v for k, v in run.items() if k != "rfw"}
            variants.setdefault(variant, {})[f"seed{seed}"] = run
    generation = {}
    for gen in params.generators():
        f = paths.generation_metrics(source, gen)
        if f.is_file():
            generation[gen] = io.read_json(f)
    return {"variants": variants, "generation": generation}


def run(params: Params, benchmark: str) -> None:
    merged = collect(params, benchmark)
    out = paths.benchmark_metrics(benchmark)
    io.write_json(out, merged)
    n = sum(len(s) for s in merged["variants"].values())
    print(f"collect: {benchmark}: {n} runs over {len(merged['variants'])} variants, "
          f"{len(merged['generation'])} generators -> {out}")
