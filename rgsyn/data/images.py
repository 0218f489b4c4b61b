"""Opening images with one clear `DataError` for a missing, empty, corrupt, truncated or oversized
file (a decompression bomb: a small file that claims a huge pixel count).

Pixel limit: `MAX_IMAGE_PIXELS` (8192 x 8192, 192 MiB as 8-bit RGB) is checked from the header,
before any pixel is decoded, and is also Pillow's own limit (`Image.MAX_IMAGE_PIXELS`, set here on
purpose rather than left at Pillow's default). The largest images any dataset here holds are
photos of a few megapixels (ImageNet-style prior sets); person and face crops are far smaller.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image

from rgsyn.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_IMAGE_PIXELS = 8192 * 8192
# Pillow's limit is this one: above it Pillow warns, above twice it raises; the warning is made an
# error as well, and `_open` checks the header against the limit itself in any case.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"image {path} does not exist; expected an image file there")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is empty (0 bytes); expected a JPEG/PNG image")


def _bomb(where: str, size: str) -> DataError:
    return DataError(f"{where} is a decompression bomb or not a dataset image ({size}); the limit is "
                     f"{MAX_IMAGE_PIXELS} pixels (rgsyn.data.images.MAX_IMAGE_PIXELS), so it is not decoded")


def _open(source, where: str, mode: str = "load") -> Image.Image | tuple[int, int]:
    """Open `source` (a path or a file object) and check its pixel count from the header; then
    mode "load": decode it to RGB; "verify": Pillow's integrity check, returning (width, height);
    "size": only (width, height), no pixel decoded. Any failure is a DataError naming `where`:
    Pillow's decoders raise many exception types on malformed input (OSError, SyntaxError,
    ValueError, EOFError, struct.error, IndexError, DecompressionBombError, ...), so all of them
    are caught here."""
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise _bomb(where, f"{w}x{h} = {w * h} pixels")
            if mode == "size":
                return w, h
            if mode == "verify":
                im.verify()
                return w, h
            im.load()
            return im.convert("RGB")
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(where, str(e)) from None
    except Exception as e:
        raise DataError(f"{where} is corrupt, truncated or not an image ({type(e).__name__}: {e}); "
                        "expected a readable JPEG/PNG image") from None


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to an RGB PIL image (fully loaded, file closed)."""
    path = Path(path)
    _check_file(path)
    return _open(path, f"image {path}")


def verify_image(path: str | os.PathLike, where: str | None = None) -> tuple[int, int]:
    """Check an image thoroughly (header verify, then a full decode); return its (width, height).
    `where` names the image in errors when the file is a copy (a RecordIO record unpacked)."""
    path = Path(path)
    _check_file(path)
    where = where or f"image {path}"
    _open(path, where, "verify")
    return _open(path, where).size


def decode_bytes(data: bytes, where: str, mode: str = "load") -> Image.Image | tuple[int, int]:
    """Decode an in-memory encoded image (insightface .bin entries, RecordIO records); `where`
    names it in errors. mode "size" reads only the header: (width, height), no pixel decoded."""
    if not data:
        raise DataError(f"{where} is empty (0 bytes); expected an encoded JPEG/PNG image")
    return _open(io.BytesIO(data), where, mode)
