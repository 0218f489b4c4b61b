"""The oracle generator: new renders of the training identities, read back through the real readers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fakes import encoders as fake_encoders
from rgsyn import paths
from rgsyn.config import Params
from rgsyn.errors import ConfigError, DataError


def small_params(root) -> Params:
    p = Params()
    p.device = "cpu"
    d = p.data
    d.out = str(root)
    d.market.n_train_ids, d.market.n_test_ids, d.market.n_distractors, d.market.n_junk = 4, 3, 2, 1
    d.market.imgs_per_id_cam, d.market.height, d.market.width = 1, 32, 16
    d.cuhk03.n_train_ids, d.cuhk03.n_test_ids, d.cuhk03.height, d.cuhk03.width = 3, 2, 32, 16
    d.faces.n_train_ids, d.faces.imgs_per_id, d.faces.n_pairs, d.faces.n_rfw_pairs, d.faces.size = 4, 3, 20, 20, 16
    d.prior.n_classes, d.prior.imgs_per_class, d.prior.people_per_class = 2, 1, 0
    for name in ("market1501", "cuhk03", "verification", "prior"):
        setattr(d.paths, name, str(root / name))
    d.paths.casia_face, d.paths.rfw_bias = str(root / "casia"), str(root / "rfw")
    p.reid.height, p.reid.width, p.face.size = 32, 16, 16
    p.generate.per_identity, p.generate.grid_identities = 3, 2
    return p


@pytest.fixture
def world(mlflow_tmp, monkeypatch):
    from rgsyn.data.toy.world import build_world

    p = small_params(mlflow_tmp / "w")
    build_world(p.data, mlflow_tmp / "w", progress=False)
    fake_encoders.install(monkeypatch)
    return p


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_oracle_persons_read_back_as_new_images_of_the_training_identities(world):
    from rgsyn.data.market import read_market1501
    from rgsyn.downstream.datasets import reid_label_map, reid_set
    from rgsyn.stages import generate as synthesis

    p = world
    m = synthesis.run(p, "market1501", "oracle")
    syn_root = paths.synthetic_dir("market1501", "oracle")
    assert syn_root == paths.Path("data/synthetic/market1501/oracle")
    real = read_market1501(p.data.paths.market1501, splits=("train",)).train
    syn = read_market1501(syn_root, splits=("train",)).train
    real_pids = sorted({r.pid for r in real})
    assert len(syn) == 4 * 3 and sorted({r.pid for r in syn}) == real_pids
    assert all(Image.open(r.path).size == (16, 32) for r in syn)
    # every oracle image differs from every real image of its identity (fresh nuisances)
    for s in syn:
        for r in (r for r in real if r.pid == s.pid):
            assert np.abs(_pixels(s.path) - _pixels(r.path)).mean() > 2.0
    # the downstream reader maps them onto the real labels (a foreign pid would be a DataError)
    lm = reid_label_map(real)
    ds = reid_set(syn, (32, 16), lm, what="oracle")
    assert sorted(set(ds.labels.tolist())) == list(range(len(real_pids)))
    manifest = (syn_root / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,identity,row,seed,checkpoint_sha256" and len(manifest) == 13
    saved = json.loads(paths.generation_metrics("market1501", "oracle").read_text())
    for key in ("frechet", "density", "coverage", "nn_sim_mean", "nn_sim_share_above", "identity_accuracy",
                "mean_reward_sem", "n_images", "n_identities"):
        assert key in saved
    assert saved == pytest.approx(m) and saved["n_images"] == 12 and saved["n_identities"] == 4
    assert paths.generation_metrics("market1501", "oracle").with_name("market1501-oracle-grid.png").is_file()
    # deterministic: the same params render the same bytes
    before = {r.path: open(r.path, "rb").read() for r in syn}
    synthesis.run(p, "market1501", "oracle")
    assert {r.path: open(r.path, "rb").read() for r in read_market1501(syn_root, splits=("train",)).train} == before


def test_oracle_faces_share_the_identity_folders(world):
    from rgsyn.data.faces import read_id_folders
    from rgsyn.downstream.datasets import face_label_map, face_set
    from rgsyn.stages import generate as synthesis

    p = world
    synthesis.run(p, "casia_face", "oracle")
    real = read_id_folders(p.data.paths.casia_face)
    syn = read_id_folders(paths.synthetic_dir("casia_face", "oracle"))
    assert sorted({r.identity for r in syn}) == sorted({r.identity for r in real}) and len(syn) == 4 * 3
    lm = face_label_map(real)
    ds = face_set(syn, 16, lm, what="oracle")
    assert sorted(set(ds.labels.tolist())) == [0, 1, 2, 3]
    for s in syn:
        for r in (r for r in real if r.identity == s.identity):
            assert np.abs(_pixels(s.path) - _pixels(r.path)).mean() > 2.0


def test_oracle_needs_the_world_it_describes(world):
    from rgsyn.stages import generate as synthesis

    p = world
    p.data.market.n_train_ids = 5          # not the world on disk
    with pytest.raises(DataError, match="re-run `rgsyn data`"):
        synthesis.run(p, "market1501", "oracle")
    p.data.world = False
    with pytest.raises(ConfigError, match="toy world"):
        synthesis.run(p, "market1501", "oracle")


def test_paper_profile_refuses_the_oracle_variant():
    from rgsyn.config import from_dict, profile_dict

    paper = from_dict(profile_dict("paper"))
    assert "oracle" not in paper.generators() and "syn_oracle" not in paper.syn_variants
    raw = profile_dict("paper")
    raw["syn_variants"]["syn_oracle"] = {"synthetic": "oracle", "selection": "none"}
    with pytest.raises(ConfigError, match="syn_variants.syn_oracle.synthetic: 'oracle' needs the toy world"):
        from_dict(raw)
    raw = profile_dict("paper")
    raw["generate"]["oracle"] = {"market1501": "persons"}
    with pytest.raises(ConfigError, match="generate.oracle"):
        from_dict(raw)
    toy = from_dict(profile_dict("toy"))
    assert toy.syn_variants["syn_oracle"].synthetic == "oracle" and "oracle" in toy.generators()


def test_training_set_size_leaves_the_test_split_alone():
    from rgsyn.config import PersonWorld
    from rgsyn.data.toy.world import MARKET_NAME, plan_persons

    def split(pw, name):
        entries, _ = plan_persons(0, "market", pw, MARKET_NAME, ".jpg")
        return [e for e in entries if e[0] in name]

    full, scarce = PersonWorld(), PersonWorld(train_imgs_per_id=2)
    assert split(full, ("query", "bounding_box_test")) == split(scarce, ("query", "bounding_box_test"))
    train = split(scarce, ("bounding_box_train",))
    assert len(train) == 2 * full.n_train_ids
    # the two images of an identity come from two different cameras
    by_pid: dict[int, set] = {}
    for _, _, (pid, cam, _, _) in train:
        by_pid.setdefault(pid, set()).add(cam)
    assert all(len(c) == 2 for c in by_pid.values())
