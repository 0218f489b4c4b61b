"""The procedural toy identity world: persons, faces and a generic prior domain, written to disk in
the real datasets' layouts so that the real readers read it (see `world.build_world`).

Every image is drawn from its own numpy Generator, seeded from (world seed, set name, item
indices), so the bytes of a file depend only on the seed and the file's identity, never on the
order of rendering or on the number of worker processes.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

JPEG_QUALITY = 90


def key(name: str) -> int:
    """A stable integer for a string (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


def item_rng(seed: int, *keys: int | str) -> np.random.Generator:
    ints = [int(seed)] + [key(k) if isinstance(k, str) else int(k) % (1 << 32) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(ints))


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode without metadata (no timestamps), so the same pixels give the same bytes."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, subsampling=2)
    else:
        image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def jitter_colour(rng: np.random.Generator, colour, amount: float) -> tuple[int, int, int]:
    c = np.asarray(colour, dtype=np.float64) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def finish(canvas: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    """float HxWx3 array in 0..255 -> uint8 image with sensor noise."""
    if noise > 0:
        canvas = canvas + rng.normal(0.0, noise, canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
