"""The denoising-loss training loop shared by the `prior` and `coldstart` stages (`train_denoising`;
its set-up and one step are `DenoisingTrainer`, whose `step` `rgsyn preflight` times alone).

    loss = || eps - eps_theta(sqrt(a_t) z + sqrt(1 - a_t) eps, t, y) ||^2     (DDPM, Ho et al. 2020)

(or the v target sqrt(a_t) eps - sqrt(1 - a_t) z of Salimans & Ho 2022 when the scheduler's
prediction_type is "v_prediction", as in the toy pixel-space prior: a small pixel model predicts
the smooth v far better than white noise eps),

with z = autoencoder.encode(image), t ~ U{0..T-1}, and y replaced by the null label with
probability `label_dropout` (classifier-free guidance training, Ho & Salimans 2022).

Latent cache: the VAE encoder uses the posterior mean, so z is a fixed function of the image and
`encode_latents` computes it once for every training image before the loop (and once for its
mirror image when the horizontal flip does not commute with the autoencoder, as for the SD VAE);
a step then indexes the cache instead of running the VAE encoder on its batch. In pixel space
(toy) the cache is the images scaled to [-1, 1], flipped on the fly, so the batches are bit-identical
to encoding per step.

Precision (`precision`, rgsyn/precision.py): the forward passes, the cache's encoder included, run
under autocast; the loss is taken in fp32; fp16 scales it.

Runs through `accelerate.Accelerator`, so `accelerate launch rgsyn ...` trains on several GPUs
unchanged; the single-process default needs no launcher. Every batch (indices, flips, noise,
timesteps, label drops) is a function of (seed, step, process index) alone, so a resumed run
continues exactly where the killed one stopped. The trainable tensors and the optimizer state are
checkpointed every `checkpoint_every` steps through `rgsyn.checkpoint.Checkpointer` (outside the DVC
outputs, atomic). A non-finite loss raises `TrainingDiverged` naming the step.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rgsyn import distributed, threads
from rgsyn.distributed import make_accelerator
from rgsyn.errors import TrainingDiverged
from rgsyn.generator.datasets import ImageSet
from rgsyn.precision import Precision


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def noise_scheduler_for(scheduler):
    """The DDPM forward process matching the bundle's (DDIM) scheduler: same betas."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config)


def _draw(data: ImageSet, batch_size: int, g: torch.Generator, hflip: bool):
    """(indices, flip mask or None, labels) of one batch; the draws of `_batch`, in its order."""
    idx = torch.randint(len(data), (batch_size,), generator=g)
    flip = torch.rand(batch_size, generator=g) < 0.5 if hflip else None
    return idx, flip, data.labels[idx]


def _batch(data: ImageSet, batch_size: int, g: torch.Generator, hflip: bool):
    idx, flip, y = _draw(data, batch_size, g, hflip)
    x = data.images[idx].float() / 127.5 - 1.0
    if flip is not None:
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x, y


class LatentCache:
    """z = autoencoder.encode(image / 127.5 - 1) of every training image, computed once.

    `flipped` holds the latents of the mirrored images, or is None when flipping commutes with
    the autoencoder (`autoencoder.flip_commutes`, true in pixel space); then `batch` mirrors z."""

    def __init__(self, latents: torch.Tensor, flipped: torch.Tensor | None):
        self.latents = latents
        self.flipped = flipped

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def batch(self, idx: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
        z = self.latents[idx]
        if flip is None:
            return z
        zf = self.flipped[idx] if self.flipped is not None else z.flip(-1)
        return torch.where(flip[:, None, None, None].to(z.device), zf, z)


@torch.no_grad()
def encode_latents(data: ImageSet, autoencoder, device, precision: Precision | None = None,
                   hflip: bool = True, batch_size: int = 64) -> LatentCache:
    """Encode every image of `data` once (fp32 latents on `device`)."""
    prec = precision or Precision("fp32", device)
    commutes = bool(getattr(autoencoder, "flip_commutes", False))

    def encode_all(flip: bool) -> torch.Tensor:
        out = []
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(device).float() / 127.5 - 1.0
            if flip:
                x = x.flip(-1)
            with prec.autocast():
                out.append(autoencoder.encode(x).float())
        return torch.cat(out)

    return LatentCache(encode_all(False), encode_all(True) if hflip and not commutes else None)


class _NoisyBatches:
    """The batches of the denoising loss: (z_t, t, y, target) of a step from its generator `g`.

    Draw order from `g` (fixed, so a resumed run continues exactly): image indices and flips, the
    noise, the timesteps, the label drops."""

    def __init__(self, data: ImageSet, cache: LatentCache | None, autoencoder, noise_sched, device, prec: Precision,
                 batch_size: int, hflip: bool, label_dropout: float, null_label: int):
        self.data, self.cache, self.autoencoder, self.noise_sched = data, cache, autoencoder, noise_sched
        self.device, self.prec, self.batch_size = device, prec, batch_size
        self.hflip, self.label_dropout, self.null_label = hflip, label_dropout, null_label
        self.T = int(noise_sched.config.num_train_timesteps)
        self.prediction = noise_sched.config.prediction_type

    def draw(self, g: torch.Generator):
        dev, b = self.device, self.batch_size
        if self.cache is not None:
            idx, flip, y = _draw(self.data, b, g, self.hflip)
            z = self.cache.batch(idx.to(dev), flip)
        else:
            x, y = _batch(self.data, b, g, self.hflip)
            with torch.no_grad(), self.prec.autocast():
                z = self.autoencoder.encode(x.to(dev)).float()
        noise = torch.randn(z.shape, generator=g).to(dev)
        t = torch.randint(0, self.T, (b,), generator=g).to(dev)
        drop = (torch.rand(b, generator=g) < self.label_dropout).to(dev)
        y = torch.where(drop, torch.full_like(y.to(dev), self.null_label), y.to(dev))
        z_t = self.noise_sched.add_noise(z, noise, t)
        if self.prediction == "v_prediction":
            target = self.noise_sched.get_velocity(z, noise, t)
        elif self.prediction == "sample":
            target = z
        else:
            target = noise
        return z_t, t, y, target


def _restore(checkpointer, transformer, optimizer, sched, ema, trainable_names: list[str]):
    """(step to start from, EMA tensors) after loading the checkpoint, if there is one, into the
    trainable tensors, the optimizer, the lr schedule and the EMA."""
    state = checkpointer.load() if checkpointer is not None else None
    if state is None:
        return 0, ema
    params_by_name = dict(transformer.named_parameters())
    with torch.no_grad():
        for n, t in state["trainable"].items():
            params_by_name[n].copy_(t)
    optimizer.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["lr_scheduler"])
    if ema is not None:
        ema = [state["ema"][n].clone() for n in trainable_names]
    return int(state["step"]), ema


def _checkpoint_state(accelerator, model, optimizer, sched, ema, trainable_names: list[str], step: int) -> dict:
    pb = dict(accelerator.unwrap_model(model).named_parameters())
    return {"step": step,
            "trainable": {n: pb[n].detach().cpu().clone() for n in trainable_names},
            "optimizer": optimizer.state_dict() if not hasattr(optimizer, "optimizer")
            else optimizer.optimizer.state_dict(),
            "lr_scheduler": sched.state_dict(),
            "ema": {n: e.cpu() for n, e in zip(trainable_names, ema)} if ema is not None else {}}


class DenoisingTrainer:
    """The set-up of a denoising run (optimizer, warm-up, EMA, resume, devices, latent cache) and
    its one-step entry point `step`; `train_denoising` loops it, `rgsyn preflight` times one step.
    Arguments as `train_denoising`."""

    def __init__(self, *, transformer, trainable, data: ImageSet, autoencoder, scheduler, steps: int,
                 batch_size: int, lr: float, seed: int, null_label: int, checkpointer=None, device: str = "auto",
                 label_dropout: float = 0.1, hflip: bool = True, warmup: int | None = None,
                 max_grad_norm: float = 1.0, desc: str = "denoise", ema_decay: float = 0.0,
                 precision: str = "fp32", latent_cache: bool = True):
        if len(data) == 0:
            raise ValueError("no training images")
        self.accelerator = accelerator = make_accelerator(device)
        self.trainable, self.seed, self.desc, self.max_grad_norm = trainable, seed, desc, max_grad_norm
        self.ema_decay, self.checkpointer = ema_decay, checkpointer
        names = {id(p): n for n, p in transformer.named_parameters()}
        self.trainable_names = [names[id(p)] for p in trainable]
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
        warmup = min(100, max(1, steps // 10)) if warmup is None else warmup
        self.sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)))
        ema = [p.detach().clone() for p in trainable] if ema_decay > 0 else None
        self.start, ema = _restore(checkpointer, transformer, optimizer, self.sched, ema, self.trainable_names)
        self.model, self.optimizer = accelerator.prepare(transformer, optimizer)
        self.ema = [e.to(p.device) for e, p in zip(ema, trainable)] if ema is not None else None
        autoencoder.to(accelerator.device)
        self.prec = Precision(precision, accelerator.device)
        cache = encode_latents(data, autoencoder, accelerator.device, self.prec, hflip) if latent_cache else None
        self.batches = _NoisyBatches(data, cache, autoencoder, noise_scheduler_for(scheduler), accelerator.device,
                                     self.prec, batch_size, hflip, label_dropout, null_label)
        self.channels = int(transformer.config.in_channels)
        self.model.train()

    def step(self, step: int) -> tuple[float, float]:
        """One optimizer step on the batch of (seed, step, process index); returns (the loss averaged
        over the ranks, the gradient norm)."""
        accelerator, prec = self.accelerator, self.prec
        threads.rebalance()   # the fair share of the cores, when other stages start or end
        batch_seed = self.seed * 1_000_003 + step * 97 + accelerator.process_index
        z_t, t, y, target = self.batches.draw(torch.Generator().manual_seed(batch_seed))
        with prec.autocast():
            pred = self.model(z_t, timestep=t, class_labels=y).sample[:, :self.channels]
        loss = F.mse_loss(pred.float(), target)
        mean_loss = distributed.reduce_mean(loss.detach())   # the same on every rank: all stop together
        if not torch.isfinite(mean_loss):
            raise TrainingDiverged(f"{self.desc}: the denoising loss is {mean_loss.item()} at step {step}; stopping "
                                   "(lower the lr or check the data)")
        prec.backward(loss, accelerator)
        grad_norm = prec.step(self.optimizer, self.trainable, self.max_grad_norm, accelerator)
        self.sched.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach() for p in self.trainable],
                                     1 - min(self.ema_decay, (1 + step) / (10 + step)))
        distributed.rank_log(self.desc, {"step": step, "batch_seed": batch_seed})
        return mean_loss.item(), float(grad_norm)

    def save(self, step: int) -> None:
        self.checkpointer.save(_checkpoint_state(self.accelerator, self.model, self.optimizer, self.sched, self.ema,
                                                 self.trainable_names, step))

    def finish(self) -> None:
        """The EMA (if any) into the trainable parameters; the model to eval mode."""
        if self.ema is not None:
            with torch.no_grad():
                for p, e in zip(self.trainable, self.ema):
                    p.copy_(e)
        self.model.eval()


def train_denoising(*, transformer, trainable: list[torch.nn.Parameter], data: ImageSet, autoencoder,
                    scheduler, steps: int, batch_size: int, lr: float, seed: int, null_label: int,
                    checkpointer, checkpoint_every: int, device: str = "auto", run=None,
                    label_dropout: float = 0.1, hflip: bool = True, warmup: int | None = None,
                    max_grad_norm: float = 1.0, log_every: int = 10, desc: str = "denoise",
                    ema_decay: float = 0.0, precision: str = "fp32", latent_cache: bool = True) -> dict:
    """Train `trainable` (a subset of `transformer`'s parameters) in place; returns summary stats.

    With `ema_decay` > 0 the trainable parameters are set at the end to their exponential moving
    average (decay min(ema_decay, (1 + step) / (10 + step))). Off by default: in the short toy runs
    (a few hundred steps at a constant lr) the weights still move fast, and the average of
    points that far apart is a worse denoiser than the last iterate; a toy prior sampled from
    EMA(0.995) weights gave per-patch colour noise where the last iterate gave uniform backgrounds
    with the class's shape. Worth it only for runs much longer than 1 / (1 - ema_decay) steps.
    """
    tr = DenoisingTrainer(transformer=transformer, trainable=trainable, data=data, autoencoder=autoencoder,
                          scheduler=scheduler, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          null_label=null_label, checkpointer=checkpointer, device=device,
                          label_dropout=label_dropout, hflip=hflip, warmup=warmup, max_grad_norm=max_grad_norm,
                          desc=desc, ema_decay=ema_decay, precision=precision, latent_cache=latent_cache)
    start, main = tr.start, tr.accelerator.is_main_process
    losses, t0 = [], time.time()
    bar = tqdm(range(start, steps), desc=desc, initial=start, total=steps, leave=False, disable=not main)
    for step in bar:
        loss, grad_norm = tr.step(step)
        losses.append(loss)
        if run is not None and (step % log_every == 0 or step == steps - 1):
            run.log_metrics({f"{desc}/loss": loss, f"{desc}/grad_norm": grad_norm,
                             f"{desc}/lr": tr.sched.get_last_lr()[0]}, step=step)
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps and checkpointer is not None and main:
            tr.save(step + 1)
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    tr.finish()
    tail = losses[-max(1, len(losses) // 10):] if losses else [math.nan]
    return {"steps": steps, "resumed_from": start, "seconds": time.time() - t0,
            "final_loss": float(sum(tail) / len(tail)) if losses else float("nan")}
