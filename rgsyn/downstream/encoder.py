"""Identity encoders: a trained downstream model as a feature extractor, saved and loaded.

`IdentityEncoder.encode(images)` gives L2-normalised identity features of any-size images in [0, 1].
The `encoder` stage (rgsyn.stages.encoder) saves the real-data-only reward and gold encoders, and
the `train` stage (rgsyn.stages.train) every downstream model, with `save_identity_encoder`: a plain
`torch.save` dict {"kind", "config", "num_classes", "input_size", "mean", "std", "state_dict"} that
`load_identity_encoder` reads with `torch.load(weights_only=True)` (no code runs) and rebuilds with
the model builders of rgsyn.downstream.reid / rgsyn.downstream.face.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.downstream.datasets import FACE_MEAN, FACE_STD, IMAGENET_MEAN, IMAGENET_STD, normalise, resize_to
from rgsyn.errors import CheckpointError

FORMAT_VERSION = 1


class IdentityEncoder(nn.Module):
    """`encode(images)` with images (B,3,H,W) float in [0,1], any size -> L2-normalised (B, D)."""

    def __init__(self, model: nn.Module, kind: str, input_size: tuple[int, int], mean, std, threads: int = 0):
        super().__init__()
        self.model, self.kind = model, kind
        self.threads = threads   # CPU intra-op threads while encoding (0 = torch's setting); see rgsyn.threads.pinned
        self.input_size = tuple(input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.eval()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"IdentityEncoder.encode: expected images (B, 3, H, W), got {tuple(images.shape)}")
        from rgsyn import threads

        self.model.eval()
        dev = next(self.model.parameters()).device
        with threads.pinned(self.threads if dev.type == "cpu" else 0):
            x = normalise(resize_to(images.to(dev).float(), self.input_size).clamp(0, 1), self.mean, self.std)
            f = self.model.features(x) if self.kind == "reid" else self.model.embed(x)
            return F.normalize(f.float(), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    @property
    def feature_dim(self) -> int:
        return int(self.encode(torch.zeros(1, 3, *self.input_size, device=next(self.parameters()).device)).shape[1])


def _build(kind: str, config: dict, num_classes: int) -> nn.Module:
    if kind == "reid":
        from rgsyn.downstream.reid import build_reid_model

        return build_reid_model(config["backbone"], num_classes, config["height"], config["width"], "",
                                config.get("channels", 32))
    if kind == "face":
        from rgsyn.config import FaceParams
        from rgsyn.downstream.face import build_face_model

        fields = {f.name for f in dataclasses.fields(FaceParams)}
        # files written before `stem_stride` existed hold stride-1 models
        config = {"stem_stride": 1, **config}
        # the saved state dict holds every weight; the pretrained file is not needed (nor read) here
        return build_face_model(FaceParams(**{k: v for k, v in config.items() if k in fields}), num_classes,
                                pretrained="")
    raise CheckpointError(f"unknown encoder kind {kind!r}")


def save_identity_encoder(path: str | Path, net: nn.Module, kind: str, config: dict, num_classes: int) -> None:
    from rgsyn import io

    if kind == "reid":
        size, mean, std = (config["height"], config["width"]), IMAGENET_MEAN, IMAGENET_STD
    else:
        size, mean, std = (config["size"], config["size"]), FACE_MEAN, FACE_STD
    io.torch_save(path, {"format": FORMAT_VERSION, "kind": kind, "config": config, "num_classes": num_classes,
                         "input_size": list(size), "mean": list(mean), "std": list(std),
                         "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}})


def load_identity_encoder(path: str | Path, device: str | torch.device = "cpu") -> IdentityEncoder:
    """Load an encoder written by `rgsyn encoder` (weights only; no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"identity encoder {p} does not exist; run `rgsyn encoder` first")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{p}: not a plain-weights identity encoder file ({type(e).__name__}: {e})") from None
    need = {"kind", "config", "num_classes", "input_size", "mean", "std", "state_dict"}
    if not isinstance(blob, dict) or not need <= set(blob):
        raise CheckpointError(f"{p}: missing keys {sorted(need - set(blob or {}))} of an identity encoder file")
    from rgsyn import threads

    n_threads = int(blob["config"].get("threads", 0))
    with threads.pinned(n_threads):
        net = _build(blob["kind"], blob["config"], blob["num_classes"])
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not fit the saved config: {str(e).splitlines()[0]}") from None
    return IdentityEncoder(net, blob["kind"], blob["input_size"], blob["mean"], blob["std"], n_threads).to(device)
