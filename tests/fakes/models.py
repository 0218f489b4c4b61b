"""Fake pretrained models in the layouts the paper profile reads.

- `write_dit_hub(folder)`: a tiny latent DiT (or, with `arch=DIT_XL_2, vae=SD_VAE`, the real
  sizes) as the hub ships `facebook/DiT-XL-2-256`: a pipeline
  folder with `model_index.json`, `transformer/` (config naming the legacy `Transformer2DModel`
  class, as the hub's does), `vae/` (an `AutoencoderKL` with the SD VAE's 8x downscale and 4 latent
  channels) and `scheduler/`. 4 latent channels, patch 2, learned sigma (out_channels 8), 1000
  classes; only the width and depth are shrunk. The scheduler config leaves `clip_sample` at
  DDIMScheduler's default (true), so the test sees whether latent-space sampling switches it off.
- `write_resnet50_torchvision(path)`: an ImageNet-style ResNet-50 state dict in torchvision's key
  format (`conv1.weight`, `layer1.0.conv1.weight`, ..., `fc.weight` with 1000 classes).
- `write_vit_timm(path, name)`: a timm ViT state dict (`cls_token`, `pos_embed` for 224x224,
  `blocks.0.attn.qkv.weight`, ..., `head.weight` with 1000 classes).

The backbones have the real architecture at the real shapes: strict loading compares every key and
shape, so a narrower stand-in would not exercise it, and a width parameter would be a code path the
real files never take. Measured on a 2-core CPU: the ResNet-50 file (98 MB) is built and written in
0.7 s, the ViT-B/16 one (346 MB) in 2.5 s, so both are made by the tests themselves. Written as
safetensors; random weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

DIT_ARCH = {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "patch_size": 2,
            "in_channels": 4, "out_channels": 8, "num_embeds_ada_norm": 1000}


# DiT-XL/2 (Peebles & Xie 2023) as `facebook/DiT-XL-2-256` ships it: 28 blocks of 16 x 72 heads
DIT_XL_2 = {**DIT_ARCH, "num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 72}
TINY_VAE = {"layers_per_block": 1, "block_out_channels": (8, 8, 8, 8), "norm_num_groups": 4}
# the SD VAE (stabilityai/sd-vae-ft-ema), the same config as rgsyn.estimate.SD_VAE
SD_VAE = {"layers_per_block": 2, "block_out_channels": (128, 256, 512, 512), "norm_num_groups": 32}


def write_dit_hub(folder: str | Path, sample_size: int = 32, seed: int = 0, arch: dict = DIT_ARCH,
                  vae: dict = TINY_VAE) -> Path:
    """The hub layout of DiT-XL/2-256, by default with a tiny transformer and VAE (`arch=DIT_XL_2,
    vae=SD_VAE`: the real sizes); `sample_size` = latent side (256 / 8)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(sample_size=sample_size, **arch)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    cfg_path = folder / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    # the hub's config predates DiTTransformer2DModel and names the generic class
    cfg.update({"_class_name": "Transformer2DModel", "norm_type": "ada_norm_zero"})
    cfg_path.write_text(json.dumps(cfg, indent=2))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **vae,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=8 * sample_size)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    # DiT's schedule (linear betas, 1000 steps); clip_sample left at the DDIM default on purpose
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "DiTPipeline", "_diffusers_version": "0.12.0.dev0",
        "scheduler": ["diffusers", "KarrasDiffusionSchedulers"],
        "transformer": ["diffusers", "Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
        "id2label": {"0": "tench"}}, indent=2))
    return folder


def _save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write_resnet50_torchvision(path: str | Path, seed: int = 0) -> Path:
    import torchvision

    torch.manual_seed(seed)
    return _save(torchvision.models.resnet50(weights=None).state_dict(), Path(path))


def write_vit_timm(path: str | Path, name: str = "vit_base_patch16_224", seed: int = 0) -> Path:
    import timm

    torch.manual_seed(seed)
    return _save(timm.create_model(name, pretrained=False).state_dict(), Path(path))
