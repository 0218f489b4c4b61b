"""How many CPU threads one stage uses: its fair share of the cores.

Several stages often run at once on one machine (`dvc queue start -j N`, two pipelines, a test run
beside a pipeline). If each takes every core (torch's default), the cores are oversubscribed and
every op of the small toy models waits at a thread barrier: two toy pipelines on 2 cores ran each
stage 10-20x slower, not 2x. So every stage asks `stage_threads` once, at its start:

  1. a stage's own `threads` param (`reid.threads`, `face.threads`) > 0 wins (applied by the stage);
  2. else `RGSYN_THREADS` or `OMP_NUM_THREADS`, if set (the user or a scheduler decided);
  3. else usable cores // stages running now: each stage registers its pid in the user's private
     runtime folder (`rgsyn.runtime_dir`: `$XDG_RUNTIME_DIR/rgsyn/stages` or
     `<temp dir>/rgsyn-<uid>/stages`, mode 0700, so no other user can add or remove marks;
     `running_stages`), so N concurrent stages get cores/N threads each, at least 1.

The machine's load average is deliberately not used: a CPU op's float result can depend on its
thread count (reductions split differently), so a thread count that followed the load of unrelated
work would make the same params give different metrics. Rules 1-2 pin it; rule 3 depends only on
the rgsyn stages running at the same time, which a single `dvc repro` or the smoke regression
(one stage at a time) keeps fixed at the machine's cores.

Under rule 3 the share follows the stages running now: the training, sampling and denoising loops
call `rebalance()` at every step, which (at most once a second) re-counts the running stages and
sets torch's threads to the new share. A stage that started alone therefore drops to 1 thread when
a second one joins, and takes both cores back when it leaves; without this, a stage started on an
idle machine kept 2 threads next to a later 1-thread stage (3 threads on 2 cores). Two queued
smoke experiments with `dvc queue start -j 2` took 350 s against 308 s one after the other without
rebalancing, 272 s against 302 s with it (`benchmarks/bench_stage_overhead.py --parts queue`).
Rules 1-2 pin the count: rebalancing never overrides them, nor a `pinned(n)` block (a stage's
`threads` param).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import stat
import sys
import time
from pathlib import Path

from rgsyn import runtime_dir

ENV_VARS = ("RGSYN_THREADS", "OMP_NUM_THREADS")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
REBALANCE_EVERY = 1.0   # seconds between two re-counts of the running stages
# "checked" starts at -inf so that the first call re-counts: monotonic time starts near 0 on a
# freshly booted machine, where 0.0 skipped the first re-count (and failed a test)
# "wrote": the OMP_NUM_THREADS value that `apply` set from a fair share (rule 3), else None. It is
# for the worker processes the stage starts, not a decision: a later stage of the same process
# (tests, the smoke runner) takes its own share instead of inheriting the first one's (1 thread
# when another stage happened to be running then, for the rest of the process).
_state = {"shared": False, "pinned": 0, "checked": float("-inf"), "wrote": None}


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under `taskset` or a container)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def registry() -> Path | None:
    """The folder of running-stage marks, inside the private runtime folder (`rgsyn.runtime_dir`);
    None when that folder is not private (then every stage counts itself alone)."""
    base = runtime_dir.private_dir()
    if base is None:
        return None
    d = base / "stages"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        runtime_dir.check_private(d)
    except OSError as e:
        runtime_dir.tell(f"the shared thread count is off: {e}")
        return None
    return d


def _mark(path: Path) -> None:
    """Create the mark without following a symlink; a file already there (left by a dead process
    with this pid, or planted) is replaced."""
    for attempt in (0, 1):
        try:
            os.close(runtime_dir.open_private(path, os.O_WRONLY, exclusive=True))
            return
        except FileExistsError:
            if attempt:
                raise
            path.unlink()


def register(pid: int | None = None) -> Path | None:
    """Mark this process as a running stage (the mark of a dead process is ignored and removed).
    None when the registry is off (see `registry`)."""
    d = registry()
    if d is None:
        return None
    mark = d / str(pid or os.getpid())
    try:
        _mark(mark)
    except OSError as e:
        runtime_dir.tell(f"could not register the stage in {d}: {e}")
        return None
    atexit.register(mark.unlink, missing_ok=True)
    return mark


def running_stages() -> int:
    """Stages running now on this machine for this user, this one included (at least 1). Only
    regular files of this user named by a live pid count."""
    d = registry()
    n = 0
    for mark in d.iterdir() if d is not None else ():
        try:
            pid = int(mark.name)
            st = mark.lstat()
        except (ValueError, OSError):
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            continue
        if runtime_dir.pid_alive(pid):
            n += 1
        else:
            mark.unlink(missing_ok=True)
    return max(n, 1)


def _env_threads() -> int | None:
    for var in ENV_VARS:
        v = os.environ.get(var, "").strip()
        if var == "OMP_NUM_THREADS" and v == _state["wrote"]:
            continue   # a share that `apply` wrote for an earlier stage of this process, no decision
        if v.isdigit() and int(v) > 0:
            return int(v)
    return None


def stage_threads(requested: int = 0) -> int:
    """The thread count of one stage (rules 1-3 of the module docstring)."""
    if requested and requested > 0:
        return int(requested)
    env = _env_threads()
    if env is not None:
        return env
    return max(1, usable_cores() // running_stages())


def apply(requested: int = 0) -> int:
    """Register this process, decide its threads and set them: the OMP/MKL variables (read by torch,
    numpy and worker processes that start later) and torch's intra-op threads if torch is loaded."""
    register()
    n = stage_threads(requested)
    _state["shared"] = not (requested and requested > 0) and _env_threads() is None   # rule 3 decided
    # a fair share is this module's own value; a user's value (even an equal one) decided rule 2
    _state["wrote"] = str(n) if _state["shared"] else None
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


def rebalance() -> int | None:
    """Take the current fair share of the cores (rule 3 only; at most once per REBALANCE_EVERY).

    Called by the stages' step loops. Returns the thread count it set, or None when it did nothing
    (rules 1-2 decided, inside `pinned`, checked too recently, or torch not loaded)."""
    if not _state["shared"] or _state["pinned"]:
        return None
    now = time.monotonic()
    if now - _state["checked"] < REBALANCE_EVERY:
        return None
    _state["checked"] = now
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    n = max(1, usable_cores() // running_stages())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def pin_process(n: int) -> None:
    """Fix this process's threads at `n` for the rest of its life (a worker process of a stage,
    `rgsyn.stages.train_seeds`): torch's intra-op threads and the OMP/MKL variables; `rebalance`
    leaves it alone. The worker is not registered as a stage: its stage is."""
    import torch

    for var in THREAD_ENV:
        os.environ[var] = str(n)
    _state["wrote"] = None
    _state["pinned"] += 1
    torch.set_num_threads(n)


@contextlib.contextmanager
def pinned(n: int):
    """Run with `n` intra-op threads (0 = leave the current setting), restored afterwards; `rebalance`
    leaves a pinned count alone.

    The toy models are made of many small ops; when other processes share the 2 cores, 2 threads
    made an osnet_x0_25 step ~50x slower than 1 thread (10 s vs 0.2 s, measured) because every op
    waits at a thread barrier. A stage's `threads` param therefore pins its count here."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
        _state["pinned"] += 1
    try:
        yield
    finally:
        if n:
            _state["pinned"] -= 1
        torch.set_num_threads(old)
