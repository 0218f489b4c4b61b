"""The stage timing table: durations from the stage runs' start/end, grouped by stage kind."""
from types import SimpleNamespace as NS

from rgsyn.report.timing import table_timing, timing_frame


def _run(name, stage, start, end, parent="p2", status="FINISHED"):
    tags = {"mlflow.runName": name, "rgsyn.stage": stage, "mlflow.parentRunId": parent}
    return NS(info=NS(run_id=name, start_time=start, end_time=end, status=status), data=NS(tags=tags))


def test_timing_groups_sums_and_orders_by_pipeline_stage():
    runs = [_run("train-b", "train", 0, 30_000), _run("prior", "prior", 0, 120_500),
            _run("train-a", "train", 0, 10_000), _run("data", "data", 0, 5_000, parent="p1"),
            _run("report", "report", 0, 9_000), _run("rl-x", "rl", 0, 2_000, status="FAILED"),
            _run("open", "generate", 0, None)]
    df = timing_frame(runs, current_parent="p2")
    assert list(df["run"]) == ["data", "prior", "rl-x", "train-a", "train-b"]   # report and open runs left out
    assert list(df["cached"]) == [True, False, False, False, False]
    t = table_timing(df)
    rows = {r[0]: r for r in t.df.values.tolist()}
    assert rows["train"][1:] == ["2", "40", "20.0", "30.0", "train-b"]
    assert rows["prior"][2] == "120"           # 120.5 s rounds to even
    assert rows["all stages"][1:3] == ["5", "168"]
    assert any("1 of 5" in n for n in t.notes) and any("rl-x (failed)" in n for n in t.notes)


def test_no_runs_says_not_run():
    t = table_timing(timing_frame([]))
    assert t.df.iloc[0, 1] == "not run"
