"""Small from-scratch ResNets for the toy profile's tiny images.

`Block` is the basic residual block of both. `SmallReidResNet` is the toy re-ID backbone
(`reid.backbone: small_resnet`): a stride-2 stem and four stages of widths w, 2w, 4w, 8w, average
pooled, with torchreid's output convention (train: `(logits, features)`, eval: `features`) and a
`classifier`, so `ReidNet` and the lookahead selector treat it like a torchreid model. The face
backbone (`face.backbone: small_resnet`) is `rgsyn.downstream.face.SmallResNet`.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))


class SmallReidResNet(nn.Module):
    """(B,3,H,W) -> train: (identity logits, 8w pooled features); eval: the features."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layers = nn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2),
                                    Block(2 * width, 4 * width, 2), Block(4 * width, 8 * width, 2))
        self.feature_dim = 8 * width
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x):
        v = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)
        return (self.classifier(v), v) if self.training else v
