"""Bad input: each problem is one DataError/ConfigError naming what, where and what was expected;
through the CLI it is one line on stderr and exit status 2."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rgsyn import cli
from rgsyn.data import load_image, read_bin, read_cuhk03, read_id_folders, read_market1501, read_pairs, read_rfw
from rgsyn.data.check import check_dataset
from rgsyn.data.faces import write_bin
from rgsyn.errors import DataError


def jpg(path: Path, colour=(120, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), colour).save(path, "JPEG")
    return path


def market(root: Path, splits=("bounding_box_train", "query", "bounding_box_test")) -> Path:
    for s in splits:
        jpg(root / s / "0002_c1s1_000451_03.jpg")
        jpg(root / s / "0002_c2s1_000452_01.jpg")
    return root


def lfw_set(root: Path, header="1\t1", lines=("a\t1\t2", "a\t1\tb\t1")) -> Path:
    for name, i in (("a", 1), ("a", 2), ("b", 1)):
        jpg(root / name / f"{name}_{i:04d}.jpg")
    (root / "pairs.txt").write_text("\n".join(([header] if header else []) + list(lines)) + "\n")
    return root


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"root .*nope does not exist"):
        read_market1501(tmp_path / "nope")
    with pytest.raises(DataError, match="nope"):
        read_id_folders(tmp_path / "nope")


def test_missing_split_folder(tmp_path):
    root = market(tmp_path / "m", splits=("bounding_box_train", "query"))
    with pytest.raises(DataError, match=r"split folder .*bounding_box_test is missing"):
        read_market1501(root)
    assert read_market1501(root, splits=("train",)).train   # a train-only read works


def test_empty_split(tmp_path):
    root = market(tmp_path / "m", splits=("bounding_box_train", "bounding_box_test"))
    (root / "query").mkdir()
    (root / "query" / "Thumbs.db").write_bytes(b"x")         # not an image: ignored
    with pytest.raises(DataError, match=r"query has no usable images \(found 0 image files\)"):
        read_market1501(root)


def test_unparsable_file_name(tmp_path):
    root = market(tmp_path / "m")
    jpg(root / "query" / "person_one.jpg")
    with pytest.raises(DataError, match=r"person_one.jpg does not parse.*expected <pid>_c<camera>"):
        read_market1501(root)
    jpg(root / "query" / "0001_c0s1_000001_01.jpg")          # camera 0 does not exist (1-based)
    (root / "query" / "person_one.jpg").unlink()
    with pytest.raises(DataError, match="0001_c0s1"):
        read_market1501(root)


def test_cuhk03_missing_mode_and_bad_mode(tmp_path):
    market(tmp_path / "c" / "labeled")
    assert read_cuhk03(tmp_path / "c", "labeled").train
    with pytest.raises(DataError, match=r"detected is missing"):
        read_cuhk03(tmp_path / "c", "detected")
    with pytest.raises(DataError, match="mode 'both'"):
        read_cuhk03(tmp_path / "c", "both")


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage"])
def test_corrupt_or_empty_jpeg(tmp_path, damage):
    root = market(tmp_path / "m")
    bad = root / "bounding_box_test" / "0002_c2s1_000452_01.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"zero": b"", "truncated": data[: len(data) // 2], "garbage": b"not a jpeg" * 50}[damage])
    assert len(read_market1501(root).gallery) == 2              # listing does not open images
    with pytest.raises(DataError, match=r"0002_c2s1_000452_01.jpg is (empty|corrupt)"):
        check_dataset("market1501", root, progress=False)
    with pytest.raises(DataError, match="expected a (readable )?JPEG/PNG"):
        load_image(bad)


def test_pairs_header_disagrees(tmp_path):
    root = lfw_set(tmp_path / "lfw", header="2\t1")
    with pytest.raises(DataError, match=r"header says 2 folds x 1 matched \+ 1 mismatched = 4 pairs, "
                                        r"but the file has 2 pair lines"):
        read_pairs(root)
    ok = read_pairs(lfw_set(tmp_path / "ok"))
    assert ok.pairs[0][2] and not ok.pairs[1][2] and ok.n_folds == 1 and ok.fold_size == 2


def test_pairs_header_missing_or_line_unparsable(tmp_path):
    with pytest.raises(DataError, match=r"line 1: expected a header"):
        read_pairs(lfw_set(tmp_path / "a", header=None))
    with pytest.raises(DataError, match=r"line 3: cannot parse 'a 1 b'"):
        read_pairs(lfw_set(tmp_path / "b", lines=("a\t1\t2", "a\t1\tb")))


def test_pairs_line_names_missing_image(tmp_path):
    root = lfw_set(tmp_path / "lfw", lines=("a\t1\t2", "a\t1\tb\t7"))
    with pytest.raises(DataError, match=r"line 3 names image .*b_0007.jpg, which does not exist"):
        read_pairs(root)


def test_rfw_missing_group(tmp_path):
    (tmp_path / "rfw" / "test" / "data" / "African").mkdir(parents=True)
    with pytest.raises(DataError, match=r"RFW group folder .*Asian is missing"):
        read_rfw(tmp_path / "rfw", groups=("African", "Asian"))


def test_empty_identity_folder(tmp_path):
    jpg(tmp_path / "casia" / "0000001" / "001.jpg")
    (tmp_path / "casia" / "0000002").mkdir()
    with pytest.raises(DataError, match=r"identity folder .*0000002 has no images"):
        read_id_folders(tmp_path / "casia")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_bin_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [_Exploit(marker)])))
    with pytest.raises(DataError, match=r"lfw.bin was refused: refusing to load (posix|os|nt)\.system"):
        read_bin(evil)
    assert not marker.exists()


def test_bin_roundtrip_and_bad_shapes(tmp_path):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "JPEG")
    good = tmp_path / "good.bin"
    write_bin(good, [buf.getvalue()] * 4, [True, False])
    images, issame = read_bin(good)
    assert len(images) == 4 and issame == [True, False]
    odd = tmp_path / "odd.bin"
    odd.write_bytes(pickle.dumps(([buf.getvalue()] * 3, [True, False])))
    with pytest.raises(DataError, match="3 images for 2 pairs"):
        read_bin(odd)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="not a readable pickle"):
        read_bin(junk)
    with pytest.raises(DataError, match="expected a readable JPEG|not a readable image"):
        check_dataset_bin(tmp_path, b"\xff\xd8broken")


def check_dataset_bin(tmp_path, broken: bytes):
    """A verification folder of .bin files where one image is broken."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    folder = tmp_path / "ver"
    for name in ("lfw", "agedb_30", "calfw", "cfp_fp", "cplfw"):
        write_bin(folder / f"{name}.bin", [buf.getvalue(), broken if name == "calfw" else buf.getvalue()], [True])
    return check_dataset("verification", folder, progress=False)


def test_cli_data_check_exits_2_with_one_line(tmp_path, capsys):
    root = market(tmp_path / "m", splits=("bounding_box_train", "query"))
    code = cli.main(["data", "check", "--benchmark", "market1501", "--root", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "bounding_box_test is missing" in err and "Traceback" not in err


def test_cli_params_typo_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  seeed: 3\n")
    proc = subprocess.run([sys.executable, "-m", "rgsyn.cli", "data", "--params", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "seeed" in proc.stderr and "data" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()                    # nothing written


def test_rfw_missing_pairs_file(tmp_path):
    (tmp_path / "rfw" / "test" / "data" / "African").mkdir(parents=True)
    with pytest.raises(DataError, match=r"RFW pairs file .*African_pairs.txt is missing"):
        read_rfw(tmp_path / "rfw", groups=("African",))


def test_paper_check_names_the_params_key(tmp_path):
    from rgsyn.config import Params
    from rgsyn.stages.data import check_paths

    params = Params(profile="paper")
    params.data.world = False
    params.data.paths.market1501 = str(tmp_path / "Market-1501")
    with pytest.raises(DataError, match=r"^data.paths.market1501: market1501 root .*Market-1501 does not exist"):
        check_paths(params, progress=False)


def test_mixed_face_sizes_under_align_none_suggest_mtcnn(tmp_path):
    from rgsyn.data.check import require_one_size

    root = tmp_path / "casia"
    for i, size in enumerate([(250, 250), (250, 250), (112, 112)]):
        (root / f"id{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 90, 90)).save(root / f"id{i % 2}" / f"{i:03d}.jpg")
    summary = check_dataset("casia_face", root, progress=False)
    assert summary["image_sizes"] == {"250x250": 2, "112x112": 1} and not summary["aligned"]
    with pytest.raises(DataError, match=r"casia come in 2 sizes \(250x250: 2, 112x112: 1\); with "
                                        r"face.align: none .* set face.align: mtcnn"):
        require_one_size(summary, str(root))
