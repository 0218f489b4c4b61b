"""Face recognition training (CosFace) and verification / RFW evaluation (PAPER.md).

Model: a ResNet backbone producing an `embedding_dim` embedding (torchvision resnet50/resnet18 with
a 3x3 stride-1 stem for small inputs is NOT used; the paper profile feeds 112x112 to the standard
stem) or, for the toy profile, `SmallResNet` (three BasicBlock stages). Head: CosFace
(Wang et al., CVPR 2018): logits = s * (cos(theta_y) - m) for the true class, s * cos(theta_j) else,
with s=64, m=0.35 by default. Optimiser: SGD with momentum, cosine decay. `FaceTask` gives these
to the downstream engine (rgsyn.downstream.engine) and loads the `train` stage's data.

Alignment (`align: mtcnn`, `rgsyn.data.align`): the insightface 5-point similarity alignment to the
112x112 ArcFace template, from MTCNN landmarks or the release's own (RFW `_lmk.txt`); `.bin` sets
and images already 112x112 are used as they are; a face MTCNN misses is centre-cropped and counted
(`n_align_fallback`), never dropped.

Evaluation: embeddings (optionally the sum of the image's and its mirror's embeddings, `flip_eval`)
on the pairs of each verification set -> `rgsyn.metrics.evaluate_verification` (10 folds);
RFW per group -> accuracy per group + `rgsyn.metrics.bias_stats`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.downstream import engine
from rgsyn.downstream.datasets import (FACE_MEAN, FACE_STD, LabelledImages, RandomBatches, backbone_features,
                                      face_set, in_layout, layout_for, load_images, normalise)
from rgsyn.downstream.engine import Task, TaskData
from rgsyn.downstream.small_resnet import Block
from rgsyn.errors import CheckpointError


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
    """A 3-stage ResNet for tiny faces: (B,3,S,S) -> (B, embedding_dim) (BN-FC-BN embedding).
    `stem_stride` 2 halves the side before the first stage, so each stage runs on a quarter of the
    positions (toy faces at 32x32, one thread: 192 steps trained in 3.5 s instead of 9.9 s)."""

    def __init__(self, embedding_dim: int, size: int, width: int = 16, stem_stride: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = Block(width, width, 1)
        self.layer2 = Block(width, 2 * width, 2)
        self.layer3 = Block(2 * width, 4 * width, 2)
        self.bn = nn.BatchNorm2d(4 * width)
        side = math.ceil(math.ceil(math.ceil(size / stem_stride) / 2) / 2)
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
        # weights and inputs in channels-last layout where safe (rgsyn.downstream.datasets.layout_for)
        self.layout = layout_for(backbone)
        self.backbone, self.head = backbone.to(memory_format=self.layout), head

    def forward(self, images, labels=None):
        return self.head(self.backbone(in_layout(images, self.layout)), labels)

    def embed(self, images):
        return backbone_features(self, images)


def build_face_backbone(backbone: str, embedding_dim: int, size: int, width: int = 16,
                        stem_stride: int = 1) -> nn.Module:
    if backbone == "small_resnet":
        return SmallResNet(embedding_dim, size, width, stem_stride)
    if backbone in ("resnet50", "resnet18"):
        return _TorchvisionEmbedding(backbone, embedding_dim)
    raise CheckpointError(f"face.backbone: unknown backbone {backbone!r}")


def build_face_model(p, num_classes: int, pretrained: str | None = None) -> FaceNet:
    """`pretrained`: a local ImageNet weights file (torchvision format) for the ResNet backbones;
    None = `p.pretrained`, "" = random init."""
    backbone = build_face_backbone(p.backbone, p.embedding_dim, p.size, p.width, p.stem_stride)
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


class FaceTask(Task):
    """Face recognition for the engine (rgsyn.downstream.engine): `FaceNet` with CosFace, SGD with
    momentum, shuffled batches, cross-entropy on the margin logits, cosine over `steps` optimizer
    steps (0: `epochs` x batches per epoch; no warm-up)."""

    name = "face"

    def build_model(self, num_classes: int) -> FaceNet:
        return build_face_model(self.p, num_classes)

    def optimizer(self, net):
        p = self.p
        return torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)

    def batch_source(self, train: LabelledImages, seed: int, rank: int, world: int) -> RandomBatches:
        return RandomBatches(len(train), self.real_batch(), seed, rank, world)

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        return self.p.steps or steps_per_epoch * self.p.epochs, 0

    def real_batch(self) -> int:
        return self.p.batch_size

    def augment(self, images, gen, erasing):
        return augment(images, gen, erasing)

    def criterion(self, num_classes: int, dev):
        return lambda logits, y: (F.cross_entropy(logits.float(), y), {})

    # -- the `train` stage: data and evaluation
    def training_set(self, split, transform=None) -> tuple[LabelledImages, dict]:
        """(images of a `rgsyn.data.splits.TrainingSplit`, aligned by `transform` if given, its label map)."""
        lm = split.label_map()
        return face_set(split.records, self.p.size, lm, transform=transform), lm

    def load(self, params, benchmark: str, synthetic_root: Path | None) -> TaskData:
        """The CASIA-style training split and the synthetic identity folders at `synthetic_root`,
        aligned when `face.align` is mtcnn; evaluation reads the verification sets and RFW."""
        from rgsyn.data.faces import read_id_folders
        from rgsyn.data.splits import training_split

        aligner = None
        if self.p.align == "mtcnn":
            from rgsyn.data.align import FaceAligner

            aligner = FaceAligner()
        train, lm = self.training_set(training_split(params, benchmark), aligner)
        syn = None
        if synthetic_root is not None:
            syn = face_set(read_id_folders(synthetic_root), self.p.size, lm, what=f"synthetic set {synthetic_root}",
                           transform=aligner)
        dp = params.data.paths
        return TaskData(train, len(lm), syn, {"verification": dp.verification, "rfw": dp.rfw_bias,
                                              "aligner": aligner})

    def evaluate(self, net: FaceNet, data: TaskData) -> dict:
        ev = data.evaluation
        return evaluate_face_model(net, ev["verification"], ev["rfw"], self.p, transform=ev["aligner"])

    def extra_metrics(self, data: TaskData, info: dict) -> dict:
        aligner = data.evaluation["aligner"]
        return aligner.counts() if aligner is not None else {}

    def summary(self, metrics: dict) -> str:
        return f"avg acc {metrics['avg']:.3f}"


def train_face(train: LabelledImages, num_classes: int, p, seed: int, **kw) -> tuple[FaceNet, dict]:
    """Train a CosFace model with params `p` (a `FaceParams`) by `rgsyn.downstream.engine.train`
    (keywords as `rgsyn.downstream.reid.train_reid`). Returns (model in eval mode, info)."""
    return engine.train(FaceTask(p), train, num_classes, seed, **kw)


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
