"""The generator bundle: the folder format of the prior, cold-start and RL generators.

A *generator bundle* is a folder:

    transformer/      diffusers save format: config.json + diffusion_pytorch_model.safetensors
    scheduler/        DDIMScheduler config
    vae/              (paper profile) the AutoencoderKL; absent = pixel space
    identities.json   (after cold start) [{"row", "benchmark", "label"}, ...]
    generator.json    {"autoencoder": "pixel"|"vae", "image_size": int}
    lora/             (after RL) peft adapter: adapter_config.json + adapter_model.safetensors

An *adapter bundle* (the RL stage's output) holds only `lora/`, `identities.json`,
`generator.json` and `base.json` = {"path": the cold-start bundle, "sha256": its
`checkpoint_sha256`}: the transformer, scheduler and VAE are those of the base bundle, not a copy
(at paper scale 8 MB of adapter instead of 2.7 GB of DiT-XL/2 per RL variant). Loading it loads
the base, checks the hash (a changed cold start fails with `CheckpointError`, never a silent
mismatch) and attaches the adapter.

`save_generator` writes either atomically (temp folder, then rename); `load_generator` reads a
prior, cold-start or RL bundle (the LoRA adapter is attached and enabled). Weights are only read
from safetensors, so no model file can run code.
"""
from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rgsyn import io
from rgsyn.errors import CheckpointError
from rgsyn.generator.architecture import load_transformer, policy_scheduler
from rgsyn.generator.autoencoder import PixelAutoencoder, VaeAutoencoder, load_vae
from rgsyn.generator.identity_head import num_labels
from rgsyn.generator.lora import LORA_WEIGHTS, adapter_state, has_lora, load_adapter, write_adapter

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
BASE_REF = "base.json"       # adapter bundles: {"path", "sha256"} of the bundle they adapt


def _base_state(transformer) -> dict[str, torch.Tensor]:
    """Base weights under diffusers' own key names (LoRA tensors dropped, `base_layer.` removed)."""
    out = {}
    for k, v in transformer.state_dict().items():
        if ".lora_" in k or "lora_magnitude" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v.detach().cpu().contiguous()
    return out



@dataclass
class GeneratorBundle:
    transformer: nn.Module
    scheduler: object
    autoencoder: nn.Module
    identities: list[dict] = field(default_factory=list)
    path: Path | None = None
    # latent side the generator samples at; None = the transformer's config.sample_size. DiT-XL/2
    # keeps its config (256 px, 32x32 latents: the base of its sin-cos position grid) while faces
    # are generated at 128 px (16x16 latents); diffusers' PatchEmbed then interpolates that grid.
    sample_size: int | None = None

    @property
    def latent_size(self) -> int:
        return int(self.sample_size or self.transformer.config.sample_size)

    @property
    def image_size(self) -> int:
        return self.latent_size * int(self.autoencoder.downscale)

    def to(self, device):
        self.transformer.to(device)
        self.autoencoder.to(device)
        return self


def _write_transformer(transformer, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    transformer.save_config(folder)
    save_file(_base_state(transformer), str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def save_generator(bundle: GeneratorBundle, path: str | Path, lora=None, base: str | Path | None = None) -> Path:
    """Write the bundle folder atomically.

    LoRA: pass `lora=` a peft `PeftModel` wrapping `bundle.transformer`, or inject the adapter into
    the transformer itself (`rgsyn.generator.lora.attach_lora`); either way the adapter goes
    to `lora/` unmerged. With `base` (the bundle folder the transformer was loaded from, unchanged
    but for the adapter) only the adapter and a reference to `base` with its hash are written;
    without it, the base weights go to `transformer/` too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        transformer = bundle.transformer
        lora_state = adapter_state(transformer, lora)
        tmp.mkdir()
        if base is not None:
            if lora_state is None:
                raise CheckpointError(f"save_generator({path}): an adapter bundle needs a LoRA adapter")
            io.write_json(tmp / BASE_REF, {"path": str(base), "sha256": checkpoint_sha256(base)})
        else:
            _write_transformer(transformer, tmp / "transformer")
            bundle.scheduler.save_pretrained(tmp / "scheduler")
            if isinstance(bundle.autoencoder, VaeAutoencoder):
                bundle.autoencoder.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        if lora_state is not None:
            write_adapter(tmp / "lora", *lora_state)
        io.write_json(tmp / "identities.json", list(bundle.identities))
        io.write_json(tmp / "generator.json", {"autoencoder": bundle.autoencoder.kind,
                                               "image_size": bundle.image_size, "format": 1})
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    bundle.path = path
    return path



def load_generator(path: str | Path, device: str | torch.device = "cpu") -> GeneratorBundle:
    """Load a prior, cold-start or RL bundle written by `save_generator`."""
    from diffusers import DDIMScheduler

    path = Path(path)
    if (path / BASE_REF).is_file():
        return _load_adapter_bundle(path, device)
    if not (path / "transformer").is_dir():
        raise CheckpointError(f"{path}: not a generator bundle; expected {path}/transformer/ (diffusers "
                              "DiT folder), scheduler/ and identities.json, as written by the prior/"
                              "coldstart/rl stages")
    meta = io.read_json(path / "generator.json") if (path / "generator.json").is_file() else {}
    if (path / "vae").is_dir():
        autoencoder = load_vae(str(path / "vae"))
    else:
        if meta.get("autoencoder", "pixel") != "pixel":
            raise CheckpointError(f"{path}: generator.json says autoencoder "
                                  f"{meta.get('autoencoder')!r} but there is no vae/ folder")
        autoencoder = PixelAutoencoder()
    transformer = load_transformer(path, subfolder="transformer",
                                   in_channels=autoencoder.latent_channels)
    if (path / "scheduler").is_dir():
        scheduler = policy_scheduler(DDIMScheduler.from_pretrained(path, subfolder="scheduler"),
                                      latent=autoencoder.kind == "vae")
    else:
        raise CheckpointError(f"{path}: missing scheduler/ (DDIMScheduler config)")
    identities = io.read_json(path / "identities.json") if (path / "identities.json").is_file() else []
    if identities and len(identities) != num_labels(transformer):
        raise CheckpointError(f"{path}: identities.json lists {len(identities)} identities but the "
                              f"DiT has {num_labels(transformer)} label rows")
    if (path / "lora").is_dir():
        load_adapter(transformer, path / "lora")
    transformer.eval()
    side = int(meta.get("image_size", 0)) // int(autoencoder.downscale)
    bundle = GeneratorBundle(transformer, scheduler, autoencoder, identities, path,
                             sample_size=side if side and side != transformer.config.sample_size else None)
    return bundle.to(device)


def _load_adapter_bundle(path: Path, device) -> GeneratorBundle:
    """The base bundle named in `base.json`, hash-checked, with this bundle's adapter attached."""
    ref = io.read_json(path / BASE_REF)
    base = Path(ref.get("path", ""))
    if not (base / "transformer").is_dir():
        raise CheckpointError(f"{path}: its base bundle {str(base)!r} (base.json) is missing; expected the "
                              "cold-start bundle this adapter was trained from (run `rgsyn coldstart`)")
    if (base / BASE_REF).is_file():
        raise CheckpointError(f"{path}: its base {base} is itself an adapter bundle; expected a full bundle")
    actual = checkpoint_sha256(base)
    if actual != ref.get("sha256"):
        raise CheckpointError(
            f"{path}: the base bundle {base} changed since this adapter was trained (sha256 "
            f"{actual[:12]}, base.json records {str(ref.get('sha256'))[:12]}); re-run the stage that "
            f"wrote {path} (`rgsyn rl`) on the current cold start")
    bundle = load_generator(base, device="cpu")
    if has_lora(bundle.transformer):
        raise CheckpointError(f"{path}: the base bundle {base} already carries a LoRA adapter; expected "
                              "the merged cold-start bundle")
    if (path / "identities.json").is_file():
        ids = io.read_json(path / "identities.json")
        if ids != bundle.identities:
            raise CheckpointError(f"{path}: identities.json differs from its base bundle {base}'s")
    load_adapter(bundle.transformer, path / "lora")
    bundle.transformer.eval()
    bundle.path = path
    return bundle.to(device)


def checkpoint_sha256(path: str | Path) -> str:
    """One hash over the weights, adapter and identity list of a bundle (for manifests); an
    adapter bundle's covers its base through base.json, which holds the base's hash."""
    path = Path(path)
    h = hashlib.sha256()
    for rel in ("transformer/" + WEIGHTS_NAME, "transformer/config.json", BASE_REF, "lora/" + LORA_WEIGHTS,
                "lora/adapter_config.json", "identities.json"):
        f = path / rel
        if f.is_file():
            h.update(rel.encode())
            h.update(io.file_sha256(f).encode())
    return h.hexdigest()
