"""The data check and one real step of each downstream stage, for `rgsyn preflight`.

Like rgsyn.stages.preflight_steps (same process and scratch-folder rules, same row results):

- `data_step`: the `data` stage's checks (`rgsyn.stages.data.check_paths` and `check_pretrained`:
  every dataset opened with the real readers, every weights file loaded strictly); toy profile: the
  toy world must have been built (`rgsyn data`) at `data.out`.
- `encoder_step`: the domain's task (`rgsyn.downstream.tasks.domain_task`), its real training set
  (`rgsyn.stages.encoder.training_set`), the engine's set-up and one `Engine.step`; writes the
  reward and gold encoder files the rl and generate steps read (both from this one step).
- `train_step`: the benchmark's task (`benchmark_task`), `task.load` (training split and evaluation
  sets), one `Engine.step` on a real batch (the `real` variant: no synthetic samples; the other
  variants' extra work is scaled by FLOPs in rgsyn.preflight.work) and one evaluation batch
  (re-ID: `extract_features` of `reid.eval_batch_size` query images; faces: `embed_images` of one
  batch of the first verification set's images). Two rows: train/<domain> and eval/<domain>.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rgsyn import paths
from rgsyn.config import Params
from rgsyn.errors import DataError
from rgsyn.stages.preflight_steps import _row, sync

from rgsyn.preflight.work import DOMAIN_BENCHMARKS, FACE_EVAL_BATCH

TRAIN_BENCHMARK = {"persons": "market1501", "faces": "casia_face"}


def data_step(params: Params, domain: str | None = None) -> list[dict]:
    import time

    from rgsyn.stages.data import check_paths, check_pretrained

    t0 = time.perf_counter()
    if params.data.world:
        if not Path(params.data.out, "summary.json").is_file():
            raise DataError(f"data.out: no toy world at {params.data.out}; run `rgsyn data` first (the "
                            "toy profile's data stage builds it)")
    else:
        check_paths(params, progress=False)
    check_pretrained(params)
    return [_row("data", None, time.perf_counter() - t0, checks=1)]


def _one_engine_step(params: Params, task, train, num_classes: int, seed: int):
    """(engine, seconds, real images) of one optimizer step on the first batch of epoch 0."""
    from rgsyn.downstream import loop
    from rgsyn.downstream.engine import Engine

    eng = Engine(task, train, num_classes, seed, device=params.device, precision=params.compute.precision)
    batches = eng.source.epoch(0)
    if not batches:
        raise DataError(f"{task.name}: {len(train)} training images make no full batch of {task.real_batch()}")
    eng.net.train()
    t0 = sync(eng.dev)
    eng.step(batches[0], 0, loop.EpochStreams(seed, 0, eng.rank), 0)
    return eng, sync(eng.dev) - t0, int(batches[0].numel())


def encoder_step(params: Params, domain: str) -> list[dict]:
    from rgsyn.downstream.encoder import save_identity_encoder
    from rgsyn.downstream.tasks import domain_task
    from rgsyn.stages.encoder import training_set

    task = domain_task(params, domain)
    data, num_classes = training_set(params, task, domain)
    eng, seconds, batch = _one_engine_step(params, task, data, num_classes, params.encoder.seed)
    net = eng.acc.unwrap_model(eng.net).eval()
    for which in ("reward", "gold"):
        save_identity_encoder(paths.encoder_path(domain, which), net, task.name, dataclasses.asdict(task.p),
                              num_classes)
    return [_row("encoder", domain, seconds, batch=batch)]


def train_step(params: Params, domain: str) -> list[dict]:
    from rgsyn.downstream.tasks import benchmark_task

    benchmark = TRAIN_BENCHMARK[domain]
    task = benchmark_task(params, benchmark)
    data = task.load(params, benchmark, None)
    eng, seconds, batch = _one_engine_step(params, task, data.train, data.num_classes, params.seeds[0])
    net = eng.acc.unwrap_model(eng.net).eval()
    with eng.prec.autocast():
        eval_seconds, eval_images = (_reid_eval_batch(net, data, task.p) if domain == "persons"
                                     else _face_eval_batch(net, params, data, task.p))
    per_run = {b: evaluation_images(params, b) for b in DOMAIN_BENCHMARKS[domain]}
    return [_row("train", domain, seconds, batch=batch),
            _row("eval", domain, eval_seconds, images=eval_images, images_per_run=per_run)]


def _reid_eval_batch(net, data, p) -> tuple[float, int]:
    from rgsyn.downstream.reid import extract_features

    images = data.evaluation["query"].images[:p.eval_batch_size]
    dev = next(net.parameters()).device
    t0 = sync(dev)
    extract_features(net, images, p.eval_batch_size)
    return sync(dev) - t0, len(images)


def _face_eval_batch(net, params: Params, data, p) -> tuple[float, int]:
    from rgsyn.data.faces import is_bin_set, read_verification
    from rgsyn.downstream.datasets import load_images
    from rgsyn.downstream.face import embed_images
    from rgsyn.paths import VERIFICATION_SETS

    name, root = VERIFICATION_SETS[0], params.data.paths.verification
    pairs = read_verification(root, name).pairs
    files = sorted({q for a, b, _ in pairs for q in (a, b)})[:FACE_EVAL_BATCH]
    tf = None if is_bin_set(root, name) else data.evaluation["aligner"]
    images = load_images(files, (p.size, p.size), transform=tf)
    dev = next(net.parameters()).device
    t0 = sync(dev)
    embed_images(net, images, p.flip_eval, len(files))
    return sync(dev) - t0, len(files)


def evaluation_images(params: Params, benchmark: str) -> int:
    """Images one evaluation of a `benchmark` model encodes (re-ID: query + gallery; faces: the
    distinct images of every verification set and of RFW), read with the evaluation's readers."""
    dp = params.data.paths
    if benchmark in ("market1501", "cuhk03"):
        from rgsyn.data.cuhk03 import read_cuhk03
        from rgsyn.data.market import read_market1501

        test = (read_market1501(dp.market1501, splits=("query", "gallery")) if benchmark == "market1501"
                else read_cuhk03(dp.cuhk03, mode=dp.cuhk03_mode, splits=("query", "gallery")))
        return len(test.query) + len(test.gallery)
    from rgsyn.data.faces import read_verification
    from rgsyn.data.rfw import read_rfw
    from rgsyn.paths import VERIFICATION_SETS

    sets = [read_verification(dp.verification, n) for n in VERIFICATION_SETS] + list(read_rfw(dp.rfw_bias).values())
    return sum(len({q for a, b, _ in s.pairs for q in (a, b)}) for s in sets)

