"""Face dataset readers: CASIA-WebFace-style id folders, LFW-style `pairs.txt`, insightface `.bin`.

- Id folders: `<root>/<identity>/<image>.jpg`; the identity is the folder name. insightface's
  `train.rec` / `train.idx` release is read as id folders too (rgsyn.data.recordio).
- `pairs.txt` (LFW): a header `<folds> <n>` (n matched and n mismatched pairs per fold), then per
  fold n matched lines `name i j` and n mismatched lines `name1 i name2 j`; image i of `name` is
  `<images>/<name>/<name>_<i:04d>.jpg`. RFW's headerless pairs files are read by the same parser.
- insightface `.bin`: a pickle of `(list of encoded images, list of issame bools)`; images 2k and
  2k+1 form pair k. Its opcodes are checked before it is loaded, and it is loaded with an
  unpickler that imports nothing (rgsyn.data.bin_pickle): a malicious file cannot run code, crash
  the process or build more than its own size in memory. An image referenced several times is one
  bytes object and one cached file, never a copy per reference.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from rgsyn.data import bin_pickle
from rgsyn.data.images import IMAGE_SUFFIXES
from rgsyn.data.market import check_root
from rgsyn.data.records import FaceRecord, PairSet
from rgsyn.data.text import check_name, read_utf8
from rgsyn.errors import DataError


# ------------------------------------------------------------------------------ id folders
def read_id_folders(root: str | os.PathLike) -> list[FaceRecord]:
    """One record per image, sorted by (identity, file name). Files directly under root
    (e.g. a manifest) are ignored; an identity folder without images is an error. A root holding
    insightface's `train.rec` / `train.idx` is unpacked once into id folders under `.rgsyn/cache`
    (rgsyn.data.recordio) and read from there."""
    from rgsyn.data.recordio import rec_files, unpack_to_folders

    root = check_root(root, "face id-folder")
    if rec_files(root) is not None:
        root = unpack_to_folders(root)
    records = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"face id-folder root {root} has no identity folders; expected "
                        "<root>/<identity>/<image>.jpg")
    for folder in folders:
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"identity folder {folder} has no images; expected .jpg/.png files in it")
        records.extend(FaceRecord(str(p), folder.name) for p in images)
    return records


# ------------------------------------------------------------------------------ pairs.txt
def lfw_image(images: Path, name: str, index: int, where: str = "pairs file") -> Path:
    """Image `index` of person `name`; a name that would leave `images` is a DataError."""
    check_name(name, where)
    return images / name / f"{name}_{index:04d}.jpg"


def parse_pairs_file(path: str | os.PathLike, images: str | os.PathLike | None = None,
                     header: str = "required", default_folds: int = 10) -> PairSet:
    """Parse an LFW-style pairs file; header: "required" (LFW) or "optional" (RFW has none).

    Every named image must exist. Without a header the pairs form `default_folds` equal folds."""
    path = Path(path)
    images = Path(images) if images is not None else path.parent
    if not path.is_file():
        raise DataError(f"pairs file {path} is missing; expected an LFW-style pairs.txt there")
    text = read_utf8(path, "pairs file")
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(f"pairs file {path} is empty; expected a '<folds> <pairs per fold>' header "
                        "and pair lines")
    n_folds = n_per = None
    first = lines[0][1]
    if len(first) == 2 and all(t.isdigit() for t in first):
        n_folds, n_per = int(first[0]), int(first[1])
        lines = lines[1:]
    elif header == "required":
        raise DataError(f"pairs file {path} line {lines[0][0]}: expected a header "
                        f"'<folds> <pairs per fold>' (e.g. '10 300'), got {' '.join(first)!r}")
    pairs: list[tuple[str, str, bool]] = []
    for n, tok in lines:
        where = f"pairs file {path} line {n}"
        try:
            if len(tok) == 3:
                a, b, same = (lfw_image(images, tok[0], int(tok[1]), where),
                              lfw_image(images, tok[0], int(tok[2]), where), True)
            elif len(tok) == 4:
                a, b, same = (lfw_image(images, tok[0], int(tok[1]), where),
                              lfw_image(images, tok[2], int(tok[3]), where), False)
            else:
                raise ValueError
        except ValueError:
            raise DataError(f"pairs file {path} line {n}: cannot parse {' '.join(tok)!r}; expected "
                            "'name i j' (matched) or 'name1 i name2 j' (mismatched)") from None
        for p in (a, b):
            if not p.is_file():
                raise DataError(f"pairs file {path} line {n} names image {p}, which does not exist; "
                                f"expected <name>/<name>_<i:04d>.jpg under {images}")
        pairs.append((str(a), str(b), same))
    if n_folds is not None:
        if n_folds < 1 or len(pairs) != 2 * n_folds * n_per:
            raise DataError(f"pairs file {path}: header says {n_folds} folds x {n_per} matched + "
                            f"{n_per} mismatched = {2 * n_folds * n_per} pairs, but the file has "
                            f"{len(pairs)} pair lines")
        return PairSet(pairs, n_folds, 2 * n_per)
    if len(pairs) < default_folds:
        raise DataError(f"pairs file {path} has {len(pairs)} pairs and no header; expected at least "
                        f"{default_folds} so that they split into {default_folds} folds")
    # contiguous folds; when the count does not divide, the first folds hold one pair more
    return PairSet(pairs, default_folds, len(pairs) // default_folds)


def read_pairs(set_root: str | os.PathLike) -> PairSet:
    """A verification set folder: `<set_root>/pairs.txt` and the images `<set_root>/<name>/...`."""
    set_root = check_root(set_root, "verification set")
    return parse_pairs_file(set_root / "pairs.txt", set_root, header="required")


def write_pairs(path: str | os.PathLike, folds: list[list[tuple]], header: bool = True) -> None:
    """Write pairs in LFW order: per fold its matched `(name, i, j)` then mismatched
    `(name1, i, name2, j)` tuples. With header, every fold must hold n matched + n mismatched."""
    from rgsyn import io as rio

    out = []
    if header:
        n = sum(1 for t in folds[0] if len(t) == 3)
        out.append(f"{len(folds)}\t{n}")
    for fold in folds:
        for t in sorted(fold, key=len):
            out.append("\t".join(str(x) for x in t))
    rio.write_text(path, "\n".join(out) + "\n")


# --------------------------------------------------------------------------- insightface .bin
def read_bin(path: str | os.PathLike) -> tuple[list[bytes], list[bool]]:
    """(encoded images, issame) from an insightface verification `.bin`, without running code."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"verification file {path} does not exist; expected an insightface .bin")
    obj = bin_pickle.load(path.read_bytes(), f"verification file {path}")
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], list)
            and isinstance(obj[1], list)):
        raise DataError(f"verification file {path} holds a {type(obj).__name__}; expected a pair "
                        "(list of image bytes, list of issame bools)")
    bins, issame = obj
    if not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise DataError(f"verification file {path}: the image list holds non-bytes entries; "
                        "expected encoded JPEG/PNG bytes")
    if not all(isinstance(s, bool) for s in issame):
        raise DataError(f"verification file {path}: the issame list holds non-bool entries")
    if len(bins) != 2 * len(issame):
        raise DataError(f"verification file {path} has {len(bins)} images for {len(issame)} pairs; "
                        "expected exactly 2 images per pair")
    as_bytes: dict[int, bytes] = {}   # by identity: an object referenced many times stays one object
    for b in bins:
        if id(b) not in as_bytes:
            as_bytes[id(b)] = bytes(b)
    return [as_bytes[id(b)] for b in bins], list(issame)


def write_bin(path: str | os.PathLike, images: list[bytes], issame: list[bool]) -> None:
    """Write an insightface-style `.bin` (protocol 4: bytes pickle natively, nothing imported)."""
    from rgsyn import io as rio

    rio.write_bytes(path, pickle.dumps((list(images), list(issame)), protocol=4))


# ------------------------------------------------------------------ either format, one PairSet
BIN_NAMES = {"agedb": ("agedb_30.bin", "agedb.bin")}


def bin_path(root: str | os.PathLike, name: str) -> Path | None:
    """The insightface file of set `name` under `root` (`agedb_30.bin` for agedb), if any."""
    for fname in BIN_NAMES.get(name, ()) + (f"{name}.bin",):
        if (Path(root) / fname).is_file():
            return Path(root) / fname
    return None


def is_bin_set(root: str | os.PathLike, name: str) -> bool:
    """True when set `name` under `root` is read from an insightface `.bin` (no pairs.txt folder)."""
    return not (Path(root) / name / "pairs.txt").is_file() and bin_path(root, name) is not None


def read_verification(root: str | os.PathLike, name: str,
                      cache_dir: str | os.PathLike = "data/bin_cache") -> PairSet:
    """Verification set `name` (lfw, agedb, calfw, cfp_fp, cplfw) under `root` as a PairSet, from
    `<root>/<name>/pairs.txt` (LFW layout) or from an insightface `.bin`. A `.bin` is unpacked
    once into `<cache_dir>/<name>/<index>.<ext>` (the encoded bytes as they are, never re-encoded)
    so that path-based loaders work on both; pairs k = images 2k, 2k+1; 10 folds."""
    root = check_root(root, "verification")
    if (root / name / "pairs.txt").is_file():
        return read_pairs(root / name)
    path = bin_path(root, name)
    if path is None:
        raise DataError(f"verification set {name!r} is missing under {root}; expected "
                        f"{root / name}/pairs.txt with its images, or {root / name}.bin")
    images, issame = read_bin(path)
    from rgsyn import io as rio

    out = Path(cache_dir) / name
    stamp = out / f".from-{rio.file_sha256(path)[:16]}"
    png = b"\x89PNG"
    first_ref: dict[int, int] = {}    # one file per bytes object, however often the .bin refers to it
    for i, b in enumerate(images):
        first_ref.setdefault(id(b), i)
    files = [out / (f"{first_ref[id(b)]:06d}" + (".png" if b[:4] == png else ".jpg")) for b in images]
    if not stamp.is_file():
        for i, b in enumerate(images):
            if first_ref[id(b)] == i:
                rio.write_bytes(files[i], b)
        rio.write_text(stamp, f"{path}\n")
    pairs = [(str(files[2 * k]), str(files[2 * k + 1]), s) for k, s in enumerate(issame)]
    if len(pairs) < 10:
        raise DataError(f"verification file {path} has {len(pairs)} pairs; expected at least 10 for "
                        "the 10-fold protocol")
    return PairSet(pairs, 10, len(pairs) // 10)   # insightface: 10 contiguous folds
