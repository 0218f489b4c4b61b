"""The downstream training engine: one loop that trains every downstream model (re-ID, faces).

In the spirit of torchreid's `Engine`: the loop is written once, and a `Task` (rgsyn.downstream.reid
`ReidTask`, rgsyn.downstream.face `FaceTask`) supplies what differs between the recognition problems:

- model and optimizer (`build_model`, `optimizer`);
- batch source (`batch_source`: an object with `len()` batches per epoch and `epoch(e)` -> lists of
  indices, e.g. `PKSampler` or `RandomBatches`), augmentation (`augment`);
- loss (`forward` under autocast, then `criterion`, which returns the loss and its named parts);
- training length (`schedule`: total optimizer steps and warm-up steps; the lr follows
  `warmup_cosine` over that count); with `ema` > 0 in the params section, the model returned for
  evaluation is the exponential moving average of the weights (rgsyn.downstream.loop.weight_average);
- data and evaluation for the `train` stage (`training_set`, `load`, `evaluate`, `extra_metrics`).

Every step: a batch of real images from the batch source (augmented from the epoch's `real_aug`
stream, rgsyn.downstream.loop.EpochStreams), plus the synthetic candidates the selector keeps when a
synthetic set is given (rgsyn.downstream.loop.SyntheticMix); the loss is averaged over the ranks
(a non-finite one raises `TrainingDiverged` on every rank); then the optimizer and lr steps. The
training state is checkpointed at the end of an epoch when due (rgsyn.downstream.loop.save) and a
killed run resumes from it. Devices come from `rgsyn.distributed.make_accelerator`.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from rgsyn import distributed, threads
from rgsyn.downstream import loop
from rgsyn.downstream.datasets import LabelledImages
from rgsyn.errors import DataError, TrainingDiverged
from rgsyn.precision import Precision


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr factor of step s: linear from 0.1 to 1 over the warm-up, then cosine from 1 to 0.01 at `total_steps`."""
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return 0.1 + 0.9 * step / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


@dataclass
class TaskData:
    """What the `train` stage trains and evaluates on: the real training set, its number of
    identities, the synthetic set (or None) and the task's evaluation inputs."""

    train: LabelledImages
    num_classes: int
    synthetic: LabelledImages | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)


class Task:
    """The hooks of one kind of downstream model; `p` is its params section (`ReidParams`, `FaceParams`)."""

    name = "task"   # the params section, the encoder kind and the progress bar's label

    def __init__(self, p):
        self.p = p

    def build_model(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def batch_source(self, train: LabelledImages, seed: int, rank: int, world: int):
        raise NotImplementedError

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(total optimizer steps, warm-up steps)."""
        raise NotImplementedError

    def real_batch(self) -> int:
        """Real images per optimizer step on one process."""
        raise NotImplementedError

    def steps(self, n_images: int) -> int:
        """Optimizer steps of a run on `n_images` real images, sized from the count alone (what
        `rgsyn estimate` counts): `schedule` of n_images // `real_batch` batches per epoch, at least 1.
        On one process that is the exact count of `RandomBatches`, and an upper bound of `PKSampler`'s
        (equal when every identity has a multiple of K images and P divides their number)."""
        return self.schedule(max(1, n_images // self.real_batch()))[0]

    def augment(self, images: torch.Tensor, gen: torch.Generator, erasing: nn.Module | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return net(x, y)

    def criterion(self, num_classes: int, dev: torch.device) -> Callable[[Any, torch.Tensor], tuple]:
        """`loss_fn(outputs, labels) -> (loss, {part name: value})`, outside autocast."""
        raise NotImplementedError

    def train_info(self, source) -> dict:
        """Extra entries of the training info (from the batch source)."""
        return {}


class Engine:
    """Set-up of one training run (seeding, model, optimizer, lr schedule, devices); `run` trains it.

    The order of the set-up is part of the results: the model is built right after
    `torch.manual_seed(seed)`, so every variant of a seed starts from the same weights."""

    def __init__(self, task: Task, train: LabelledImages, num_classes: int, seed: int, *,
                 synthetic: LabelledImages | None = None, selector=None, random_erasing: bool = False,
                 device: str = "cpu", precision: str = "fp32"):
        from torchvision.transforms import RandomErasing

        self.task, self.train, self.seed, self.selector = task, train, seed, selector
        torch.manual_seed(seed)
        self.acc = distributed.make_accelerator(device)
        self.dev = self.acc.device
        self.prec = Precision(precision, self.dev)   # compute.precision: autocast of the forward
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        net = task.build_model(num_classes)
        if self.rank > 0:   # random erasing draws differ by rank; rank 0 keeps the single-process stream
            torch.manual_seed(distributed.rank_seed(seed, self.rank))
        self.erasing = RandomErasing(p=task.p.random_erasing_p, value=0) if random_erasing else None
        opt = task.optimizer(net)
        self.source = task.batch_source(train, seed, self.rank, self.world)
        self.total, warmup = task.schedule(len(self.source))
        if self.total > 0 and len(self.source) == 0:
            raise DataError(f"{task.name} training: {len(train)} images make no full batch")
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(self.total, warmup))
        self.net, self.opt = self.acc.prepare(net, opt)
        self.loss_fn = task.criterion(num_classes, self.dev)
        self.mix = loop.SyntheticMix.build(synthetic, task.p, selector)
        self.ema = loop.weight_average(self.acc.unwrap_model(self.net), task.p.ema)
        # common-random-numbers fingerprints: equal across the variants of one seed (tests check it)
        self.init_sha, self.real_sha = hashlib.sha256(), hashlib.sha256()
        loop.hash_update(self.init_sha, *self.net.state_dict().values())

    def step(self, idx: torch.Tensor, epoch: int, streams: loop.EpochStreams, step: int) -> dict:
        """One optimizer step on the real batch `idx` (plus synthetic samples); returns its record."""
        threads.rebalance()
        augment = self.task.augment
        x = augment(self.train.images[idx], streams.real_aug, self.erasing).to(self.dev)
        y = self.train.labels[idx].to(self.dev)
        loop.hash_update(self.real_sha, idx, x)
        used = 0
        with self.prec.autocast():
            if self.mix is not None:
                x, y, used = self.mix(self.acc.unwrap_model(self.net), x, y, streams,
                                      lambda im, g: augment(im, g, self.erasing), step, self.dev)
            out = self.task.forward(self.net, x, y)
        loss, parts = self.loss_fn(out, y)
        # the step's record is the mean over the ranks, so every rank sees the same (and stops together)
        mean = distributed.reduce_mean(torch.stack([loss.detach(), *(v.detach() for v in parts.values()),
                                                    torch.tensor(float(used), device=loss.device)]))
        if not torch.isfinite(mean[0]):
            raise TrainingDiverged(f"{self.task.name} training: loss is {mean[0].item()} at step {step}")
        self.opt.zero_grad(set_to_none=True)
        self.prec.backward(loss, self.acc)
        self.prec.step(self.opt, accelerator=self.acc)
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.acc.unwrap_model(self.net))
        distributed.rank_log("train", {"step": step, "real": idx.tolist()})
        return {"step": step, "epoch": epoch, "loss": mean[0].item(),
                **{k: mean[1 + i].item() for i, k in enumerate(parts)},
                "lr": self.sched.get_last_lr()[0], "n_synthetic": round(mean[-1].item() * self.world)}

    def run(self, checkpointer=None, on_step: Callable[[int, dict], None] | None = None, progress: bool = True,
            stop_after_epoch: int | None = None) -> tuple[nn.Module, dict]:
        """Train `self.total` steps, epoch by epoch, resuming from `checkpointer` (a
        `rgsyn.checkpoint.Checkpointer`) and saving there at the end of an epoch when one is due.
        `stop_after_epoch` stops early (tests use it to simulate a kill). Returns (model in eval mode, info)."""
        from tqdm import tqdm

        per_epoch = len(self.source)
        start_epoch, history, n_syn_used = loop.restore(checkpointer, self.net, self.opt, self.sched,
                                                        self.selector, per_epoch, self.ema)
        t0 = time.perf_counter()
        self.net.train()
        step, epoch = start_epoch * per_epoch, start_epoch
        bar = tqdm(total=self.total, initial=step, desc=f"{self.task.name} train",
                   disable=not progress or self.rank > 0, leave=False)
        while step < self.total:
            streams = loop.EpochStreams(self.seed, epoch, self.rank)
            for idx in self.source.epoch(epoch)[:self.total - step]:
                rec = self.step(idx, epoch, streams, step)
                n_syn_used += rec["n_synthetic"]
                history.append(rec)
                if on_step is not None:
                    on_step(step, rec)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
            stopping = stop_after_epoch is not None and epoch + 1 >= stop_after_epoch
            loop.save(checkpointer, epoch, self.net, self.opt, self.sched, self.selector, history, n_syn_used,
                      force=stopping, ema=self.ema)
            if stopping:
                break
            epoch += 1
        bar.close()
        return self._finish(t0, history, n_syn_used, step)

    def _finish(self, t0: float, history: list, n_syn_used: int, step: int) -> tuple[nn.Module, dict]:
        net = self.acc.unwrap_model(self.net) if self.ema is None else self.ema.module
        net.eval()
        info = {"train_seconds": time.perf_counter() - t0, "history": history, "n_real": len(self.train),
                "n_synthetic_used": n_syn_used, "steps": step, "completed": step >= self.total,
                "init_sha256": self.init_sha.hexdigest(), "real_stream_sha256": self.real_sha.hexdigest(),
                **self.task.train_info(self.source)}
        if distributed.rank_log_enabled():
            distributed.rank_log("train", {"final_params": distributed.param_digest(net.parameters())})
        return net, info


def train(task: Task, train_set: LabelledImages, num_classes: int, seed: int, *, checkpointer=None,
          on_step: Callable[[int, dict], None] | None = None, progress: bool = True,
          stop_after_epoch: int | None = None, **setup) -> tuple[nn.Module, dict]:
    """Train a model of `task` on `train_set` (plus `synthetic`, see `Engine`). Returns (model in eval mode, info)."""
    engine = Engine(task, train_set, num_classes, seed, **setup)
    return engine.run(checkpointer, on_step, progress, stop_after_epoch)
