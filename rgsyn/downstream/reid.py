"""Person re-ID training and evaluation (PAPER.md, "Downstream protocols").

Model: a torchreid backbone (resnet50, osnet_x1_0, osnet_x0_25, resnet18), timm's ViT-B/16 at
the profile's input size, or the toy profile's `small_resnet` (rgsyn.downstream.small_resnet), with an
identity classifier. Loss: identity cross-entropy with label
smoothing (torchreid `CrossEntropyLoss`) + batch-hard triplet (torchreid `TripletLoss`) on PK
batches. Optimiser: Adam (weight decay from params) with linear warmup, then cosine decay.
Random erasing (torchvision `RandomErasing`) is the `real_re` switch.

`ReidTask` gives these to the downstream engine (rgsyn.downstream.engine), which trains: every
step takes a PK batch of real images; when a synthetic set is given, the step also draws
`selector.n_candidates(syn_per_batch)` synthetic candidates, augments them like the real images,
and trains on the ones the selector keeps (see `rgsyn.selection`). `ReidTask` also loads the
benchmark's data for the `train` stage (the training split from rgsyn.data.splits).

Evaluation: features of the eval-mode model, L2-normalised, squared-Euclidean (= 2 - 2 cos)
distances, `rgsyn.metrics.evaluate_reid` (Market-1501 protocol).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.downstream import engine
from rgsyn.downstream.datasets import (IMAGENET_MEAN, IMAGENET_STD, LabelledImages, PKSampler, backbone_features,
                                      in_layout, layout_for, normalise, reid_set)
from rgsyn.downstream.engine import Task, TaskData
from rgsyn.errors import CheckpointError

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
        self.layout = layout_for(backbone)   # channels-last where safe: datasets.layout_for
        self.backbone = backbone.to(memory_format=self.layout)

    def forward(self, images, labels=None, with_features: bool = False):
        images = in_layout(images, self.layout)
        if self.training:
            out = self.backbone(images)
            return (out[0], out[1]) if with_features else out[0]
        return self.backbone.classifier(self.backbone(images))

    def features(self, images):
        return backbone_features(self, images)


def build_reid_model(backbone: str, num_classes: int, height: int, width: int, pretrained: str = "",
                     channels: int = 32) -> ReidNet:
    """The re-ID network of `backbone` (`channels`: the first-stage width of small_resnet only)."""
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

        net = SmallReidResNet(num_classes, channels)
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


class ReidTask(Task):
    """Person re-ID for the engine (rgsyn.downstream.engine): `ReidNet`, Adam, PK batches, identity
    cross-entropy + batch-hard triplet, warm-up (`warmup_epochs` x batches per epoch) then cosine over
    `steps` optimizer steps (0: `epochs` x batches per epoch)."""

    name = "reid"

    def build_model(self, num_classes: int) -> ReidNet:
        p = self.p
        return build_reid_model(p.backbone, num_classes, p.height, p.width, p.pretrained, p.channels)

    def optimizer(self, net):
        return torch.optim.Adam(net.parameters(), lr=self.p.lr, weight_decay=self.p.weight_decay)

    def batch_source(self, train: LabelledImages, seed: int, rank: int, world: int) -> PKSampler:
        return PKSampler(train.labels, self.p.P, self.p.K, seed, rank, world)

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        total = self.p.steps or steps_per_epoch * self.p.epochs
        return total, min(total, steps_per_epoch * self.p.warmup_epochs)

    def real_batch(self) -> int:
        return self.p.P * self.p.K

    def augment(self, images, gen, erasing):
        return augment(images, gen, erasing)

    def forward(self, net, x, y):
        return net(x, with_features=True)

    def criterion(self, num_classes: int, dev):
        from torchreid.reid.losses import CrossEntropyLoss, TripletLoss

        p = self.p
        ce = CrossEntropyLoss(num_classes, eps=p.label_smoothing, use_gpu=dev.type == "cuda",
                              label_smooth=p.label_smoothing > 0)
        tri = TripletLoss(margin=p.triplet_margin)

        def loss_fn(out, y):
            logits, feats = out[0].float(), out[1].float()
            loss_id = ce(logits, y)
            loss_tri = tri(F.normalize(feats, dim=1) if p.triplet_features == "normalised" else feats, y)
            return loss_id + loss_tri, {"loss_id": loss_id, "loss_triplet": loss_tri}
        return loss_fn

    def train_info(self, source: PKSampler) -> dict:
        return {"n_ids_short": source.n_short}

    # -- the `train` stage: data and evaluation
    def training_set(self, split) -> tuple[LabelledImages, dict]:
        """(images of a `rgsyn.data.splits.TrainingSplit`, its label map)."""
        lm = split.label_map()
        return reid_set(split.records, (self.p.height, self.p.width), lm), lm

    def load(self, params, benchmark: str, synthetic_root: Path | None) -> TaskData:
        """The real training split, the synthetic set at `synthetic_root` (Market layout, real pids)
        and the query / gallery of `benchmark`."""
        from rgsyn.data.cuhk03 import read_cuhk03
        from rgsyn.data.market import read_market1501
        from rgsyn.data.splits import training_split

        dp, size = params.data.paths, (self.p.height, self.p.width)
        train, lm = self.training_set(training_split(params, benchmark))
        test = (read_market1501(dp.market1501, splits=("query", "gallery")) if benchmark == "market1501"
                else read_cuhk03(dp.cuhk03, mode=dp.cuhk03_mode, splits=("query", "gallery")))
        syn = None
        if synthetic_root is not None:
            syn = reid_set(read_market1501(synthetic_root, splits=("train",)).train, size, lm,
                           what=f"synthetic set {synthetic_root}")
        return TaskData(train, len(lm), syn, {"query": reid_set(test.query, size),
                                              "gallery": reid_set(test.gallery, size)})

    def evaluate(self, net: ReidNet, data: TaskData) -> dict:
        return evaluate_reid_model(net, data.evaluation["query"], data.evaluation["gallery"], self.p.eval_batch_size)

    def extra_metrics(self, data: TaskData, info: dict) -> dict:
        return {"n_ids_fewer_than_K": info["n_ids_short"]}

    def summary(self, metrics: dict) -> str:
        return f"mAP {metrics['mAP']:.3f} R1 {metrics['rank1']:.3f}"


def train_reid(train: LabelledImages, num_classes: int, p, seed: int, **kw) -> tuple[ReidNet, dict]:
    """Train a ReID model with params `p` (a `ReidParams`) by `rgsyn.downstream.engine.train` (same
    keywords: synthetic, selector, random_erasing, device, checkpointer, on_step, progress,
    stop_after_epoch, precision). Returns (model in eval mode, info)."""
    return engine.train(ReidTask(p), train, num_classes, seed, **kw)


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
