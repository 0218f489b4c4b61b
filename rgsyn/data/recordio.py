"""CASIA-WebFace as insightface distributes it: `train.rec` + `train.idx` (MXNet RecordIO), read
without MXNet (retired).

Framing (dmlc-core recordio): each record is a uint32 magic 0xced7230a, a uint32 word whose top 3
bits are `cflag` and low 29 bits the payload length, the payload, then zero padding to 4 bytes.
cflag 0 is a whole record; a payload holding the magic is split into parts 1 (start), 2 (middle),
3 (end), joined back with the magic between them. `.idx`: one `key<TAB>byte offset` line per record.

Payload (mxnet.recordio.pack): IRHeader `<IfQQ` = flag, label, id, id2; when flag > 0 the label is
the `flag` float32s that follow, then the encoded image. insightface: record 0 is a header whose
label (a, b) says image records are keys 1..a-1 and identity records a..b-1; an image's label (its
first one when several) is its identity.

Nothing read from either file is trusted: offsets must lie inside `.rec` and be distinct, a part's
length must fit in what is left of the file, continuation flags must follow 0 | 1 (2)* 3, an
IRHeader's label count must fit its record, labels must be whole numbers 0..2**24, the header's
key range must fit the index, and the records read may not add up to more than the file holds.
Each error is a DataError naming `train.rec` or `train.idx` and the record's key.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from pathlib import Path

from rgsyn.data.images import decode_bytes
from rgsyn.data.text import read_utf8
from rgsyn.errors import DataError

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<IfQQ")
REC_NAME, IDX_NAME = "train.rec", "train.idx"
_INT = re.compile(r"-?[0-9]{1,20}")
_IDX_LINE = 48     # bytes: the longest `.idx` line, two 20-digit numbers, a tab and CR LF, with room


def rec_files(root: str | os.PathLike) -> tuple[Path, Path] | None:
    """(train.rec, train.idx) when `root` holds the RecordIO release; None when it holds neither;
    one without the other is a DataError naming both."""
    rec, idx = Path(root) / REC_NAME, Path(root) / IDX_NAME
    if rec.is_file() and idx.is_file():
        return rec, idx
    if rec.is_file() or idx.is_file():
        have, lack = (rec, idx) if rec.is_file() else (idx, rec)
        raise DataError(f"face root {root} has {have.name} but not {lack.name}; insightface's RecordIO "
                        f"release needs both {rec} and {idx}")
    return None


def read_idx(path: str | os.PathLike, rec: Path, rec_size: int) -> dict[int, int]:
    """{key: byte offset} from a `.idx`; every key and offset is checked against `rec` (of
    `rec_size` bytes): offsets inside the file, no key or offset twice, and no more entries than
    the file has room for records (each takes at least 8 bytes)."""
    path = Path(path)
    if path.stat().st_size > _IDX_LINE * (rec_size // 8 + 1):   # checked before it is read
        raise DataError(f"RecordIO index {path} is {path.stat().st_size} bytes, more than an index of "
                        f"{rec} ({rec_size} bytes) can be; it does not belong to this file")
    out: dict[int, int] = {}
    seen: dict[int, int] = {}
    for n, line in enumerate(read_utf8(path, "RecordIO index").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        if len(fields) != 2 or not all(_INT.fullmatch(f.strip()) for f in fields):
            raise DataError(f"RecordIO index {path} line {n}: expected 'key<TAB>offset', got {line[:60]!r}")
        key, offset = int(fields[0]), int(fields[1])
        where = f"RecordIO index {path} line {n}: record {key}"
        if key < 0:
            raise DataError(f"{where}: a negative key; keys are record numbers 0, 1, 2, ...")
        if not 0 <= offset <= rec_size - 8:
            raise DataError(f"{where} is at offset {offset}, outside {rec} ({rec_size} bytes); "
                            f"{path.name} does not belong to this {rec.name}")
        if key in out or offset in seen:
            other = key if key in out else seen[offset]
            raise DataError(f"{where}: {'key' if key in out else f'offset {offset}'} is listed twice "
                            f"(also for record {other}); each record has one key and its own offset")
        if len(out) >= rec_size // 8:
            raise DataError(f"RecordIO index {path} lists more records than {rec} ({rec_size} bytes) "
                            "can hold; it does not belong to this file")
        out[key], seen[offset] = offset, key
    if not out:
        raise DataError(f"RecordIO index {path} is empty; expected 'key<TAB>offset' lines")
    return out


class RecordFile:
    """Random access to the records of a `.rec` through its `.idx`. Every length, flag and
    offset is checked against the file before it is used; errors name the file and the key."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike):
        self.rec, self.idx = Path(rec), Path(idx)
        self.size = self.rec.stat().st_size
        self.offsets = read_idx(self.idx, self.rec, self.size)
        self._f = open(self.rec, "rb")

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raw(self, key: int) -> bytes:
        """The payload of record `key` (split parts joined back: flag 1, then 2s, then 3)."""
        if key not in self.offsets:
            raise DataError(f"RecordIO index {self.idx} has no record {key}")
        offset = pos = self.offsets[key]
        parts: list[bytes] = []
        where = f"RecordIO file {self.rec}: record {key} at offset {offset}"
        while True:
            if pos + 8 > self.size:
                raise DataError(f"{where} is truncated: its part at byte {pos} runs past the end of "
                                f"the file ({self.size} bytes)")
            self._f.seek(pos)
            magic, word = struct.unpack("<II", self._f.read(8))
            if magic != MAGIC:
                part = "" if pos == offset else f" (its part at byte {pos})"
                raise DataError(f"{where}{part} does not start with the magic 0x{MAGIC:08x}; "
                                f"{self.idx.name} does not fit {self.rec.name}")
            cflag, length = word >> 29, word & ((1 << 29) - 1)
            if cflag not in ((0, 1) if not parts else (2, 3)):
                expected = "0 (whole) or 1 (first part)" if not parts else "2 (middle) or 3 (last part)"
                raise DataError(f"{where}: part {len(parts) + 1} at byte {pos} has continuation flag "
                                f"{cflag}; expected {expected}")
            if pos + 8 + length > self.size:
                raise DataError(f"{where} is truncated: a {length}-byte part at byte {pos} runs past "
                                f"the end of the file ({self.size} bytes)")
            parts.append(self._f.read(length))
            pos += 8 + length + (4 - length % 4) % 4
            if cflag in (0, 3):
                return struct.pack("<I", MAGIC).join(parts)

    def read(self, key: int) -> tuple[tuple[int, tuple[float, ...], int, int], bytes]:
        """((flag, labels, id, id2), image bytes) of record `key`."""
        data = self.raw(key)
        where = f"RecordIO file {self.rec}: record {key}"
        if len(data) < _HEADER.size:
            raise DataError(f"{where} is {len(data)} bytes, shorter than its IRHeader")
        flag, label, id1, id2 = _HEADER.unpack_from(data)
        start = _HEADER.size
        if flag > (len(data) - start) // 4:
            raise DataError(f"{where}: its IRHeader announces {flag} labels ({4 * flag} bytes), but "
                            f"only {len(data) - start} bytes follow the header")
        if flag > 0:
            labels = struct.unpack_from(f"<{flag}f", data, start)
            start += 4 * flag
        else:
            labels = (label,)
        return (flag, labels, id1, id2), data[start:]


def _whole(value: float, where: str, what: str) -> int:
    """A float32 label that must hold a whole number 0..2**24 (float32 counts exactly that far)."""
    if not (math.isfinite(value) and value == int(value) and 0 <= value <= 2 ** 24):
        raise DataError(f"{where}: {what} is {value!r}; expected a whole number from 0 to {2 ** 24}")
    return int(value)


def image_keys(f: RecordFile) -> list[int]:
    """insightface: keys 1..a-1 when record 0 is the header (a, b); else every key. The range is
    bounded by the index: a header claiming more records than `.idx` lists is an error."""
    if 0 in f.offsets:
        (flag, labels, _, _), _ = f.read(0)
        if flag > 0 and len(labels) >= 2:
            where = f"RecordIO file {f.rec}: record 0 (the header)"
            end = _whole(labels[0], where, "the end of the image keys")
            if end - 1 > len(f.offsets):
                raise DataError(f"{where} says image records are keys 1..{end - 1}, but {f.idx} lists "
                                f"only {len(f.offsets)} records")
            if end > 0:
                return sorted(k for k in f.offsets if 1 <= k < end)
    return sorted(f.offsets)


def read_images(rec: str | os.PathLike, idx: str | os.PathLike):
    """Yield (key, identity label, image bytes) for every image record, in key order. The records
    read never add up to more than the file holds (an index that points several keys into the same
    bytes is an error), so what a caller writes out is bounded by the file's size."""
    with RecordFile(rec, idx) as f:
        total = 0
        for key in image_keys(f):
            (_, labels, _, _), img = f.read(key)
            total += len(img)
            if total > f.size:
                raise DataError(f"RecordIO index {f.idx}: record {key} and those before it add up to "
                                f"more bytes than {f.rec} holds; records overlap")
            yield key, _whole(labels[0], f"RecordIO file {f.rec}: record {key}", "its identity label"), img


def unpack_to_folders(root: str | os.PathLike, cache_dir: str | os.PathLike = Path(".rgsyn") / "cache") -> Path:
    """Unpack `<root>/train.rec` once into id folders `<cache>/recordio-<key>/<label:06d>/<key:08d>.jpg`
    (bytes as they are), so that every path-based reader works on it; keyed by the two files'
    paths, sizes and modification times. The folder is renamed into place only when complete."""
    import shutil

    rec, idx = rec_files(root)
    h = hashlib.sha256()
    for p in (rec, idx):
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    out = Path(cache_dir) / f"recordio-{h.hexdigest()[:20]}"
    if out.is_dir():
        return out
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        n = 0
        for key, label, img in read_images(rec, idx):
            decode_bytes(img, f"RecordIO file {rec}: record {key}", mode="size")   # header only
            ext = ".png" if img[:4] == b"\x89PNG" else ".jpg"
            folder = tmp / f"{label:06d}"
            folder.mkdir(exist_ok=True)
            (folder / f"{key:08d}{ext}").write_bytes(img)
            n += 1
        if n == 0:
            raise DataError(f"RecordIO file {rec} holds no image records")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_recordio(root: str | os.PathLike, images: list[tuple[int, bytes]]) -> None:
    """Write `train.rec` / `train.idx` as insightface does (tests and tools): record 0 the header
    (a, b), image records 1..a-1 (label = identity), identity records a..b-1 (label = their
    image key range). `images`: (identity label, encoded bytes), grouped by identity."""
    from rgsyn import io as rio

    def pack(flag, label, payload, labels=()):
        return _HEADER.pack(flag, label, 0, 0) + b"".join(struct.pack("<f", v) for v in labels) + payload

    ids = sorted({lab for lab, _ in images})
    a = len(images) + 1
    b = a + len(ids)
    records = [pack(2, 0.0, b"", (float(a), float(b)))]
    records += [pack(0, float(lab), img) for lab, img in images]
    for lab in ids:
        keys = [k + 1 for k, (l2, _) in enumerate(images) if l2 == lab]
        records.append(pack(2, 0.0, b"", (float(keys[0]), float(keys[-1] + 1))))
    rec, idx = bytearray(), []
    magic = struct.pack("<I", MAGIC)
    for key, body in enumerate(records):
        idx.append(f"{key}\t{len(rec)}")
        parts = body.split(magic)   # a payload holding the magic is split (dmlc cflag 1/2/3)
        for i, part in enumerate(parts):
            cflag = 0 if len(parts) == 1 else (1 if i == 0 else 3 if i == len(parts) - 1 else 2)
            rec += magic + struct.pack("<I", (cflag << 29) | len(part)) + part + b"\0" * ((4 - len(part) % 4) % 4)
    rio.write_bytes(Path(root) / REC_NAME, bytes(rec))
    rio.write_text(Path(root) / IDX_NAME, "\n".join(idx) + "\n")
