import mlflow
import pytest

from rgsyn import config, tracking
from rgsyn.errors import TrainingDiverged


def _runs(tmp):
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("rgsyn")
    return client, client.search_runs([exp.experiment_id])


def test_stage_runs_nest_under_one_pipeline_run(mlflow_tmp, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    p = config.Params()
    with tracking.stage_run(p, "data") as r1:
        r1.log_metrics({"loss": 1.5}, step=0)
        r1.log_metrics({"loss": 0.5}, step=1)
    with tracking.stage_run(p, "prior") as r2:
        pass
    client, runs = _runs(mlflow_tmp)
    by_name = {r.info.run_name: r for r in runs}
    parent = [r for r in runs if r.data.tags.get("rgsyn.pipeline") == "1"]
    assert len(parent) == 1
    for name in ("data", "prior"):
        tags = by_name[name].data.tags
        assert tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert tags["rgsyn.stage"] == name and tags["dvc_exp_name"] == "exp-a"
        assert tags["rgsyn.params_hash"] == config.params_hash(p)
        assert by_name[name].info.status == "FINISHED"
    hist = client.get_metric_history(r1.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(0, 1.5), (1, 0.5)]
    # the report stage closes the parent
    assert tracking.close_pipeline_run(p) == parent[0].info.run_id
    assert client.get_run(parent[0].info.run_id).info.status == "FINISHED"


def test_new_params_start_a_new_pipeline_run(mlflow_tmp):
    with tracking.stage_run(config.Params(), "data"):
        pass
    with tracking.stage_run(config.from_dict({"seeds": [3], "control_seeds": []}), "data"):
        pass
    _, runs = _runs(mlflow_tmp)
    assert len([r for r in runs if r.data.tags.get("rgsyn.pipeline") == "1"]) == 2


def test_nan_metric_fails_the_run(mlflow_tmp):
    with pytest.raises(TrainingDiverged, match="loss is nan at step 7"):
        with tracking.stage_run(config.Params(), "rl") as run:
            run.log_metrics({"loss": float("nan")}, step=7)
    _, runs = _runs(mlflow_tmp)
    assert {r.info.run_name: r.info.status for r in runs}["rl"] == "FAILED"


def test_env_overrides_default_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    assert tracking.tracking_uri(config.Params()) == "sqlite:////tmp/x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri(config.Params()) == "sqlite:///mlflow.db"
