"""`rgsyn report`: every table of the paper next to the suite's numbers, the figures and a
self-contained `reports/report.html`.

Inputs, and nothing else: `benchmarks/*/metrics.json`, `benchmarks/*/paper.yaml` and the MLflow
runs of this experiment (RL reward curves, sample grids of the generate runs, the pipeline run).
Anything absent is shown as "not run". Outputs (reports/README.md lists them too):
    reports/tables/*.md, *.tex    one Markdown and one booktabs LaTeX file per table
    reports/figures/*.png         ablation bars, RFW per-group bars, reward curves, sample grids
    reports/report.html           all of it, images inlined
    reports/report.md             all of it as Markdown, figures linked
    reports/verdicts.json         the first line, the controls and every claim of "What reproduced", in full
    reports/metrics/*.json        the compact DVC metrics: control readings, headline per variant, verdict per claim
Input besides the metrics and MLflow: `reports/preflight.json` when it exists (`rgsyn preflight --json
reports/preflight.json`): the compute estimate then shows the estimate calibrated by it
(rgsyn.preflight.calibrate). It is not a DVC dependency: re-run the report after a new preflight.
The reports folder is logged as an artifact of the `report` stage run, which then closes the
pipeline's parent run.

    rgsyn report --params params.yaml
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from rgsyn import io, paths, tracking
from rgsyn.config import Params, params_hash
from rgsyn.report.controls import control_metrics, control_rows, first_line
from rgsyn.report.figures import REWARD_METRICS, ablation_bars, per_timestep_figure, reward_curves, rfw_group_bars
from rgsyn.report.html import Section, render
from rgsyn.report.tables import NOT_RUN, as_records, build_tables, load_benchmarks, to_markdown, write_tables
from rgsyn.report.verdicts import comparisons, metrics_files
from rgsyn.preflight.calibrate import report_table
from rgsyn.report.timing import table_estimate, table_timing, timing_frame

TOY_NOTE = (
    "<b>Profile <code>{profile}</code>.</b> These numbers come from the embedded toy identity world "
    "(procedural persons and faces at tiny image sizes, small backbones, minutes of CPU training). They "
    "are <b>not comparable in absolute value</b> with the paper's, which were measured on the real "
    "datasets with ResNet-50/ViT backbones; the Δ columns are shown for completeness. "
    "What the toy profile can check is the direction of the effects (does RL-tuned synthetic data with "
    "selection beat the real-only baseline, does each reward term help): the verdicts table tests it "
    "with paired intervals over the seeds. Run the <code>paper</code> profile on the real datasets to "
    "compare magnitudes.")


# ------------------------------------------------------------------------------- MLflow
def _client(params: Params):
    import mlflow

    return mlflow.tracking.MlflowClient(tracking_uri=tracking.tracking_uri(params))


def _newest_stage_runs(client, params: Params, stage: str | None = None) -> list:
    """The newest run per run name among the runs tagged rgsyn.stage == stage (None: every stage;
    unfinished runs included)."""
    exp = client.get_experiment_by_name(params.tracking.experiment)
    if exp is None:
        return []
    where = f"tags.`rgsyn.stage` = '{stage}'" if stage else "tags.`rgsyn.stage` != ''"
    runs = client.search_runs([exp.experiment_id], filter_string=where,
                              order_by=["attributes.start_time DESC"], max_results=5000)
    newest: dict[str, object] = {}
    for r in runs:
        name = r.data.tags.get("mlflow.runName", r.info.run_id)
        newest.setdefault(name, r)
    return [newest[k] for k in sorted(newest)]


def reward_histories(client, params: Params) -> pd.DataFrame:
    """Long frame (run, step, metric, value) of the RL runs' reward/KL/gold histories."""
    recs = []
    for r in _newest_stage_runs(client, params, "rl"):
        name = r.data.tags.get("mlflow.runName", r.info.run_id)
        if r.info.status != "FINISHED":
            name = f"{name} ({r.info.status.lower()})"
        for m in REWARD_METRICS:
            for h in client.get_metric_history(r.info.run_id, m):
                recs.append({"run": name, "step": h.step, "metric": m, "value": h.value})
    return pd.DataFrame(recs, columns=["run", "step", "metric", "value"])


PER_STEP_PREFIXES = ("kl_step", "clip_frac_step")


def per_timestep_stats(client, params: Params) -> pd.DataFrame:
    """Frame (run, timestep, sigma, metric, value, updates) of the RL runs' per-denoising-step KL and
    clip fraction (MLflow `kl_step<i>` / `clip_frac_step<i>`), averaged over the updates that drew the step."""
    recs = []
    for r in _newest_stage_runs(client, params, "rl"):
        name = r.data.tags.get("mlflow.runName", r.info.run_id)
        sigmas = [float(x) for x in str(r.data.params.get("sigmas", "")).split(",") if x.strip()]
        for key in r.data.metrics:
            prefix = next((p for p in PER_STEP_PREFIXES if key.startswith(p) and key[len(p):].isdigit()), None)
            if prefix is None:
                continue
            i = int(key[len(prefix):])
            hist = [h.value for h in client.get_metric_history(r.info.run_id, key)]
            recs.append({"run": name, "timestep": i, "sigma": sigmas[i] if i < len(sigmas) else float("nan"),
                         "metric": prefix[:-len("_step")], "value": float(np.mean(hist)) if hist else float("nan"),
                         "updates": len(hist)})
    return pd.DataFrame(recs, columns=["run", "timestep", "sigma", "metric", "value", "updates"])


SWEEP_CSV = "benchmarks/sweep_real_size.csv"


def real_size_figure(params: Params, out: Path) -> Path | None:
    """The sweep's gain-against-real-data-size figure (rgsyn.real_size), when its CSV is present."""
    if not Path(SWEEP_CSV).is_file():
        return None
    from rgsyn.real_size import gain_figure, read_rows

    rows = read_rows(SWEEP_CSV)
    if not rows:
        return None
    with io.atomic_path(out) as tmp:
        gain_figure(rows, tmp, rule=params.reid.syn_draw)
    return out


def _pngs(client, run_id: str, path: str | None = None, depth: int = 0) -> list[str]:
    found = []
    for a in client.list_artifacts(run_id, path):
        if a.is_dir and depth < 4:
            found += _pngs(client, run_id, a.path, depth + 1)
        elif a.path.lower().endswith(".png"):
            found.append(a.path)
    return found


def sample_grids(client, params: Params, fig_dir: Path) -> list[tuple[str, Path]]:
    """Copy the PNG artifacts of the newest generate runs into reports/figures/."""
    out = []
    for r in _newest_stage_runs(client, params, "generate"):
        name = r.data.tags.get("mlflow.runName", r.info.run_id)
        pngs = sorted(_pngs(client, r.info.run_id), key=lambda p: ("grid" not in p.lower(), p))
        for k, art in enumerate(pngs[:2]):
            with tempfile.TemporaryDirectory() as tmp:
                local = client.download_artifacts(r.info.run_id, art, tmp)
                safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
                dest = fig_dir / f"samples_{safe}{'' if k == 0 else f'_{k}'}.png"
                with io.atomic_path(dest) as t:
                    shutil.copyfile(local, t)
            out.append((f"{name}: {art}", dest))
    return out


def pipeline_info(client, stage_run) -> dict[str, str]:
    parent = stage_run.run.data.tags.get("mlflow.parentRunId")
    if not parent:
        return {}
    try:
        run = client.get_run(parent)
    except Exception:  # the parent was deleted or lives in another store
        return {}
    started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc)
    return {"run_id": parent, "commit": run.data.tags.get("rgsyn.commit", "unknown"),
            "params_hash": run.data.tags.get("rgsyn.params_hash", "unknown"),
            "started": started.strftime("%Y-%m-%d %H:%M UTC")}


# --------------------------------------------------------------------------------- stage
def build_report(params: Params, out_dir: Path, client=None, stage_run=None) -> Path:
    """Write tables, figures and report.html under out_dir; MLflow parts need a client."""
    tables_dir, fig_dir = out_dir / "tables", out_dir / "figures"
    benches = load_benchmarks(Path("."))
    variants = [*params.variants, *getattr(params, "syn_variants", {})]
    tables = build_tables(benches, params.profile, variants, params.rl.hacking_tolerance)
    write_tables(tables, tables_dir)
    by_name = {t.name: t for t in tables}
    claims, controls = comparisons(benches, params.profile), control_rows(benches, params.profile)
    lead = first_line(controls, params.profile)
    io.write_json(out_dir / "verdicts.json", {"profile": params.profile, "first_line": lead,
                                              "controls": [r.as_dict() for r in controls],
                                              "comparisons": [c.as_dict() for c in claims]})
    write_metrics(out_dir / "metrics", metrics_files(benches, claims, variants, control_metrics(controls)))
    records = as_records(benches)

    ablation_png = ablation_bars(records, fig_dir / "ablation_bars.png")
    rfw_png = rfw_group_bars(records, fig_dir / "rfw_groups.png")
    curves = reward_histories(client, params) if client else pd.DataFrame(columns=["run", "step", "metric", "value"])
    curves_png = reward_curves(curves, fig_dir / "reward_curves.png")
    per_step = per_timestep_stats(client, params) if client else pd.DataFrame()
    per_step_png = per_timestep_figure(per_step, fig_dir / "rl_per_timestep.png")
    grids = sample_grids(client, params, fig_dir) if client else []
    pipe = pipeline_info(client, stage_run) if client and stage_run else {}
    timing = timing_frame(_newest_stage_runs(client, params) if client else [], pipe.get("run_id"))
    sweep_png = real_size_figure(params, fig_dir / "gain_vs_real_size.png")
    timing_table = table_timing(timing)
    estimate = table_estimate(params, timing)
    calibrated = [t for t in [report_table(params)] if t is not None]   # when reports/preflight.json exists
    write_tables([timing_table, estimate, *calibrated], tables_dir)

    commit = pipe.get("commit") or tracking.git_commit()
    meta = [("commit", commit), ("params hash", pipe.get("params_hash") or params_hash(params)),
            ("profile", params.profile), ("seeds (params)", ", ".join(map(str, params.seeds))),
            ("control seeds (real, syn_oracle, syn_shuffled)", ", ".join(map(str, params.control_seeds)) or "none"),
            ("report date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("pipeline run", f"{pipe['run_id']} (started {pipe['started']})" if pipe else "not found in MLflow")]
    note = TOY_NOTE.format(profile=params.profile) if params.profile != "paper" else None
    variants_note = ("Variants: " + ", ".join(f"<code>{v}</code>" for v in variants)
                     + ". Rows name the suite variant in brackets; the paper's method rows map onto them "
                       "as recorded in <code>benchmarks/*/paper.yaml</code>.")
    sections = [
        Section("Controls", [by_name["controls"]]),
        Section("What reproduced", [by_name["what_reproduced"]]),
        Section("Person re-identification", [by_name["table1_reid"]], text=[f"<p>{variants_note}</p>"]),
        Section("Face verification", [by_name["table2_face"]]),
        Section("Bias (RFW)", [by_name["table3_rfw"]], figures=[("RFW accuracy per group", rfw_png)]),
        Section("Ablations", [by_name["ablation"]],
                figures=[("Ablation bars (headline metric per benchmark)", ablation_png)]),
        Section("Oracle ceiling", [by_name["oracle"]],
                figures=[(f"Gain over real against real images per identity, candidate rule {params.reid.syn_draw} "
                          f"({SWEEP_CSV}, written by `python benchmarks/sweep_real_size.py`; 95% paired intervals "
                          "over its seeds)", sweep_png)]),
        Section("Generation quality", [by_name["generation"]],
                figures=[("RL reward curves (MLflow, newest run per name)", curves_png),
                         ("RL KL to the cold start and clip fraction per denoising step (mean over the updates "
                          "that trained the step; steps left out by rl.min_sigma_ratio are absent)", per_step_png)]),
        Section("Synthetic samples next to real ones", grid=True,
                figures=grids or [("Sample grids of the generate runs (MLflow artifacts)", None)]),
        Section("Privacy (memorisation)", [by_name["privacy"]]),
        Section("Reference numbers", [by_name["references"]]),
        Section("Stage timing", [timing_table]),
        Section("Compute estimate", [estimate, *calibrated]),
    ]
    html_path = out_dir / "report.html"
    io.write_text(html_path, render("rgsyn reproduction report", meta, note, sections, lead))
    io.write_text(out_dir / "report.md", markdown_report(meta, note, sections, out_dir, lead))
    return html_path


def write_metrics(metrics_dir: Path, files: dict[str, dict]) -> None:
    """The compact DVC metrics; files of an earlier run that this one does not write are removed
    (a variant dropped from params must not keep its row)."""
    for old in metrics_dir.glob("*.json") if metrics_dir.is_dir() else []:
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        io.write_json(metrics_dir / name, content)


def markdown_report(meta, note, sections, out_dir: Path, lead: str | None = None) -> str:
    """The same report as one Markdown file (figures linked, not inlined); `lead` right under the title."""
    out = ["# rgsyn reproduction report", ""] + ([f"**{lead}**", ""] if lead else [])
    out += [f"- {k}: `{v}`" for k, v in meta] + [""]
    if note:
        out += ["> " + re.sub(r"<[^>]+>", "", note), ""]
    for s in sections:
        out += [f"## {s.title}", ""] + [to_markdown(t) for t in s.tables]
        for caption, png in s.figures:
            out.append(f"![{caption}]({png.relative_to(out_dir).as_posix()})" if png else f"{caption}: {NOT_RUN}")
            out.append("")
    return "\n".join(out) + "\n"


def run(params: Params) -> Path:
    """The `report` stage: render everything, log it to MLflow, close the pipeline run."""
    out_dir = paths.reports_dir()
    with tracking.stage_run(params, "report") as srun:
        html_path = build_report(params, out_dir, client=_client(params), stage_run=srun)
        srun.log_artifacts(out_dir, artifact_path="reports")
    tracking.close_pipeline_run(params)
    print(f"wrote {html_path} and {out_dir / 'tables'}/, {out_dir / 'figures'}/")
    return html_path
