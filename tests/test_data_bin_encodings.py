"""insightface `.bin` files in the encodings found in the wild are read through the allow-list;
every other global is still refused with the same error."""
from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from rgsyn.data import read_bin
from rgsyn.errors import DataError


def jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "JPEG")
    return buf.getvalue()


IMAGES = [jpeg((200, 0, 0)), jpeg((0, 200, 0)), jpeg((0, 0, 200)), jpeg((9, 9, 9))]
ISSAME = [True, False]


def _sbs(b: bytes) -> bytes:
    """A Python 2 `str`: SHORT_BINSTRING up to 255 bytes, else BINSTRING with a 4-byte length."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """The bytes Python 2's cPickle writes for `pickle.dump((bins, issame_list), f, 2)` with
    issame as `numpy.bool_` (numpy 1.x names its scalar reconstructor numpy.core.multiarray)."""
    out = [b"\x80\x02(]q\x00("] + [_sbs(b) for b in images] + [b"e]q\x01("]
    for k, s in enumerate(issame):
        out.append(b"cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\n" + _sbs(b"b1") + b"K\x00K\x01\x87R"
                   b"(K\x03" + _sbs(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                   + _sbs(b"\x01" if s else b"\x00") + b"\x86R")
    out.append(b"et.")
    return b"".join(out)


ENCODINGS = {
    # Python 3, protocol 2: every bytes object goes through _codecs.encode(text, 'latin1')
    "py3-protocol2": lambda: pickle.dumps((IMAGES, ISSAME), protocol=2),
    # issame as numpy bools, numpy 2 (`numpy._core.multiarray.scalar` + `numpy.dtype`)
    "numpy-bool-protocol4": lambda: pickle.dumps((IMAGES, [np.bool_(s) for s in ISSAME]), protocol=4),
    # both at once: numpy bools in a protocol-2 pickle (their raw byte also via _codecs.encode)
    "numpy-bool-protocol2": lambda: pickle.dumps((IMAGES, [np.bool_(s) for s in ISSAME]), protocol=2),
    # numpy 1.x names the reconstructor numpy.core.multiarray.scalar
    "numpy1-bool-protocol2": lambda: pickle.dumps((IMAGES, [np.bool_(s) for s in ISSAME]), protocol=2)
    .replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"),
    # Python 2's cPickle: bytes as SHORT_BINSTRING, numpy 1.x bools
    "py2-cpickle-numpy1-bool": lambda: py2_pickle(IMAGES, ISSAME),
    # the format this project writes
    "protocol4-plain": lambda: pickle.dumps((IMAGES, ISSAME), protocol=4),
}


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_each_bin_encoding_reads_back_exactly(tmp_path, name):
    data = ENCODINGS[name]()
    # a real pickle: the standard loader reads the same values (numpy bools compare equal)
    ref_images, ref_issame = pickle.loads(data, encoding="bytes")
    assert list(ref_images) == IMAGES and [bool(s) for s in ref_issame] == ISSAME
    path = tmp_path / "lfw.bin"
    path.write_bytes(data)
    images, issame = read_bin(path)
    assert images == IMAGES
    assert issame == ISSAME and all(type(s) is bool for s in issame)


def test_numpy_bool_false_and_empty_bytes(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps(([b"", IMAGES[0]], [np.bool_(False)]), protocol=2))   # b'' -> bytes()
    assert read_bin(path) == ([b"", IMAGES[0]], [False])


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_other_globals_are_still_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([IMAGES[0], IMAGES[1]], [_Call(os.system, f"touch {marker}")]),
                                  protocol=protocol))
    with pytest.raises(DataError, match=r"lfw.bin was refused: refusing to load (posix|os|nt)\.system"):
        read_bin(path)
    assert not marker.exists()


def test_allowed_names_cannot_be_abused(tmp_path):
    """The allow-listed names resolve to stand-ins that only rebuild bytes and bools."""
    path = tmp_path / "lfw.bin"
    # a numpy scalar of another dtype (an object scalar could smuggle anything)
    path.write_bytes(pickle.dumps((IMAGES[:2], [np.int64(1)]), protocol=2))
    with pytest.raises(DataError, match=r"refused: refusing a numpy scalar of dtype 'i8'"):
        read_bin(path)
    # _codecs.encode with another codec
    path.write_bytes(pickle.dumps((IMAGES[:2], [_Call(__import__("_codecs").encode, "x", "rot13")]), protocol=2))
    with pytest.raises(DataError, match=r"refused: refusing _codecs.encode\(str, 'rot13'\)"):
        read_bin(path)
    # a real numpy array of bools is not on the list
    path.write_bytes(pickle.dumps((IMAGES[:2], np.array([True])), protocol=2))
    with pytest.raises(DataError, match=r"refused: refusing to load numpy.*_reconstruct"):
        read_bin(path)
