"""Numeric precision of every stage: `compute.precision` = bf16 | fp16 | fp32.

    prec = Precision(params.compute.precision, device)
    with prec.autocast():                  # forward passes (bf16/fp16 autocast; no-op in fp32)
        loss = ...
    prec.backward(loss, accelerator)       # fp16: loss scaled by the GradScaler
    grad_norm = prec.step(optimizer, params, max_norm, accelerator)   # unscale, clip, step, update

- bf16 (the paper default): torch.autocast with bfloat16; no loss scaling (bf16 has fp32's range).
- fp16: torch.autocast with float16 and a `torch.amp.GradScaler` (dynamic loss scaling; a step
  whose gradients overflow is skipped, as in Micikevicius et al. 2018).
- fp32 (toy/smoke): no autocast. TF32 matmuls and convolutions are switched on where CUDA exists
  (`set_float32_matmul_precision("high")`); the CPU paths, and so the toy results, are untouched.

Parameters stay fp32 in every mode (master weights); autocast casts per op. Log-probabilities and
KL terms are computed by the callers in fp32 arithmetic on `.float()` model outputs
(rgsyn/generator/sampler.py, rgsyn/rl/dpok.py), outside the low-precision region.

Why torch.autocast and not `Accelerator(mixed_precision=...)`: accelerate keeps its state in a
process-wide singleton whose mixed_precision cannot change once set, so one process (the tests,
`rgsyn estimate`, a notebook) could not hold two stages of different precision; and the RL loop
must leave autocast for its fp32 log-prob arithmetic in the middle of a forward. The Accelerators
of the stages therefore run with mixed_precision="no" and this module applies the precision.
"""
from __future__ import annotations

import contextlib
import math

import torch

from rgsyn.errors import ConfigError

PRECISIONS = ("bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 matmuls/convolutions on CUDA (no effect on CPU)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def _device_type(device) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


class Precision:
    """The autocast context and the gradient scaler of one precision on one device type."""

    def __init__(self, name: str = "fp32", device=None):
        if name not in PRECISIONS:
            raise ConfigError(f"compute.precision: value {name!r} is not allowed; choose one of "
                              f"{list(PRECISIONS)}")
        self.name = name
        self.device_type = _device_type(device)
        self.dtype = DTYPES[name]
        if name == "fp32":
            enable_tf32()
        # GradScaler(enabled=False) is a pass-through, so fp32/bf16 take the same code path
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=name == "fp16")

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, {self.device_type!r})"

    @property
    def enabled(self) -> bool:
        return self.name != "fp32"

    def autocast(self):
        """The low-precision region for forward passes; a null context in fp32."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, accelerator=None) -> None:
        scaled = self.scaler.scale(loss)
        if accelerator is not None:
            accelerator.backward(scaled)
        else:
            scaled.backward()

    def unscale(self, optimizer) -> None:
        """Divide the gradients by the loss scale (fp16) before clipping or reading them."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer, parameters=None, max_norm: float = 0.0, accelerator=None) -> float:
        """Unscale, clip `parameters` to `max_norm` (0 = no clipping, the norm is still returned),
        step and update the scale. Returns the gradient norm (inf/nan on an fp16 overflow step,
        which the scaler skips); with `parameters=None` nothing is clipped or measured (0.0)."""
        self.unscale(optimizer)
        norm = 0.0
        if parameters is not None:
            limit = max_norm if max_norm > 0 else math.inf
            if accelerator is not None:
                norm = accelerator.clip_grad_norm_(parameters, limit)
            else:
                norm = torch.nn.utils.clip_grad_norm_(parameters, limit)
        self.scaler.step(optimizer)
        self.scaler.update()
        return float(norm)

    def overflowed(self, grad_norm: float) -> bool:
        """True when a non-finite gradient norm is an fp16 overflow (the scaler skipped the step)
        rather than a divergence."""
        return self.scaler.is_enabled() and not math.isfinite(grad_norm)


def maybe_compile(module, enabled: bool):
    """`torch.compile(module)` when `enabled` (compute.compile), else the module itself."""
    if not enabled:
        return module
    return torch.compile(module)
