"""CASIA-WebFace as insightface ships it (`train.rec` / `train.idx`, MXNet RecordIO) read without
MXNet: the real framing written byte by byte here, read back exactly, and used as id folders."""
from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from rgsyn.data import read_id_folders
from rgsyn.data.check import check_dataset
from rgsyn.data.recordio import MAGIC, RecordFile, read_images, write_recordio
from rgsyn.errors import DataError


def jpeg(colour, size=(112, 112)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def record(flag, label, payload, labels=()):
    """One record as mxnet.recordio.pack + MXRecordIO.write frame it (cflag 0, no magic inside)."""
    body = struct.pack("<IfQQ", flag, label, 0, 0) + b"".join(struct.pack("<f", v) for v in labels) + payload
    assert struct.pack("<I", MAGIC) not in body
    return struct.pack("<II", MAGIC, len(body)) + body + b"\0" * (-len(body) % 4)


def test_handwritten_framing_reads_back_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)               # the unpacked id folders go to ./.rgsyn/cache
    imgs = [jpeg((200, 0, 0)), jpeg((0, 200, 0)), jpeg((0, 0, 200))]
    labels = [0, 0, 7]
    recs = [record(2, 0.0, b"", (4.0, 6.0))]                      # header: images 1..3, ids 4..5
    recs += [record(0, float(lab), img) for lab, img in zip(labels, imgs)]
    recs += [record(2, 0.0, b"", (1.0, 3.0)), record(2, 0.0, b"", (3.0, 4.0))]
    offsets, blob = [], b""
    for r in recs:
        offsets.append(len(blob))
        blob += r
    (tmp_path / "train.rec").write_bytes(blob)
    (tmp_path / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))
    assert list(read_images(tmp_path / "train.rec", tmp_path / "train.idx")) == [
        (1, 0, imgs[0]), (2, 0, imgs[1]), (3, 7, imgs[2])]
    with RecordFile(tmp_path / "train.rec", tmp_path / "train.idx") as f:
        (flag, lab, _, _), rest = f.read(5)
        assert flag == 2 and lab == (3.0, 4.0) and rest == b""
    # as the face training set: id folders with the bytes unchanged
    recs_ = read_id_folders(tmp_path)
    assert [r.identity for r in recs_] == ["000000", "000000", "000007"]
    assert [open(r.path, "rb").read() for r in recs_] == imgs
    s = check_dataset("casia_face", tmp_path, profile="toy", progress=False)
    assert (s["ids"], s["images"], s["format"], s["aligned"]) == (2, 3, "recordio", True)


def test_a_payload_holding_the_magic_is_split_and_joined_back(tmp_path):
    magic = struct.pack("<I", MAGIC)
    tricky = jpeg((5, 5, 5)) + magic + b"tail" + magic + b"x"     # parts with cflag 1, 2, 3
    write_recordio(tmp_path, [(3, tricky), (3, jpeg((1, 2, 3))), (9, jpeg((9, 9, 9)))])
    assert b"".join(open(tmp_path / "train.rec", "rb").read().split(magic)).count(b"tail") == 1
    got = list(read_images(tmp_path / "train.rec", tmp_path / "train.idx"))
    assert [(k, lab) for k, lab, _ in got] == [(1, 3), (2, 3), (3, 9)]
    assert got[0][2] == tricky


def test_rec_without_idx_names_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_recordio(tmp_path, [(0, jpeg((1, 1, 1)))])
    (tmp_path / "train.idx").unlink()
    with pytest.raises(DataError, match=r"has train.rec but not train.idx; .* needs both .*train.rec and .*train.idx"):
        read_id_folders(tmp_path)
    write_recordio(tmp_path / "b", [(0, jpeg((1, 1, 1)))])
    (tmp_path / "b" / "train.rec").unlink()
    with pytest.raises(DataError, match=r"has train.idx but not train.rec; .*train.rec and .*train.idx"):
        check_dataset("casia_face", tmp_path / "b", progress=False)


def test_index_that_does_not_fit_the_file(tmp_path):
    write_recordio(tmp_path, [(0, jpeg((1, 1, 1))), (1, jpeg((2, 2, 2)))])
    (tmp_path / "train.idx").write_text("0\t0\n1\t13\n")
    with pytest.raises(DataError, match=r"record 1 at offset 13 does not start with the magic"):
        list(read_images(tmp_path / "train.rec", tmp_path / "train.idx"))
