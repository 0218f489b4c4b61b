"""MLflow tracking: one run per stage, nested under one parent run per pipeline execution.

Every `rgsyn <stage>` is its own process (DVC runs them one after another), so the parent run is
found through a small state file, `.rgsyn/pipeline_run.json`, keyed by the git commit, the params
hash and `DVC_EXP_NAME`. The first stage of a `dvc repro` creates the parent; later stages with the
same key nest under it; the `report` stage closes it. Set `RGSYN_PARENT_RUN_ID` to nest under a run
of your own instead.

The tracking URI is `sqlite:///mlflow.db` at the repo root unless `MLFLOW_TRACKING_URI` is set.

Under several processes only rank 0 opens the store (so one process creates its tables and the
stage logs one run); the other ranks get a `NullRun`, which checks values like `StageRun` but logs
nothing.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

from rgsyn import distributed, io, stage_clock
from rgsyn.config import Params, params_hash, to_dict
from rgsyn.errors import TrainingDiverged

STATE_FILE = Path(".rgsyn/pipeline_run.json")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tracking_uri(params: Params | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or (params.tracking.uri if params else "sqlite:///mlflow.db")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


class StageRun:
    """Thin handle over an active MLflow run; the methods guard against NaN values."""

    def __init__(self, mlflow_mod, run):
        self._mlflow = mlflow_mod
        self.run = run
        self.run_id = run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, check_finite: bool = True) -> None:
        clean = {}
        for k, v in metrics.items():
            v = float(v)
            if check_finite and not math.isfinite(v):
                raise TrainingDiverged(f"{k} is {v} at step {step}; stopping")
            clean[k.replace("@", "_at_")] = v
        self._mlflow.log_metrics(clean, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        flat = _flatten(params)
        items = list(flat.items())
        for i in range(0, len(items), 90):  # MLflow caps params per batch
            self._mlflow.log_params({k: str(v)[:500] for k, v in items[i:i + 90]})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifacts(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)


class NullRun:
    """The run handle of a rank other than 0: the same methods, no MLflow."""

    run = None
    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, check_finite: bool = True) -> None:
        for k, v in metrics.items():
            if check_finite and not math.isfinite(float(v)):
                raise TrainingDiverged(f"{k} is {v} at step {step}; stopping")

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass


def _parent_run(mlflow_mod, experiment_id: str, key: dict[str, str]) -> str:
    env_parent = os.environ.get("RGSYN_PARENT_RUN_ID")
    if env_parent:
        return env_parent
    client = mlflow_mod.tracking.MlflowClient()
    if STATE_FILE.is_file():
        state = io.read_json(STATE_FILE)
        if state.get("key") == key:
            try:
                run = client.get_run(state["run_id"])
                if run.info.status == "RUNNING":
                    return state["run_id"]
            except Exception:  # deleted or another tracking store
                pass
    tags = {"rgsyn.pipeline": "1", "rgsyn.commit": key["commit"], "rgsyn.params_hash": key["params_hash"],
            "mlflow.runName": f"pipeline-{key['params_hash']}"}
    if key.get("dvc_exp"):
        tags["dvc_exp_name"] = key["dvc_exp"]
    run = client.create_run(experiment_id, tags=tags)
    io.write_json(STATE_FILE, {"key": key, "run_id": run.info.run_id})
    return run.info.run_id


@contextlib.contextmanager
def stage_run(params: Params, stage: str, run_name: str | None = None,
              extra_tags: dict[str, str] | None = None, start_ms: int | None = None) -> Iterator[StageRun]:
    """Open the MLflow run of one stage, nested under the pipeline's parent run.

    Any exception marks the run FAILED (and is re-raised); normal exit marks it FINISHED.
    On a rank other than 0 it yields a `NullRun` and never touches MLflow. `start_ms` (epoch ms)
    dates the run's start back to when its work began: a training run that a worker process did
    (rgsyn.stages.train_seeds) is logged by the stage once the worker has finished.
    """
    if not distributed.is_main():
        yield NullRun()
        return
    import mlflow

    exp = connect(params)
    commit = git_commit()
    phash = params_hash(params)
    key = {"commit": commit, "params_hash": phash, "dvc_exp": os.environ.get("DVC_EXP_NAME", "")}
    parent_id = _parent_run(mlflow, exp.experiment_id, key)
    tags = {"rgsyn.stage": stage, "rgsyn.commit": commit, "rgsyn.params_hash": phash,
            "rgsyn.profile": params.profile, "mlflow.parentRunId": parent_id}
    if key["dvc_exp"]:
        tags["dvc_exp_name"] = key["dvc_exp"]
    tags.update(extra_tags or {})
    if start_ms is None:
        run = mlflow.start_run(run_name=run_name or stage, tags=tags)
    else:
        made = mlflow.tracking.MlflowClient().create_run(exp.experiment_id, start_time=int(start_ms), tags=tags,
                                                          run_name=run_name or stage)
        run = mlflow.start_run(run_id=made.info.run_id)
    stage_clock.note_run(run.info.run_id, run.info.start_time)
    handle = StageRun(mlflow, run)
    try:
        handle.log_params({"profile": params.profile, "params_hash": phash})
        yield handle
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def connect(params: Params):
    """Open the tracking store (import MLflow, create its tables and the experiment); returns the
    experiment, None on a rank other than 0. `stage_run` starts with it, and a stage whose worker
    processes train calls it while they run, not after the first one has finished."""
    if not distributed.is_main():
        return None
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(params))
    return mlflow.set_experiment(params.tracking.experiment)


def close_pipeline_run(params: Params, status: str = "FINISHED") -> str | None:
    """End the pipeline's parent run (called by the report stage). Returns its id."""
    import mlflow

    if not distributed.is_main() or not STATE_FILE.is_file():
        return None
    mlflow.set_tracking_uri(tracking_uri(params))
    state = io.read_json(STATE_FILE)
    client = mlflow.tracking.MlflowClient()
    try:
        client.set_terminated(state["run_id"], status=status)
    except Exception:
        return None
    STATE_FILE.unlink(missing_ok=True)
    return state["run_id"]


def log_params_section(handle: StageRun, params: Params, *sections: str) -> None:
    d = to_dict(params)
    handle.log_params({s: d[s] for s in sections})
