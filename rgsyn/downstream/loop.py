"""Pieces of the downstream training engine (rgsyn.downstream.engine): the checkpointed training
state, the random streams of an epoch, and the mixing of synthetic samples into a step."""
from __future__ import annotations

import time
from typing import Callable

import torch

from rgsyn import distributed


def _bare(net):
    """The model inside a DDP wrapper (checkpoints hold its plain state dict, for any process count)."""
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def restore(checkpointer, net, opt, sched, selector, steps_per_epoch: int | None = None,
            ema=None) -> tuple[int, list, int]:
    """Load the last epoch checkpoint (if any) into the training objects.

    Every rank loads it. A checkpoint made with another number of processes resumes too: the
    weights and optimizer state are the same on every rank, each rank takes its own saved RNG
    state when there is one (else keeps its fresh one), and the lr schedule is moved to the
    current run's step count (`steps_per_epoch` x epochs done).

    Returns (start_epoch, history, n_syn_used); (0, [], 0) when there is nothing to resume."""
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
    if selector is not None:
        selector.load_state_dict(state.get("selector", {}))
    if ema is not None:
        ema.load_state_dict(state["ema"])
    return state["epoch"], state["history"], state["n_syn_used"]


# An epoch checkpoint is written only when this many seconds have passed since the stage started or
# last saved. A toy epoch takes about a second and its re-ID checkpoint (weights + Adam state) is
# 134 MB, about 0.2 s to write: saving every epoch cost ~0.8 s of a ~6 s toy stage, 60 times per
# run, to protect work that takes seconds to redo. Paper-profile epochs take minutes: every one is saved.
SAVE_EVERY_SECONDS = 30.0


def checkpoint_due(checkpointer, force: bool = False) -> bool:
    """Whether to save now: forced, or SAVE_EVERY_SECONDS since the last save (rank 0's clock, the
    same answer on every rank, since saving is a collective)."""
    if checkpointer is None:
        return False
    return bool(distributed.broadcast_object(force or time.monotonic() - checkpointer.saved_at >= SAVE_EVERY_SECONDS))


def save(checkpointer, epoch: int, net, opt, sched, selector, history: list, n_syn_used: int,
         force: bool = False, ema=None) -> None:
    """Checkpoint the state after `epoch` (0-based) so that a killed run resumes with epoch + 1;
    when `force`, or when it is due (`checkpoint_due`)."""
    if not checkpoint_due(checkpointer, force):
        return
    rngs = distributed.gather_objects(torch.get_rng_state())   # a collective: every rank calls save
    ck = {"epoch": epoch + 1, "model": _bare(net).state_dict(), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict(), "rng": rngs if len(rngs) > 1 else rngs[0], "history": history,
          "n_syn_used": n_syn_used, "world": len(rngs)}
    if selector is not None:
        ck["selector"] = selector.state_dict()
    if ema is not None:
        ck["ema"] = ema.state_dict()
    checkpointer.save(ck)
    checkpointer.saved_at = time.monotonic()


class EpochStreams:
    """Separate random streams of one epoch (common random numbers across variants).

    `real_aug` flips and crops the real batch (the stream the loops always had, so `real` rows keep
    their numbers), `syn_draw` picks the synthetic candidates and `syn_aug` augments them; the
    selector has its own generator (rgsyn.selection). Mixing synthetic data therefore never shifts
    the real stream: for one seed every variant sees the same real images, augmented the same way,
    from the same initial weights, and a paired difference between variants measures the variant."""

    def __init__(self, seed: int, epoch: int, rank: int = 0):
        # under several processes each rank gets its own streams; rank 0 keeps the single-process ones
        base = distributed.rank_seed(seed * 7919 + epoch, rank)
        self.real_aug = torch.Generator().manual_seed(base)
        self.syn_draw = torch.Generator().manual_seed(base + (1 << 40))
        self.syn_aug = torch.Generator().manual_seed(base + (2 << 40))


class CandidateDraws:
    """Draws synthetic candidates for a step.

    rule "batch_ids": each candidate's identity is drawn uniformly from the identities of the real
    batch that have synthetic images, then one of that identity's synthetic images uniformly; with
    P x K batches every candidate then meets K real images of its identity, so the batch-hard
    triplet has positives for it (with "uniform" draws over C training identities, a candidate
    shares an identity with the batch with probability about P / C, 1/3 on the toy Market).
    When no batch identity has synthetic images it falls back to "uniform"."""

    def __init__(self, labels: torch.Tensor, rule: str):
        self.rule, self.n = rule, len(labels)
        self.by_label = {int(k): (labels == k).nonzero(as_tuple=True)[0] for k in torch.unique(labels)}

    def draw(self, batch_labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        ids = [k for k in sorted(set(batch_labels.tolist())) if k in self.by_label] if self.rule == "batch_ids" else []
        if not ids:
            return torch.randint(self.n, (n,), generator=gen)
        pick = torch.randint(len(ids), (n,), generator=gen).tolist()
        out = []
        for j in pick:
            pool = self.by_label[ids[j]]
            out.append(pool[int(torch.randint(len(pool), (1,), generator=gen))])
        return torch.stack(out)


def hash_update(h, *tensors: torch.Tensor) -> None:
    """Feed tensors' bytes to a hashlib object (the common-random-numbers fingerprints)."""
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())


class SyntheticMix:
    """The synthetic part of every step: `n_cand` candidates drawn by `draws` from `synthetic`,
    augmented like the real images, and the ones `selector` keeps (all when it is None)."""

    def __init__(self, synthetic, n_cand: int, draws: CandidateDraws, selector):
        self.synthetic, self.n_cand, self.draws, self.selector = synthetic, n_cand, draws, selector

    @classmethod
    def build(cls, synthetic, p, selector) -> "SyntheticMix | None":
        """The mix of a params section `p` (`syn_per_batch`, `syn_draw`); None when no synthetic
        sample joins the batches (no set, an empty one, or `syn_per_batch` 0)."""
        if synthetic is None or len(synthetic) == 0 or p.syn_per_batch <= 0:
            return None
        n_cand = selector.n_candidates(p.syn_per_batch) if selector is not None else p.syn_per_batch
        return cls(synthetic, n_cand, CandidateDraws(synthetic.labels, p.syn_draw), selector)

    def __call__(self, net, x, y, streams: EpochStreams, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                 step: int, dev):
        """Draw the candidates (stream `syn_draw`), augment them (stream `syn_aug`; torch's global
        RNG, which random erasing uses, is forked so that the real stream's erasing is unchanged),
        let the selector keep some and append them to the real batch.
        Returns (x, y, number of synthetic samples used)."""
        cidx = self.draws.draw(y.cpu(), self.n_cand, streams.syn_draw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(1 << 62, (1,), generator=streams.syn_aug)))
            xs = augment(self.synthetic.images[cidx], streams.syn_aug).to(dev)
        ys = self.synthetic.labels[cidx].to(dev)
        if self.selector is not None:
            keep = self.selector.select(net, (x, y), (xs, ys), step).to(dev)
            xs, ys = xs[keep], ys[keep]
        return torch.cat([x, xs]), torch.cat([y, ys]), len(ys)


def weight_average(net, decay: float):
    """An exponential moving average of `net`'s weights and buffers (batch-norm statistics too),
    updated by `.update_parameters(net)` after every optimizer step: w_ema <- decay w_ema + (1 - decay) w.
    None when `decay` is 0 (off)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
