"""One `rgsyn train` stage trains every seed of its row, in one-thread worker processes on the CPU
(rgsyn.stages.train_seeds): the same numbers as each seed alone on one thread, one MLflow run per
seed, and a failing seed fails the stage with its own error."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from rgsyn import paths, threads
from rgsyn.errors import DataError, RgsynError
from rgsyn.stages import train, train_seeds
from tests.test_downstream_training import TIMING, tiny_params, workdir, world  # noqa: F401 (fixtures)


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _row_params(world, seeds):
    p = tiny_params(world)
    p.seeds, p.control_seeds = list(seeds), []
    p.reid = dataclasses.replace(p.reid, steps=6)
    return p


def _strip(m):
    return {k: v for k, v in m.items() if k not in TIMING}


def test_plan_workers():
    class P:
        device = "cpu"

    assert train_seeds.plan(P, 0, 8, 2) == 2
    assert train_seeds.plan(P, 0, 3, 16) == 3
    assert train_seeds.plan(P, 1, 3, 2) == 2          # a one-thread `threads` param still fits
    assert train_seeds.plan(P, 0, 1, 16) == 1         # one seed: in the stage's process
    assert train_seeds.plan(P, 0, 8, 1) == 1          # one core
    assert train_seeds.plan(P, 2, 8, 16) == 1         # two threads per run asked: no fork


def test_plan_is_one_process_under_a_launcher(monkeypatch):
    class P:
        device = "cpu"

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_seeds.plan(P, 0, 8, 16) == 1


def test_row_in_workers_equals_each_seed_alone_on_one_thread(world, workdir, two_threads):
    import mlflow

    p = _row_params(world, [0, 1])
    row = train.run(p, "market1501", "real_re")
    assert sorted(row) == [0, 1] and row[0]["mAP"] != row[1]["mAP"]
    for seed in (0, 1):
        written = paths.run_metrics("market1501", "real_re", seed)
        assert written.is_file() and paths.train_curve("market1501", "real_re", seed).is_file()
        assert (paths.downstream_dir("market1501", "real_re", seed) / "model.pt").is_file()
    with threads.pinned(1):
        alone = train.train_and_evaluate(p, "market1501", "real_re", 1, progress=False)
    assert _strip(alone) == _strip(row[1])

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    assert {"train-market1501-real_re-seed0", "train-market1501-real_re-seed1"} <= set(by_name)
    r1 = by_name["train-market1501-real_re-seed1"]
    assert r1.info.status == "FINISHED" and r1.info.start_time < r1.info.end_time
    assert r1.data.metrics["mAP"] == pytest.approx(row[1]["mAP"])
    losses = mlflow.tracking.MlflowClient().get_metric_history(r1.info.run_id, "loss")
    assert len(losses) == 6   # the worker's curve, logged by the stage


def test_a_failing_seed_fails_the_stage_with_its_error(world, workdir, two_threads):
    p = _row_params(world, [0, 1])
    with pytest.raises(DataError, match="synthetic"):
        train.run(p, "market1501", "syn_cold")   # no synthetic set was generated


def _die(*args, **kwargs):
    os._exit(3)


def test_a_worker_that_dies_is_a_clear_error(world, workdir, two_threads, monkeypatch):
    monkeypatch.setattr(train_seeds, "_train_one", _die)
    p = _row_params(world, [0, 1])
    with pytest.raises(RgsynError, match="worker process died.*--seed"):
        train.run(p, "market1501", "real_re")


def test_one_seed_runs_in_the_stage_process(world, workdir, two_threads, monkeypatch):
    monkeypatch.setattr(train_seeds, "_train_one", _die)   # a worker would kill the test run
    p = _row_params(world, [0, 1])
    row = train.run(p, "market1501", "real_re", seed=1)
    assert list(row) == [1] and not paths.run_metrics("market1501", "real_re", 0).exists()
