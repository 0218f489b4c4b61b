"""Face alignment as insightface does it (`face.align: mtcnn`).

Five landmarks (left eye, right eye, nose tip, left and right mouth corner, in image x/y) come from
facenet-pytorch's MTCNN (its P/R/O-net weights ship inside the package), or from a release's own
landmark file (RFW `test/txts/<G>/<G>_lmk.txt`). A similarity transform (rotation, uniform scale,
translation; cv2.estimateAffinePartial2D, least squares over the five points) maps them onto the
standard ArcFace reference points of a 112x112 crop (insightface `face_align.arcface_dst`), and the
image is warped to 112x112 with it.

- An image already at 112x112 is taken as aligned and used as it is (insightface's own crops:
  `.bin` sets, the `train.rec` release); no detector runs for it.
- A face the detector misses is centre-cropped (the short side) and counted, never dropped.
- Detection runs once: the landmarks of a list of files are cached in `.rgsyn/cache`, keyed by the
  files' paths, sizes and modification times, and written atomically. The detector runs on CUDA
  when there is one, else on the CPU.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rgsyn.errors import DataError

ALIGNED_SIZE = 112
# insightface arcface_dst: left eye, right eye, nose, left / right mouth corner in a 112x112 crop
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
CACHE_DIR = Path(".rgsyn") / "cache"
_CACHE_VERSION = "mtcnn-5pt-v1"   # bump when the detector settings change

# detection states stored in the cache
NO_FACE, DETECTED, AS_IS = 0, 1, 2


def similarity_transform(landmarks, template=ARCFACE_TEMPLATE) -> np.ndarray:
    """The 2x3 similarity matrix M minimising sum_i |M [p_i; 1] - t_i|^2 over the five points.

    RANSAC with an unreachable threshold keeps every point an inlier, so the Levenberg-Marquardt
    refinement OpenCV runs on the inliers gives the least-squares fit insightface uses
    (skimage SimilarityTransform.estimate), not a fit to a subset."""
    import cv2

    src = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(template, dtype=np.float32).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2 or not np.isfinite(src).all():
        raise DataError(f"face landmarks must be {len(dst)} finite (x, y) points, got an array of "
                        f"shape {np.asarray(landmarks).shape}")
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e6,
                                       maxIters=2000, confidence=0.999, refineIters=50)
    if m is None:   # degenerate points (e.g. all equal)
        raise DataError(f"face landmarks {src.tolist()} do not define a similarity transform")
    return m


def warp_to_template(img, landmarks, size: int = ALIGNED_SIZE):
    """PIL image -> the aligned `size` x `size` PIL crop (template scaled by size / 112)."""
    import cv2
    from PIL import Image

    m = similarity_transform(landmarks, ARCFACE_TEMPLATE * (size / ALIGNED_SIZE))
    arr = cv2.warpAffine(np.asarray(img.convert("RGB")), m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return Image.fromarray(arr)


def centre_crop(img, size: int = ALIGNED_SIZE):
    """The centred square of the short side, resized to `size` (the no-detection fallback)."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.crop(box).resize((size, size), Image.BILINEAR)


class MTCNNDetector:
    """facenet-pytorch MTCNN -> the 5 landmarks of the largest face, or None, per image."""

    def __init__(self, device: str | None = None):
        import torch
        from facenet_pytorch import MTCNN

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.mtcnn = MTCNN(select_largest=True, device=self.device)

    def __call__(self, images: list) -> list[np.ndarray | None]:
        """Images of one size are detected in one batch; a batch that fails inside the detector's
        image pyramid (degenerate sizes) is retried one image at a time."""
        try:
            return self._detect(images)
        except (RuntimeError, ValueError):
            if len(images) == 1:
                return [None]
            return [self(images[i:i + 1])[0] for i in range(len(images))]

    def _detect(self, images: list) -> list[np.ndarray | None]:
        # the detector is fp32 (its landmark code converts to numpy): never under a stage's bf16/fp16
        # autocast, which the evaluation that aligns its verification images runs inside
        import torch

        with torch.autocast(device_type=torch.device(self.device).type, enabled=False):
            boxes, _, points = self.mtcnn.detect(images, landmarks=True)
        return [None if b is None or p is None or len(b) == 0 else np.asarray(p[0], dtype=np.float32)
                for b, p in zip(boxes, points)]


def _cache_key(paths: Sequence[str]) -> str:
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


class FaceAligner:
    """`aligner(img, path) -> 112x112 PIL face`; `prepare(paths)` detects (or loads) them first.

    landmarks: {path: (5, 2) array} known from the release (RFW `_lmk.txt`), used instead of the
    detector. Counts: `n_total` images aligned, `n_fallback` centre-cropped for want of a face,
    `n_as_is` already 112x112, `n_given` aligned from release landmarks."""

    def __init__(self, size: int = ALIGNED_SIZE, device: str | None = None,
                 cache_dir: str | os.PathLike = CACHE_DIR, landmarks: dict | None = None,
                 detector: Callable[[list], list] | None = None, batch_size: int = 32):
        self.size, self.device, self.cache_dir, self.batch_size = size, device, Path(cache_dir), batch_size
        self._detector = detector
        self.given: dict[str, np.ndarray] = {}
        self.found: dict[str, np.ndarray | None] = {}
        self.n_total = self.n_fallback = self.n_as_is = self.n_given = 0
        self.add_landmarks(landmarks or {})

    @property
    def detector(self):
        if self._detector is None:   # built on first need: sets with release landmarks never load it
            self._detector = MTCNNDetector(self.device)
        return self._detector

    def add_landmarks(self, landmarks: dict) -> None:
        self.given.update({os.path.abspath(p): np.asarray(v, dtype=np.float32).reshape(5, 2)
                           for p, v in landmarks.items()})

    def prepare(self, paths: Sequence[str]) -> None:
        """Landmarks for every path without release landmarks: from the cache, else detected
        (batches of equal-size images) and cached. Idempotent for paths already prepared."""
        todo = [p for p in dict.fromkeys(os.path.abspath(p) for p in paths)
                if p not in self.given and p not in self.found]
        if not todo:
            return
        cache = self.cache_dir / f"landmarks-{_cache_key(todo)}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                state, points = z["state"], z["points"]
        else:
            state, points = self._detect_all(todo)
            from rgsyn import io as rio

            buf = io.BytesIO()
            np.savez(buf, state=state, points=points)
            rio.write_bytes(cache, buf.getvalue())
        for p, s, pt in zip(todo, state, points):
            self.found[p] = pt if s == DETECTED else None

    def _detect_all(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from rgsyn.data.images import load_image

        state = np.full(len(paths), NO_FACE, dtype=np.int8)
        points = np.zeros((len(paths), 5, 2), dtype=np.float32)
        pending: dict[tuple[int, int], list[tuple[int, object]]] = {}

        def flush(size):
            batch = pending.pop(size)
            for (i, _), pt in zip(batch, self.detector([im for _, im in batch])):
                if pt is not None:
                    state[i], points[i] = DETECTED, pt

        for i, p in enumerate(paths):
            img = load_image(p)
            if img.size == (ALIGNED_SIZE, ALIGNED_SIZE):
                state[i] = AS_IS
                continue
            pending.setdefault(img.size, []).append((i, img))
            if len(pending[img.size]) >= self.batch_size:
                flush(img.size)
        for size in list(pending):
            flush(size)
        return state, points

    def __call__(self, img, path: str | os.PathLike | None = None):
        self.n_total += 1
        if img.size == (ALIGNED_SIZE, ALIGNED_SIZE):
            self.n_as_is += 1
            return img
        key = os.path.abspath(path) if path is not None else None
        if key in self.given:
            self.n_given += 1
            return warp_to_template(img, self.given[key], self.size)
        if key is None or key not in self.found:
            pt = self.detector([img])[0]
            if key is not None:
                self.found[key] = pt
        else:
            pt = self.found[key]
        if pt is None:
            self.n_fallback += 1
            return centre_crop(img, self.size)
        return warp_to_template(img, pt, self.size)

    def counts(self) -> dict[str, int]:
        return {"n_align_total": self.n_total, "n_align_fallback": self.n_fallback,
                "n_align_as_is": self.n_as_is, "n_align_given": self.n_given}
