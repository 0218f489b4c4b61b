"""Pieces shared by the re-ID and face training loops: checkpoint state and synthetic mixing."""
from __future__ import annotations

from typing import Callable

import torch


def _bare(net):
    """The model inside a DDP wrapper (checkpoints hold its plain state dict, for any process count)."""
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def restore(checkpointer, net, opt, sched, selector, steps_per_epoch: int | None = None) -> tuple[int, list, int]:
    """Load the last epoch checkpoint (if any) into the training objects.

    Every rank loads it. A checkpoint made with another number of processes resumes too: the
    weights and optimizer state are the same on every rank, each rank takes its own saved RNG
    state when there is one (else keeps its fresh one), and the lr schedule is moved to the
    current run's step count (`steps_per_epoch` x epochs done).

    Returns (start_epoch, history, n_syn_used); (0, [], 0) when there is nothing to resume."""
    from rgsyn import distributed

    state = checkpointer.load() if checkpointer is not None else None
    if state is None:
        return 0, [], 0
    _bare(net).load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    if distributed.rank() < len(rngs):
        torch.set_rng_state(rngs[distributed.rank()])
    if state.get("world", 1) != distributed.world_size() and steps_per_epoch is not None:
        sched.last_epoch = state["epoch"] * steps_per_epoch - 1
        sched.step()
    if "selector_rng" in state and hasattr(selector, "_gen"):
        selector._gen.set_state(state["selector_rng"])
    return state["epoch"], state["history"], state["n_syn_used"]


def save(checkpointer, epoch: int, net, opt, sched, selector, history: list, n_syn_used: int) -> None:
    """Checkpoint the state after `epoch` (0-based) so that a killed run resumes with epoch + 1."""
    if checkpointer is None:
        return
    from rgsyn import distributed

    rngs = distributed.gather_objects(torch.get_rng_state())   # a collective: every rank calls save
    ck = {"epoch": epoch + 1, "model": _bare(net).state_dict(), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict(), "rng": rngs if len(rngs) > 1 else rngs[0], "history": history,
          "n_syn_used": n_syn_used, "world": len(rngs)}
    if hasattr(selector, "_gen"):
        ck["selector_rng"] = selector._gen.get_state()
    checkpointer.save(ck)


def mix_synthetic(net, x, y, synthetic, n_cand: int, gen: torch.Generator,
                  augment: Callable[[torch.Tensor], torch.Tensor], selector, step: int, dev):
    """Draw `n_cand` synthetic candidates, let the selector keep some (all when it is None) and
    append them to the real batch. Returns (x, y, number of synthetic samples used)."""
    cidx = torch.randint(len(synthetic), (n_cand,), generator=gen)
    xs = augment(synthetic.images[cidx]).to(dev)
    ys = synthetic.labels[cidx].to(dev)
    if selector is not None:
        keep = selector.select(net, (x, y), (xs, ys), step).to(dev)
        xs, ys = xs[keep], ys[keep]
    return torch.cat([x, xs]), torch.cat([y, ys]), len(ys)
