"""`rgsyn preflight`: one real step of every stage, timed and measured, before the full run.

    rgsyn preflight [--params params.yaml] [--stages data,prior,coldstart,encoder,rl,generate,train]
                    [--json reports/preflight.json] [--memory-gib 80] [--scratch DIR]
                    [--shrink auto|none] [--tflops 400] [--domains persons,faces]

It reads the params as the pipeline does and runs, in pipeline order, one step of each stage's inner
loop through the stages' own code (rgsyn.stages.preflight_steps, preflight_downstream), each in its
own process (rgsyn.preflight.measure: wall time, and peak memory per step), on the configured
device and precision, in a single process (a `launcher` is not used: one device's step is what
the projection scales). Then it prints one table (rgsyn.preflight.table): step time, steps in the
full run, projected hours, peak memory against the device's memory, the FLOP-based hours of
`rgsyn estimate` beside it. `--json` writes the same records; `rgsyn estimate --measured FILE` and
the report (which reads `reports/preflight.json` when it exists) calibrate the estimate with them.

Shrinking (`--shrink auto`, the default): on CPU the per-step counts are shrunk
(rgsyn.preflight.work.shrunk: trajectories, sampler steps, batches; image and network sizes kept)
and the measured time is scaled by the FLOP ratio of the full-size step; the table marks those
rows. On a GPU, `auto` runs every step at the configured sizes; `none` never shrinks.

Everything is written under the scratch folder (`--scratch`, default a temp folder removed at the
end): the stages' relative outputs (`models/`, `.rgsyn/work/`, caches) land there because each
step's process runs with its working directory there, and the folder may not be the pipeline's
(the repo root, `data/`, `models/`, `results/`, `benchmarks/`, `reports/`, `.rgsyn/work`). A step
whose input another stage makes (rl needs the cold start and the encoders) finds it in the scratch
folder when that stage's row ran; otherwise the producing steps run first, unmeasured.

Exit status: 0 when every step ran and fits; 1 when a step failed, ran out of memory or peaks above
the device's memory (`--memory-gib` stands in for a smaller device), with one line per problem
naming the stage and the params key that lowers its memory; 2 for bad arguments.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from rgsyn import io as rio
from rgsyn import paths
from rgsyn.config import Params
from rgsyn.errors import ConfigError
from rgsyn.preflight import measure, table, work
from rgsyn.stages import preflight_downstream as down
from rgsyn.stages import preflight_steps as gen

ORDER = ("data", "prior", "coldstart", "encoder", "rl", "generate", "train")
STEPS = {"data": down.data_step, "prior": gen.prior_step, "coldstart": gen.coldstart_step,
         "encoder": down.encoder_step, "rl": gen.rl_step, "generate": gen.generate_step, "train": down.train_step}
NEEDS = {"coldstart": ("prior",), "rl": ("coldstart", "encoder"), "generate": ("coldstart",)}
# the modules the steps import, imported once by the fork server (rgsyn.preflight.measure)
PRELOAD = ["rgsyn.stages.preflight_steps", "rgsyn.stages.preflight_downstream", "rgsyn.stages.coldstart",
           "rgsyn.stages.rl", "rgsyn.stages.generate", "rgsyn.stages.data", "rgsyn.stages.encoder",
           "rgsyn.downstream.reid", "rgsyn.downstream.face", "rgsyn.generator.prior"]
PIPELINE_OUTPUTS = ("data", "models", "results", "benchmarks", "reports", ".rgsyn/work")
MARK = ".rgsyn-preflight"


def _made(stage: str, domain: str | None) -> Path:
    """What a stage's step leaves for the later ones, relative to the scratch folder."""
    return {"prior": paths.prior_dir(), "coldstart": paths.coldstart_dir(domain or ""),
            "encoder": paths.encoder_path(domain or "", "gold")}[stage]


def absolute_paths(params: Params) -> Params:
    """The params with every local file and folder made absolute (the steps run in the scratch folder)."""
    def ab(v: str) -> str:
        return str(Path(v).resolve()) if v and (Path(v).exists() or not _hub_id(v)) else v

    r, p, dp = dataclasses.replace, params, params.data.paths
    new_paths = r(dp, **{f.name: ab(getattr(dp, f.name)) for f in dataclasses.fields(dp) if f.name != "cuhk03_mode"})
    return r(p, data=r(p.data, out=ab(p.data.out), paths=new_paths),
             prior=r(p.prior, pretrained=ab(p.prior.pretrained), vae=ab(p.prior.vae)),
             reid=r(p.reid, pretrained=ab(p.reid.pretrained)), face=r(p.face, pretrained=ab(p.face.pretrained)),
             rl=r(p.rl, open_clip_checkpoint=ab(p.rl.open_clip_checkpoint)))


def _hub_id(v: str) -> bool:
    """`owner/name` that is not a local path: a hub id (prior.pretrained, prior.vae)."""
    return v.count("/") == 1 and not v.startswith((".", "/", "~"))


def scratch_folder(given: str | None) -> tuple[Path, bool]:
    """(the scratch folder, whether to remove it at the end); refuses the pipeline's own folders."""
    if not given:
        return Path(tempfile.mkdtemp(prefix="rgsyn-preflight-")), True
    folder, cwd = Path(given).resolve(), Path.cwd().resolve()
    forbidden = [cwd / o for o in PIPELINE_OUTPUTS]
    if folder == cwd or any(folder == f or f in folder.parents for f in forbidden):
        raise ConfigError(f"preflight --scratch: {given} is (inside) the pipeline's own folders {list(PIPELINE_OUTPUTS)}"
                          " or the repo root; give a folder outside them")
    if folder.exists() and any(folder.iterdir()) and not (folder / MARK).exists():
        raise ConfigError(f"preflight --scratch: {given} is not empty and was not made by `rgsyn preflight`; "
                          "give an empty or new folder")
    for sub in ("models", ".rgsyn"):   # a previous preflight's outputs: never reused
        shutil.rmtree(folder / sub, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text("scratch folder of `rgsyn preflight`\n")
    return folder, False


def _choice(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in chosen if s not in allowed]
    if bad or not chosen:
        raise ConfigError(f"preflight {option}: {','.join(bad) or '(none)'}: choose from {','.join(allowed)}")
    return chosen


def plan(stages: str, domains: str = ",".join(paths.DOMAINS)) -> list[tuple[str, str | None]]:
    """(stage, domain) of every step to run, in pipeline order; data and prior have no domain."""
    st, dom = _choice(stages, ORDER, "--stages"), _choice(domains, paths.DOMAINS, "--domains")
    return [(s, d) for s in ORDER if s in st for d in ((None,) if s in ("data", "prior") else
                                                       [d for d in paths.DOMAINS if d in dom])]


def run(params: Params, stages: str = ",".join(ORDER), json_path: str | None = None,
        memory_gib: float | None = None, scratch: str | None = None, shrink: str = "auto",
        tflops: float = 400.0, domains: str = ",".join(paths.DOMAINS)) -> int:
    from rgsyn.estimate import shared_costs
    from rgsyn.generator.training import resolve_device

    if shrink not in ("auto", "none") or tflops <= 0 or (memory_gib is not None and memory_gib <= 0):
        raise ConfigError("preflight: --shrink is auto or none, --tflops and --memory-gib must be > 0")
    todo = plan(stages, domains)
    full = absolute_paths(params)
    device = resolve_device(params.device)
    ran = work.shrunk(full) if shrink == "auto" and device == "cpu" else full
    limit = int(memory_gib * 2 ** 30) if memory_gib else measure.device_memory_bytes(device)
    limit_name = "--memory-gib" if memory_gib else f"the device ({device})"
    folder, remove = scratch_folder(scratch)
    try:
        records, problems = _run_steps(todo, ran, device, folder, limit, limit_name)
    finally:
        if remove:
            shutil.rmtree(folder, ignore_errors=True)
    s = shared_costs(full)
    for r in records:
        w = work.row_work(full, s, r)
        r.update(work.project(r, w, tflops), steps=w["steps"])
    print(f"preflight of profile `{params.profile}` on {device}, precision {params.compute.precision}; "
          f"FLOP-based hours at {tflops:g} TFLOP/s; rows marked scaled ran at shrunk counts (--shrink {shrink})\n")
    if records:
        print(table.markdown(table.table_rows(records, limit)))
    if json_path:
        rio.write_json(json_path, {"profile": params.profile, "device": device, "precision": params.compute.precision,
                                   "device_memory_bytes": limit, "tflops_assumed": tflops, "shrink": shrink,
                                   "stage_hours": table.stage_hours(records), "rows": records, "problems": problems})
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def _run_steps(todo, params: Params, device: str, folder: Path, limit: int, limit_name: str):
    """Run the planned steps in order; returns (row records, problem lines)."""
    records, problems = [], []
    for stage, domain in todo:
        name = stage if domain is None else f"{stage}/{domain}"
        if _prepare(stage, domain, params, device, folder, problems, name):
            continue
        result = measure.in_process(STEPS[stage], params, domain, device, folder, name, PRELOAD)
        peak = result.get("peak_bytes")
        if "error" in result:
            problems.append(table.memory_problem(name, stage, domain, peak, limit, True, limit_name)
                            if result["error"] == "oom" else f"preflight: {name} failed: {result['message']}")
            continue
        for row in result["rows"]:
            records.append({**row, "peak_bytes": peak})
        if peak is not None and peak > limit:
            problems.append(table.memory_problem(name, stage, domain, peak, limit, False, limit_name))
    return records, problems


def _prepare(stage, domain, params, device, folder: Path, problems: list, name: str) -> bool:
    """Run, unmeasured, the steps whose outputs this one reads and that did not run; True when one failed."""
    for need in NEEDS.get(stage, ()):
        d = None if need == "prior" else domain
        if (folder / _made(need, d)).exists():
            continue
        if _prepare(need, d, params, device, folder, problems, name):
            return True
        result = measure.in_process(STEPS[need], params, d, device, folder, f"{need}-for-{name}", PRELOAD)
        if "error" in result:
            problems.append(f"preflight: {name} could not run: its input step {need} failed: {result['message']}")
            return True
    return False

