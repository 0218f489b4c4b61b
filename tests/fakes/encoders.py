"""A stand-in identity encoder for the generate stages' metric code (no trained encoder needed)."""
from __future__ import annotations

import torch

from rgsyn import paths


class FakeEncoder(torch.nn.Module):
    """Deterministic: 2x2-pooled colours through a fixed random projection, unit length."""

    def __init__(self):
        super().__init__()
        self.w = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))

    def encode(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)
        return torch.nn.functional.normalize(x @ self.w + 0.01, dim=1)


def install(monkeypatch) -> None:
    """Make the generation metrics (`rgsyn.generator.generation_metrics`) load FakeEncoder, and put placeholder reward and gold encoder
    files where the stages check for them (cwd-relative, as the stages read them)."""
    from rgsyn.generator import generation_metrics

    monkeypatch.setattr(generation_metrics, "load_identity_encoder", lambda path, device="cpu": FakeEncoder())
    for dom in paths.DOMAINS:
        for which in ("reward", "gold"):
            f = paths.encoder_path(dom, which)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"stand-in")
