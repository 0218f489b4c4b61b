"""Face alignment (insightface 5-point similarity to the 112x112 ArcFace template): geometry on a
drawn face with known landmarks, the detection cache, the images and sets that bypass alignment,
RFW's release landmarks, and MTCNN itself on the CPU."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from face_drawing import LEFT_PUPIL, RIGHT_PUPIL, colour_centre, draw_face, similarity
from rgsyn.data.align import ARCFACE_TEMPLATE, FaceAligner, MTCNNDetector, similarity_transform, warp_to_template
from rgsyn.errors import DataError


class CountingDetector:
    """Returns fixed landmarks (or None) per image and counts the images it was asked about."""

    def __init__(self, points=None):
        self.points, self.calls = points, 0

    def __call__(self, images):
        self.calls += len(images)
        return [None if self.points is None else np.asarray(self.points, np.float32) for _ in images]


@pytest.mark.parametrize("angle,scale,shift", [(0, 1.0, (0, 0)), (23, 1.6, (40, -25)), (-35, 0.7, (-20, 30))])
def test_eyes_land_on_the_template_within_1px(angle, scale, shift):
    face, pts = draw_face(markers=True)
    moved, moved_pts = similarity(face, pts, angle, scale, shift, (320, 300))
    out = warp_to_template(moved, moved_pts)
    assert out.size == (112, 112)
    # the image content, not only the matrix: the drawn pupils end up on the template's eyes
    assert np.abs(colour_centre(out, LEFT_PUPIL) - ARCFACE_TEMPLATE[0]).max() < 1.0
    assert np.abs(colour_centre(out, RIGHT_PUPIL) - ARCFACE_TEMPLATE[1]).max() < 1.0


def test_similarity_is_the_least_squares_fit():
    """Noisy points: the matrix equals the closed-form least-squares similarity
    (x' = a x - b y + tx, y' = b x + a y + ty, solved by lstsq), not a fit to a subset."""
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE * 1.9 + np.array([30.0, 12.0]) + rng.normal(0, 2.5, (5, 2))
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, ARCFACE_TEMPLATE):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    expected = np.array([[a, -b, tx], [b, a, ty]])
    assert np.allclose(similarity_transform(src), expected, atol=2e-3)
    with pytest.raises(DataError, match="must be 5 finite"):
        similarity_transform(np.zeros((4, 2)))


def _save(img: Image.Image, path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return str(path)


def test_detection_runs_once_then_comes_from_the_cache(tmp_path):
    face, pts = draw_face()
    paths = [_save(face, tmp_path / "raw" / f"{i}.png") for i in range(3)]
    first = CountingDetector(pts)
    al = FaceAligner(cache_dir=tmp_path / "cache", detector=first)
    al.prepare(paths)
    assert first.calls == 3
    aligned = al(Image.open(paths[0]).convert("RGB"), paths[0])
    assert aligned.size == (112, 112) and al.counts()["n_align_fallback"] == 0
    assert len(list((tmp_path / "cache").glob("landmarks-*.npz"))) == 1

    second = CountingDetector(pts)             # a fresh aligner, e.g. the next stage
    al2 = FaceAligner(cache_dir=tmp_path / "cache", detector=second)
    al2.prepare(paths)
    assert second.calls == 0
    assert np.array_equal(np.asarray(al2(Image.open(paths[0]).convert("RGB"), paths[0])), np.asarray(aligned))

    os.utime(paths[1], ns=(1, 1))              # a changed file is detected again
    al3 = FaceAligner(cache_dir=tmp_path / "cache", detector=second)
    al3.prepare(paths)
    assert second.calls == 3


def test_no_face_is_centre_cropped_and_counted(tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    path = _save(noise, tmp_path / "n.png")
    al = FaceAligner(cache_dir=tmp_path / "cache", detector=CountingDetector(None))
    al.prepare([path])
    out = al(noise, path)
    assert out.size == (112, 112)
    assert al.counts() == {"n_align_total": 1, "n_align_fallback": 1, "n_align_as_is": 0, "n_align_given": 0}
    centre = noise.crop((0, 5, 30, 35)).resize((112, 112), Image.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(centre))


def test_aligned_112_images_are_used_as_they_are(tmp_path):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8))
    path = _save(img, tmp_path / "a.png")
    det = CountingDetector(ARCFACE_TEMPLATE)
    al = FaceAligner(cache_dir=tmp_path / "cache", detector=det)
    al.prepare([path])
    out = al(Image.open(path).convert("RGB"), path)
    assert det.calls == 0 and al.n_as_is == 1
    assert np.array_equal(np.asarray(out), np.asarray(img))


def _tiny_face_net():
    from types import SimpleNamespace

    from rgsyn.downstream.face import build_face_model

    torch.manual_seed(0)
    p = SimpleNamespace(backbone="small_resnet", pretrained="", embedding_dim=8, size=16, width=4, stem_stride=1,
                        cosface_s=16.0, cosface_m=0.35, flip_eval=False)
    return build_face_model(p, 3).eval(), p


def test_bin_sets_bypass_alignment_and_rfw_uses_its_landmarks(tmp_path, monkeypatch):
    import io

    from rgsyn.data.faces import write_bin, write_pairs
    from rgsyn.downstream.face import evaluate_face_model
    from rgsyn.paths import RFW_GROUPS

    monkeypatch.chdir(tmp_path)
    face, pts = draw_face()
    small = face.resize((64, 64))             # not 112x112: only the set's format says "aligned"
    buf = io.BytesIO()
    small.save(buf, "PNG")
    ver = tmp_path / "ver"
    write_bin(ver / "agedb_30.bin", [buf.getvalue()] * 40, [True, False] * 10)
    for name in ("a", "b"):                   # lfw as a raw pairs.txt folder: aligned
        for i in (1, 2):
            _save(face, ver / "lfw" / name / f"{name}_{i:04d}.jpg")
    write_pairs(ver / "lfw" / "pairs.txt", [[("a", 1, 2), ("a", 1, "b", 1)]] * 10)
    rfw = tmp_path / "rfw"
    for g in RFW_GROUPS:
        lmk = []
        for name in ("x", "y"):
            for i in (1, 2):
                _save(face, rfw / "test" / "data" / g / name / f"{name}_{i:04d}.jpg")
                lmk.append(f"./test/data/{g}/{name}/{name}_{i:04d}.jpg -1 " + " ".join(f"{v:.1f}" for v in pts.ravel()))
        (rfw / "test" / "txts" / g).mkdir(parents=True)
        (rfw / "test" / "txts" / g / f"{g}_pairs.txt").write_text("x\t1\t2\nx\t1\ty\t1\n" * 5)
        (rfw / "test" / "txts" / g / f"{g}_lmk.txt").write_text("\n".join(lmk) + "\n")

    det = CountingDetector(pts)
    al = FaceAligner(cache_dir=tmp_path / "cache", detector=det)
    net, p = _tiny_face_net()
    out = evaluate_face_model(net, ver, rfw, p, sets=["lfw", "agedb"], transform=al)
    assert det.calls == 3                       # the three lfw images only: not the .bin, not RFW
    assert al.n_given == 3 * len(RFW_GROUPS)    # every RFW image the pairs name, from its _lmk.txt line
    assert al.n_total == 3 + 3 * len(RFW_GROUPS)
    assert set(out["rfw"]) >= {"mean", "std"} and 0.0 <= out["agedb"] <= 1.0


def test_rfw_landmark_file_with_a_bad_line(tmp_path):
    from rgsyn.data.rfw import read_rfw_landmarks

    txt = tmp_path / "test" / "txts" / "Asian" / "Asian_lmk.txt"
    txt.parent.mkdir(parents=True)
    txt.write_text("./test/data/Asian/p/p_0001.jpg -1 1 2 3\n")
    with pytest.raises(DataError, match=r"Asian_lmk.txt line 1: expected an image path and 10 numbers"):
        read_rfw_landmarks(tmp_path, "Asian")
    assert read_rfw_landmarks(tmp_path, "African") == {}     # no file: detection instead


def test_mtcnn_finds_the_drawn_face_on_cpu():
    """The real detector (weights shipped in facenet-pytorch) on the CPU: it finds the drawn face,
    its landmarks lie near the drawn ones, and the aligned eyes near the template."""
    face, pts = draw_face()
    moved, moved_pts = similarity(face, pts, 12, 1.0, (5, -5), (250, 250))
    det = MTCNNDetector(device="cpu")
    found = det([moved])[0]
    assert found is not None and found.shape == (5, 2)
    assert np.abs(found - moved_pts).max() < 8.0
    m = similarity_transform(found)
    eyes = moved_pts[:2] @ m[:, :2].T + m[:, 2]
    assert np.abs(eyes - ARCFACE_TEMPLATE[:2]).max() < 4.0
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 50, 3), dtype=np.uint8))
    assert det([noise])[0] is None
    # a bf16 stage (compute.precision) evaluates inside autocast: the detector must still run in fp32
    import torch

    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_bf16 = det([moved])[0]
    np.testing.assert_allclose(under_bf16, found, atol=1e-4)


def test_data_check_says_whether_a_face_folder_is_aligned(tmp_path):
    from rgsyn.data.check import check_dataset

    for size, aligned in (((112, 112), True), ((250, 250), False)):
        root = tmp_path / f"casia{size[0]}"
        for ident in ("a", "b"):
            _save(Image.new("RGB", size, (80, 80, 80)), root / ident / "0001.jpg")
        s = check_dataset("casia_face", root, progress=False)
        assert s["aligned"] is aligned and s["image_sizes"] == {f"{size[0]}x{size[1]}": 2}
        assert s["alignment"] == ("aligned (all images 112x112)" if aligned else
                                  "not aligned: needs face.align: mtcnn")
