"""Build, load and check the DiT (diffusers `DiTTransformer2DModel`) and its DDIM scheduler.

`build_dit` makes a fresh class-conditional DiT from `prior.arch` with DiT's own initialisation
(`init_dit_weights`); `load_transformer` reads one from a diffusers folder or hub id (safetensors
only) and `check_transformer` says, naming the expected config, when it does not fit the
autoencoder or the label count. Label dropout is switched off on every DiT built or loaded here
(`rgsyn.generator.identity_head`).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from rgsyn.errors import CheckpointError
from rgsyn.generator.identity_head import disable_label_dropout, label_embedders


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
    disable_label_dropout(model)
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


def policy_scheduler(scheduler, latent: bool = False):
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
    disable_label_dropout(transformer)
    return transformer
