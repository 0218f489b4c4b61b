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
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from rgsyn.errors import DataError

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<IfQQ")
REC_NAME, IDX_NAME = "train.rec", "train.idx"


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


def read_idx(path: str | os.PathLike) -> dict[int, int]:
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            key, offset = line.split("\t")
            out[int(key)] = int(offset)
        except ValueError:
            raise DataError(f"RecordIO index {path} line {n}: expected 'key<TAB>offset', got {line[:60]!r}") from None
    if not out:
        raise DataError(f"RecordIO index {path} is empty; expected 'key<TAB>offset' lines")
    return out


class RecordFile:
    """Random access to the records of a `.rec` through its `.idx`."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike):
        self.rec, self.idx = Path(rec), Path(idx)
        self.offsets = read_idx(idx)
        self.size = self.rec.stat().st_size
        self._f = open(self.rec, "rb")

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raw(self, key: int) -> bytes:
        """The payload of record `key` (split parts joined back)."""
        if key not in self.offsets:
            raise DataError(f"RecordIO index {self.idx} has no record {key}")
        self._f.seek(self.offsets[key])
        parts = []
        while True:
            head = self._f.read(8)
            if len(head) < 8:
                raise DataError(f"RecordIO file {self.rec} is truncated at record {key} "
                                f"(offset {self.offsets[key]} of {self.size} bytes)")
            magic, word = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DataError(f"RecordIO file {self.rec}: record {key} at offset {self.offsets[key]} "
                                f"does not start with the magic 0x{MAGIC:08x}; {self.idx} does not fit it")
            cflag, length = word >> 29, word & ((1 << 29) - 1)
            data = self._f.read(length)
            if len(data) < length:
                raise DataError(f"RecordIO file {self.rec} is truncated inside record {key}")
            self._f.read((4 - length % 4) % 4)
            parts.append(data)
            if cflag in (0, 3):
                return struct.pack("<I", MAGIC).join(parts)

    def read(self, key: int) -> tuple[tuple[int, tuple[float, ...], int, int], bytes]:
        """((flag, labels, id, id2), image bytes) of record `key`."""
        data = self.raw(key)
        if len(data) < _HEADER.size:
            raise DataError(f"RecordIO file {self.rec}: record {key} is {len(data)} bytes, shorter "
                            "than its IRHeader")
        flag, label, id1, id2 = _HEADER.unpack_from(data)
        start = _HEADER.size
        if flag > 0:
            labels = struct.unpack_from(f"<{flag}f", data, start)
            start += 4 * flag
        else:
            labels = (label,)
        return (flag, labels, id1, id2), data[start:]


def image_keys(f: RecordFile) -> list[int]:
    """insightface: keys 1..a-1 when record 0 is the header (a, b); else every key."""
    if 0 in f.offsets:
        (flag, labels, _, _), _ = f.read(0)
        if flag > 0 and len(labels) >= 2 and int(labels[0]) > 0:
            return [k for k in range(1, int(labels[0])) if k in f.offsets]
    return sorted(f.offsets)


def read_images(rec: str | os.PathLike, idx: str | os.PathLike):
    """Yield (key, identity label, image bytes) for every image record, in key order."""
    with RecordFile(rec, idx) as f:
        for key in image_keys(f):
            (_, labels, _, _), img = f.read(key)
            yield key, int(labels[0]), img


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
