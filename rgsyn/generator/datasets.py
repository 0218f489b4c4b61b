"""The image sets the generator trains on, read through the project's dataset readers.

- prior: the generic domain, one folder per class (`params.data.paths.prior`), labels = sorted
  class folders.
- persons: Market-1501 train then CUHK03-NP train (`data.paths.cuhk03_mode`); identity rows are
  the Market pids (sorted) followed by the CUHK03 pids (sorted).
- faces: the CASIA-style id folders; rows = sorted identity folder names.

Images are resized to the square generator size (persons are squashed from H x W to S x S; the
synthesis stage stretches them back) and kept in memory as uint8 (N, 3, S, S). For the paper
profile that is ~2.5 GB for Market + CUHK03 at 256 px, acceptable on a GPU host.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rgsyn.data.images import IMAGE_SUFFIXES, load_image
from rgsyn.errors import DataError


@dataclass
class ImageSet:
    images: torch.Tensor          # (N, 3, S, S) uint8
    labels: torch.Tensor          # (N,) int64 row of the label table
    identities: list[dict]        # row -> {"row", "benchmark", "label"}
    paths: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_tensor_u8(image: Image.Image, size: int) -> torch.Tensor:
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def _stack(paths: list[str], size: int) -> torch.Tensor:
    if not paths:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack([to_tensor_u8(load_image(p), size) for p in paths])


def read_class_folders(root: str | Path) -> tuple[list[str], list[str]]:
    """(class names sorted, per-image paths sorted) of a folder-per-class tree."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"prior domain folder {root} does not exist; expected <root>/<class>/*.png "
                        "(the toy world writes it with `rgsyn data`)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"prior domain folder {root} has no class folders; expected <root>/<class>/*.png")
    return classes, [str(p) for c in classes for p in sorted((root / c).iterdir())
                     if p.suffix.lower() in IMAGE_SUFFIXES]


def prior_set(root: str | Path, size: int) -> ImageSet:
    root = Path(root)
    classes, _ = read_class_folders(root)
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"prior class folder {root / c} has no images; expected .png/.jpg files")
        paths += [str(p) for p in files]
        labels += [k] * len(files)
    ids = [{"row": k, "benchmark": "prior", "label": c} for k, c in enumerate(classes)]
    return ImageSet(_stack(paths, size), torch.tensor(labels, dtype=torch.long), ids, paths)


def persons_set(market_root: str | Path, cuhk03_root: str | Path, cuhk03_mode: str, size: int) -> ImageSet:
    from rgsyn.data.cuhk03 import read_cuhk03
    from rgsyn.data.market import read_market1501

    parts = [("market1501", read_market1501(market_root, splits=("train",)).train),
             ("cuhk03", read_cuhk03(cuhk03_root, mode=cuhk03_mode, splits=("train",)).train)]
    identities, paths, labels = [], [], []
    for bench, records in parts:
        if not records:
            raise DataError(f"{bench}: the training split is empty; expected training images")
        offset = len(identities)
        pids = sorted({r.pid for r in records})
        row_of = {pid: offset + i for i, pid in enumerate(pids)}
        identities += [{"row": row_of[p], "benchmark": bench, "label": int(p)} for p in pids]
        for r in records:
            paths.append(r.path)
            labels.append(row_of[r.pid])
    return ImageSet(_stack(paths, size), torch.tensor(labels, dtype=torch.long), identities, paths)


def faces_set(casia_root: str | Path, size: int) -> ImageSet:
    from rgsyn.data.faces import read_id_folders

    records = read_id_folders(casia_root)
    names = sorted({r.identity for r in records})
    row_of = {n: i for i, n in enumerate(names)}
    identities = [{"row": i, "benchmark": "casia_face", "label": n} for i, n in enumerate(names)]
    paths = [r.path for r in records]
    labels = [row_of[r.identity] for r in records]
    return ImageSet(_stack(paths, size), torch.tensor(labels, dtype=torch.long), identities, paths)


def domain_set(params, domain: str, size: int) -> ImageSet:
    p = params.data.paths
    if domain == "persons":
        return persons_set(p.market1501, p.cuhk03, p.cuhk03_mode, size)
    if domain == "faces":
        return faces_set(p.casia_face, size)
    raise DataError(f"unknown generator domain {domain!r}; expected 'persons' or 'faces'")


def benchmark_real_paths(params, benchmark: str) -> tuple[list[str], list]:
    """(paths, identity labels) of a benchmark's real training split, labels as in identities.json."""
    from rgsyn.data.splits import training_split

    split = training_split(params, benchmark)
    return split.paths, split.identities
