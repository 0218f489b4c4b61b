"""CUHK03-NP reader: `<root>/{labeled,detected}/{bounding_box_train,bounding_box_test,query}/`,
Market-style names (`0001_c1_1.png`); 2 cameras, camid 0-based."""
from __future__ import annotations

import os
from pathlib import Path

from rgsyn.data.market import check_root, read_market_layout
from rgsyn.data.records import ReidSplits
from rgsyn.errors import DataError

MODES = ("labeled", "detected")


def read_cuhk03(root: str | os.PathLike, mode: str = "labeled",
                splits=("train", "query", "gallery")) -> ReidSplits:
    """`root` is the CUHK03-NP folder holding labeled/ and detected/.

    A folder that already is one mode's split layout (bounding_box_train/ directly under root, as
    the synthetic sets are) is read as it is."""
    root = check_root(root, "CUHK03-NP")
    if mode not in MODES:
        raise DataError(f"CUHK03-NP mode {mode!r} is not known; expected one of {list(MODES)}")
    if not (root / mode).is_dir():
        if (root / "bounding_box_train").is_dir():
            return read_market_layout(root, splits, what="CUHK03-NP")
        raise DataError(f"CUHK03-NP folder {root / mode} is missing; expected {root}/{mode}/ with "
                        "bounding_box_train/, bounding_box_test/ and query/")
    return read_market_layout(Path(root) / mode, splits, what=f"CUHK03-NP {mode}")
