"""RFW reader: `<root>/test/data/<Group>/<id>/<id>_<i:04d>.jpg` and
`<root>/test/txts/<Group>/<Group>_pairs.txt` (LFW-style lines, no header, 10 folds), and the
release's 5-point landmarks `<root>/test/txts/<Group>/<Group>_lmk.txt` when present."""
from __future__ import annotations

import os
from pathlib import Path

from rgsyn.data.faces import parse_pairs_file
from rgsyn.data.market import check_root
from rgsyn.data.records import PairSet
from rgsyn.data.text import check_name, read_utf8
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


def read_rfw_landmarks(root: str | os.PathLike, group: str) -> dict[str, "np.ndarray"]:
    """{image path: (5, 2) landmarks} from `<root>/test/txts/<G>/<G>_lmk.txt`, or {} without it.

    One line per image: its path (only the last two parts, `<id>/<file>`, are used; they are
    resolved under test/data/<G>/), optionally one more field, then 10 numbers x1 y1 .. x5 y5
    (left eye, right eye, nose, left and right mouth corner). Images the file names but the
    folder lacks are skipped: only images that a pairs file names are ever aligned."""
    import numpy as np

    root = Path(root)
    txt = root / "test" / "txts" / group / f"{group}_lmk.txt"
    if not txt.is_file():
        return {}
    data = root / "test" / "data" / group
    out = {}
    for n, line in enumerate(read_utf8(txt, "RFW landmark file").splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        try:
            if len(tok) not in (11, 12):
                raise ValueError
            pts = np.array([float(t) for t in tok[-10:]], dtype=np.float32).reshape(5, 2)
        except ValueError:
            raise DataError(f"RFW landmark file {txt} line {n}: expected an image path and 10 "
                            f"numbers (x1 y1 .. x5 y5), got {len(tok)} fields: {line.strip()[:80]!r}") from None
        rel = Path(tok[0].replace("\\", "/"))
        path = data.joinpath(*(check_name(part, f"RFW landmark file {txt} line {n}")
                                for part in rel.parts[-2:]))
        if path.is_file():
            out[str(path)] = pts
    return out
