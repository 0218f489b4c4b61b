"""Market-1501 reader (also serves CUHK03-NP and the synthetic person sets, which share its layout).

Layout: `<root>/bounding_box_train/`, `<root>/query/`, `<root>/bounding_box_test/`, files named
`0002_c1s1_000451_03.jpg` = person id, camera (1-based), sequence, frame, box. As in torchreid's
Market1501: pid `-1` (junk) is skipped, pid `0000` (distractors) is kept, camid becomes 0-based.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from rgsyn.data.images import IMAGE_SUFFIXES
from rgsyn.data.records import ReidRecord, ReidSplits
from rgsyn.errors import DataError

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_RE = re.compile(r"^(-1|\d+)_c(\d+)")
EXPECTED_NAME = "<pid>_c<camera>..., e.g. 0002_c1s1_000451_03.jpg (pid -1 = junk, 0000 = distractor)"


def parse_name(path: Path) -> tuple[int, int]:
    """(pid, camid 0-based) from a Market-style file name; DataError if it does not parse."""
    m = NAME_RE.match(path.name)
    if not m or int(m.group(2)) < 1:
        raise DataError(f"file name {path} does not parse as a person image; expected {EXPECTED_NAME}")
    return int(m.group(1)), int(m.group(2)) - 1


def check_root(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} root {root} does not exist or is not a folder; expected the "
                        f"unpacked dataset folder")
    return root


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_split(root: Path, split: str, keep_junk: bool = False) -> list[ReidRecord]:
    if split not in SPLIT_DIRS:
        raise DataError(f"unknown split {split!r}; expected one of {sorted(SPLIT_DIRS)}")
    folder = root / SPLIT_DIRS[split]
    if not folder.is_dir():
        raise DataError(f"split folder {folder} is missing; expected {SPLIT_DIRS[split]}/ with the "
                        f"{split} images under {root}")
    records = []
    files = list_images(folder)
    for path in files:
        pid, camid = parse_name(path)
        if pid == -1 and not keep_junk:
            continue
        records.append(ReidRecord(str(path), pid, camid))
    if not records:
        raise DataError(f"split folder {folder} has no usable images (found {len(files)} image files); "
                        f"expected .jpg/.png files named {EXPECTED_NAME}")
    return records


def read_market_layout(root: str | os.PathLike, splits=("train", "query", "gallery"),
                       keep_junk: bool = False, what: str = "Market-1501") -> ReidSplits:
    root = check_root(root, what)
    out = ReidSplits()
    for split in splits:
        setattr(out, split, read_split(root, split, keep_junk))
    return out


def read_market1501(root: str | os.PathLike, splits=("train", "query", "gallery"),
                    keep_junk: bool = False) -> ReidSplits:
    """Records of the requested splits, sorted by path. Splits not requested stay empty lists."""
    return read_market_layout(root, splits, keep_junk, "Market-1501")
