"""The stage timing table of the report: how long each stage of the pipeline took, from MLflow.

Each stage run records its own start and end (`rgsyn.tracking.stage_run`), so the run time of a
stage is end - start of its newest run (`rgsyn.report` finds those runs). The process start-up
before the run opens (starting Python, imports, params) is not in it, so the CLI also records the
stage's wall time as DVC saw it, process start to end (`rgsyn.stage_clock`): the "DVC wall" and
"Start-up" columns. A stage that DVC skipped because its
outputs were up to date keeps the time of the run that made them, and is marked "cached" when that
run belongs to an earlier pipeline run than the newest one.
"""
from __future__ import annotations

import pandas as pd

from rgsyn.report.tables import NOT_RUN, Table
from rgsyn.stage_clock import run_seconds

STAGE_ORDER = ("data", "prior", "coldstart", "encoder", "rl", "generate", "train", "collect", "report")


def timing_frame(runs: list, current_parent: str | None = None) -> pd.DataFrame:
    """One row per stage run: stage, run name, seconds, status, cached (made by an older pipeline
    run than `current_parent`)."""
    rows = []
    for r in runs:
        stage = r.data.tags.get("rgsyn.stage", "?")
        if stage == "report" or r.info.end_time is None:
            continue
        parent = r.data.tags.get("mlflow.parentRunId")
        rows.append({"stage": stage, "run": r.data.tags.get("mlflow.runName", r.info.run_id),
                     "seconds": (r.info.end_time - r.info.start_time) / 1000.0,
                     "status": r.info.status.lower(),
                     "cached": bool(current_parent and parent != current_parent),
                     "start": r.info.start_time, "process_seconds": run_seconds(r, "process_seconds"),
                     "startup_seconds": run_seconds(r, "startup_seconds"), "end": r.info.end_time,
                     "process_runs": run_seconds(r, "runs")})
    df = pd.DataFrame(rows, columns=["stage", "run", "seconds", "status", "cached", "start", "process_seconds",
                                     "startup_seconds", "end", "process_runs"])
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return df.sort_values(["stage", "run"], key=lambda c: c.map(rank).fillna(99) if c.name == "stage" else c,
                          ignore_index=True)


def table_timing(df: pd.DataFrame) -> Table:
    """Per stage kind: number of runs, total, mean and max wall seconds; then the grand total."""
    cols = ["Stage", "Runs", "Total (s)", "Mean (s)", "Max (s)", "Slowest run", "DVC wall total (s)",
            "Start-up mean (s)"]

    def fmt(series, how, digits):
        s = series.dropna()
        return f"{getattr(s, how)():.{digits}f}" if len(s) else ""

    if df.empty:
        return Table("timing", "Stage timing (MLflow)", pd.DataFrame([["all", NOT_RUN, "", "", "", "", "", ""]],
                                                                     columns=cols),
                     notes=["No stage runs were found in MLflow."])
    lines = []
    for stage, g in df.groupby("stage", sort=False):
        slow = g.loc[g["seconds"].idxmax()]
        lines.append([stage, str(len(g)), f"{g['seconds'].sum():.0f}", f"{g['seconds'].mean():.1f}",
                      f"{g['seconds'].max():.1f}", str(slow["run"]), fmt(g["process_seconds"], "sum", 0),
                      fmt(g["startup_seconds"], "mean", 2)])
    lines.append(["all stages", str(len(df)), f"{df['seconds'].sum():.0f}", "", "", "",
                  fmt(df["process_seconds"], "sum", 0), fmt(df["startup_seconds"], "mean", 2)])
    notes = ["Total/Mean/Max: wall time between the start and the end of each stage's MLflow run (newest run "
             "per name). DVC wall: the stage's process from its start to the end of the stage, imports included, "
             "as DVC waited for it; Start-up: from the process start to the MLflow run's start (Python, imports, "
             "params). DVC's own hashing between stages is in neither."]
    overlap = [stage for stage, g in df.groupby("stage", sort=False) if _overlapping(g)]
    if overlap:
        notes.append(f"Runs of the {', '.join(overlap)} stages overlap in time (a row's seeds train side by side "
                     "in worker processes), so their Total adds up to more than the time they took: that is the "
                     "DVC wall column.")
    # a stage process that opened several runs records its wall time on the first (stage.runs)
    covered = int((df["process_runs"].where(df["process_seconds"].notna()).fillna(1) - 1).clip(lower=0).sum())
    n_missing = int(df["process_seconds"].isna().sum()) - covered
    if n_missing:
        notes.append(f"{n_missing} of {len(df)} stage runs have no recorded process wall time (made by an older "
                     "version, or run in-process by the tests); the DVC wall sums leave them out.")
    n_cached = int(df["cached"].sum())
    if n_cached:
        notes.append(f"{n_cached} of {len(df)} stage runs were made by an earlier pipeline run (DVC found "
                     "their outputs up to date); their times are those of that run.")
    failed = df[df["status"] != "finished"]
    if len(failed):
        notes.append("Not finished: " + ", ".join(f"{r} ({s})" for r, s in zip(failed["run"], failed["status"])) + ".")
    return Table("timing", "Stage timing (MLflow)", pd.DataFrame(lines, columns=cols), breaks=[len(lines) - 1],
                 notes=notes)


def _overlapping(g: pd.DataFrame) -> bool:
    """Whether any two runs of `g` ran at the same time."""
    spans = sorted((int(a), int(b)) for a, b in zip(g["start"], g["end"]) if a == a and b == b)
    return any(nxt[0] < max(e for _, e in spans[:i + 1]) for i, nxt in enumerate(spans[1:]))


def table_estimate(params, df: pd.DataFrame, tflops: float = 400.0, gpus: int = 8) -> Table:
    """`rgsyn estimate` for the params of this run, per stage kind, next to the stage times measured
    in this run (DVC wall where recorded, else the MLflow run time), so that a researcher sees what
    the paper profile will cost before launching it, and how the estimate compares with a run."""
    from rgsyn.estimate import estimate_table

    measured = None
    if not df.empty:
        wall = df["process_seconds"].where(df["process_seconds"].notna(), df["seconds"])
        measured = {k: float(v) for k, v in wall[~df["cached"]].groupby(df["stage"][~df["cached"]]).sum().items()}
    est, _ = estimate_table(params, tflops, gpus, measured)
    cells = est.copy()
    for col in cells.columns:
        if cells[col].dtype.kind == "f":
            cells[col] = [("" if v != v else f"{v:.3g}") for v in cells[col]]
    cells = cells.astype(str).rename(columns={"measured h": "measured in this run (h)"})
    notes = [f"FLOPs counted on the meta device (rgsyn.estimate), at {tflops:g} TFLOP/s sustained per GPU and ideal "
             f"scaling on {gpus} GPUs; peak memory per GPU at {params.compute.precision}. The same table: "
             "`rgsyn estimate --tflops T --gpus N`.",
             "Measured: this pipeline run's stage times on the machine it ran on (not GPU time unless it ran on "
             "GPUs); stages DVC skipped are left out. The estimate does not count evaluation passes or the data stage."]
    return Table("estimate", f"Compute estimate for profile {params.profile}", cells, notes=notes)
