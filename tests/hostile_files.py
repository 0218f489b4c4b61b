"""A corpus of hostile and broken dataset files, made by the tests themselves (no binary fixture is
committed). Each case writes one dataset folder that is valid except for one thing, and names the
`rgsyn data check --benchmark` that reads it and the error it must give (a regular expression).

Before the readers checked their input, these files crashed the process (the nested-tuple dict key:
SIGSEGV), hung it (a RecordIO header label of 3.4e38), cost hundreds of MB (a 9-byte memo index),
wrote gigabytes (one bytes object referenced many times), followed names out of the dataset folder
or gave raw tracebacks.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from rgsyn.data.faces import write_bin
from rgsyn.data.recordio import MAGIC, write_recordio
from rgsyn.paths import RFW_GROUPS, VERIFICATION_SETS


@dataclass(frozen=True)
class Case:
    benchmark: str                  # the `data check --benchmark` that reads the folder
    make: Callable[[Path], None]    # writes the dataset folder
    error: str                      # regex the one-line error must match


# ------------------------------------------------------------------------------- encoded images
def jpeg(colour=(120, 10, 10), size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def png_bomb(side: int = 20000) -> bytes:
    """A valid one-colour 1-bit PNG of side x side pixels (~60 KB for 20000: 400 Mpx, which Pillow
    would hold as 400 MB in mode "1" and 1.2 GB as RGB), written chunk by chunk so that the test
    never holds the image itself."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)            # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.compress(row * (side % 1000))
    idat += z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    """The first 60% of a detailed 256x256 JPEG: its header is whole, its pixels are not."""
    buf = io.BytesIO()
    Image.effect_mandelbrot((256, 256), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()[: buf.tell() * 6 // 10]


# ----------------------------------------------------------------------------- Market folders
def market(root: Path, extra: tuple[str, bytes] | None = None) -> None:
    """A valid Market-1501 layout; `extra` = (file name, bytes) added to query/."""
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (root / split).mkdir(parents=True)
        for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000452_01.jpg"):
            (root / split / name).write_bytes(jpeg())
    if extra:
        (root / "query" / extra[0]).write_bytes(extra[1])


# --------------------------------------------------------------------------- verification root
def verification(root: Path, lfw_bin: bytes | None = None, lfw_pairs: bytes | None = None) -> None:
    """Five valid sets (lfw as a pairs folder, the others as .bin); `lfw_bin` replaces lfw by a
    `lfw.bin` of these bytes, `lfw_pairs` replaces lfw's pairs.txt."""
    root.mkdir(parents=True)
    for name in VERIFICATION_SETS[1:]:
        write_bin(root / f"{name}.bin", [jpeg((10 * i, 0, 0)) for i in range(20)], [i % 2 == 0 for i in range(10)])
    if lfw_bin is not None:
        (root / "lfw.bin").write_bytes(lfw_bin)
        return
    for name in ("a", "b"):
        (root / "lfw" / name).mkdir(parents=True)
        for i in (1, 2):
            (root / "lfw" / name / f"{name}_{i:04d}.jpg").write_bytes(jpeg())
    (root / "lfw" / "pairs.txt").write_bytes(lfw_pairs or b"1\t1\na\t1\t2\na\t1\tb\t2\n")


def bin_pickle(images, issame, protocol: int = 4) -> bytes:
    return pickle.dumps((images, issame), protocol=protocol)


def nested_dict_key(levels: int = 1_000_000) -> bytes:
    """{((...(),),): None} nested `levels` deep, ~1 MB: hashing the key recursed until SIGSEGV."""
    return b"\x80\x04}" + b")" + b"\x85" * levels + b"Ns."


def deep_tuple(levels: int = 1_000_000) -> bytes:
    return b"\x80\x04)" + b"\x85" * levels + b"]\x86."


def memo_index(index: int = 2 ** 25) -> bytes:
    """9 bytes: an empty list stored at memo index 2**25 (the C unpickler sized its memo table to
    it: 256 MB for this index, more for a larger one)."""
    return b"\x80\x02]r" + struct.pack("<I", index) + b"."


def shared_image(refs: int = 20_000) -> bytes:
    """A valid .bin whose one detailed JPEG (~20 KB) is referenced `refs` times through the memo
    (~2 bytes a reference): read naively, `refs` copies in memory and on disk."""
    buf = io.BytesIO()
    Image.effect_mandelbrot((160, 160), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB").save(buf, "JPEG", quality=95)
    return bin_pickle([buf.getvalue()] * refs, [True, False] * (refs // 4))


def list_grown_after_use() -> bytes:
    """A list placed in a tuple, then appended to (how a structure deeper than it looks is built)."""
    return b"\x80\x04]\x94h\x00\x85h\x00N" + b"a" + b"\x86."


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


# ---------------------------------------------------------------------------------- RecordIO
def frame(body: bytes, cflag: int = 0, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return struct.pack("<II", MAGIC, (cflag << 29) | n) + body + b"\0" * (-len(body) % 4)


def irheader(flag: int, label: float, labels=()) -> bytes:
    return struct.pack("<IfQQ", flag, label, 0, 0) + b"".join(struct.pack("<f", v) for v in labels)


def recordio(root: Path, records: list[bytes], idx: bytes | None = None) -> None:
    """`train.rec` of these framed records (record k at key k) and its `.idx` (or `idx` as given)."""
    root.mkdir(parents=True)
    offsets, blob = [], b""
    for r in records:
        offsets.append(len(blob))
        blob += r
    (root / "train.rec").write_bytes(blob)
    (root / "train.idx").write_bytes(idx if idx is not None else
                                     "".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)).encode())


def casia(body_1: bytes, header_labels=(3.0, 4.0), idx=None):
    """A RecordIO CASIA: header (a, b), image record 1 = `body_1` (whole), image record 2 valid,
    identity record 3; `idx`: the `.idx` bytes, or a function of the framed records giving them."""
    def make(root: Path) -> None:
        recs = [frame(irheader(2, 0.0, header_labels)), frame(body_1),
                frame(irheader(0, 5.0) + jpeg()), frame(irheader(2, 0.0, (1.0, 3.0)))]
        recordio(root, recs, idx(recs) if callable(idx) else idx)
    return make


def records(recs: list[bytes]):
    """A RecordIO CASIA of exactly these framed records."""
    return lambda root: recordio(root, recs)


def _offsets(recs: list[bytes]) -> list[int]:
    out, pos = [], 0
    for r in recs:
        out.append(pos)
        pos += len(r)
    return out


def _idx(pairs) -> bytes:
    return "".join(f"{k}\t{o}\n" for k, o in pairs).encode()


def _split_record(root: Path) -> None:
    """Record 1 split into a first part (flag 1) followed by a whole record's flag 0."""
    body = irheader(0, 5.0) + jpeg()
    recs = [frame(irheader(2, 0.0, (3.0, 4.0))), frame(body[:40], 1) + frame(body[40:], 0),
            frame(irheader(0, 5.0) + jpeg()), frame(irheader(2, 0.0, (1.0, 3.0)))]
    recordio(root, recs)


def _valid_casia(root: Path) -> None:
    write_recordio(root, [(0, jpeg()), (0, jpeg((0, 90, 0))), (4, jpeg((0, 0, 90)))])


# -------------------------------------------------------------------------------------- RFW
def rfw(root: Path, hostile_pairs: bytes | None = None, hostile_lmk: bytes | None = None) -> None:
    """Four valid groups (2 ids x 2 images, 10 pairs); the first group's pairs file or landmark
    file replaced by the hostile bytes when given."""
    for g, group in enumerate(RFW_GROUPS):
        for name in ("m.0a", "m.0b"):
            (root / "test" / "data" / group / name).mkdir(parents=True)
            for i in (1, 2):
                (root / "test" / "data" / group / name / f"{name}_{i:04d}.jpg").write_bytes(jpeg())
        txts = root / "test" / "txts" / group
        txts.mkdir(parents=True)
        pairs = b"m.0a\t1\t2\n" * 5 + b"m.0a\t1\tm.0b\t2\n" * 5
        (txts / f"{group}_pairs.txt").write_bytes(hostile_pairs if g == 0 and hostile_pairs else pairs)
        if g == 0 and hostile_lmk:
            (txts / f"{group}_lmk.txt").write_bytes(hostile_lmk)


def _outside(parent: Path) -> None:
    """What the name `../leak` reaches from a set folder under `parent`: image i is
    `<set>/../leak/../leak_000i.jpg` = `<parent>/leak_000i.jpg`; written so that following the
    name would succeed."""
    (parent / "leak").mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        (parent / f"leak_{i:04d}.jpg").write_bytes(jpeg())


def _escape_lfw(root: Path) -> None:
    verification(root, lfw_pairs=b"1\t1\n../leak\t1\t2\na\t1\tb\t2\n")
    _outside(root)


def _escape_rfw(root: Path) -> None:
    rfw(root, hostile_pairs=b"../leak\t1\t2\n" * 10)
    _outside(root / "test" / "data")


# ------------------------------------------------------------------------------------ corpus
CASES: dict[str, Case] = {
    # --- insightface .bin
    "bin-nested-dict-key": Case("verification", lambda r: verification(r, nested_dict_key()),
                                r"lfw\.bin was refused: refusing an opcode a \.bin never needs .*EMPTY_DICT"),
    "bin-nested-tuples": Case("verification", lambda r: verification(r, deep_tuple()),
                              r"lfw\.bin was refused: refusing objects nested deeper than 16 levels"),
    "bin-memo-index": Case("verification", lambda r: verification(r, memo_index()),
                           r"lfw\.bin was refused: refusing memo index 33554432: a pickle of at most 1000000 opcodes"),
    "bin-list-grown-after-use": Case("verification", lambda r: verification(r, list_grown_after_use()),
                                     r"lfw\.bin was refused: refusing an APPEND to something that is not a list being built"),
    "bin-many-opcodes": Case("verification", lambda r: verification(r, b"\x80\x04" * 1_000_001 + b"N."),
                             r"lfw\.bin was refused: refusing more than 1000000 opcodes"),
    "bin-memo-flood": Case("verification", lambda r: verification(r, b"\x80\x04N" + b"\x94" * 999_990 + b"."),
                           r"lfw\.bin holds a NoneType; expected a pair"),
    "bin-many-lists": Case("verification", lambda r: verification(r, b"\x80\x04" + b"]" * 1000 + b"."),
                           r"lfw\.bin was refused: refusing more than 16 lists"),
    "bin-float": Case("verification", lambda r: verification(r, bin_pickle([b"x", b"y"], [0.5])),
                      r"lfw\.bin was refused: refusing an opcode .*BINFLOAT"),
    "bin-os-system": Case("verification",
                          lambda r: verification(r, bin_pickle([b"x", b"y"], [_Call(os.system, "touch pwned")], 2)),
                          r"lfw\.bin was refused: refusing to load (posix|os|nt)\.system"),
    "bin-not-a-pickle": Case("verification", lambda r: verification(r, b"\xff" * 64),
                             r"lfw\.bin is not a readable pickle"),
    "bin-truncated-pickle": Case("verification", lambda r: verification(r, bin_pickle([jpeg()] * 2, [True])[:-9]),
                                 r"lfw\.bin is not a readable pickle"),
    "bin-png-bomb": Case("verification", lambda r: verification(r, bin_pickle([png_bomb(), jpeg()], [True])),
                         r"lfw\.bin image 0 is a decompression bomb or not a dataset image \(.*400000000 pixels"),
    "bin-truncated-jpeg": Case("verification", lambda r: verification(r, bin_pickle([jpeg(), truncated_jpeg()], [True])),
                               r"lfw\.bin image 1 is corrupt, truncated or not an image"),
    "bin-not-an-image": Case("verification", lambda r: verification(r, bin_pickle([jpeg(), b"<html>"], [True])),
                             r"lfw\.bin image 1 is corrupt, truncated or not an image"),
    # --- MXNet RecordIO (CASIA as insightface ships it)
    "rec-header-label-3.4e38": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), header_labels=(3.4e38, 3.4e38)),
                                    r"train\.rec: record 0 \(the header\): the end of the image keys is 3\.\d+e\+38; "
                                    r"expected a whole number"),
    "rec-header-range-past-index": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), header_labels=(1e6, 1e6)),
                                        r"train\.rec: record 0 \(the header\) says image records are keys "
                                        r"1\.\.999999, but .*train\.idx lists only 4 records"),
    "rec-negative-offset": Case("casia_face", casia(irheader(0, 5.0) + jpeg(),
                                                    idx=lambda recs: _idx([(0, 0), (1, -8), (2, _offsets(recs)[2])])),
                                r"train\.idx line 2: record 1 is at offset -8, outside .*train\.rec"),
    "rec-offset-past-end": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), idx=lambda recs: _idx(
                                    [(0, 0), (1, 10 ** 12)])),
                                r"train\.idx line 2: record 1 is at offset 1000000000000, outside .*train\.rec"),
    "rec-duplicate-offset": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), idx=lambda recs: _idx(
                                     [(0, 0), (1, _offsets(recs)[1]), (2, _offsets(recs)[1])])),
                                 r"train\.idx line 3: record 2: offset \d+ is listed twice \(also for record 1\)"),
    "rec-idx-longer-than-rec": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), idx=lambda recs: _idx(
                                        (k, k) for k in range(sum(map(len, recs)) // 8 + 5))),
                                    r"train\.idx lists more records than .*train\.rec \(\d+ bytes\) can hold"),
    "rec-idx-huge": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), idx=b"0\t0\n" + b" " * 10_000_000),
                         r"train\.idx is 10000004 bytes, more than an index of .*train\.rec \(\d+ bytes\) can be"),
    "rec-idx-not-utf8": Case("casia_face", casia(irheader(0, 5.0) + jpeg(), idx=b"0\t0\n1\t\xff\xfe\n"),
                             r"train\.idx is not UTF-8 text: byte 0xff at offset 6 \(line 2\)"),
    "rec-irheader-flag-ffffffff": Case("casia_face", casia(irheader(0xFFFFFFFF, 5.0) + jpeg()),
                                       r"train\.rec: record 1: its IRHeader announces 4294967295 labels"),
    "rec-frame-word-ffffffff": Case("casia_face", records([frame(irheader(2, 0.0, (2.0, 2.0))),
                                                          struct.pack("<II", MAGIC, 0xFFFFFFFF) + b"\0" * 64]),
                                    r"train\.rec: record 1 at offset \d+: part 1 at byte \d+ has continuation flag 7"),
    "rec-part-past-end": Case("casia_face", records([frame(irheader(2, 0.0, (2.0, 2.0))),
                                                    frame(irheader(0, 5.0), length=2 ** 29 - 1)]),
                              r"train\.rec: record 1 at offset \d+ is truncated: a 536870911-byte part"),
    "rec-flag-1-then-0": Case("casia_face", _split_record,
                              r"train\.rec: record 1 at offset \d+: part 2 at byte \d+ has continuation flag 0; "
                              r"expected 2 \(middle\) or 3"),
    "rec-nan-label": Case("casia_face", casia(irheader(0, float("nan")) + jpeg()),
                          r"train\.rec: record 1: its identity label is nan; expected a whole number"),
    "rec-negative-label": Case("casia_face", casia(irheader(0, -1.0) + jpeg()),
                               r"train\.rec: record 1: its identity label is -1\.0"),
    "rec-not-an-image": Case("casia_face", casia(irheader(0, 5.0) + b"<html>not an image</html>"),
                             r"train\.rec: record 1 is corrupt, truncated or not an image"),
    "rec-png-bomb": Case("casia_face", casia(irheader(0, 5.0) + png_bomb()),
                         r"train\.rec: record 1 is a decompression bomb .*400000000 pixels"),
    "rec-truncated-jpeg": Case("casia_face", casia(irheader(0, 5.0) + truncated_jpeg()),
                               r"train\.rec: record 1 \(unpacked to .*\) is corrupt, truncated or not an image"),
    # --- images in Market folders
    "market-png-bomb": Case("market1501", lambda r: market(r, ("0003_c1s1_000001_01.png", png_bomb())),
                            r"query/0003_c1s1_000001_01\.png is a decompression bomb .*400000000 pixels"),
    "market-truncated-jpeg": Case("market1501", lambda r: market(r, ("0003_c1s1_000001_01.jpg", truncated_jpeg())),
                                  r"query/0003_c1s1_000001_01\.jpg is corrupt, truncated or not an image"),
    "market-png-over-limit": Case("market1501", lambda r: market(r, ("0003_c1s1_000001_01.png", png_bomb(9000))),
                                  r"query/0003_c1s1_000001_01\.png is a decompression bomb or not a dataset image "
                                  r"\(.*81000000 pixels.*\); the limit is 67108864 pixels"),
    "market-not-an-image": Case("market1501", lambda r: market(r, ("0003_c1s1_000001_01.jpg", b"GIF89a" + b"\0" * 40)),
                                r"query/0003_c1s1_000001_01\.jpg is corrupt, truncated or not an image"),
    # --- pairs.txt (LFW, RFW)
    "lfw-pairs-dotdot": Case("verification", _escape_lfw,
                             r"pairs file .*lfw/pairs\.txt line 2 names '\.\./leak', which is not a plain folder name"),
    "lfw-pairs-absolute": Case("verification", lambda r: verification(r, lfw_pairs=b"1\t1\n/etc\t1\t2\na\t1\tb\t2\n"),
                               r"pairs file .*lfw/pairs\.txt line 2 names '/etc', which is not a plain folder name"),
    "lfw-pairs-not-utf8": Case("verification", lambda r: verification(r, lfw_pairs=b"1\t1\na\t1\t2\n\xe9\t1\tb\t2\n"),
                               r"pairs file .*lfw/pairs\.txt is not UTF-8 text: byte 0xe9 at offset 10 \(line 3\)"),
    "rfw-pairs-dotdot": Case("rfw_bias", _escape_rfw,
                             r"African_pairs\.txt line 1 names '\.\./leak', which is not a plain folder name"),
    "rfw-pairs-not-utf8": Case("rfw_bias", lambda r: rfw(r, hostile_pairs=b"m.0a\t1\t2\n\xff\n"),
                               r"African_pairs\.txt is not UTF-8 text: byte 0xff at offset 9 \(line 2\)"),
    "rfw-landmarks-not-utf8": Case("rfw_bias", lambda r: rfw(r, hostile_lmk=b"m.0a/m.0a_0001.jpg\xff -1\n"),
                                   r"RFW landmark file .*African_lmk\.txt is not UTF-8 text"),
    "rfw-landmarks-dotdot": Case("rfw_bias", lambda r: rfw(r, hostile_lmk=b"../.. -1" + b" 1" * 10 + b"\n"),
                                 r"African_lmk\.txt line 1 names '\.\.', which is not a plain folder name"),
}

# Valid folders of the same benchmarks: the readers still read them (exit 0), and their peak memory
# is the baseline the hostile cases are held to.
VALID: dict[str, Callable[[Path], None]] = {
    "verification": verification, "market1501": market, "casia_face": _valid_casia, "rfw_bias": rfw,
}
