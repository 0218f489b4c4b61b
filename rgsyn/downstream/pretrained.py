"""ImageNet-pretrained backbones from local files, loaded strictly.

    load_pretrained(model, path, fmt)

`fmt` (a `WeightsFormat`) says where the weights come from and which keys the model expects to
differ from the file: the ImageNet classifier of the file (`fc.*` in torchvision's ResNet-50,
`head.*` in timm's ViT) is dropped, and the model's own new identity head (torchreid's
`classifier.*`, the face embedding layer `fc.*` resized to the embedding) starts fresh. Every other
key must be in both, with the same shape; otherwise one `CheckpointError` names the file, the
first bad keys and the shapes the model expects. That catches a file of another architecture or
another format (a torchreid checkpoint where a torchvision one was expected, timm keys for a
torchvision model) instead of silently training from random weights.

The one reshaped key that is allowed is a ViT's absolute position embedding: the file's grid
(14x14 patches at 224x224) is resampled to the model's (16x8 at 256x128) with timm's own
`timm.layers.resample_abs_pos_embed` (bicubic on the patch grid; the class token is kept as is),
as timm does when it loads pretrained weights at another image size.

Files are read without running code: safetensors, or `torch.load(weights_only=True)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rgsyn.errors import CheckpointError

MAX_LISTED = 5


@dataclass(frozen=True)
class WeightsFormat:
    name: str                              # where such files come from (named in errors)
    file_head: tuple[str, ...] = ()        # key prefixes of the file the model drops (ImageNet classifier)
    model_head: tuple[str, ...] = ()       # key prefixes of the model that start fresh (new head)
    pos_embed: str | None = None           # a ViT position embedding to resample (timm)


TORCHVISION_RESNET_REID = WeightsFormat("torchvision ResNet (ImageNet)", file_head=("fc.",),
                                        model_head=("classifier.",))
TORCHVISION_RESNET_FACE = WeightsFormat("torchvision ResNet (ImageNet)", file_head=("fc.",),
                                        model_head=("fc.",))
TORCHREID_OSNET = WeightsFormat("torchreid OSNet (ImageNet)", file_head=("classifier.",),
                                model_head=("classifier.",))
TIMM_VIT = WeightsFormat("timm ViT (ImageNet)", file_head=("head.",), pos_embed="pos_embed")


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors or torch file, never executing code."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"pretrained weights {p} do not exist (give a local file or '')")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{p}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unsafe or corrupt pickle
        raise CheckpointError(f"{p}: cannot be loaded as plain weights ({type(e).__name__}: {e})") from None
    for wrapper in ("state_dict", "model"):   # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def resample_pos_embed(posemb: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The file's ViT position embedding on `model`'s patch grid (timm's helper)."""
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    n_old = posemb.shape[1] - prefix
    side = int(round(n_old ** 0.5))
    if side * side != n_old:
        raise CheckpointError(f"position embedding with {n_old} patch tokens is not a square grid")
    return resample_abs_pos_embed(posemb, new_size=list(model.patch_embed.grid_size), old_size=[side, side],
                                  num_prefix_tokens=prefix, verbose=False)


def load_pretrained(model: nn.Module, path: str | Path, fmt: WeightsFormat, what: str = "pretrained") -> dict:
    """Load `path` into `model` strictly (see the module docstring); returns what was done."""
    state = {k.removeprefix("module."): v for k, v in load_state_file(path).items()}
    own = model.state_dict()
    file_head = lambda k: k.startswith(fmt.file_head)    # noqa: E731
    model_head = lambda k: k.startswith(fmt.model_head)  # noqa: E731
    missing = [k for k in own if k not in state and not model_head(k)]   # in the model's order
    unexpected = [k for k in state if k not in own and not file_head(k)]
    resampled = []
    if fmt.pos_embed and fmt.pos_embed in state and fmt.pos_embed in own \
            and state[fmt.pos_embed].shape != own[fmt.pos_embed].shape:
        state[fmt.pos_embed] = resample_pos_embed(state[fmt.pos_embed], model)
        resampled.append(fmt.pos_embed)
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape and not model_head(k)]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {_listed([f'{k} {tuple(own[k].shape)}' for k in missing])}")
        if unexpected:
            parts.append(f"unexpected keys {_listed(unexpected)}")
        if reshaped:
            parts.append("reshaped keys " + _listed(
                [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in reshaped]))
        raise CheckpointError(
            f"{what} {path}: the weights do not fit the {type(model).__name__} backbone; "
            f"{'; '.join(parts)}. Expected a {fmt.name} state dict for this architecture")
    keep = {k: v for k, v in state.items() if k in own and not model_head(k)}
    fresh = sorted(k for k in own if k not in keep)
    result = model.load_state_dict(keep, strict=False)
    assert sorted(result.missing_keys) == fresh and not result.unexpected_keys
    return {"loaded": len(keep), "fresh": fresh, "dropped": sorted(k for k in state if k not in own),
            "resampled": resampled}
