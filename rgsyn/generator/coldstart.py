"""The cold start's model and data checks (PAPER.md step 2), used by the `coldstart` command
(`rgsyn.stages.coldstart`) and by `benchmarks/bench_generator_resolution.py`.

`identity_model` swaps an identity head of one zero-initialised row per training identity into the
prior (plus the null row of classifier-free guidance), freezes the backbone and, with
`coldstart.train_lora`, attaches a LoRA adapter that trains with the head; `check_identities`
refuses an identity list the head cannot be built on.
"""
from __future__ import annotations

import torch

from rgsyn.errors import DataError
from rgsyn.generator import identity_head, lora


def check_identities(identities: list[dict], labels: torch.Tensor, where: str) -> None:
    """Rows must be 0..n-1 in order and every row must have at least one image."""
    rows = [int(d["row"]) for d in identities]
    if rows != list(range(len(identities))):
        raise DataError(f"{where}: identity rows are not 0..{len(identities) - 1} in order")
    counts = torch.bincount(labels, minlength=len(identities))
    if labels.numel() and int(labels.max()) >= len(identities):
        raise DataError(f"{where}: image label {int(labels.max())} outside the {len(identities)} identities")
    empty = [identities[i] for i in range(len(identities)) if counts[i] == 0]
    if empty:
        raise DataError(f"{where}: identity {empty[0]} has no training images")


def identity_model(transformer, n_ids: int, cp) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """The model the cold start trains and its trainable parameters: the identity head of `n_ids`
    rows swapped in, the backbone frozen, and with `cp.train_lora` a LoRA adapter (`cp.lora`) that
    trains with the head."""
    transformer = identity_head.swap_identity_head(transformer, n_ids)
    adapter = lora.attach_lora(transformer, cp.lora, key="coldstart.lora") if cp.train_lora else []
    trainable = identity_head.freeze_backbone(transformer)   # the head, after the backbone (and LoRA)
    for p in adapter:
        p.requires_grad_(True)
    return transformer, trainable + adapter
