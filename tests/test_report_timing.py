"""The stage timing table: durations from the stage runs' start/end, grouped by stage kind."""
from types import SimpleNamespace as NS

from rgsyn.report.timing import table_timing, timing_frame


def _run(name, stage, start, end, parent="p2", status="FINISHED", metrics=None):
    tags = {"mlflow.runName": name, "rgsyn.stage": stage, "mlflow.parentRunId": parent}
    return NS(info=NS(run_id=name, start_time=start, end_time=end, status=status),
              data=NS(tags=tags, metrics=metrics or {}))


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
    assert rows["train"][1:6] == ["2", "40", "20.0", "30.0", "train-b"]
    assert rows["prior"][2] == "120"           # 120.5 s rounds to even
    assert rows["all stages"][1:3] == ["5", "168"]
    assert any("1 of 5" in n for n in t.notes) and any("rl-x (failed)" in n for n in t.notes)


def test_no_runs_says_not_run():
    t = table_timing(timing_frame([]))
    assert t.df.iloc[0, 1] == "not run"


def test_dvc_wall_time_shows_the_fixed_cost_outside_the_mlflow_run():
    runs = [_run("train-a", "train", 0, 10_000, metrics={"stage.process_seconds": 13.0, "stage.startup_seconds": 2.5}),
            _run("train-b", "train", 0, 20_000, metrics={"stage.process_seconds": 21.0, "stage.startup_seconds": 0.5}),
            _run("prior", "prior", 0, 4_000)]   # an older run without the record
    t = table_timing(timing_frame(runs))
    rows = {r[0]: r for r in t.df.values.tolist()}
    assert rows["train"][6:] == ["34", "1.50"]
    assert rows["prior"][6:] == ["", ""]
    assert rows["all stages"][6:] == ["34", "1.50"]
    assert any("1 of 3 stage runs have no recorded process wall time" in n for n in t.notes)


def test_a_stage_of_several_runs_records_its_wall_time_once_and_overlap_is_said():
    """A train stage trains its row's seeds side by side and records its process on the first run."""
    runs = [_run("train-r-seed0", "train", 0, 10_000, metrics={"stage.process_seconds": 15.0,
                                                               "stage.startup_seconds": 1.0, "stage.runs": 3.0}),
            _run("train-r-seed1", "train", 500, 11_000), _run("train-r-seed2", "train", 10_000, 14_000),
            _run("prior", "prior", 0, 4_000, metrics={"stage.process_seconds": 5.0}),
            _run("coldstart", "coldstart", 4_000, 9_000, metrics={"stage.process_seconds": 6.0})]
    t = table_timing(timing_frame(runs))
    rows = {r[0]: r for r in t.df.values.tolist()}
    assert rows["train"][1:3] == ["3", "24"] and rows["train"][6:] == ["15", "1.00"]
    assert not any("no recorded process wall time" in n for n in t.notes)   # seeds 1-2: in seed 0's process
    overlap = [n for n in t.notes if "overlap" in n]
    assert len(overlap) == 1 and "train stages" in overlap[0] and "prior" not in overlap[0]
