"""LoRA on the DiT (peft): attach, list, switch off, merge, and read/write an adapter folder.

The cold start may train a LoRA adapter with the identity head and merges it into the weights at
the end (`merge_lora`); the RL stage trains one on the frozen cold-start DiT and keeps it apart
(the adapter bundle of `rgsyn.generator.bundle`). DPOK's reference policy is the same network with
its adapter switched off (`adapter_disabled`).

An adapter folder holds `adapter_config.json` (peft's `LoraConfig`) and `adapter_model.safetensors`
(the LoRA tensors under plain module keys), so no adapter file can run code.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from torch import nn

from rgsyn import io
from rgsyn.errors import CheckpointError, ConfigError

LORA_WEIGHTS = "adapter_model.safetensors"


def has_lora(module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def lora_parameters(module) -> list[nn.Parameter]:
    """The LoRA tensors of `module`, in `named_parameters` order."""
    return [p for n, p in module.named_parameters() if "lora_" in n]


def attach_lora(transformer, lora_params, key: str = "rl.lora") -> list[nn.Parameter]:
    """Freeze the transformer and inject a peft LoRA adapter (`lora_params`: rank, alpha,
    target_modules); returns the LoRA parameters, the only trainable ones. The base weights stay
    untouched, and peft draws the initial A matrices from the global torch RNG. `key` names the
    params section in the error when no module matches."""
    from peft import LoraConfig, inject_adapter_in_model

    transformer.requires_grad_(False)
    config = LoraConfig(r=lora_params.rank, lora_alpha=lora_params.alpha,
                        target_modules=list(lora_params.target_modules), init_lora_weights=True)
    inject_adapter_in_model(config, transformer, adapter_name="default")
    trainable = lora_parameters(transformer)
    for p in trainable:
        p.requires_grad_(True)
    if not trainable:
        raise ConfigError(f"{key}.target_modules: {list(lora_params.target_modules)} match no module "
                          "of the DiT")
    return trainable


def set_lora_enabled(transformer, enabled: bool) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in transformer.modules():
        if isinstance(m, BaseTunerLayer):
            m.enable_adapters(enabled)


@contextlib.contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as its reference: every peft adapter layer switched off, then restored.

    Works however the adapter was attached (``peft.inject_adapter_in_model``, a ``PeftModel``, or
    diffusers' ``add_adapter``), because it toggles the peft tuner layers themselves.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    was_disabled = [m.disable_adapters for m in layers]
    trainable = {id(p): p.requires_grad for m in layers for p in m.parameters()}
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m, off in zip(layers, was_disabled):
            m.enable_adapters(not off)
        for m in layers:  # enable_adapters toggles requires_grad; put back what it was
            for p in m.parameters():
                p.requires_grad_(trainable[id(p)])


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


def adapter_state(transformer, lora=None) -> tuple[dict, dict] | None:
    """(adapter config dict, adapter state dict with plain module keys) of `lora` (a peft
    `PeftModel` wrapping the transformer) or of the transformer itself; None without an adapter."""
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


def write_adapter(folder: Path, config: dict, state: dict) -> None:
    """Write an adapter folder (config JSON + safetensors) from `adapter_state`'s pair."""
    from safetensors.torch import save_file

    folder.mkdir()
    io.write_json(folder / "adapter_config.json", _jsonable(config))
    save_file(state, str(folder / LORA_WEIGHTS), metadata={"format": "pt"})


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in (sorted(obj) if isinstance(obj, set) else obj)]
    if hasattr(obj, "value") and not isinstance(obj, (str, int, float, bool)):  # enums
        return obj.value
    return obj


def load_adapter(transformer, folder: Path) -> None:
    """Inject the adapter of `folder` into `transformer` and load its weights (enabled)."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    cfg_path, w_path = folder / "adapter_config.json", folder / LORA_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(f"{folder}: expected a peft adapter (adapter_config.json + {LORA_WEIGHTS})")
    raw = json.loads(cfg_path.read_text())
    known = set(LoraConfig.__dataclass_fields__)
    config = LoraConfig(**{k: v for k, v in raw.items() if k in known and k not in ("peft_type", "task_type")})
    inject_adapter_in_model(config, transformer, adapter_name="default")
    result = set_peft_model_state_dict(transformer, load_file(str(w_path)), adapter_name="default")
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise CheckpointError(f"{folder}: adapter weights do not fit the transformer "
                              f"(unexpected keys, e.g. {unexpected[0]!r})")
