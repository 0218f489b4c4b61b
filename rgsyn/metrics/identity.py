"""Identity agreement of features with identity prototypes: R_sem and nearest-prototype accuracy.

With ``f`` an (identity-encoder) feature of an image of identity ``y`` and the prototypes

    p_y = normalize(mean of the real features of identity y)                  (PAPER.md step 4)

- ``R_sem(f, y) = (cos(f, p_y) + 1) / 2`` in [0, 1] (the semantic-consistency reward);
- ``hit(f, y) = [argmax_j <f, p_j> == y]`` (nearest prototype by cosine: the prototypes have unit
  norm, so ``f``'s own norm does not change the argmax); identity accuracy is its mean.

One definition for the three places that measure it: the RL reward (R_sem), the RL stage's
held-out gold check (accuracy) and the generation metrics (both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def identity_prototypes(feats: list[Tensor]) -> Tensor:
    """(n_ids, D) unit-norm mean feature of each identity; ``feats[i]`` holds identity i's rows."""
    if any(f.shape[0] == 0 for f in feats):
        empty = [i for i, f in enumerate(feats) if f.shape[0] == 0]
        raise ValueError(f"identity rows {empty[:5]} have no real images to make a prototype from")
    return torch.stack([F.normalize(f.float().mean(0), dim=0) for f in feats])


def identity_agreement(feats: Tensor, labels: Tensor, prototypes: Tensor) -> tuple[Tensor, Tensor]:
    """``(R_sem, hit)`` per row of ``feats`` (N, D) labelled ``labels`` (N,) (rows of
    ``prototypes``): R_sem (N,) fp32 on ``feats``' device, hit (N,) bool on the CPU."""
    feats = feats.float()
    labels = labels.long().cpu()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= prototypes.shape[0]):
        raise ValueError(f"identity labels must lie in [0, {prototypes.shape[0]}); got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    protos = prototypes.float()
    r_sem = (F.cosine_similarity(feats, protos[labels].to(feats.device), dim=-1) + 1.0) / 2.0
    nearest = (feats @ protos.to(feats.device).T).argmax(1)
    return r_sem, nearest.cpu() == labels
