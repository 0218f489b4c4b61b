"""In-memory image sets for downstream training and evaluation.

Images are decoded once (through the data readers' `load_image`), resized to the model input size
and kept as one uint8 tensor (N, 3, H, W); augmentation then runs on whole batches. At toy sizes
this removes the per-step decoding cost that would otherwise dominate a CPU run.

Label spaces (rgsyn.data.splits.label_map):
- ReID: the real training pids, sorted, become labels 0..C-1. A synthetic person set (Market layout,
  file names carry the REAL pid it was generated for) is mapped onto the same labels; a synthetic
  pid that is not a real training pid is a `DataError`.
- Faces: the CASIA-style identity folder names, sorted, become labels; synthetic identity folders
  carry the real identity's folder name, so they share the labels in the same way.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rgsyn import distributed
from rgsyn import io as rio
from rgsyn.checkpoint import load_file
from rgsyn.data.images import load_image
from rgsyn.data.splits import label_map
from rgsyn.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACE_MEAN = (0.5, 0.5, 0.5)
FACE_STD = (0.5, 0.5, 0.5)


CACHE_DIR = Path(".rgsyn") / "cache"


def _cache_file(paths: Sequence[str], size: tuple[int, int]) -> Path:
    h = hashlib.sha256(repr(tuple(size)).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return CACHE_DIR / f"images-{h.hexdigest()[:20]}.pt"


def load_images(paths: Sequence[str], size: tuple[int, int], desc: str = "images",
                transform=None) -> torch.Tensor:
    """Decode `paths` into a uint8 tensor (N, 3, H, W) resized to `size` = (H, W) (bilinear).

    `transform` (face alignment, `rgsyn.data.align.FaceAligner`) runs before resizing:
    `transform.prepare(paths)` once (detection, cached), then `transform(PIL image, path) -> PIL
    image` per image. Without a transform the decoded tensor is cached in `.rgsyn/cache`, keyed by
    the paths, their sizes and modification times and the target size: the ~30 training stages of
    a run read the same evaluation sets, and decoding them was ~15 s of every toy face stage."""
    cache = _cache_file(paths, size) if transform is None and len(paths) else None
    if cache is not None and cache.is_file():
        return load_file(cache, torch.Tensor, f"delete {cache} to decode the images afresh")
    if transform is not None:
        transform.prepare(paths)
    out = _decode(paths, size, transform)
    if cache is not None and distributed.is_main():   # under several processes one rank writes it
        rio.torch_save(cache, out)
    return out


def _decode(paths: Sequence[str], size: tuple[int, int], transform) -> torch.Tensor:
    from PIL import Image

    h, w = size
    out = torch.empty((len(paths), 3, h, w), dtype=torch.uint8)
    for i, p in enumerate(paths):
        img = load_image(p)
        if transform is not None:
            img = transform(img, p)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return out


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 or [0,1] float (B,3,H,W) -> normalised float."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# oneDNN's CPU weight gradient of a stride-2 1x1 convolution in channels-last layout writes outside
# its buffers when the convolution has fewer than 16 input channels (torch 2.14.1; measured with
# glibc's malloc checks on two threads: 2-15 input channels, batches of 3 to 33, several image
# sizes, corrupted; 16 and more never; one thread never). The corruption surfaces later, as a crash
# somewhere else in the process. Such a network (a face backbone narrower than 16, a test's tiny
# net) therefore keeps the NCHW layout (tests/test_downstream_layout.py).
CHANNELS_LAST_MIN_STRIDED_1X1 = 16


def channels_last_safe(module: torch.nn.Module) -> bool:
    """False when `module` holds a strided 1x1 convolution with fewer than 16 input channels (the
    case above), which must not run in channels-last layout."""
    return not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
                   and m.in_channels < CHANNELS_LAST_MIN_STRIDED_1X1 for m in module.modules())


def layout_for(module: torch.nn.Module) -> torch.memory_format:
    """The memory layout a downstream backbone and its inputs use: channels-last (NHWC) where it is
    safe (`channels_last_safe`), else NCHW.

    Channels-last: oneDNN's CPU convolutions take their fast path, and on GPU it is the layout
    tensor cores want. Measured on 2 cores (`benchmarks/bench_channels_last.py`, NCHW /
    channels-last): toy face train step 1.29x, face evaluation batch 1.42x, toy resnet18 re-ID step
    1.03x. Values are the same up to float rounding; `state_dict` consumers see no difference
    (`.contiguous()` is NCHW)."""
    return torch.channels_last if channels_last_safe(module) else torch.contiguous_format


def in_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """A 4-D image batch in `layout` (see `layout_for`); other tensors unchanged."""
    return x.contiguous(memory_format=layout) if x.dim() == 4 else x


@torch.no_grad()
def backbone_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """`model.backbone` on images in the model's layout (`model.layout`) in eval mode (no dropout,
    frozen batch-norm statistics), leaving the model in the mode it was in: the embedding both tasks
    evaluate."""
    was = model.training
    model.eval()
    out = model.backbone(in_layout(images, model.layout))
    model.train(was)
    return out


def resize_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class LabelledImages:
    """Preloaded images with integer labels (and cameras for ReID)."""

    images: torch.Tensor          # uint8 (N, 3, H, W)
    labels: torch.Tensor          # long (N,)
    camids: torch.Tensor | None = None
    pids: torch.Tensor | None = None   # original identity ids (ReID)

    def __len__(self) -> int:
        return int(self.labels.numel())


def reid_label_map(train_records) -> dict[int, int]:
    return label_map(r.pid for r in train_records)


def reid_set(records, size, label_map: dict[int, int] | None = None, desc: str = "images",
             what: str = "") -> LabelledImages:
    """Preload ReID records; with `label_map`, pids become labels (unknown pid -> DataError)."""
    if label_map is not None:
        for r in records:
            if r.pid not in label_map:
                raise DataError(f"{r.path}: pid {r.pid} of {what or 'this set'} is not a training "
                                f"identity of the real set; synthetic pids must be real training pids")
        labels = [label_map[r.pid] for r in records]
    else:
        labels = [r.pid for r in records]
    return LabelledImages(images=load_images([r.path for r in records], size, desc),
                          labels=torch.tensor(labels, dtype=torch.long),
                          camids=torch.tensor([r.camid for r in records], dtype=torch.long),
                          pids=torch.tensor([r.pid for r in records], dtype=torch.long))


def face_label_map(records) -> dict[str, int]:
    return label_map(r.identity for r in records)


def face_set(records, size: int, label_map: dict[str, int], what: str = "", transform=None) -> LabelledImages:
    for r in records:
        if r.identity not in label_map:
            raise DataError(f"{r.path}: identity {r.identity!r} of {what or 'this set'} is not a "
                            "training identity of the real set")
    return LabelledImages(images=load_images([r.path for r in records], (size, size), transform=transform),
                          labels=torch.tensor([label_map[r.identity] for r in records], dtype=torch.long))


def synthetic_dir_or_none(path: str | Path) -> Path | None:
    """The synthetic set folder, or a DataError naming it when the variant needs it and it is missing."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"synthetic set {p} does not exist; run the matching `rgsyn generate` stage first")
    return p


class PKSampler:
    """P identities x K images per batch, deterministic for (seed, epoch), the same number of
    batches in every epoch (`len(sampler)`).

    Chunks follow torchreid's RandomIdentitySampler: every identity's images are shuffled and cut
    into chunks of K (a last partial chunk is dropped); an identity with fewer than K images is
    sampled K times WITH replacement (one chunk), so it still appears, never crashes.

    Batches differ from torchreid's, whose random pick of P identities can strand chunks on fewer
    than P identities, so that its epoch length varies with the seed (and its `__len__` is only an
    estimate); a run sized from one epoch then never finishes. Here each batch takes the P
    identities with the most chunks left, ties broken in a random order of the epoch. With c_i
    chunks for identity i (fixed: it depends on the image counts only) this greedy rule reaches
    the largest possible number of batches,
        B = max{ b : sum_i min(c_i, b) >= P * b },
    in every epoch, since taking the fullest identities keeps that condition true for the batches
    still to come. Returns lists of indices.

    Under `world` processes the sequence of batches is drawn with P x world identities each and
    rank `rank` takes the rank-th P of them: every rank trains on different identities at every
    step, and one process (world 1) gets the single-process sequence.
    """

    def __init__(self, labels: torch.Tensor, P: int, K: int, seed: int, rank: int = 0, world: int = 1):
        self.P, self.K, self.seed = P * world, K, seed
        self.rank_P, self.rank, self.world = P, rank, world
        self.by_label: dict[int, torch.Tensor] = {}
        for lab in torch.unique(labels).tolist():
            self.by_label[lab] = (labels == lab).nonzero(as_tuple=True)[0]
        if len(self.by_label) < self.P:
            procs = f" (P={P} per process x {world} processes)" if world > 1 else ""
            raise DataError(f"PK sampling needs at least P={self.P} identities{procs}, the training set has "
                            f"{len(self.by_label)}; lower reid.P")
        self.n_short = sum(1 for v in self.by_label.values() if len(v) < K)
        counts = [max(1, len(v) // K) for v in self.by_label.values()]
        b = sum(counts) // self.P
        while sum(min(c, b) for c in counts) < self.P * b:
            b -= 1
        self.n_batches = b

    def __len__(self) -> int:
        return self.n_batches

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        chunks: dict[int, list[torch.Tensor]] = {}
        for lab, idx in self.by_label.items():
            if len(idx) < self.K:
                pick = idx[torch.randint(len(idx), (self.K,), generator=g)]
                chunks[lab] = [pick]
            else:
                perm = idx[torch.randperm(len(idx), generator=g)]
                chunks[lab] = [perm[i:i + self.K] for i in range(0, len(perm) - self.K + 1, self.K)]
        labs = sorted(chunks)
        batches = []
        for _ in range(self.n_batches):
            order = [labs[i] for i in torch.randperm(len(labs), generator=g).tolist()]
            order.sort(key=lambda lab: -len(chunks[lab]))   # stable: random order among ties
            chosen = sorted(order[:self.P])
            drawn = [chunks[lab].pop(0) for lab in chosen]
            batches.append(torch.cat(drawn[self.rank * self.rank_P:(self.rank + 1) * self.rank_P]))
        return batches


def random_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True,
                   rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """Shuffled batches of `batch_size`; under `world` processes, global batches of
    batch_size x world of which rank `rank` takes its slice (disjoint images on every rank)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    size = batch_size * world
    stop = n - n % size if drop_last and n >= size else n
    return [perm[i:i + size][rank * batch_size:(rank + 1) * batch_size] for i in range(0, stop, size)]


class RandomBatches:
    """The batch source of classification training: `random_batches` of every epoch, with the
    same number of batches in each (`len`). Fewer images than processes is a `DataError`."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.batch_size = min(batch_size, n // world)
        if self.batch_size < 1:
            raise DataError(f"face training: {n} images cannot be split over {world} processes")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.n_batches = len(self.epoch(0))

    def __len__(self) -> int:
        return self.n_batches

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        return random_batches(self.n, self.batch_size, self.seed, epoch, rank=self.rank, world=self.world)
