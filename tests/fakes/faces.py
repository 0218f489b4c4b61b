"""Fake face releases in their exact layouts, with faces from the toy world's renderer.

- CASIA-WebFace (`CASIA-WebFace/`): one folder per identity, 7-digit names (`0000045/001.jpg`),
  unaligned 250x250 images (a face of ~110 px somewhere near the centre of a larger scene).
- Verification root (`face-verification/`): LFW as released (`lfw/pairs.txt` with the header
  `10 <n>`, then per fold n matched and n mismatched lines, images `lfw/<Name>/<Name>_0001.jpg`,
  250x250) and the other four sets as insightface `.bin` files of 112x112 aligned JPEGs, in the
  two encodings found in the wild:
    * `agedb_30.bin`, `cfp_fp.bin`: pickled by Python 3 with protocol 2, so every bytes object is
      `_codecs.encode(<latin-1 str>, 'latin1')`;
    * `calfw.bin`, `cplfw.bin`: protocol 4, `issame` a list of numpy bools (`numpy.bool_`).
- RFW (`RFW/`): `test/data/<Group>/<id>/<id>_000N.jpg` (Freebase-style ids `m.0abc12`),
  `test/txts/<Group>/<Group>_pairs.txt` (no header) and `<Group>_lmk.txt` (one line per image:
  its path, -1, then the 5 landmarks x1 y1 ... x5 y5 in pixels).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from rgsyn.data.toy import item_rng, key
from rgsyn.data.toy.faces import identity, nuisance, render
from rgsyn.paths import RFW_GROUPS

UNALIGNED = 250


def face(seed: int, set_name: str, index: int, n: int, group: str = "Caucasian", canvas: int = UNALIGNED,
         face_px: int = 110) -> Image.Image:
    """One toy face of identity `index`, pasted unaligned into a `canvas`-sized scene."""
    rng = item_rng(seed, "fake", set_name, index, n)
    img = render(identity(seed, set_name, index, group), nuisance(rng), face_px, rng)
    if canvas == face_px:
        return img
    bg = tuple(int(v) for v in rng.integers(40, 200, 3))
    out = Image.new("RGB", (canvas, canvas), bg)
    off = (canvas - face_px) // 2
    dx, dy = (int(v) for v in rng.integers(-12, 13, 2))
    out.paste(img, (off + dx, off + dy))
    return out


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_casia(root: str | Path, n_ids: int = 8, per_id: int = 5, seed: int = 0) -> dict:
    root = Path(root)
    for i in range(n_ids):
        folder = root / f"{45 + 7 * i:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        group = RFW_GROUPS[i % 4]
        for n in range(per_id):
            face(seed, "casia", i, n, group).save(folder / f"{n + 1:03d}.jpg", quality=90)
    return {"ids": n_ids, "images": n_ids * per_id}


def _pair_plan(rng, n_ids: int, per_id: int, n_pairs: int) -> list[tuple]:
    """n_pairs/2 matched (id, i, j) and n_pairs/2 mismatched (id1, i, id2, j), 1-based images."""
    out = []
    for k in range(n_pairs // 2):
        a = int(rng.integers(n_ids))
        i, j = sorted(rng.choice(per_id, 2, replace=False).tolist())
        out.append((a, i + 1, j + 1))
    for k in range(n_pairs // 2):
        a, b = rng.choice(n_ids, 2, replace=False).tolist()
        out.append((a, int(rng.integers(per_id)) + 1, b, int(rng.integers(per_id)) + 1))
    return out


def write_lfw(folder: str | Path, n_ids: int = 6, per_id: int = 3, per_fold: int = 2, seed: int = 0) -> dict:
    """LFW with 10 folds of `per_fold` matched + `per_fold` mismatched pairs."""
    folder = Path(folder)
    names = [f"Person_{chr(65 + i)}{chr(97 + i)}" for i in range(n_ids)]
    for i, name in enumerate(names):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_id):
            face(seed, "lfw", i, n).save(folder / name / f"{name}_{n + 1:04d}.jpg", quality=90)
    rng = np.random.default_rng(seed + 7)
    lines = ["10\t%d" % per_fold]
    for _fold in range(10):
        for t in _pair_plan(rng, n_ids, per_id, 2 * per_fold):
            lines.append("\t".join(str(names[x]) if k in (0, 2) and len(t) == 4 or k == 0 else str(x)
                                   for k, x in enumerate(t)))
    (folder / "pairs.txt").write_text("\n".join(lines) + "\n")
    return {"pairs": 20 * per_fold, "matched": 10 * per_fold, "mismatched": 10 * per_fold}


def _bin_content(seed: int, name: str, n_pairs: int) -> tuple[list[bytes], list[bool]]:
    rng = np.random.default_rng([seed, key(name)])
    images, issame = [], []
    for k in range(n_pairs):
        same = k % 2 == 0
        a = int(rng.integers(6))
        b = a if same else (a + 1 + int(rng.integers(5))) % 6
        images += [_jpeg(face(seed, name, a, 2 * k, canvas=112, face_px=112)),
                   _jpeg(face(seed, name, b, 2 * k + 1, canvas=112, face_px=112))]
        issame.append(same)
    return images, issame


def write_bin_py3_protocol2(path: str | Path, images: list[bytes], issame: list[bool]) -> None:
    """As `pickle.dump((bins, issame), f, protocol=2)` writes it from Python 3: bytes go through
    `_codecs.encode`."""
    Path(path).write_bytes(pickle.dumps((images, issame), protocol=2))


def write_bin_numpy_bools(path: str | Path, images: list[bytes], issame: list[bool]) -> None:
    """`issame` as numpy bools (`numpy.bool_` scalars), as many conversion scripts leave it."""
    Path(path).write_bytes(pickle.dumps((images, [np.bool_(s) for s in issame]), protocol=4))


BIN_FILES = {"agedb": ("agedb_30.bin", write_bin_py3_protocol2), "cfp_fp": ("cfp_fp.bin", write_bin_py3_protocol2),
             "calfw": ("calfw.bin", write_bin_numpy_bools), "cplfw": ("cplfw.bin", write_bin_numpy_bools)}


def write_verification(root: str | Path, n_pairs: int = 20, seed: int = 0) -> dict:
    root = Path(root)
    out = {"lfw": write_lfw(root / "lfw", seed=seed)}
    for name, (fname, writer) in BIN_FILES.items():
        images, issame = _bin_content(seed, name, n_pairs)
        root.mkdir(parents=True, exist_ok=True)
        writer(root / fname, images, issame)
        out[name] = {"pairs": n_pairs, "matched": sum(issame), "mismatched": n_pairs - sum(issame),
                     "images": 2 * n_pairs}
    return out


def write_rfw(root: str | Path, n_ids: int = 5, per_id: int = 3, n_pairs: int = 20, seed: int = 0) -> dict:
    root = Path(root)
    out = {}
    for gi, group in enumerate(RFW_GROUPS):
        ids = [f"m.0{gi}{chr(97 + i)}{i:02d}x" for i in range(n_ids)]
        data = root / "test" / "data" / group
        lmk = []
        for i, ident in enumerate(ids):
            (data / ident).mkdir(parents=True, exist_ok=True)
            for n in range(per_id):
                rel = f"{ident}/{ident}_{n + 1:04d}.jpg"
                face(seed, f"rfw-{group}", i, n, group).save(data / rel, quality=90)
                # a plausible 5-point set (eyes, nose, mouth corners) near the pasted face
                pts = [95, 110, 155, 110, 125, 140, 100, 168, 150, 168]
                lmk.append(f"./test/data/{group}/{rel}\t-1\t" + "\t".join(f"{v:.1f}" for v in pts))
        rng = np.random.default_rng(seed + gi)
        lines = []
        for t in _pair_plan(rng, n_ids, per_id, n_pairs):
            lines.append("\t".join(ids[x] if k == 0 or (k == 2 and len(t) == 4) else str(x)
                                   for k, x in enumerate(t)))
        txts = root / "test" / "txts" / group
        txts.mkdir(parents=True, exist_ok=True)
        (txts / f"{group}_pairs.txt").write_text("\n".join(lines) + "\n")
        (txts / f"{group}_lmk.txt").write_text("\n".join(lmk) + "\n")
        out[group] = {"pairs": n_pairs, "images_in_folder": n_ids * per_id}
    return out
