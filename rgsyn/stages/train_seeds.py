"""The seeds of one downstream row, trained by one `rgsyn train` stage: in parallel on the CPU.

The stage trains its seeds in `min(seeds, share)` worker processes of one thread each, `share`
being its share of the cores (`rgsyn.threads`, set when it started), so that every seed of a row
trains on one thread on any machine, whatever its cores or load. It is not faster: a toy run is many
small ops, 2 threads make it only about 1.5x faster than one (Market: 9.6 s against 14.3 s of
training), and two runs side by side slow each other down, so a row of 3 seeds took as long in two
workers as one seed after another on 2 threads (Market `real_plus` 50.8 s against 49.7 s, idle
2-core machine). What saves time is one stage per row rather than per seed (see dvc.yaml), and on
2 cores a fourth seed of a row costs no more wall time than the third. A worker trains, evaluates
and writes one seed's outputs (`rgsyn.stages.train.train_and_evaluate`); the stage logs each seed's
MLflow run when its worker is done, dated from the worker's start (`rgsyn.stages.train.log_run`).

One thread per worker, because the workers are forked: a process forked after its parent has run
an OpenMP parallel region hangs in its own first one (GNU libgomp; a forked two-thread convolution
never returned, a one-thread one ran), and a parent that is a long-lived Python process (the tests,
the smoke runner) has run some. One thread never enters a parallel region.

One after another, in this process, with the stage's threads: one seed, a share of one core, a GPU
(one device, and not many small CPU ops), a launcher's ranks (each rank is already a process), or a
row whose `threads` param asks for more than one thread per run.

The thread count of a run is part of its result on the CPU (float reductions split by thread), so
a seed trained in a worker (one thread) and the same seed trained alone (`--seed S`, the stage's
share) may differ in the last digits; the same row on the same machine gives the same numbers.
Workers print no progress bars; the stage prints one line per finished seed.
"""
from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from rgsyn import distributed, threads, tracking
from rgsyn.errors import RgsynError


def plan(params, run_threads: int, n_seeds: int, share: int) -> int:
    """How many one-thread worker processes train the row's `n_seeds` seeds on `share` cores;
    1: in this process, one seed after another, with the stage's threads."""
    if n_seeds < 2 or run_threads > 1 or distributed.world_size() > 1 or distributed.on_gpu(params.device):
        return 1
    return max(1, min(n_seeds, share))


def train_row(params, benchmark: str, variant: str, seeds: list[int], train_fn: Callable,
              log_fn: Callable) -> dict[int, dict]:
    """Train every seed of the row; {seed: run metrics}. `train_fn(params, benchmark, variant,
    seed, progress=False)` trains, evaluates and writes one seed and returns its metrics (in a
    worker; a module-level function, which the worker finds by name); `log_fn(params, benchmark,
    variant, seed, metrics=None, start_ms=None)` logs its MLflow run, training it there when
    `metrics` is None (`rgsyn.stages.train.train_and_evaluate` and `log_run`)."""
    import torch

    from rgsyn.downstream.tasks import benchmark_task

    workers = plan(params, benchmark_task(params, benchmark).p.threads, len(seeds), torch.get_num_threads())
    if workers == 1:
        return {s: log_fn(params, benchmark, variant, s) for s in seeds}
    print(f"train {benchmark}/{variant}: seeds {', '.join(map(str, seeds))} in {workers} one-thread worker "
          "processes", flush=True)
    done: dict[int, dict] = {}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent)
    bar = tqdm(total=len(seeds), desc=f"train {benchmark}/{variant}", unit="seed", disable=not distributed.is_main())
    try:
        futures = {pool.submit(_train_one, train_fn, params, benchmark, variant, s): s for s in seeds}
        tracking.connect(params)   # the workers are forked (all at the first submit): now it is safe
        for fut in as_completed(futures):
            seed = futures[fut]
            try:
                metrics, start = fut.result()
            except BrokenProcessPool as e:
                raise RgsynError(f"train {benchmark}/{variant}/seed{seed}: its worker process died "
                                 f"({e}); run `rgsyn train --benchmark {benchmark} --variant {variant} "
                                 f"--seed {seed}` to see the failure in one process") from e
            done[seed] = log_fn(params, benchmark, variant, seed, metrics=metrics, start_ms=start)
            bar.update()
    except BaseException:   # a failed seed or an interrupt: the other seeds' work is lost anyway
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    return {s: done[s] for s in seeds}


def _die_with_parent() -> None:
    """A worker ends when the stage's process does, even killed (Linux: PR_SET_PDEATHSIG), so that no
    orphan goes on writing a row's outputs."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _train_one(train_fn: Callable, params, benchmark: str, variant: str, seed: int) -> tuple[dict, int]:
    """In a worker: train, evaluate and write one seed on one thread. (metrics, start ms)."""
    start = int(time.time() * 1000)
    threads.pin_process(1)
    metrics = train_fn(params, benchmark, variant, seed, progress=False)
    if metrics is None:
        raise RgsynError(f"train {benchmark}/{variant}/seed{seed}: training stopped before its last epoch")
    sys.stdout.flush()
    return metrics, start
