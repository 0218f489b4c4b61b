"""The DiT's class-label conditioning and the identity head (PAPER.md step 2).

In diffusers every DiT block has its own adaLN-Zero label embedder
(`transformer_blocks[i].norm1.emb.class_embedder`), and the final layer reuses block 0's. A class
label `y` indexes `embedding_table[y]`; the extra last row `num_classes` is the null label of
classifier-free guidance. `swap_identity_head` replaces every block's table by one with a
zero-initialised row per training identity plus the null row (copied from the prior, so the
unconditional model is unchanged), and updates the config so the bundle reloads with the new size.

Label dropout: diffusers drops labels inside `LabelEmbedding.forward` with its own `torch.rand`
whenever the module is in train mode. We switch that off (`disable_label_dropout`: `dropout_prob =
0` on every embedder, table size unchanged) and drop labels explicitly in the training loop, so a
forward pass is a deterministic function of its inputs; the sampler's log-probs depend on that.
"""
from __future__ import annotations

import torch
from torch import nn

from rgsyn.errors import CheckpointError


def label_embedders(transformer) -> list[nn.Module]:
    """The `LabelEmbedding` of every block (block 0's also conditions the final layer)."""
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        emb = getattr(getattr(block, "norm1", None), "emb", None)
        class_embedder = getattr(emb, "class_embedder", None)
        if class_embedder is None or not hasattr(class_embedder, "embedding_table"):
            raise CheckpointError(
                f"DiT block {i} has no class-label embedder (transformer_blocks[{i}].norm1.emb."
                "class_embedder); expected a class-conditional DiT with norm_type='ada_norm_zero' "
                "and num_embeds_ada_norm set")
        out.append(class_embedder)
    return out


def num_labels(transformer) -> int:
    """Number of real labels (classes or identities); the null label is this index."""
    return int(label_embedders(transformer)[0].num_classes)


def null_label(transformer) -> int:
    return num_labels(transformer)



def disable_label_dropout(transformer) -> None:
    """Switch off diffusers' own label dropout (see the module docstring)."""
    for emb in label_embedders(transformer):
        emb.dropout_prob = 0.0



def swap_identity_head(transformer, n_identities: int):
    """Replace the class table of EVERY block by `n_identities` zero rows + the null row.

    The null row is copied from the prior's null row, so the unconditional branch of CFG starts
    as the prior's unconditional model (PAPER.md step 2 zero-initialises the identity rows).
    """
    if n_identities < 1:
        raise CheckpointError(f"identity head: need at least one identity, got {n_identities}")
    for emb in label_embedders(transformer):
        old = emb.embedding_table
        new = nn.Embedding(n_identities + 1, old.embedding_dim, device=old.weight.device,
                           dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[n_identities] = old.weight[emb.num_classes]
        emb.embedding_table = new
        emb.num_classes = n_identities
        emb.dropout_prob = 0.0
    transformer.register_to_config(num_embeds_ada_norm=n_identities)
    return transformer


def identity_head_parameters(transformer) -> list[nn.Parameter]:
    return [emb.embedding_table.weight for emb in label_embedders(transformer)]


def freeze_backbone(transformer) -> list[nn.Parameter]:
    """Freeze everything but the identity head; returns the trainable parameters."""
    transformer.requires_grad_(False)
    head = identity_head_parameters(transformer)
    for p in head:
        p.requires_grad_(True)
    return head

