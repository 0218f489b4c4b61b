"""Feature encoders for the rewards and the identity reference (prototypes = mean real features).

Every encoder has one method, ``encode(images) -> (B, D)`` L2-normalised features, for images
(B, 3, H, W) float in [0, 1] of any size (the encoder resizes and normalises itself), and says its
``input_size`` (H, W): the real reference images are read at that size (``real_features``).

- ``identity_model`` (default): the recognition model trained on the real training split
  (``rgsyn.downstream.encoder.load_identity_encoder``), at ``paths.encoder_path(domain, "reward")``.
- ``open_clip``: an open_clip image tower built by ``open_clip.create_model(name, pretrained=<local
  checkpoint file>)`` (``rl.open_clip_model``, ``rl.open_clip_checkpoint``); weights are read with
  ``weights_only`` torch loading or safetensors, so the file cannot run code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgsyn import paths
from rgsyn.errors import CheckpointError, DataError


class OpenClipEncoder(nn.Module):
    """The image tower of an open_clip model loaded from a local checkpoint."""

    def __init__(self, model_name: str, checkpoint: str | Path, device: str | torch.device = "cpu"):
        super().__init__()
        import open_clip

        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise CheckpointError(f"rl.open_clip_checkpoint: {checkpoint} does not exist; expected a local "
                                  f"open_clip checkpoint (.pt state dict or .safetensors) for {model_name!r}")
        try:
            model = open_clip.create_model(model_name, pretrained=str(checkpoint), device=device)
        except RuntimeError as e:
            raise CheckpointError(f"{checkpoint}: does not fit open_clip model {model_name!r}: "
                                  f"{str(e).splitlines()[0][:300]}") from None
        model.eval().requires_grad_(False)
        self.model = model
        size = model.visual.image_size
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.input_size = self.size
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.to(device)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        x = images.float().to(self.mean.device)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return F.normalize(self.model.encode_image(x).float(), dim=-1)


def load_encoder(kind: str, path: str | Path | None = None, device: str | torch.device = "cpu",
                 open_clip_model: str = "ViT-B-32"):
    """``kind``: ``identity_model`` (``path`` = the encoder file) or ``open_clip`` (``path`` = checkpoint)."""
    if kind == "open_clip":
        return OpenClipEncoder(open_clip_model, path, device)
    if kind == "identity_model":
        from rgsyn.downstream.encoder import load_identity_encoder

        if path is None or not Path(path).is_file():
            raise CheckpointError(f"identity encoder {path} does not exist; run `rgsyn encoder --domain "
                                  "<domain>` first (it writes models/encoder/<domain>/reward.pt and gold.pt)")
        enc = load_identity_encoder(str(path), device=device)
        enc.eval()
        return enc
    raise CheckpointError(f"rl.encoder: unknown encoder kind {kind!r}; expected identity_model or open_clip")


def reward_encoder(params, domain: str, device: str | torch.device = "cpu"):
    """The encoder the rewards use (``params.rl.encoder``)."""
    rl = params.rl
    if rl.encoder == "open_clip":
        return load_encoder("open_clip", rl.open_clip_checkpoint, device, rl.open_clip_model)
    return load_encoder("identity_model", paths.encoder_path(domain, "reward"), device)


def gold_encoder(params, domain: str, device: str | torch.device = "cpu"):
    """The held-out encoder of the reward-hacking guard (independently seeded, never optimised)."""
    return load_encoder("identity_model", paths.encoder_path(domain, "gold"), device)


@torch.no_grad()
def encode_images(encoder, images: Tensor, batch_size: int = 256) -> Tensor:
    """Encode a (N, 3, H, W) tensor in [0, 1] in batches."""
    out = [encoder.encode(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out, 0).float().cpu() if out else torch.zeros(0, 0)


# --------------------------------------------------------------------------- real images per row
def identity_image_paths(params, domain: str, identities: list[dict]) -> list[list[str]]:
    """Real training image paths of every identity row of a generator (``identities.json``)."""
    from rgsyn.data.splits import training_split

    by_key: dict[tuple[str, str], list[str]] = {}
    for bench in sorted({str(r["benchmark"]) for r in identities}):
        split = training_split(params, bench)
        for path, ident in zip(split.paths, split.identities):
            by_key.setdefault((bench, str(ident)), []).append(path)
    out = []
    for r in identities:
        key = (str(r["benchmark"]), str(r["label"]))
        if key not in by_key:
            raise DataError(f"identity row {r['row']} ({key[0]} label {key[1]!r}) of the generator has no "
                            "real training images; identities.json does not match the dataset")
        out.append(sorted(by_key[key]))
    return out


def input_size(encoder) -> tuple[int, int]:
    """(H, W) the encoder feeds its network (it resizes anything else itself)."""
    size = getattr(encoder, "input_size", None) or getattr(encoder, "size", None)
    if size is None:
        raise CheckpointError(f"{type(encoder).__name__} does not say its input size")
    return int(size[0]), int(size[1])


def load_images(image_paths: list[str], size: tuple[int, int]) -> Tensor:
    """Read images as a (N, 3, H, W) uint8 tensor, each resized to ``size`` = (H, W) as it is read.

    Real sets mix sizes (CUHK03-NP's boxes are cropped as detected), so they cannot be stacked at
    native size; and at native size in fp32 a 50k-image CASIA subset would need ~37 GB."""
    import numpy as np
    from PIL import Image

    from rgsyn.data.images import load_image

    h, w = size
    out = torch.empty((len(image_paths), 3, h, w), dtype=torch.uint8)
    for i, p in enumerate(image_paths):
        img = load_image(p)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def real_features(encoder, image_paths: list[list[str]], max_per_identity: int = 0,
                  size: tuple[int, int] | None = None, batch_size: int = 256) -> list[Tensor]:
    """Encoded real images of every identity row (the first ``max_per_identity`` if > 0).

    Images are streamed: ``batch_size`` at a time are read at the encoder's input size (``size``
    overrides it) as uint8 and encoded, so host memory holds one batch of images plus the
    (N, D) fp32 features, whatever N is."""
    flat, owner = [], []
    for i, ps in enumerate(image_paths):
        ps = ps[:max_per_identity] if max_per_identity > 0 else ps
        flat += ps
        owner += [i] * len(ps)
    size = size or input_size(encoder)
    chunks = [encode_images(encoder, load_images(flat[i:i + batch_size], size).float() / 255.0, batch_size)
              for i in range(0, len(flat), batch_size)]
    feats = torch.cat(chunks) if chunks else torch.zeros(0, 0)
    owner_t = torch.tensor(owner)
    return [feats[owner_t == i] for i in range(len(image_paths))]
