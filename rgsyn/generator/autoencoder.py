"""The space the DiT works in: pixels (toy profile) or the latents of the SD VAE (paper profile).

Both autoencoders have one interface, so the prior, cold start, sampler and synthesis code never
asks which one it has:

    z = ae.encode(images)   # images (B,3,H,W) in [-1, 1]  ->  latents (B, C, H/f, W/f)
    x = ae.decode(z)        # latents                       ->  images in [-1, 1]

`ae.latent_channels`, `ae.downscale` (f) and `ae.kind` ("pixel" | "vae") describe the latent space.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rgsyn.errors import CheckpointError


class PixelAutoencoder(nn.Module):
    """The identity map: the toy DiT denoises RGB pixels in [-1, 1] directly."""

    kind = "pixel"
    latent_channels = 3
    downscale = 1
    flip_commutes = True     # encode(flip(x)) == flip(encode(x)): the latent cache mirrors z itself

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


class VaeAutoencoder(nn.Module):
    """diffusers `AutoencoderKL` (the SD VAE of DiT) with the latent scaling factor applied.

    encode uses the posterior mean (deterministic; the denoising loss adds its own noise).
    """

    kind = "vae"
    flip_commutes = False    # a conv encoder is not mirror-equivariant: the cache encodes both

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        self.latent_channels = int(vae.config.latent_channels)
        self.downscale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return dist.mean.float() * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode((latents / self.scaling_factor).to(self.vae.dtype)).sample
        return out.float()


def load_vae(source: str, subfolder: str | None = None, torch_dtype=None) -> VaeAutoencoder:
    """Load `AutoencoderKL` from a local diffusers folder or a hub id (safetensors only)."""
    from diffusers import AutoencoderKL

    kwargs = {"use_safetensors": True}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    try:
        vae = AutoencoderKL.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        where = f"{source}/{subfolder}" if subfolder else source
        raise CheckpointError(
            f"cannot load the VAE from {where!r}: expected a diffusers AutoencoderKL folder "
            f"(config.json + diffusion_pytorch_model.safetensors) or a hub id ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    vae.requires_grad_(False)
    vae.eval()
    return VaeAutoencoder(vae)


def build_autoencoder(vae: str = "", subfolder: str | None = None) -> nn.Module:
    """`vae == ""` -> pixel space; otherwise the VAE at that folder / hub id."""
    if not vae:
        return PixelAutoencoder()
    if Path(vae).exists() or "/" in vae:
        return load_vae(vae, subfolder=subfolder)
    raise CheckpointError(f"prior.vae: {vae!r} is neither a local folder nor a hub id")
