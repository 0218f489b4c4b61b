"""Devices and data parallelism under `accelerate launch`: the accelerator every stage places its
models with (`make_accelerator`), which process this is, and the few collectives the stages share.

Every stage runs unchanged in one process (world size 1: every helper here is then the identity or
a no-op and needs no process group). Under a launcher (`accelerate launch --multi_gpu
--num_processes N -m rgsyn <stage>`, or torchrun) each process reads its rank and the world size
from the launcher's environment (`RANK`, `WORLD_SIZE`), shards its work by rank, and:

- only rank 0 writes outputs and checkpoints (`rgsyn.checkpoint`, the stages) and talks to MLflow
  (`rgsyn.tracking`), so the tracking store and its tables are created by one process;
- gradients are averaged across ranks (DDP through `accelerator.prepare`, or `mean_gradients`
  where a model is called outside its DDP wrapper);
- what every rank must agree on (metrics, a stop on a non-finite loss) is reduced or broadcast, so
  that no rank raises alone and leaves the others waiting in a collective.

Debug hook: with `RGSYN_RANK_LOG=<folder>` set, `rank_log(stage, record)` appends one JSON line per
call to `<folder>/<stage>-rank<r>.jsonl` (the data each rank saw, a digest of its parameters), and
`rgsyn.io` appends every file it writes to `<folder>/writes-rank<r>.jsonl`. tests/test_multiprocess.py
reads them to check that the ranks saw different data, ended with the same weights, and that every
output was written once.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

RANK_LOG_ENV = "RGSYN_RANK_LOG"


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def make_accelerator(device: str):
    """The `accelerate.Accelerator` every stage places its models with: on the CPU when `device` is
    "cpu" or no CUDA device exists, else on this process's GPU (one per rank under a launcher).

    Placement and the process group only: the precision is applied by rgsyn.precision (accelerate's
    `mixed_precision` is fixed per process, so it stays "no" whatever a launcher sets)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not on_gpu(device), mixed_precision="no")


def on_gpu(device: str) -> bool:
    """Whether a stage with the `device` param places its models on a GPU (`make_accelerator`)."""
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def _state():
    from accelerate import PartialState

    return PartialState()


def barrier() -> None:
    if distributed():
        _state().wait_for_everyone()


def shard(items: Sequence, r: int | None = None, n: int | None = None) -> list:
    """Rank r's share of `items`: every n-th item from position r (all of them for one process)."""
    r = rank() if r is None else r
    n = world_size() if n is None else n
    return list(items[r::n])


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not distributed():
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]


def gather_objects(obj: Any) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not distributed():
        return [obj]
    import torch.distributed as dist

    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_cat(t):
    """Concatenate a tensor's rank shares along dim 0, in rank order (shapes may differ by rank)."""
    if not distributed():
        return t
    import torch

    parts = gather_objects(t.detach().cpu())
    return torch.cat(parts).to(t.device)


def reduce_mean(t):
    """The mean of a tensor over the ranks (on every rank)."""
    if not distributed():
        return t
    from accelerate.utils import reduce

    return reduce(t.detach().clone(), reduction="mean")


def mean_gradients(params: Sequence) -> None:
    """Average `.grad` of `params` over the ranks in one flat all-reduce (a missing grad counts as 0).

    Used where the model is called outside a DDP wrapper (the RL update calls the transformer through
    the policy sampler, many forward/backward passes per optimizer step): one all-reduce per optimizer
    step, like DDP with `no_sync` on all but the last backward."""
    if not distributed():
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (a collective stop condition)."""
    if not distributed():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def rank_seed(seed: int, r: int | None = None) -> int:
    """A per-rank seed derived from `seed`: `seed` itself on rank 0, so one process keeps the
    single-process stream, and a hash of (seed, rank) on the others."""
    r = rank() if r is None else r
    if r == 0:
        return int(seed)
    h = hashlib.sha256(f"{int(seed)}:{r}".encode()).digest()
    return int.from_bytes(h[:7], "little")


def param_digest(params) -> str:
    """A short hash of parameter values (the rank log compares it across ranks)."""
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _log_dir() -> Path | None:
    d = os.environ.get(RANK_LOG_ENV)
    return Path(d) if d else None


def rank_log_enabled() -> bool:
    return _log_dir() is not None


def rank_log(stage: str, record: dict) -> None:
    """Append `record` (plus rank and world size) to this rank's debug log, when enabled."""
    d = _log_dir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"rank": rank(), "world": world_size(), **record}, sort_keys=True, default=str)
    with open(d / f"{stage}-rank{rank()}.jsonl", "a") as f:
        f.write(line + "\n")
