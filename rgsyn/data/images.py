"""Opening images with one clear `DataError` for a missing, empty or corrupt file."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rgsyn.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"image {path} does not exist; expected an image file there")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is empty (0 bytes); expected a JPEG/PNG image")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to an RGB PIL image (fully loaded, file closed)."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path} is corrupt or truncated ({e}); expected a readable "
                        "JPEG/PNG image") from None


def verify_image(path: str | os.PathLike) -> tuple[int, int]:
    """Check an image thoroughly (header verify, then a full decode); return its (width, height)."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path} is corrupt ({e}); expected a readable JPEG/PNG image") from None
    return load_image(path).size


def decode_bytes(data: bytes, where: str) -> Image.Image:
    """Decode an in-memory encoded image (insightface .bin entries); `where` names it in errors."""
    import io

    if not data:
        raise DataError(f"{where} is empty (0 bytes); expected an encoded JPEG/PNG image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where} is not a readable image ({e}); expected JPEG/PNG bytes") from None
