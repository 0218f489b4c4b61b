"""The synthetic part of the control rows (rgsyn.report.controls), built from what a run already loads.

- `real_draws`: the compute-matched control `real_plus` (`syn_variants.<row>.synthetic: real`). Its
  "synthetic" pool is the real training split itself, so every synthetic slot of a batch takes another
  draw of a real image, augmented on the synthetic stream (rgsyn.downstream.loop.SyntheticMix): the
  same batch size and step count as a synthetic row, with no new image.
- `shuffled_labels`: the negative control `syn_shuffled` (`labels: shuffled`). The synthetic images
  keep their pixels and lose their identities: the labels are permuted among the identities the set
  covers by one random cycle (a derangement: no identity keeps its own label), drawn from the run's
  seed on a generator of its own, so the global random streams are untouched.
"""
from __future__ import annotations

import dataclasses

import torch

from rgsyn.downstream.datasets import LabelledImages
from rgsyn.errors import DataError

SHUFFLE_STREAM = 104_729   # offset of the permutation's generator from the run seed


def real_draws(train: LabelledImages) -> LabelledImages:
    """The real training split as the pool of the synthetic slots (same tensors, no copy)."""
    return train


def shuffled_labels(synthetic: LabelledImages, seed: int) -> LabelledImages:
    """`synthetic` with label k replaced by perm[k], perm one random cycle over the labels present."""
    ids = torch.unique(synthetic.labels)
    if len(ids) < 2:
        raise DataError(f"labels: shuffled needs a synthetic set of at least 2 identities, got {len(ids)}")
    gen = torch.Generator().manual_seed(seed + SHUFFLE_STREAM)
    order = ids[torch.randperm(len(ids), generator=gen)]
    table = torch.arange(int(ids.max()) + 1)
    table[order] = order.roll(-1)          # order[i] -> order[i + 1]: one cycle, no fixed point
    return dataclasses.replace(synthetic, labels=table[synthetic.labels], pids=None)
