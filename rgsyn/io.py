"""Atomic file writes: every output is written to a temp file in the same folder, then renamed.

A killed stage therefore never leaves a half-written file under its final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `path`; on success rename it onto `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs the usual mode
        os.replace(tmp_path, path)
        _log_write(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _log_write(path: Path) -> None:
    """With `RGSYN_RANK_LOG` set (see rgsyn.distributed), record which rank wrote `path`."""
    folder = os.environ.get("RGSYN_RANK_LOG")
    if folder:
        rank = os.environ.get("RANK", "0")
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / f"writes-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps({"rank": int(rank), "path": os.path.relpath(path)}) + "\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    """torch.save through a temp file. Load such files with `torch.load(weights_only=True)`.

    The file object, not the temp path, goes to torch.save: given a path, torch names the zip
    archive's root folder after the (random) temp file name, so the same tensors would give
    different bytes on every run and DVC would see a changed output and re-run everything after it.
    """
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def save_image(path: str | os.PathLike, image, **kwargs) -> None:
    """Save a PIL image atomically; the format follows the final suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(path.suffix.lower(), None)
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str | os.PathLike) -> dict:
    """{"files", "bytes", "sha256"} of every file under `root`: sha256 over the sorted relative paths
    and each file's sha256, so a renamed, added, removed or changed file changes it."""
    root = Path(root)
    h = hashlib.sha256()
    n = size = 0
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        h.update(f"{rel}\0{file_sha256(p)}\n".encode())
        n += 1
        size += p.stat().st_size
    return {"files": n, "bytes": size, "sha256": h.hexdigest()}


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
