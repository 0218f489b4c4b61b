"""RFW reader: `<root>/test/data/<Group>/<id>/<id>_<i:04d>.jpg` and
`<root>/test/txts/<Group>/<Group>_pairs.txt` (LFW-style lines, no header, 10 folds)."""
from __future__ import annotations

import os

from rgsyn.data.faces import parse_pairs_file
from rgsyn.data.market import check_root
from rgsyn.data.records import PairSet
from rgsyn.errors import DataError
from rgsyn.paths import RFW_GROUPS


def read_rfw(root: str | os.PathLike, groups=RFW_GROUPS) -> dict[str, PairSet]:
    root = check_root(root, "RFW")
    for group in groups:
        data = root / "test" / "data" / group
        if not data.is_dir():
            raise DataError(f"RFW group folder {data} is missing; expected test/data/{group}/ "
                            f"under {root}")
    for group in groups:
        txt = root / "test" / "txts" / group / f"{group}_pairs.txt"
        if not txt.is_file():
            raise DataError(f"RFW pairs file {txt} is missing; expected test/txts/{group}/"
                            f"{group}_pairs.txt under {root}")
    return {group: parse_pairs_file(root / "test" / "txts" / group / f"{group}_pairs.txt",
                                    root / "test" / "data" / group, header="optional")
            for group in groups}
