"""Person re-ID training and evaluation (PAPER.md, "Downstream protocols").

Model: a torchreid backbone (resnet50, osnet_x1_0, osnet_x0_25, resnet18), timm's ViT-B/16 at
the profile's input size, or the toy profile's `small_resnet` (rgsyn.downstream.small_resnet), with an
identity classifier. Loss: identity cross-entropy with label
smoothing (torchreid `CrossEntropyLoss`) + batch-hard triplet (torchreid `TripletLoss`) on PK
batches. Optimiser: Adam (weight decay from params) with linear warmup, then cosine decay.
Random erasing (torchvision `RandomErasing`) is the `real_re` switch.

Every step takes a PK batch of real images; when a synthetic set is given, the step also draws
`selector.n_candidates(syn_per_batch)` synthetic candidates, augments them like the real images,
and trains on the ones the selector keeps (see `rgsyn.selection`).

Evaluation: features of the eval-mode model, L2-normalised, squared-Euclidean (= 2 - 2 cos)
distances, `rgsyn.metrics.evaluate_reid` (Market-1501 protocol).
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn import distributed, threads
from rgsyn.downstream import loop
from rgsyn.downstream.datasets import (IMAGENET_MEAN, IMAGENET_STD, LabelledImages, PKSampler, channels_last,
                                      normalise)
from rgsyn.errors import CheckpointError, TrainingDiverged
from rgsyn.precision import Precision

TORCHREID_BACKBONES = ("resnet50", "osnet_x1_0", "osnet_x0_25", "resnet18")


class _TimmReid(nn.Module):
    """timm ViT backbone + BN neck + classifier, with torchreid's train/eval output convention."""

    def __init__(self, name: str, num_classes: int, height: int, width: int):
        super().__init__()
        import timm

        self.backbone = timm.create_model(name, pretrained=False, num_classes=0, img_size=(height, width))
        dim = self.backbone.num_features
        self.bnneck = nn.BatchNorm1d(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.feature_dim = dim

    def forward(self, x):
        f = self.backbone(x)
        if not self.training:
            return f
        return self.classifier(self.bnneck(f)), f


class ReidNet(nn.Module):
    """`net(images, labels) -> identity logits` (the selector's interface); `net(images,
    with_features=True)` gives (logits, features) for the losses, through `forward` so that a DDP
    wrapper sees the call and synchronises the gradients; `features` the eval embedding."""

    selection_head = "backbone.classifier"

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.to(memory_format=torch.channels_last)   # see datasets.channels_last

    def forward(self, images, labels=None, with_features: bool = False):
        images = channels_last(images)
        if self.training:
            out = self.backbone(images)
            return (out[0], out[1]) if with_features else out[0]
        return self.backbone.classifier(self.backbone(images))

    @torch.no_grad()
    def features(self, images):
        was = self.training
        self.eval()
        f = self.backbone(channels_last(images))
        self.train(was)
        return f


def build_reid_model(backbone: str, num_classes: int, height: int, width: int, pretrained: str = "") -> ReidNet:
    if pretrained and backbone == "small_resnet":
        raise CheckpointError("reid.pretrained: the small_resnet backbone has no ImageNet weights; "
                              "set reid.pretrained to '' or pick resnet50, resnet18, osnet or vit_b16")
    if backbone in TORCHREID_BACKBONES:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchreid.reid.models import build_model

            net = build_model(backbone, num_classes=num_classes, loss="triplet", pretrained=False)
    elif backbone == "small_resnet":
        from rgsyn.downstream.small_resnet import SmallReidResNet

        net = SmallReidResNet(num_classes)
    elif backbone == "vit_b16":
        net = _TimmReid("vit_base_patch16_224", num_classes, height, width)
    else:
        raise CheckpointError(f"reid.backbone: unknown backbone {backbone!r}")
    if pretrained:
        from rgsyn.downstream import pretrained as pt

        if isinstance(net, _TimmReid):
            pt.load_pretrained(net.backbone, pretrained, pt.TIMM_VIT, "reid.pretrained")
        else:
            fmt = pt.TORCHREID_OSNET if backbone.startswith("osnet") else pt.TORCHVISION_RESNET_REID
            pt.load_pretrained(net, pretrained, fmt, "reid.pretrained")
    return ReidNet(net)


def augment(images: torch.Tensor, gen: torch.Generator, erasing: nn.Module | None,
            mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 batch -> normalised float: random flip, pad-and-crop (pad = H/25), optional erasing.

    Flip and crop offsets come from `gen`; RandomErasing draws from torch's global RNG (seeded)."""
    x = images.float() / 255.0
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1).to(x.device), x.flip(3), x)
    pad = max(1, round(h / 25))
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
    x = torch.stack([xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])
    x = normalise(x, mean, std)
    if erasing is not None:
        x = torch.stack([erasing(xi) for xi in x])
    return x


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return 0.1 + 0.9 * step / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def device_of(params_device: str) -> tuple[torch.device, "object"]:
    """(device, accelerator): accelerate places the model; cpu when asked or no CUDA."""
    from accelerate import Accelerator

    cpu = params_device == "cpu" or not torch.cuda.is_available()
    acc = Accelerator(cpu=cpu)
    return acc.device, acc


def train_reid(train: LabelledImages, num_classes: int, p, seed: int, *, synthetic: LabelledImages | None = None,
               selector=None, random_erasing: bool = False, device: str = "cpu", checkpointer=None,
               on_step: Callable[[int, dict], None] | None = None, progress: bool = True,
               stop_after_epoch: int | None = None, precision: str = "fp32") -> tuple[ReidNet, dict]:
    """Train a ReID model with params `p` (a `ReidParams`). Returns (model in eval mode, info).

    Resumes from `checkpointer` (a `rgsyn.checkpoint.Checkpointer`) and saves there at the end of
    an epoch when one is due (`loop.checkpoint_due`). `stop_after_epoch` stops early (tests use it to simulate a kill).
    """
    from torchreid.reid.losses import CrossEntropyLoss, TripletLoss
    from torchvision.transforms import RandomErasing
    from tqdm import tqdm

    torch.manual_seed(seed)
    dev, acc = device_of(device)
    prec = Precision(precision, dev)   # compute.precision: autocast of the forward (rgsyn/precision.py)
    rank, world = acc.process_index, acc.num_processes
    net = build_reid_model(p.backbone, num_classes, p.height, p.width, p.pretrained)
    if rank > 0:   # random erasing draws differ by rank; rank 0 keeps the single-process stream
        torch.manual_seed(distributed.rank_seed(seed, rank))
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sampler = PKSampler(train.labels, p.P, p.K, seed, rank, world)
    steps_per_epoch = len(sampler)   # the same in every epoch (PKSampler)
    total = steps_per_epoch * p.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, steps_per_epoch * p.warmup_epochs))
    net, opt = acc.prepare(net, opt)
    ce = CrossEntropyLoss(num_classes, eps=p.label_smoothing, use_gpu=dev.type == "cuda",
                          label_smooth=p.label_smoothing > 0)
    tri = TripletLoss(margin=p.triplet_margin)
    erasing = RandomErasing(p=p.random_erasing_p, value=0) if random_erasing else None
    use_syn = synthetic is not None and len(synthetic) > 0 and p.syn_per_batch > 0
    n_cand = selector.n_candidates(p.syn_per_batch) if (use_syn and selector is not None) else p.syn_per_batch

    draws = loop.CandidateDraws(synthetic.labels, p.syn_draw) if use_syn else None
    # common-random-numbers fingerprints: equal across the variants of one seed (tests check it)
    init_sha = hashlib.sha256()
    loop.hash_update(init_sha, *net.state_dict().values())
    real_sha = hashlib.sha256()

    start_epoch, history, n_syn_used = loop.restore(checkpointer, net, opt, sched, selector, steps_per_epoch)

    t0 = time.perf_counter()
    net.train()
    step = start_epoch * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc="reid train", disable=not progress or rank > 0, leave=False)
    for epoch in range(start_epoch, p.epochs):
        streams = loop.EpochStreams(seed, epoch, rank)
        gen = streams.real_aug
        for idx in sampler.epoch(epoch):
            threads.rebalance()
            x = augment(train.images[idx], gen, erasing).to(dev)
            y = train.labels[idx].to(dev)
            loop.hash_update(real_sha, idx, x)
            used = 0
            with prec.autocast():
                if use_syn:
                    x, y, used = loop.mix_synthetic(acc.unwrap_model(net), x, y, synthetic, n_cand, draws, streams,
                                                    lambda im, g: augment(im, g, erasing), selector, step, dev)
                logits, feats = net(x, with_features=True)
            logits, feats = logits.float(), feats.float()
            loss_id = ce(logits, y)
            loss_tri = tri(F.normalize(feats, dim=1) if p.triplet_features == "normalised" else feats, y)
            loss = loss_id + loss_tri
            # the step's record is the mean over the ranks, so every rank sees the same (and stops together)
            mean = distributed.reduce_mean(torch.stack([loss.detach(), loss_id.detach(), loss_tri.detach(),
                                                        torch.tensor(float(used), device=loss.device)]))
            if not torch.isfinite(mean[0]):
                raise TrainingDiverged(f"reid training: loss is {mean[0].item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            prec.backward(loss, acc)
            prec.step(opt, accelerator=acc)
            sched.step()
            used = round(mean[3].item() * world)
            n_syn_used += used
            rec = {"step": step, "epoch": epoch, "loss": mean[0].item(), "loss_id": mean[1].item(),
                   "loss_triplet": mean[2].item(), "lr": sched.get_last_lr()[0], "n_synthetic": used}
            distributed.rank_log("train", {"step": step, "real": idx.tolist()})
            history.append(rec)
            if on_step is not None:
                on_step(step, rec)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
        stopping = stop_after_epoch is not None and epoch + 1 >= stop_after_epoch
        loop.save(checkpointer, epoch, net, opt, sched, selector, history, n_syn_used, force=stopping)
        if stopping:
            break
    bar.close()
    net.eval()
    info = {"train_seconds": time.perf_counter() - t0, "history": history, "n_real": len(train),
            "n_synthetic_used": n_syn_used, "steps": step, "completed": step >= total,
            "init_sha256": init_sha.hexdigest(), "real_stream_sha256": real_sha.hexdigest(), "n_ids_short": sampler.n_short}
    if distributed.rank_log_enabled():
        distributed.rank_log("train", {"final_params": distributed.param_digest(acc.unwrap_model(net).parameters())})
    return acc.unwrap_model(net), info


@torch.no_grad()
def extract_features(net: ReidNet, images: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu",
                     mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    net.eval()
    dev = next(net.parameters()).device
    out = [net.features(normalise(images[i:i + batch_size], mean, std).to(dev)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return F.normalize(torch.cat(out), dim=1)


def evaluate_reid_model(net: ReidNet, query: LabelledImages, gallery: LabelledImages,
                        batch_size: int = 256) -> dict:
    """{"mAP","rank1","rank5","rank10"} on a query/gallery split (labels = the files' pids)."""
    from rgsyn.metrics import evaluate_reid

    qf = extract_features(net, query.images, batch_size)
    gf = extract_features(net, gallery.images, batch_size)
    dist = (2 - 2 * qf @ gf.T).clamp(min=0)
    r = evaluate_reid(dist, query.pids, gallery.pids, query.camids, gallery.camids, max_rank=50)
    cmc = r["cmc"]
    at = lambda k: float(cmc[min(k, len(cmc)) - 1])  # noqa: E731
    return {"mAP": r["mAP"], "rank1": at(1), "rank5": at(5), "rank10": at(10)}
