"""Face dataset readers: CASIA-WebFace-style id folders, LFW-style `pairs.txt`, insightface `.bin`.

- Id folders: `<root>/<identity>/<image>.jpg`; the identity is the folder name.
- `pairs.txt` (LFW): a header `<folds> <n>` (n matched and n mismatched pairs per fold), then per
  fold n matched lines `name i j` and n mismatched lines `name1 i name2 j`; image i of `name` is
  `<images>/<name>/<name>_<i:04d>.jpg`. RFW's headerless pairs files are read by the same parser.
- insightface `.bin`: a pickle of `(list of encoded images, list of issame bools)`; images 2k and
  2k+1 form pair k. It is read with an unpickler that imports nothing: the few globals found in
  real files (`_codecs.encode` and `bytes()` for bytes in protocol-2 pickles written by Python 3,
  numpy's bool scalar and `dtype` for an `issame` of `numpy.bool_`) are mapped onto small local
  stand-ins that only rebuild bytes and bools; every other global is refused, so a malicious file
  cannot run code.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

from rgsyn.data.images import IMAGE_SUFFIXES
from rgsyn.data.market import check_root
from rgsyn.data.records import FaceRecord, PairSet
from rgsyn.errors import DataError


# ------------------------------------------------------------------------------ id folders
def read_id_folders(root: str | os.PathLike) -> list[FaceRecord]:
    """One record per image, sorted by (identity, file name). Files directly under root
    (e.g. a manifest) are ignored; an identity folder without images is an error."""
    root = check_root(root, "face id-folder")
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
def lfw_image(images: Path, name: str, index: int) -> Path:
    return images / name / f"{name}_{index:04d}.jpg"


def parse_pairs_file(path: str | os.PathLike, images: str | os.PathLike | None = None,
                     header: str = "required", default_folds: int = 10) -> PairSet:
    """Parse an LFW-style pairs file; header: "required" (LFW) or "optional" (RFW has none).

    Every named image must exist. Without a header the pairs form `default_folds` equal folds."""
    path = Path(path)
    images = Path(images) if images is not None else path.parent
    if not path.is_file():
        raise DataError(f"pairs file {path} is missing; expected an LFW-style pairs.txt there")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
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
        try:
            if len(tok) == 3:
                a, b, same = lfw_image(images, tok[0], int(tok[1])), lfw_image(images, tok[0], int(tok[2])), True
            elif len(tok) == 4:
                a, b, same = lfw_image(images, tok[0], int(tok[1])), lfw_image(images, tok[2], int(tok[3])), False
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
class _Refused(pickle.UnpicklingError):
    pass


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """`_codecs.encode(text, 'latin1')`: how Python 3 writes bytes in a protocol < 3 pickle."""
    if not isinstance(text, str) or str(encoding).replace("-", "").lower() != "latin1":
        raise _Refused(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}); only "
                       "latin1-encoded text (pickled bytes) is allowed")
    return text.encode("latin1")


def _empty_bytes(*args):
    """`bytes()` / `bytearray()` with no argument: Python 3 writes b'' this way in protocol 2."""
    if args:
        raise _Refused("refusing bytes() with arguments; only the empty bytes object is allowed")
    return b""


class _DType:
    """Stand-in for `numpy.dtype(name, align, copy)`; the pickled state (byte order etc.) is
    irrelevant for a bool and ignored. Names arrive as bytes from Python 2 pickles."""

    def __init__(self, name, *args):
        self.name = name.decode("latin1") if isinstance(name, bytes) else str(name)

    def __setstate__(self, state):
        pass


def _numpy_scalar(dtype, data=None):
    """Stand-in for numpy's `multiarray.scalar(dtype, raw bytes)`: only a bool (`b1`) becomes a
    Python bool; any other dtype is refused (issame never needs one)."""
    if not isinstance(dtype, _DType) or dtype.name not in ("b1", "?", "bool"):
        name = getattr(dtype, "name", type(dtype).__name__)
        raise _Refused(f"refusing a numpy scalar of dtype {name!r}; only bool scalars are allowed")
    if isinstance(data, str):        # Python 3 protocol 0/1 text form
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != 1:
        raise _Refused("refusing a numpy bool scalar whose data is not one byte")
    return data[0] != 0


# (module, name) -> local stand-in: the whole allow-list of globals a `.bin` may name
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytearray"): _empty_bytes,
    ("__builtin__", "bytearray"): _empty_bytes,
    ("numpy", "dtype"): _DType,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
}


class _AllowListUnpickler(pickle.Unpickler):
    """Imports nothing: each global must be on `_ALLOWED_GLOBALS` and resolves to its stand-in."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to load {module}.{name}") from None


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], list[bool]]:
    """(encoded images, issame) from an insightface verification `.bin`, without running code."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"verification file {path} does not exist; expected an insightface .bin")
    data = path.read_bytes()
    try:
        obj = _AllowListUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise DataError(f"verification file {path} was refused: {e}; expected a pickle of "
                        "(list of image bytes, list of bools) naming no global outside the allow-list "
                        "(_codecs.encode, bytes, numpy's bool scalar and dtype)") from None
    except Exception as e:  # truncated or not a pickle at all
        raise DataError(f"verification file {path} is not a readable pickle ({type(e).__name__}: {e}); "
                        "expected an insightface .bin") from None
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
    return [bytes(b) for b in bins], list(issame)


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
    files = [out / (f"{i:06d}" + (".png" if b[:4] == png else ".jpg")) for i, b in enumerate(images)]
    if not stamp.is_file():
        for f, b in zip(files, images):
            rio.write_bytes(f, b)
        rio.write_text(stamp, f"{path}\n")
    pairs = [(str(files[2 * k]), str(files[2 * k + 1]), s) for k, s in enumerate(issame)]
    if len(pairs) < 10:
        raise DataError(f"verification file {path} has {len(pairs)} pairs; expected at least 10 for "
                        "the 10-fold protocol")
    return PairSet(pairs, 10, len(pairs) // 10)   # insightface: 10 contiguous folds
