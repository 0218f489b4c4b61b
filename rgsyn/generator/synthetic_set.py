"""The synthetic image set of one benchmark and one generator, in the layout the downstream
readers expect, and its publication.

- persons (market1501, cuhk03): `bounding_box_train/{pid:04d}_c1s9_{n:06d}_00.jpg` (the real pid,
  camera 1, sequence s9 = synthetic), resized to the ReID input `reid.height x reid.width`;
- faces (casia_face): `<identity>/syn_{n:04d}.jpg`, resized to `face.size`;

plus `manifest.csv` (`MANIFEST_FIELDS`: path, identity, row, seed, checkpoint_sha256).
`publish_and_report` moves a finished work folder onto `paths.synthetic_dir(B, G)` in one rename,
writes its generation metrics and digest, and logs them with a sample grid (per row: the
synthetic images of one identity, then real images of the same identity). The DiT generators
(`rgsyn.generator.synthesis`) and the toy world's oracle (`rgsyn.generator.oracle`) both write
through it.
"""
from __future__ import annotations

import csv
import io as _io
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rgsyn import io, paths
from rgsyn.config import Params

MANIFEST_FIELDS = ("path", "identity", "row", "seed", "checkpoint_sha256")
GRID_COLS = 4


def output_size(params: Params, benchmark: str) -> tuple[int, int]:
    """(height, width) of the written images: the downstream input size."""
    if paths.DOMAIN_OF[benchmark] == "persons":
        return params.reid.height, params.reid.width
    return params.face.size, params.face.size


def file_name(benchmark: str, label, n: int) -> str:
    if paths.DOMAIN_OF[benchmark] == "persons":
        return f"bounding_box_train/{int(label):04d}_c1s9_{n:06d}_00.jpg"
    return f"{label}/syn_{n:04d}.jpg"


def to_pil(image: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr)
    h, w = size
    return im if im.size == (w, h) else im.resize((w, h), Image.BICUBIC)


def write_manifest(path: Path, rows: list[dict]) -> None:
    """A manifest CSV (`MANIFEST_FIELDS`) of `rows`, written atomically."""
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS)
    w.writeheader()
    w.writerows(rows)
    io.write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sample_grid(syn_by_id: dict[str, list[str]], real_by_id: dict[str, list[str]], labels: list[str],
                size: tuple[int, int], out: Path) -> Path:
    """Rows = identities; GRID_COLS synthetic images, a gap, then GRID_COLS real images."""
    h, w = size
    gap = max(2, w // 4)
    canvas = Image.new("RGB", (2 * GRID_COLS * w + gap, len(labels) * h), (255, 255, 255))
    from rgsyn.data.images import load_image

    for r, lab in enumerate(labels):
        for j, p in enumerate(syn_by_id.get(lab, [])[:GRID_COLS]):
            canvas.paste(load_image(p).resize((w, h)), (j * w, r * h))
        for j, p in enumerate(real_by_id.get(lab, [])[:GRID_COLS]):
            canvas.paste(load_image(p).resize((w, h)), (GRID_COLS * w + gap + j * w, r * h))
    scale = max(1, 256 // max(h, 1))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    io.save_image(out, canvas)
    return out


def publish_and_report(run, work: Path, benchmark: str, generator: str, metrics: dict, rows: list[dict],
                       real_paths: list[str], real_labels, grid_ids: list[str], size) -> None:
    """Publish `work/out` as the generator's synthetic folder in one rename, write its metrics JSON
    and sample grid (synthetic | real per identity), and log them to the stage's MLflow run."""
    dest = paths.synthetic_dir(benchmark, generator)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    (work / "out").rename(dest)
    shutil.rmtree(work, ignore_errors=True)

    out_json = paths.generation_metrics(benchmark, generator)
    io.write_json(out_json, metrics)
    io.write_json(paths.synthetic_digest(benchmark, generator), {"benchmark": benchmark, "generator": generator,
                                                                 **io.tree_digest(dest)})
    syn_by_id: dict[str, list[str]] = {}
    for r in rows:
        syn_by_id.setdefault(r["identity"], []).append(str(dest / r["path"]))
    real_by_id: dict[str, list[str]] = {}
    for p, lab in zip(real_paths, real_labels):
        real_by_id.setdefault(str(lab), []).append(p)
    grid = sample_grid(syn_by_id, real_by_id, grid_ids, size, out_json.with_name(out_json.stem + "-grid.png"))
    run.log_metrics({f"generate/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.log_artifact(grid)
    run.log_artifact(out_json)
    run.log_artifact(dest / "manifest.csv")
