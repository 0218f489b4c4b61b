"""Fake person re-ID releases in their exact layouts, with images from the toy world's renderer.

Market-1501 (`Market-1501-v15.09.15/`): `bounding_box_train/`, `bounding_box_test/`, `query/`,
`gt_bbox/` (hand-drawn boxes of the query ids), `gt_query/` (`*_good.mat` / `*_junk.mat`; dummy
bytes here, the suite never reads them) and a `Thumbs.db` in each image folder, as the zip has.
Names `0002_c1s1_000451_03.jpg`: pid, camera 1-6, sequence, frame, box; the gallery also holds
`0000` distractors and `-1` junk. Images 64x128 (W x H), as released.

CUHK03-NP (`cuhk03-np/`): `labeled/` and `detected/`, each with `bounding_box_train/`,
`bounding_box_test/`, `query/`; names `0001_c1_1.png`; 2 cameras; images of varying sizes (the
boxes were cropped from the video frames as they were), here 40-96 wide and 100-200 high.

`expected_counts` gives what `rgsyn data check` must report for the written tree.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rgsyn.data.toy.persons import render


def _save(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90) if path.suffix == ".jpg" else img.save(path)


def write_market(root: str | Path, n_train: int = 6, n_test: int = 5, n_distractors: int = 3,
                 n_junk: int = 2, seed: int = 0) -> dict:
    """Market-1501 with `n_train` training ids and `n_test` test ids, each seen by 2 of the 6
    cameras (2 train images per camera; test: 1 query and 2 gallery images per camera)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_pids = [2 * i + 2 for i in range(n_train)]           # real ids are sparse: 0002, 0004, ...
    test_pids = [2 * i + 3 for i in range(n_test)]
    counts = {"train": 0, "query": 0, "gallery": 0}
    frame = 451

    def person(split: str, pid: int, cam: int, n: int) -> None:
        nonlocal frame
        frame += int(rng.integers(1, 50))
        name = f"{pid:04d}_c{cam + 1}s{int(rng.integers(1, 7))}_{frame:06d}_{n + 1:02d}.jpg"
        _save(render(seed, "market", pid, cam, n, 128, 64), root / split / name)

    for pid in train_pids:
        for cam in sorted(rng.choice(6, 2, replace=False).tolist()):
            for n in range(2):
                person("bounding_box_train", pid, cam, n)
                counts["train"] += 1
    for pid in test_pids:
        for cam in sorted(rng.choice(6, 2, replace=False).tolist()):
            person("query", pid, cam, 0)
            counts["query"] += 1
            for n in range(1, 3):
                person("bounding_box_test", pid, cam, n)
                counts["gallery"] += 1
            _save(render(seed, "market", pid, cam, 9, 128, 64),
                  root / "gt_bbox" / f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg")
            for kind in ("good", "junk"):
                (root / "gt_query").mkdir(parents=True, exist_ok=True)
                (root / "gt_query" / f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00_{kind}.mat").write_bytes(
                    b"MATLAB 5.0 MAT-file, dummy")
    for i in range(n_distractors):
        _save(render(seed, "market", 1000 + i, i % 6, 0, 128, 64, role="distractor"),
              root / "bounding_box_test" / f"0000_c{i % 6 + 1}s1_{151 + i:06d}_01.jpg")
    for i in range(n_junk):
        _save(render(seed, "market", 2000 + i, i % 6, 0, 128, 64, role="junk"),
              root / "bounding_box_test" / f"-1_c{i % 6 + 1}s1_{401 + i:06d}_03.jpg")
    for split in ("bounding_box_train", "bounding_box_test", "query"):
        (root / split / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnail cache")
    return {"train": {"ids": n_train, "images": counts["train"]},
            "query": {"ids": n_test, "images": counts["query"]},
            # torchreid's count: 0000 distractors are one more id, -1 junk is dropped
            "gallery": {"ids": n_test + (1 if n_distractors else 0),
                        "images": counts["gallery"] + n_distractors},
            "junk_images": n_junk, "distractor_images": n_distractors}


def write_cuhk03(root: str | Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """CUHK03-NP, both modes: every id 2 images per camera in train; test ids 1 query per camera
    and 2 gallery images per camera; image sizes drawn per file."""
    root = Path(root)
    rng = np.random.default_rng(seed + 1)
    out = {}
    for mode in ("labeled", "detected"):
        counts = {"train": 0, "query": 0, "gallery": 0}

        def person(split: str, pid: int, cam: int, n: int) -> None:
            h, w = int(rng.integers(100, 201)), int(rng.integers(40, 97))
            img = render(seed, "cuhk03", pid, cam, n, h, w, box=mode)
            _save(img, root / mode / split / f"{pid:04d}_c{cam + 1}_{n + 1}.png")

        for pid in range(1, n_train + 1):
            for cam in range(2):
                for n in range(2):
                    person("bounding_box_train", pid, cam, n)
                    counts["train"] += 1
        for pid in range(n_train + 1, n_train + n_test + 1):
            for cam in range(2):
                person("query", pid, cam, 0)
                counts["query"] += 1
                for n in range(1, 3):
                    person("bounding_box_test", pid, cam, n)
                    counts["gallery"] += 1
        out[mode] = {"train": {"ids": n_train, "images": counts["train"]},
                     "query": {"ids": n_test, "images": counts["query"]},
                     "gallery": {"ids": n_test, "images": counts["gallery"]}}
    return out
