"""`rgsyn train --benchmark B --variant V [--seed S]`: train and evaluate the downstream models of one
row, every seed of it (`Params.seeds_of(V)`; in parallel worker processes on the CPU:
`rgsyn.stages.train_seeds`), or seed S only.

benchmark: market1501 | cuhk03 (person re-ID, `reid` params) or casia_face (CosFace, `face` params;
also evaluated on RFW). The variant (`params.variants[V]`) says which synthetic set joins the real
training data (`none`, `cold`, `rl-<rewards>`, `oracle` -> `paths.synthetic_dir(B, ...)`, or `real`:
more real draws, the compute-matched control), whether its labels are kept or shuffled (the negative
control; rgsyn.downstream.control_sets), which selector picks the synthetic samples of each step
(`none | random | lookahead`), and whether random erasing is on.

The benchmark's task (`rgsyn.downstream.reid.ReidTask` or `rgsyn.downstream.face.FaceTask`) loads the
real training split (rgsyn.data.splits), the synthetic set and the evaluation sets, and evaluates;
the downstream engine (`rgsyn.downstream.engine`) trains.

Writes (atomically): `paths.run_metrics(B, V, S)` (JSON; a non-finite value such as an SER with a
zero-error group is written as null), `paths.train_curve(B, V, S)` (CSV, one row per step) and the
model `paths.downstream_dir(B, V, S)/model.pt` (loadable with `load_identity_encoder`). The training
state is checkpointed at the end of an epoch outside the DVC outputs (`rgsyn.checkpoint`), when 30 s
have passed since the last save (`rgsyn.downstream.loop.SAVE_EVERY_SECONDS`; every epoch at paper
scale); a killed run resumes from the last saved epoch and ends with the same metrics as an uninterrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import io as _io
import math
import time

import torch

from rgsyn import distributed, io, paths, tracking
from rgsyn.config import REAL_DRAWS
from rgsyn.downstream.tasks import benchmark_task
from rgsyn.errors import RgsynError
from rgsyn.precision import Precision


def _finite_or_none(obj):
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _flat(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        elif isinstance(v, (int, float)) and v is not None and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def _curve_csv(history: list[dict]) -> str:
    if not history:
        return "step,loss\n"
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


class _StepLogger:
    """Buffers per-step losses and sends them to MLflow in one batch per epoch (sqlite is slow
    per call: one call per step would cost seconds per toy stage)."""

    def __init__(self, run):
        self.run, self.buf, self.last_epoch = run, [], None

    def __call__(self, step: int, rec: dict) -> None:
        if self.last_epoch is not None and rec["epoch"] != self.last_epoch:
            self.flush()
        self.last_epoch = rec["epoch"]
        self.buf.append(rec)

    def flush(self) -> None:
        if not self.buf or self.run is None or self.run.run_id is None:   # no run, or not rank 0
            self.buf = []
            return
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(r["step"])) for r in self.buf for k, v in r.items()
                   if k not in ("step", "epoch")]
        MlflowClient().log_batch(self.run.run_id, metrics=metrics)
        self.buf = []


def train_and_evaluate(params, benchmark: str, variant: str, seed: int, run=None, progress: bool = True,
                       stop_after_epoch: int | None = None) -> dict | None:
    """The stage without MLflow set-up (tests call it). Returns the run metrics (None if stopped).

    Under several processes each rank trains on its share of every batch (rgsyn.distributed), rank 0
    evaluates and writes the outputs, and every rank returns rank 0's metrics."""
    from rgsyn import threads

    task = benchmark_task(params, benchmark)
    was = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every tensor that torch.empty allocates, op outputs included,
    # to expose reads of memory never written. None happen here (the same losses bit for bit), and
    # the fill made a toy re-ID step 1.13x slower (benchmarks/bench_deterministic_fill.py).
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with threads.pinned(task.p.threads):
            return _train_and_evaluate(params, task, benchmark, variant, seed, run, progress, stop_after_epoch)
    finally:
        torch.use_deterministic_algorithms(was[0])
        torch.utils.deterministic.fill_uninitialized_memory = was[1]


def _train_and_evaluate(params, task, benchmark, variant, seed, run, progress, stop_after_epoch):
    from rgsyn.checkpoint import Checkpointer
    from rgsyn.downstream import control_sets, engine
    from rgsyn.downstream.datasets import synthetic_dir_or_none
    from rgsyn.downstream.encoder import save_identity_encoder
    from rgsyn.selection import build_selector

    v = params.variant(variant)
    config = dataclasses.asdict(task.p)
    generated = v.synthetic not in ("none", REAL_DRAWS)
    syn_root = synthetic_dir_or_none(paths.synthetic_dir(benchmark, v.synthetic)) if generated else None
    data = task.load(params, benchmark, syn_root)
    if v.synthetic == REAL_DRAWS:
        data.synthetic = control_sets.real_draws(data.train)
    if data.synthetic is not None and v.labels == "shuffled":
        data.synthetic = control_sets.shuffled_labels(data.synthetic, seed)
    syn = data.synthetic
    selector = build_selector(v.selection, params.selection, seed) if syn is not None else None
    ck = Checkpointer(f"train-{benchmark}-{variant}-seed{seed}",
                      {"section": config, "variant": dataclasses.asdict(v), "selection": dataclasses.asdict(
                          params.selection), "seed": seed, "n_real": len(data.train), "n_syn": len(syn) if syn else 0})
    logger = _StepLogger(run)
    net, info = engine.train(task, data.train, data.num_classes, seed, synthetic=syn, selector=selector,
                             random_erasing=v.random_erasing, device=params.device, checkpointer=ck,
                             on_step=logger, progress=progress, stop_after_epoch=stop_after_epoch,
                             precision=params.compute.precision)
    logger.flush()
    if not info["completed"]:
        return None
    if not distributed.is_main():   # rank 0 evaluates and writes; the others get its metrics
        return distributed.broadcast_object(None)
    t0 = time.perf_counter()
    with Precision(params.compute.precision, next(net.parameters()).device).autocast():
        metrics = task.evaluate(net, data)
    metrics.update({"train_seconds": info["train_seconds"], "eval_seconds": time.perf_counter() - t0,
                    "n_real": info["n_real"], "n_synthetic_used": info["n_synthetic_used"],
                    "n_synthetic_available": len(syn) if syn is not None else 0})
    metrics.update(task.extra_metrics(data, info))
    metrics = _finite_or_none(metrics)
    save_identity_encoder(paths.downstream_dir(benchmark, variant, seed) / "model.pt", net, task.name, config,
                          data.num_classes)
    io.write_text(paths.train_curve(benchmark, variant, seed), _curve_csv(info["history"]))
    io.write_json(paths.run_metrics(benchmark, variant, seed), metrics)
    ck.clear()
    return distributed.broadcast_object(metrics)


def run(params, benchmark: str, variant: str, seed: int | None = None) -> dict[int, dict]:
    """Train and evaluate every seed of the row (`Params.seeds_of(variant)`), or `seed` only.
    Returns {seed: run metrics}. On the CPU the seeds train in parallel worker processes, one per
    share of the cores (`rgsyn.stages.train_seeds`); on a GPU or under a launcher, one after another."""
    from rgsyn.stages import train_seeds

    seeds = [seed] if seed is not None else params.seeds_of(variant)
    if not seeds:
        raise RgsynError(f"train {benchmark}/{variant}: the row has no seeds (params `seeds`)")
    return train_seeds.train_row(params, benchmark, variant, seeds, train_and_evaluate, log_run)


def log_run(params, benchmark: str, variant: str, seed: int, metrics: dict | None = None,
            start_ms: int | None = None) -> dict:
    """The MLflow run of one seed. Without `metrics` it trains here, logging the losses live; with
    them (a worker process trained the seed, from `start_ms`), it logs the result and the losses
    from the curve the worker wrote."""
    with tracking.stage_run(params, "train", run_name=f"train-{benchmark}-{variant}-seed{seed}",
                            extra_tags={"rgsyn.benchmark": benchmark, "rgsyn.variant": variant,
                                        "rgsyn.seed": str(seed)}, start_ms=start_ms) as run:
        task = benchmark_task(params, benchmark)
        tracking.log_params_section(run, params, task.name, "selection")
        run.log_params({"variant": variant, "seed": seed, "benchmark": benchmark,
                        "variant_def": dataclasses.asdict(params.variant(variant))})
        if metrics is None:
            metrics = train_and_evaluate(params, benchmark, variant, seed, run=run)
        else:
            _log_curve(run, paths.train_curve(benchmark, variant, seed))
        if metrics is None:   # only a stop_after_epoch run stops early; never write half a result
            raise RgsynError(f"train {benchmark}/{variant}/seed{seed}: training stopped before its last "
                             "epoch; no metrics were written")
        run.log_metrics(_flat(metrics), check_finite=False)
        run.log_artifact(paths.run_metrics(benchmark, variant, seed))
        if distributed.is_main():
            print(f"train {benchmark}/{variant}/seed{seed}: {task.summary(metrics)}, "
                  f"{metrics['train_seconds']:.1f} s training")
        return metrics


def _log_curve(run, curve) -> None:
    """Log a written training curve (one CSV row per step) as MLflow step metrics."""
    logger = _StepLogger(run)
    with open(curve, newline="") as f:
        for row in csv.DictReader(f):
            logger(int(row["step"]), {k: float(v) if k != "epoch" else int(float(v)) for k, v in row.items()
                                      if v not in ("", None)})
    logger.flush()
