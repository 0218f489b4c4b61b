"""Build, check, save and load the DiT generator (diffusers `DiTTransformer2DModel`).

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

Identity head (PAPER.md step 2). In diffusers every DiT block has its own adaLN-Zero label embedder
(`transformer_blocks[i].norm1.emb.class_embedder`), and the final layer reuses block 0's. A class
label `y` indexes `embedding_table[y]`; the extra last row `num_classes` is the null label of
classifier-free guidance. `swap_identity_head` replaces every block's table by one with a
zero-initialised row per training identity plus the null row (copied from the prior, so the
unconditional model is unchanged), and updates the config so the bundle reloads with the new size.

Label dropout: diffusers drops labels inside `LabelEmbedding.forward` with its own `torch.rand`
whenever the module is in train mode. We switch that off (`dropout_prob = 0` on every embedder,
table size unchanged) and drop labels explicitly in the training loop, so a forward pass is a
deterministic function of its inputs; the sampler's log-probs depend on that.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rgsyn import io
from rgsyn.errors import CheckpointError
from rgsyn.generator.autoencoder import PixelAutoencoder, VaeAutoencoder, load_vae

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
LORA_WEIGHTS = "adapter_model.safetensors"
BASE_REF = "base.json"       # adapter bundles: {"path", "sha256"} of the bundle they adapt


# ------------------------------------------------------------------------------ label embedders
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


def _disable_builtin_label_dropout(transformer) -> None:
    for emb in label_embedders(transformer):
        emb.dropout_prob = 0.0


# ------------------------------------------------------------------------------------ building
def build_dit(arch, out_channels: int | None = None):
    """A fresh class-conditional DiT from a `DiTArch` (params.prior.arch)."""
    from diffusers import DiTTransformer2DModel

    if arch.sample_size % arch.patch_size:
        raise CheckpointError(f"prior.arch: sample_size {arch.sample_size} is not a multiple of "
                              f"patch_size {arch.patch_size}")
    model = DiTTransformer2DModel(
        num_attention_heads=arch.num_attention_heads, attention_head_dim=arch.attention_head_dim,
        in_channels=arch.in_channels, out_channels=out_channels, num_layers=arch.num_layers,
        sample_size=arch.sample_size, patch_size=arch.patch_size,
        num_embeds_ada_norm=arch.num_classes)
    init_dit_weights(model)
    _disable_builtin_label_dropout(model)
    return model


def init_dit_weights(model) -> None:
    """The initialisation of DiT (Peebles & Xie 2023, `DiT._initialize_weights`), which diffusers
    does not apply (it expects pretrained weights): xavier-uniform linear layers with zero bias, the
    patch projection as a linear layer, label embedding and timestep MLP N(0, 0.02), and adaLN-Zero:
    every block's modulation and the final layer start at zero, so each block starts as the identity
    and the model's output as 0.

    Without it the class table keeps PyTorch's N(0, 1) rows (norm ~sqrt(hidden), as large as the
    timestep embedding), the prior learns to expect such a vector in every conditioning, and the
    zero-initialised identity rows of the cold start (`swap_identity_head`) are far outside what
    the backbone has seen: the conditional branch, amplified by classifier-free guidance, then
    samples patch noise. The toy prior also trains markedly faster with adaLN-Zero.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    proj = model.pos_embed.proj
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    for block in model.transformer_blocks:
        emb = block.norm1.emb
        nn.init.normal_(emb.class_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_2.weight, std=0.02)
        nn.init.zeros_(block.norm1.linear.weight)
        nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def build_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                    clip_sample: bool = True, prediction_type: str = "epsilon"):
    """DDIM scheduler for sampling. `set_alpha_to_one=False`: the last step then keeps a small
    positive variance under eta > 0, so every step, the last included, has a finite log-prob."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         clip_sample=clip_sample, set_alpha_to_one=False,
                         prediction_type=prediction_type, timestep_spacing="leading", steps_offset=1)


def _policy_scheduler(scheduler, latent: bool = False):
    """The scheduler as the sampler policy needs it. `latent`: the DiT works in VAE latent space,
    where x0 is not bounded to [-1, 1], so x0 is never clipped, whatever the hub config says (the
    DDIM default `clip_sample=True` would cut the SD VAE's latents, whose scaled range is ~[-4, 4])."""
    from diffusers import DDIMScheduler

    config = dict(scheduler.config)
    config["set_alpha_to_one"] = False
    if latent:
        config["clip_sample"] = False
    return DDIMScheduler.from_config(config)


def check_transformer(transformer, *, in_channels: int | None = None, sample_size: int | None = None,
                      n_labels: int | None = None, source: str = "the transformer") -> None:
    """Raise `CheckpointError` naming the expected config when the DiT does not fit."""
    from diffusers import DiTTransformer2DModel

    if not isinstance(transformer, DiTTransformer2DModel):
        raise CheckpointError(f"{source}: expected a DiTTransformer2DModel, got {type(transformer).__name__}")
    cfg = transformer.config
    if in_channels is not None and cfg.in_channels != in_channels:
        raise CheckpointError(
            f"{source}: the DiT has in_channels={cfg.in_channels} but the autoencoder gives "
            f"{in_channels}-channel latents; expected in_channels={in_channels}")
    out_ch = cfg.out_channels or cfg.in_channels
    if out_ch not in (cfg.in_channels, 2 * cfg.in_channels):
        raise CheckpointError(f"{source}: out_channels={out_ch}; expected {cfg.in_channels} "
                              f"(epsilon) or {2 * cfg.in_channels} (epsilon + learned sigma)")
    if sample_size is not None and cfg.sample_size != sample_size:
        raise CheckpointError(
            f"{source}: the DiT has sample_size={cfg.sample_size}; expected sample_size={sample_size} "
            "(latent side = image side / autoencoder downscale)")
    embedders = label_embedders(transformer)
    for i, emb in enumerate(embedders):
        rows = emb.embedding_table.num_embeddings
        if rows != emb.num_classes + 1:
            raise CheckpointError(
                f"{source}: block {i} label table has {rows} rows for {emb.num_classes} labels; expected "
                f"{emb.num_classes + 1} (one per label + the null label of classifier-free guidance)")
    if n_labels is not None and embedders[0].num_classes != n_labels:
        raise CheckpointError(f"{source}: the DiT has {embedders[0].num_classes} label rows; "
                              f"expected {n_labels} (num_embeds_ada_norm={n_labels})")


def load_transformer(source: str | Path, subfolder: str | None = "transformer", **check):
    """Load a DiT from a local diffusers folder or a hub id (safetensors only) and check it."""
    from diffusers import DiTTransformer2DModel

    source = str(source)
    kwargs = {"use_safetensors": True}
    local = Path(source)
    if subfolder and (not local.exists() or (local / subfolder).is_dir()):
        kwargs["subfolder"] = subfolder
    where = f"{source}/{kwargs['subfolder']}" if "subfolder" in kwargs else source
    if local.exists() and not (local / kwargs.get("subfolder", "") / "config.json").is_file():
        raise CheckpointError(f"{where}: no config.json; expected a diffusers DiTTransformer2DModel "
                              "folder (config.json + diffusion_pytorch_model.safetensors)")
    try:
        transformer = DiTTransformer2DModel.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"cannot load the DiT from {where!r}: {msg[:300]}. Expected a diffusers "
            "DiTTransformer2DModel (config.json + diffusion_pytorch_model.safetensors) matching its "
            "config") from None
    check_transformer(transformer, source=where, **check)
    _disable_builtin_label_dropout(transformer)
    return transformer


# ------------------------------------------------------------------------------- identity head
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


# -------------------------------------------------------------------------------------- LoRA
def has_lora(module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def add_lora(transformer, lora_params, adapter_name: str = "default"):
    """Inject a peft LoRA adapter (`peft.inject_adapter_in_model`); the base weights stay untouched.

    `set_lora_enabled(transformer, False)` switches to the reference (pre-adapter) model; DPOK's KL
    term uses that. Note: peft marks only adapter weights as trainable.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=lora_params.rank, lora_alpha=lora_params.alpha,
                        target_modules=list(lora_params.target_modules), init_lora_weights=True)
    inject_adapter_in_model(config, transformer, adapter_name=adapter_name)
    return transformer


def set_lora_enabled(transformer, enabled: bool) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in transformer.modules():
        if isinstance(m, BaseTunerLayer):
            m.enable_adapters(enabled)


def merge_lora(transformer):
    """Fold the adapter into the base weights and remove the LoRA layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not has_lora(transformer):
        return transformer
    for m in transformer.modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
    from diffusers.utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(transformer)
    if hasattr(transformer, "peft_config"):
        del transformer.peft_config
    return transformer


def _lora_state(transformer, lora) -> tuple[dict, dict] | None:
    """(adapter config dict, adapter state dict with plain module keys) or None."""
    from peft import get_peft_model_state_dict

    holder = lora if lora is not None else transformer
    if not has_lora(holder):
        return None
    configs = getattr(holder, "peft_config", None) or {}
    name = "default" if "default" in configs else next(iter(configs), None)
    if name is None:
        raise CheckpointError("save_generator: the model has LoRA layers but no peft_config")
    state = get_peft_model_state_dict(holder, adapter_name=name)
    prefix = "base_model.model."
    state = {k[len(prefix):] if k.startswith(prefix) else k: v.detach().cpu().contiguous()
             for k, v in state.items()}
    return configs[name].to_dict(), state


def _base_state(transformer) -> dict[str, torch.Tensor]:
    """Base weights under diffusers' own key names (LoRA tensors dropped, `base_layer.` removed)."""
    out = {}
    for k, v in transformer.state_dict().items():
        if ".lora_" in k or "lora_magnitude" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v.detach().cpu().contiguous()
    return out


# ------------------------------------------------------------------------------------- bundle
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
    the transformer itself (`add_lora` / `peft.inject_adapter_in_model`); either way the adapter goes
    to `lora/` unmerged. With `base` (the bundle folder the transformer was loaded from, unchanged
    but for the adapter) only the adapter and a reference to `base` with its hash are written;
    without it, the base weights go to `transformer/` too.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        transformer = bundle.transformer
        lora_state = _lora_state(transformer, lora)
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
            cfg, state = lora_state
            (tmp / "lora").mkdir()
            io.write_json(tmp / "lora" / "adapter_config.json", _jsonable(cfg))
            save_file(state, str(tmp / "lora" / LORA_WEIGHTS), metadata={"format": "pt"})
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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in (sorted(obj) if isinstance(obj, set) else obj)]
    if hasattr(obj, "value") and not isinstance(obj, (str, int, float, bool)):  # enums
        return obj.value
    return obj


def _load_lora(transformer, folder: Path) -> None:
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    cfg_path, w_path = folder / "adapter_config.json", folder / LORA_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(f"{folder}: expected a peft adapter (adapter_config.json + {LORA_WEIGHTS})")
    raw = json.loads(cfg_path.read_text())
    known = set(LoraConfig.__dataclass_fields__)
    config = LoraConfig(**{k: v for k, v in raw.items() if k in known and k not in ("peft_type", "task_type")})
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, transformer, adapter_name="default")
    result = set_peft_model_state_dict(transformer, load_file(str(w_path)), adapter_name="default")
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise CheckpointError(f"{folder}: adapter weights do not fit the transformer "
                              f"(unexpected keys, e.g. {unexpected[0]!r})")


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
        scheduler = _policy_scheduler(DDIMScheduler.from_pretrained(path, subfolder="scheduler"),
                                      latent=autoencoder.kind == "vae")
    else:
        raise CheckpointError(f"{path}: missing scheduler/ (DDIMScheduler config)")
    identities = io.read_json(path / "identities.json") if (path / "identities.json").is_file() else []
    if identities and len(identities) != num_labels(transformer):
        raise CheckpointError(f"{path}: identities.json lists {len(identities)} identities but the "
                              f"DiT has {num_labels(transformer)} label rows")
    if (path / "lora").is_dir():
        _load_lora(transformer, path / "lora")
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
    _load_lora(bundle.transformer, path / "lora")
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
