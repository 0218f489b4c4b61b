"""Reader details not covered by the world round trip: verification sets from insightface .bin."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rgsyn.data import load_image, read_verification
from rgsyn.data.faces import write_bin


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_read_verification_from_bin_unpacks_once(tmp_path):
    images = [_jpeg(10 * i) for i in range(40)]
    issame = [bool(k % 2) for k in range(20)]
    write_bin(tmp_path / "ver" / "agedb_30.bin", images, issame)
    cache = tmp_path / "cache"
    ps = read_verification(tmp_path / "ver", "agedb", cache_dir=cache)
    assert [s for *_, s in ps.pairs] == issame and ps.n_folds == 10 and ps.fold_size == 2
    a, b, _ = ps.pairs[3]
    assert open(a, "rb").read() == images[6] and open(b, "rb").read() == images[7]   # bytes kept as they are
    assert abs(np.asarray(load_image(b), float).mean() - 70) < 2
    mtime = (cache / "agedb" / "000000.jpg").stat().st_mtime_ns
    read_verification(tmp_path / "ver", "agedb", cache_dir=cache)
    assert (cache / "agedb" / "000000.jpg").stat().st_mtime_ns == mtime                # not rewritten


def test_read_verification_prefers_pairs_folder(tmp_path):
    for name, i in (("x", 1), ("x", 2)):
        (tmp_path / "lfw" / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "lfw" / name / f"{name}_{i:04d}.jpg")
    (tmp_path / "lfw" / "pairs.txt").write_text("1\t1\nx\t1\t2\nx\t2\tx\t1\n")
    ps = read_verification(tmp_path, "lfw", cache_dir=tmp_path / "cache")
    assert len(ps.pairs) == 2 and ps.pairs[0][2] and not (tmp_path / "cache").exists()
