"""Pieces shared by the re-ID and face training loops: checkpoint state and synthetic mixing."""
from __future__ import annotations

from typing import Callable

import torch


def restore(checkpointer, net, opt, sched, selector) -> tuple[int, list, int]:
    """Load the last epoch checkpoint (if any) into the training objects.

    Returns (start_epoch, history, n_syn_used); (0, [], 0) when there is nothing to resume."""
    state = checkpointer.load() if checkpointer is not None else None
    if state is None:
        return 0, [], 0
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if "selector_rng" in state and hasattr(selector, "_gen"):
        selector._gen.set_state(state["selector_rng"])
    return state["epoch"], state["history"], state["n_syn_used"]


def save(checkpointer, epoch: int, net, opt, sched, selector, history: list, n_syn_used: int) -> None:
    """Checkpoint the state after `epoch` (0-based) so that a killed run resumes with epoch + 1."""
    if checkpointer is None:
        return
    ck = {"epoch": epoch + 1, "model": net.state_dict(), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict(), "rng": torch.get_rng_state(), "history": history,
          "n_syn_used": n_syn_used}
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
