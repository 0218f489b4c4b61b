"""The `report` stage end to end: fake metrics files + MLflow runs (an RL run with reward histories,
a generate run with a sample grid) -> tables, figures, a self-contained report.html, the report
run in MLflow and the closed pipeline run."""
from __future__ import annotations

import re

import mlflow
import numpy as np
from PIL import Image

from rgsyn import config, io, paths, tracking
from rgsyn.stages import report
from rgsyn.config import params_hash

from test_report_tables import write_fake_benchmarks


def _log_fake_stage_runs(params, tmp_path):
    for domain in ("persons", "faces"):
        with tracking.stage_run(params, "rl", run_name=f"rl-{domain}-full") as run:
            for step in range(5):
                run.log_metrics({"reward": 0.1 * step, "reward_sem": 0.5 + 0.01 * step, "reward_cov": 0.2,
                                 "reward_exp": -0.3 + 0.02 * step, "kl": 0.001 * step, "gold": 0.4 + 0.01 * step},
                                step=step)
    grid = np.zeros((64, 128, 3), np.uint8)
    grid[:, 64:] = (200, 30, 30)
    (tmp_path / "art").mkdir()
    Image.fromarray(grid).save(tmp_path / "art" / "grid.png")
    with tracking.stage_run(params, "generate", run_name="generate-market1501-rl-full") as run:
        run.log_artifact(tmp_path / "art" / "grid.png", artifact_path="samples")


def _imgs(html: str) -> int:
    return len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}">', html))


def test_report_stage_with_mlflow_runs(mlflow_tmp):
    params = config.from_dict({"seeds": [0, 1]})
    write_fake_benchmarks(mlflow_tmp, drop={"cuhk03": {"real_re"}})
    _log_fake_stage_runs(params, mlflow_tmp)
    report.run(params)

    out = paths.reports_dir()
    for name in ("table1_reid", "table2_face", "table3_rfw", "what_reproduced", "ablation", "oracle", "generation", "privacy"):
        assert (out / "tables" / f"{name}.md").stat().st_size > 0
        assert "\\toprule" in (out / "tables" / f"{name}.tex").read_text()
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert figs == {"ablation_bars.png", "rfw_groups.png", "reward_curves.png",
                    "samples_generate-market1501-rl-full.png"}
    copied = np.asarray(Image.open(out / "figures" / "samples_generate-market1501-rl-full.png"))
    assert copied.shape == (64, 128, 3) and tuple(copied[0, 100]) == (200, 30, 30)

    html = (out / "report.html").read_text()
    assert _imgs(html) == 4                                   # every figure inlined, nothing linked
    assert 'src="http' not in html and "<link" not in html
    assert "41.0 ± 12.7 (n=2)" in html and "not run" in html and "reported" in html
    assert params_hash(params) in html and "not comparable in absolute value" in html
    assert tracking.git_commit() in html
    md = (out / "report.md").read_text()
    assert "![RFW accuracy per group](figures/rfw_groups.png)" in md and "41.0 ± 12.7 (n=2)" in md

    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(params.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`rgsyn.stage` = 'report'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    arts = [a.path for a in client.list_artifacts(runs[0].info.run_id, "reports")]
    assert "reports/report.html" in arts
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["rgsyn.pipeline"] == "1" and parent.info.status == "FINISHED"
    assert parent.info.run_id in html


def test_report_without_mlflow_runs_says_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = config.from_dict({"profile": "smoke"})
    write_fake_benchmarks(tmp_path)
    report.build_report(params, paths.reports_dir(), client=None)   # no MLflow runs to read
    html = (paths.reports_dir() / "report.html").read_text()
    assert _imgs(html) == 2                                   # ablation + RFW bars only
    assert re.search(r"RL reward curves[^<]*</b>: <span class=\"notrun\">not run", html)
    assert re.search(r"Sample grids[^<]*</b>: <span class=\"notrun\">not run", html)
    assert "suite (smoke)" in html and "Profile <code>smoke</code>" in html
    assert "pipeline run</td><td><code>not found in MLflow" in html
    assert not (paths.reports_dir() / "figures" / "reward_curves.png").exists()
    assert "RL reward curves (MLflow, newest run per name): not run" in (paths.reports_dir() / "report.md").read_text()


def test_report_opens_with_the_controls_and_writes_the_dvc_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = config.from_dict({"profile": "smoke"})
    write_fake_benchmarks(tmp_path)
    out = paths.reports_dir()
    (out / "metrics").mkdir(parents=True)
    io.write_json(out / "metrics" / "headline-dropped_variant.json", {"market1501": {"mAP": 1.0}})
    report.build_report(params, out, client=None)
    md = (out / "report.md").read_text()
    verdicts = io.read_json(out / "verdicts.json")
    # the first statement under the title is the positive control's reading (two seeds: syn_oracle
    # gains the same on both, so there is no spread and no test)
    assert md.splitlines()[2] == f"**{verdicts['first_line']}**"
    assert verdicts["first_line"].startswith("This run cannot support any verdict")
    assert md[md.index("\n## ") + 1:].startswith("## Controls")
    assert md.index("## Controls") < md.index("## What reproduced") < md.index("## Person re-identification")
    html = (out / "report.html").read_text()
    assert html.index('<p class="lead">This run cannot support any verdict') < html.index("Controls: positive")
    assert verdicts["profile"] == "smoke" and len(verdicts["comparisons"]) == 10
    assert {c["verdict"] for c in verdicts["comparisons"]} <= {"reproduced", "contradicted", "inconclusive"}
    assert len(verdicts["controls"]) == 24
    names = sorted(p.name for p in (out / "metrics").glob("*.json"))
    assert "headline-dropped_variant.json" not in names        # a stale row is removed
    assert names[0].startswith("control-") and "control-positive.json" in names
    assert "headline-ours.json" in names and "verdict-ours-vs-real.json" in names
    ours = io.read_json(out / "metrics" / "headline-ours.json")
    assert {"market1501", "market1501_ci", "n"} <= set(ours) and ours["n"] == 2
