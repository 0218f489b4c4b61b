"""Data parallelism: a downstream, an RL and a generate stage under `accelerate launch` with two
processes (gloo on CPU), twice.

The launched processes run with `RGSYN_RANK_LOG` set (rgsyn.distributed): each rank logs the data it
trained or sampled on and digests of its parameters, and `rgsyn.io` logs every file it writes. The
test checks that
- the ranks saw different data (ReID identities, RL identity groups, generate batches);
- the parameters are the same on both ranks after every update;
- each launch, on a fresh MLflow store, logs exactly one run per stage;
- every file was written once, outputs only by rank 0 (each rank writes its own generate images);
- a second launch with the same seed and process count gives the same metrics and images.

`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's multi-CPU launch goes
through mpirun); `--multi_gpu` on a machine without CUDA starts torch's elastic launcher, and
accelerate then runs MULTI_CPU over gloo. The setup stages (world, prior, cold start, encoder) run
in this process at smoke size, shrunk further.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
STAGES = ["rl --domain persons --rewards full",
          "generate --benchmark market1501 --generator rl-full",
          "train --benchmark market1501 --variant ours --seed 0"]
TIMING_KEYS = {"train_seconds", "eval_seconds", "seconds", "images_per_second"}


def _params() -> dict:
    from rgsyn import config

    p = config.profile_dict("smoke")
    p["device"] = "cpu"
    p["prior"].update(steps=4, checkpoint_every=2)
    p["coldstart"].update(steps=4, checkpoint_every=2)
    p["generate"]["batch_size"] = 8          # 4 batches of the 32 images: 2 per rank
    return p


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from rgsyn.cli import main

    root = tmp_path_factory.mktemp("multiprocess")
    (root / "params.yaml").write_text(yaml.safe_dump(_params(), sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/setup.db")
        mp.delenv("RGSYN_RANK_LOG", raising=False)
        mp.chdir(root)
        for argv in (["data"], ["prior"], ["coldstart", "--domain", "persons"], ["encoder", "--domain", "persons"]):
            assert main(argv) == 0, argv
    return root


def _launch(root: Path, tag: str) -> dict:
    """One launch of the three stages; returns what it logged, wrote and measured."""
    log = root / f"ranklog-{tag}"
    db = root / f"mlflow-{tag}.db"
    env = {**os.environ, "RGSYN_RANK_LOG": str(log), "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env.pop("RGSYN_PARENT_RUN_ID", None)
    # `accelerate launch`, through this interpreter's accelerate (the console script may not be on PATH)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(WORLD), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", "0",
           str(REPO / "tests" / "multiprocess_stages.py"), *STAGES]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    def lines(name):
        return [json.loads(x) for x in (log / name).read_text().splitlines()]

    synthetic = root / "data/synthetic/market1501/rl-full"
    rl_curve = list(csv.DictReader(open(root / "results/rl/persons-full.csv")))
    return {
        "logs": {f"{stage}{r}": lines(f"{stage}-rank{r}.jsonl") for stage in ("rl", "generate", "train")
                 for r in range(WORLD)},
        "writes": [w for r in range(WORLD) for w in lines(f"writes-rank{r}.jsonl")],
        "db": db,
        "train": json.loads((root / "results/train/market1501/ours/seed0.json").read_text()),
        "train_curve": (root / "results/curves/market1501/ours/seed0.csv").read_text(),
        "generate": json.loads((root / "results/generate/market1501-rl-full.json").read_text()),
        "rl_curve": [{k: v for k, v in r.items() if k != "seconds"} for r in rl_curve],
        "images": {p.relative_to(synthetic).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(synthetic.rglob("*.jpg"))},
        "rl_bundle": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted((root / "models/rl/persons/full").rglob("*")) if p.is_file()},
    }


@pytest.fixture(scope="module")
def launches(project):
    return _launch(project, "a"), _launch(project, "b")


def _by_step(records: list[dict], key: str) -> dict:
    return {r["step"]: r[key] for r in records if "step" in r}


def test_ranks_see_different_data(project, launches):
    from rgsyn.data.market import read_market1501

    logs = launches[0]["logs"]
    # RL: each update's identity groups are split, whole, across the ranks
    rl0, rl1 = _by_step(logs["rl0"], "ids"), _by_step(logs["rl1"], "ids")
    assert sorted(rl0) == sorted(rl1) == [0, 1]
    for s in rl0:
        assert rl0[s] and rl1[s] and not set(rl0[s]) & set(rl1[s]), (s, rl0[s], rl1[s])
    seeds = _by_step(logs["rl0"], "rollout_seed"), _by_step(logs["rl1"], "rollout_seed")
    assert all(seeds[0][s] != seeds[1][s] for s in rl0)
    # ReID: at every step the two ranks' PK batches hold different identities
    train_recs = read_market1501(project / "data/world/market1501", splits=("train",)).train
    tr0, tr1 = _by_step(logs["train0"], "real"), _by_step(logs["train1"], "real")
    assert sorted(tr0) == sorted(tr1) and tr0
    for s in tr0:
        pids0, pids1 = {train_recs[i].pid for i in tr0[s]}, {train_recs[i].pid for i in tr1[s]}
        assert len(pids0) == 8 and len(pids1) == 8 and not pids0 & pids1, (s, pids0, pids1)
    # generate: the batches are split, and together they are the whole plan, once
    g = [[p for r in logs[f"generate{k}"] for p in r["paths"]] for k in range(WORLD)]
    assert g[0] and g[1] and not set(g[0]) & set(g[1])
    assert sorted(g[0] + g[1]) == sorted(launches[0]["images"])


def test_parameters_identical_across_ranks(launches):
    logs = launches[0]["logs"]
    lora0, lora1 = _by_step(logs["rl0"], "lora"), _by_step(logs["rl1"], "lora")
    assert lora0 == lora1 and len(set(lora0.values())) == 2   # the same on both ranks, and it moved
    final = [[r["final_params"] for r in logs[f"train{k}"] if "final_params" in r] for k in range(WORLD)]
    assert final[0] == final[1] and len(final[0]) == 1


def test_one_mlflow_run_per_stage(launches):
    from mlflow.tracking import MlflowClient

    for launch in launches:
        client = MlflowClient(tracking_uri=f"sqlite:///{launch['db']}")
        exp = client.get_experiment_by_name("rgsyn")
        runs = client.search_runs([exp.experiment_id])
        stages = Counter(r.data.tags.get("rgsyn.stage", "pipeline") for r in runs)
        assert stages == {"pipeline": 1, "rl": 1, "generate": 1, "train": 1}, stages
        assert all(r.info.status == "FINISHED" for r in runs if "rgsyn.stage" in r.data.tags)


def test_outputs_written_once(launches):
    for launch in launches:
        writes = launch["writes"]
        count = Counter(w["path"] for w in writes)
        assert max(count.values()) == 1, [p for p, n in count.items() if n > 1][:5]
        by_rank = defaultdict(set)
        for w in writes:
            by_rank[w["rank"]].add(w["path"])
        assert by_rank[1], "rank 1 wrote none of its generate images"
        # rank 1 writes only its own share of the generate work folder; every output is rank 0's
        assert all(p.startswith(".rgsyn/work/generate-market1501-rl-full/") for p in by_rank[1]), by_rank[1]
        outputs = {"results/train/market1501/ours/seed0.json", "results/generate/market1501-rl-full.json",
                   "results/rl/persons-full.csv", "models/downstream/market1501/ours/seed0/model.pt"}
        assert outputs <= by_rank[0]


def test_rerun_gives_the_same_metrics(launches):
    a, b = launches
    drop = lambda d: {k: v for k, v in d.items() if k not in TIMING_KEYS}  # noqa: E731
    assert drop(a["train"]) == drop(b["train"])
    assert a["train_curve"] == b["train_curve"]
    assert drop(a["generate"]) == drop(b["generate"])
    assert a["rl_curve"] == b["rl_curve"]
    assert a["images"] == b["images"] and len(a["images"]) == 32
    assert a["rl_bundle"] == b["rl_bundle"]


def test_rank_shares_of_the_batch_samplers():
    """Without a launcher: the rank shares of a PK / random batch are disjoint, and one process
    gets the single-process sequence."""
    import torch

    from rgsyn.downstream.datasets import PKSampler, random_batches

    labels = torch.arange(12).repeat_interleave(4)
    one = PKSampler(labels, 3, 2, seed=5).epoch(1)
    shares = [PKSampler(labels, 3, 2, seed=5, rank=r, world=2).epoch(1) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) > 0
    for a, b in zip(*shares):
        assert len(a) == len(b) == 6 and not set(labels[a].tolist()) & set(labels[b].tolist())
    assert [t.tolist() for t in PKSampler(labels, 3, 2, seed=5, rank=0, world=1).epoch(1)] == \
           [t.tolist() for t in one]
    with pytest.raises(Exception, match="P=24 identities"):
        PKSampler(labels, 12, 2, seed=5, rank=0, world=2)
    r0, r1 = (random_batches(48, 8, 3, 0, rank=r, world=2) for r in range(2))
    assert len(r0) == len(r1) == 3
    assert all(not set(a.tolist()) & set(b.tolist()) for a, b in zip(r0, r1))
    assert [t.tolist() for t in random_batches(48, 8, 3, 0)] == \
           [t.tolist() for t in random_batches(48, 8, 3, 0, rank=0, world=1)]


def test_launcher_param_prefixes_the_training_stages(tmp_path):
    """dvc.yaml's training stages start with `${launcher}`: empty, the plain `rgsyn` command."""
    from tests.pipeline_runner import prepare, stage_commands

    root = prepare(tmp_path / "p")
    plain = dict(stage_commands(root))
    assert all(c.split()[0] == "rgsyn" for c in plain.values())
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["launcher"] = "accelerate launch --multi_gpu --num_processes 8 -m"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    launched = dict(stage_commands(root))
    assert launched["rl@persons-full"] == ("accelerate launch --multi_gpu --num_processes 8 -m rgsyn rl "
                                           "--domain persons --rewards full")
    assert launched["train_real_reid@market1501-real"].startswith("accelerate launch")
    assert launched["data"] == "rgsyn data" and launched["report"] == "rgsyn report"
