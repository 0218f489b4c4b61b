"""Face recognition training (CosFace) and verification / RFW evaluation (PAPER.md).

Model: a ResNet backbone producing an `embedding_dim` embedding (torchvision resnet50/resnet18 with
a 3x3 stride-1 stem for small inputs is NOT used; the paper profile feeds 112x112 to the standard
stem) or, for the toy profile, `SmallResNet` (three BasicBlock stages). Head: CosFace
(Wang et al., CVPR 2018): logits = s * (cos(theta_y) - m) for the true class, s * cos(theta_j) else,
with s=64, m=0.35 by default. Optimiser: SGD with momentum, cosine decay.

Alignment (`align: mtcnn`, `rgsyn.data.align`): the insightface 5-point similarity alignment to the
112x112 ArcFace template, from MTCNN landmarks or the release's own (RFW `_lmk.txt`); `.bin` sets
and images already 112x112 are used as they are; a face MTCNN misses is centre-cropped and counted
(`n_align_fallback`), never dropped.

Evaluation: embeddings (optionally the sum of the image's and its mirror's embeddings, `flip_eval`)
on the pairs of each verification set -> `rgsyn.metrics.evaluate_verification` (10 folds);
RFW per group -> accuracy per group + `rgsyn.metrics.bias_stats`.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn import distributed, threads
from rgsyn.downstream import loop
from rgsyn.downstream.datasets import (FACE_MEAN, FACE_STD, LabelledImages, channels_last, load_images, normalise,
                                      random_batches)
from rgsyn.downstream.small_resnet import Block
from rgsyn.errors import CheckpointError, DataError, TrainingDiverged
from rgsyn.precision import Precision


class CosFaceHead(nn.Module):
    """CosFace large-margin cosine logits; without labels, the plain scaled cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.s, self.m = s, m

    def forward(self, emb, labels=None):
        cos = F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))
        if labels is None:
            return self.s * cos
        margin = F.one_hot(labels, cos.shape[1]).to(cos.dtype) * self.m
        return self.s * (cos - margin)


class SmallResNet(nn.Module):
    """A 3-stage ResNet for tiny faces: (B,3,S,S) -> (B, embedding_dim) (BN-FC-BN embedding)."""

    def __init__(self, embedding_dim: int, size: int, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width, width, 1)
        self.layer2 = Block(width, 2 * width, 2)
        self.layer3 = Block(2 * width, 4 * width, 2)
        self.bn = nn.BatchNorm2d(4 * width)
        side = math.ceil(math.ceil(size / 2) / 2)
        self.fc = nn.Linear(4 * width * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)

    def forward(self, x):
        x = self.bn(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.features(self.fc(torch.flatten(x, 1)))


class _TorchvisionEmbedding(nn.Module):
    def __init__(self, name: str, embedding_dim: int):
        super().__init__()
        import torchvision

        self.net = getattr(torchvision.models, name)(weights=None, num_classes=embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)

    def forward(self, x):
        return self.features(self.net(x))


class FaceNet(nn.Module):
    """`net(images, labels) -> CosFace margin logits` (the selector's interface); `embed(images)`."""

    selection_head = "head"

    def __init__(self, backbone: nn.Module, head: CosFaceHead):
        super().__init__()
        # weights and inputs in channels-last layout (rgsyn.downstream.datasets.channels_last)
        self.backbone, self.head = backbone.to(memory_format=torch.channels_last), head

    def forward(self, images, labels=None):
        return self.head(self.backbone(channels_last(images)), labels)

    @torch.no_grad()
    def embed(self, images):
        was = self.training
        self.eval()
        e = self.backbone(channels_last(images))
        self.train(was)
        return e


def build_face_backbone(backbone: str, embedding_dim: int, size: int, width: int = 16) -> nn.Module:
    if backbone == "small_resnet":
        return SmallResNet(embedding_dim, size, width)
    if backbone in ("resnet50", "resnet18"):
        return _TorchvisionEmbedding(backbone, embedding_dim)
    raise CheckpointError(f"face.backbone: unknown backbone {backbone!r}")


def build_face_model(p, num_classes: int, pretrained: str | None = None) -> FaceNet:
    """`pretrained`: a local ImageNet weights file (torchvision format) for the ResNet backbones;
    None = `p.pretrained`, "" = random init."""
    backbone = build_face_backbone(p.backbone, p.embedding_dim, p.size, p.width)
    pretrained = p.pretrained if pretrained is None else pretrained
    if pretrained:
        from rgsyn.downstream import pretrained as pt

        if not isinstance(backbone, _TorchvisionEmbedding):
            raise CheckpointError(f"face.pretrained: the {p.backbone} backbone has no ImageNet weights "
                                  "format; use resnet50/resnet18 or leave face.pretrained empty")
        pt.load_pretrained(backbone.net, pretrained, pt.TORCHVISION_RESNET_FACE, "face.pretrained")
    return FaceNet(backbone, CosFaceHead(p.embedding_dim, num_classes, p.cosface_s, p.cosface_m))


def augment(images: torch.Tensor, gen: torch.Generator, erasing: nn.Module | None = None) -> torch.Tensor:
    """uint8 batch -> normalised float: random flip (from `gen`), optional random erasing (torch's
    global RNG, seeded)."""
    x = images.float() / 255.0
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = normalise(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), FACE_MEAN, FACE_STD)
    if erasing is not None:
        x = torch.stack([erasing(xi) for xi in x])
    return x


def train_face(train: LabelledImages, num_classes: int, p, seed: int, *, synthetic: LabelledImages | None = None,
               selector=None, random_erasing: bool = False, device: str = "cpu", checkpointer=None,
               on_step: Callable[[int, dict], None] | None = None, progress: bool = True,
               stop_after_epoch: int | None = None, precision: str = "fp32") -> tuple[FaceNet, dict]:
    """Train a CosFace model with params `p` (a `FaceParams`); resumable like `train_reid`."""
    from torchvision.transforms import RandomErasing
    from tqdm import tqdm

    from rgsyn.downstream.reid import device_of

    torch.manual_seed(seed)
    dev, acc = device_of(device)
    prec = Precision(precision, dev)   # compute.precision: autocast of the forward (rgsyn/precision.py)
    rank, world = acc.process_index, acc.num_processes
    net = build_face_model(p, num_classes)
    if rank > 0:   # random erasing draws differ by rank; rank 0 keeps the single-process stream
        torch.manual_seed(distributed.rank_seed(seed, rank))
    erasing = RandomErasing(p=p.random_erasing_p, value=0) if random_erasing else None
    opt = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    bs = min(p.batch_size, len(train) // world)
    if bs < 1:
        raise DataError(f"face training: {len(train)} images cannot be split over {world} processes")
    steps_per_epoch = len(random_batches(len(train), bs, seed, 0, rank=rank, world=world))
    total = steps_per_epoch * p.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))))
    net, opt = acc.prepare(net, opt)
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
    bar = tqdm(total=total, initial=step, desc="face train", disable=not progress or rank > 0, leave=False)
    for epoch in range(start_epoch, p.epochs):
        streams = loop.EpochStreams(seed, epoch, rank)
        gen = streams.real_aug
        for idx in random_batches(len(train), bs, seed, epoch, rank=rank, world=world):
            threads.rebalance()
            x = augment(train.images[idx], gen, erasing).to(dev)
            y = train.labels[idx].to(dev)
            loop.hash_update(real_sha, idx, x)
            used = 0
            with prec.autocast():
                if use_syn:
                    x, y, used = loop.mix_synthetic(acc.unwrap_model(net), x, y, synthetic, n_cand, draws, streams,
                                                    lambda im, g: augment(im, g, erasing), selector, step, dev)
                logits = net(x, y)
            loss = F.cross_entropy(logits.float(), y)
            # the step's record is the mean over the ranks, so every rank sees the same (and stops together)
            mean = distributed.reduce_mean(torch.stack([loss.detach(), torch.tensor(float(used), device=loss.device)]))
            if not torch.isfinite(mean[0]):
                raise TrainingDiverged(f"face training: loss is {mean[0].item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            prec.backward(loss, acc)
            prec.step(opt, accelerator=acc)
            sched.step()
            used = round(mean[1].item() * world)
            n_syn_used += used
            rec = {"step": step, "epoch": epoch, "loss": mean[0].item(), "lr": sched.get_last_lr()[0],
                   "n_synthetic": used}
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
            "init_sha256": init_sha.hexdigest(), "real_stream_sha256": real_sha.hexdigest()}
    if distributed.rank_log_enabled():
        distributed.rank_log("train", {"final_params": distributed.param_digest(acc.unwrap_model(net).parameters())})
    return acc.unwrap_model(net), info


@torch.no_grad()
def embed_images(net: FaceNet, images: torch.Tensor, flip: bool = True, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised embeddings of uint8 images; with `flip`, of emb(x) + emb(mirror(x))."""
    net.eval()
    dev = next(net.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = normalise(images[i:i + batch_size], FACE_MEAN, FACE_STD).to(dev)
        e = net.embed(x)
        if flip:
            e = e + net.embed(x.flip(3))
        out.append(e.float().cpu())
    return F.normalize(torch.cat(out), dim=1)


def evaluate_pairs(net: FaceNet, pairset, size: int, flip: bool = True, transform=None) -> dict:
    """10-fold verification on a `PairSet` (paths are loaded once each)."""
    from rgsyn.metrics import evaluate_verification

    paths = sorted({q for a, b, _ in pairset.pairs for q in (a, b)})
    index = {q: i for i, q in enumerate(paths)}
    emb = embed_images(net, load_images(paths, (size, size), transform=transform), flip)
    ia = torch.tensor([index[a] for a, _, _ in pairset.pairs])
    ib = torch.tensor([index[b] for _, b, _ in pairset.pairs])
    same = [s for _, _, s in pairset.pairs]
    return evaluate_verification(emb[ia], emb[ib], same, n_folds=pairset.n_folds)


def evaluate_face_model(net: FaceNet, verification_root: str | Path, rfw_root: str | Path | None, p,
                        sets=None, transform=None) -> dict:
    """Run-metrics dict: per set accuracy/std/TAR@FAR=1e-3, their average, and the RFW sub-dict."""
    from rgsyn.data.faces import read_verification
    from rgsyn.data.rfw import read_rfw
    from rgsyn.metrics import bias_stats
    from rgsyn.paths import VERIFICATION_SETS

    from rgsyn.data.faces import is_bin_set
    from rgsyn.data.rfw import read_rfw_landmarks

    sets = sets or VERIFICATION_SETS
    out: dict = {}
    for name in sets:
        # insightface .bin sets are aligned already: never aligned again
        tf = None if is_bin_set(verification_root, name) else transform
        r = evaluate_pairs(net, read_verification(verification_root, name), p.size, p.flip_eval, tf)
        out[name] = r["accuracy"]
        out[f"{name}_std"] = r["std"]
        out[f"{name}_tar_at_far_1e-3"] = r["tar_at_far"][1e-3]
    out["avg"] = sum(out[s] for s in sets) / len(sets)
    if rfw_root is not None:
        acc = {}
        for g, ps in read_rfw(rfw_root).items():
            if transform is not None:   # the release's landmarks instead of detection, when shipped
                transform.add_landmarks(read_rfw_landmarks(rfw_root, g))
            acc[g] = evaluate_pairs(net, ps, p.size, p.flip_eval, transform)["accuracy"]
        out["rfw"] = bias_stats(acc)
    return out
