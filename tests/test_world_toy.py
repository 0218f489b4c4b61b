"""The toy identity world: deterministic bytes, real layouts, and the readers read back exactly
what the world planned."""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from rgsyn.config import DataParams, FaceWorld, Params, PersonWorld, PriorWorld
from rgsyn.data import read_cuhk03, read_id_folders, read_market1501, read_pairs, read_rfw
from rgsyn.data.check import check_dataset
from rgsyn.data.toy import world as toy_world
from rgsyn.paths import RFW_GROUPS, VERIFICATION_SETS


def tiny(seed: int = 0, workers: int = 1) -> DataParams:
    return DataParams(
        seed=seed, workers=workers,
        market=PersonWorld(n_train_ids=4, n_test_ids=3, n_cams=6, cams_per_id=2, imgs_per_id_cam=2,
                           n_distractors=2, n_junk=2),
        cuhk03=PersonWorld(n_train_ids=3, n_test_ids=2, n_cams=2, cams_per_id=2, imgs_per_id_cam=2,
                           n_distractors=0, n_junk=0),
        faces=FaceWorld(n_train_ids=5, imgs_per_id=2, group_shares=[0.55, 0.25, 0.1, 0.1],
                        n_pairs=40, n_rfw_pairs=20, size=16),
        prior=PriorWorld(n_classes=3, imgs_per_class=2, people_per_class=2, size=8))


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    summary = toy_world.build_world(tiny(), root, workers=1, progress=False)
    return root, summary


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    root, _ = world
    again = tmp_path / "again"
    toy_world.build_world(tiny(workers=2), again, workers=2, progress=False)  # other worker count
    other = tmp_path / "other"
    toy_world.build_world(tiny(seed=1), other, workers=1, progress=False)
    assert tree_hash(again) == tree_hash(root)
    assert tree_hash(other) != tree_hash(root)
    # not only the hash: individual images differ between seeds
    a = (root / "casia").rglob("*.jpg").__next__()
    assert (other / a.relative_to(root)).read_bytes() != a.read_bytes()


def _expected_reid(dp_world, world_name, fmt, ext):
    entries, counts = toy_world.plan_persons(0, world_name, dp_world, fmt, ext)
    split = {"bounding_box_train": "train", "query": "query", "bounding_box_test": "gallery"}
    out = {"train": set(), "query": set(), "gallery": set()}
    for folder, fname, (pid, cam, _, role) in entries:
        if role != "junk":
            out[split[folder]].add((fname, pid, cam))
    return out, counts


def test_market_reader_reads_back_the_plan(world):
    root, summary = world
    dp = tiny()
    expected, counts = _expected_reid(dp.market, "market", toy_world.MARKET_NAME, ".jpg")
    got = read_market1501(root / "market1501")
    for split in ("train", "query", "gallery"):
        assert {(Path(r.path).name, r.pid, r.camid) for r in got.split(split)} == expected[split]
    assert len({r.pid for r in got.train}) == 4
    assert Counter(r.pid for r in got.gallery)[0] == 2           # 0000 distractors kept
    assert all(r.pid != -1 for r in got.gallery)                   # -1 junk skipped
    junk = read_market1501(root / "market1501", keep_junk=True).gallery
    assert sum(r.pid == -1 for r in junk) == 2
    assert {r.camid for r in got.train + got.query + got.gallery} <= set(range(6))
    # one query per test id per camera; each query has a gallery image of its id in another camera
    assert len(got.query) == 3 * 2
    for q in got.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in got.gallery)
    assert summary["counts"]["market1501"] == counts
    # train and test identities are disjoint
    assert not {r.pid for r in got.train} & {r.pid for r in got.query}


def test_market_reader_agrees_with_torchreid(world):
    market = pytest.importorskip("torchreid.reid.data.datasets.image.market1501")
    root, _ = world
    ours = read_market1501(root / "market1501")
    for split, folder in (("train", "bounding_box_train"), ("query", "query"),
                          ("gallery", "bounding_box_test")):
        theirs = market.Market1501.process_dir(None, str(root / "market1501" / folder))
        assert sorted(theirs) == sorted((r.path, r.pid, r.camid) for r in ours.split(split))


def test_cuhk03_reader_both_modes(world):
    root, _ = world
    expected, _ = _expected_reid(tiny().cuhk03, "cuhk03", toy_world.CUHK03_NAME, ".png")
    for mode in ("labeled", "detected"):
        got = read_cuhk03(root / "cuhk03", mode)
        for split in ("train", "query", "gallery"):
            assert {(Path(r.path).name, r.pid, r.camid) for r in got.split(split)} == expected[split]
        assert {r.camid for r in got.train} == {0, 1}
    lab, det = (root / "cuhk03" / m / "query" for m in ("labeled", "detected"))
    name = sorted(lab.iterdir())[0].name
    assert (lab / name).read_bytes() != (det / name).read_bytes()   # detected = jittered box


def test_train_only_folder_reads(world, tmp_path):
    root, _ = world
    syn = tmp_path / "syn"
    (syn / "bounding_box_train").mkdir(parents=True)
    src = sorted((root / "market1501" / "bounding_box_train").iterdir())[0]
    (syn / "bounding_box_train" / "0002_c1s9_000000_00.jpg").write_bytes(src.read_bytes())
    got = read_market1501(syn, splits=("train",))
    assert [(r.pid, r.camid) for r in got.train] == [(2, 0)] and got.query == [] and got.gallery == []


def test_casia_is_imbalanced_and_reads_back(world):
    root, summary = world
    recs = read_id_folders(root / "casia")
    c = summary["counts"]["casia"]
    assert len(recs) == 5 * 2 and len({r.identity for r in recs}) == 5
    assert sorted({r.identity for r in recs}) == sorted(c["identity_group"])
    assert c["ids_per_group"] == {"African": 3, "Asian": 1, "Caucasian": 1, "Indian": 0}
    assert recs == sorted(recs, key=lambda r: (r.identity, r.path))


def test_verification_pairs_read_back(world):
    root, _ = world
    _, pairs, _ = toy_world.plan_world(tiny())
    for name in VERIFICATION_SETS:
        ps = read_pairs(root / "verification" / name)
        assert ps.n_folds == 10 and ps.fold_size == 4 and len(ps.pairs) == 40
        folds, header = pairs[f"verification/{name}/pairs.txt"]
        assert header
        flat = [t for fold in folds for t in sorted(fold, key=len)]
        for (a, b, same), t in zip(ps.pairs, flat):
            assert same == (len(t) == 3)
            assert Path(a).name == f"{t[0]}_{t[1]:04d}.jpg"
            assert Path(b).name == f"{t[0] if same else t[2]}_{t[-1]:04d}.jpg"
        for f in range(10):   # each fold: 2 matched then 2 mismatched
            assert [p[2] for p in ps.pairs[4 * f:4 * f + 4]] == [True, True, False, False]
        casia = {r.identity for r in read_id_folders(root / "casia")}
        assert not casia & {Path(p).parent.name for a, b, _ in ps.pairs for p in (a, b)}


def test_rfw_reads_back_balanced(world):
    root, summary = world
    sets = read_rfw(root / "rfw")
    assert list(sets) == list(RFW_GROUPS)
    for group, ps in sets.items():
        assert len(ps.pairs) == 20 and ps.n_folds == 10 and sum(p[2] for p in ps.pairs) == 10
        assert all(f"/test/data/{group}/" in p for a, b, _ in ps.pairs for p in (a, b))
    text = (root / "rfw/test/txts/Asian/Asian_pairs.txt").read_text().splitlines()
    assert len(text) == 20 and len(text[0].split()) == 3      # no header, matched first


def test_check_dataset_passes_on_the_world(world):
    root, _ = world
    for bench, sub in (("market1501", "market1501"), ("cuhk03", "cuhk03"), ("casia_face", "casia"),
                       ("rfw_bias", "rfw"), ("verification", "verification"), ("prior", "prior")):
        toy = check_dataset(bench, root / sub, profile="toy", progress=False)
        assert toy["ok"] and toy["official_match"] is None and toy["images_checked"] > 0
        paper = check_dataset(bench, root / sub, profile="paper", progress=False)
        assert paper["official_match"] in (False, None)
    m = check_dataset("market1501", root / "market1501", profile="toy", progress=False)
    assert m["splits"]["train"] == {"ids": 4, "images": 16}
    assert m["images_checked"] == 16 + 6 + 6 + 2 + 2       # junk files are opened too
    assert check_dataset("prior", root / "prior", progress=False)["classes"] == 3 + 3


def test_data_stage_check_refuses_mixed_face_sizes_under_align_none(world, tmp_path):
    """The paper `data` stage (check_paths): raw faces of mixed sizes pass only with align: mtcnn."""
    import shutil

    from PIL import Image

    from rgsyn.stages.data import check_paths
    from rgsyn.errors import DataError

    root, _ = world
    casia = tmp_path / "casia"
    shutil.copytree(root / "casia", casia)
    p = Params()
    dp = p.data.paths
    dp.market1501, dp.cuhk03, dp.casia_face = str(root / "market1501"), str(root / "cuhk03"), str(casia)
    dp.verification, dp.rfw_bias = str(root / "verification"), str(root / "rfw")
    checks = check_paths(p, progress=False)          # the toy faces are all one size
    assert checks["casia_face"]["n_image_sizes"] == 1
    assert checks["casia_face"]["alignment"] == "not aligned: needs face.align: mtcnn"
    first = sorted(casia.rglob("*.png")) or sorted(casia.rglob("*.jpg"))
    Image.open(first[0]).convert("RGB").resize((250, 250)).save(first[0])
    with pytest.raises(DataError, match=r"data.paths.casia_face: face images under .*casia come in 2 "
                                        r"sizes .* set face.align: mtcnn"):
        check_paths(p, progress=False)
    p.face.align = "mtcnn"
    assert check_paths(p, progress=False)["casia_face"]["n_image_sizes"] == 2


def test_prior_people_classes_are_fresh_people(world):
    """The prior's three people classes follow the shapes: persons at the person aspect, faces
    square, every image a different random identity and none of them a benchmark image."""
    from PIL import Image

    root, summary = world
    classes = sorted(p.name for p in (root / "prior").iterdir())
    assert classes[3:] == ["003_person_outdoor", "004_person_indoor", "005_face"]
    assert summary["counts"]["prior"] == {"classes": 6, "images": 3 * 2 + 3 * 2}
    for name, size in (("003_person_outdoor", (8, 16)), ("004_person_indoor", (8, 16)), ("005_face", (8, 8))):
        files = sorted((root / "prior" / name).iterdir())
        assert [Image.open(f).size for f in files] == [size, size]
        assert files[0].read_bytes() != files[1].read_bytes()
    bench = {f.read_bytes() for f in root.rglob("*") if f.is_file() and "prior" not in f.parts}
    assert not bench & {f.read_bytes() for f in (root / "prior").rglob("*.png")}


def test_data_stage_builds_and_logs(mlflow_tmp):
    import mlflow

    from rgsyn.stages import data as stage

    params = Params(data=tiny())
    summary = stage.run(params)
    assert (Path(params.data.out) / "summary.json").is_file()
    assert summary["counts"]["market1501"]["train_ids"] == 4
    run = mlflow.search_runs(experiment_names=["rgsyn"], filter_string="tags.`rgsyn.stage` = 'data'")
    assert run["metrics.market1501.train_images"].iloc[0] == 16
    assert run["metrics.build_seconds"].iloc[0] > 0


def test_killed_build_leaves_the_old_world(tmp_path, monkeypatch):
    from rgsyn.stages import data as stage

    params = Params(data=tiny())
    out = tmp_path / "data" / "world"
    stage.build_into(params, out, progress=False)
    before = tree_hash(out)
    stage.build_into(params, out, progress=False)                   # a rebuild replaces it
    assert tree_hash(out) == before

    def killed(dp, root, **kw):
        (Path(root) / "half.jpg").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(toy_world, "build_world", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.build_into(params, out, progress=False)
    assert tree_hash(out) == before                                  # old world untouched
    assert [p.name for p in out.parent.iterdir()] == ["world"]       # no temp folder left


def test_paper_mode_checks_every_path(world, capsys):
    import json

    from rgsyn import cli
    from rgsyn.config import DatasetPaths
    from rgsyn.stages import data as stage

    root, _ = world
    params = Params(profile="paper", data=tiny())
    params.data.world = False
    params.data.paths = DatasetPaths(market1501=str(root / "market1501"), cuhk03=str(root / "cuhk03"),
                                     casia_face=str(root / "casia"), verification=str(root / "verification"),
                                     rfw_bias=str(root / "rfw"))
    checks = stage.check_paths(params, progress=False)
    assert set(checks) == {"market1501", "cuhk03", "casia_face", "verification", "rfw_bias"}
    assert all(c["official_match"] is False for c in checks.values())   # toy counts are not official
    assert checks["verification"]["sets"]["cfp_fp"]["pairs"] == 40
    assert checks["cuhk03"]["modes"]["detected"]["splits"]["train"]["images"] == 12
    assert cli.main(["data", "check", "--benchmark", "rfw_bias", "--root", str(root / "rfw"),
                     "--profile", "toy"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["groups"]["Indian"]["pairs"] == 20 and out["official_match"] is None


def test_partial_cuhk03_overlay_keeps_cuhk03_defaults(tmp_path):
    from rgsyn import config

    overlay = tmp_path / "smoke.yaml"
    overlay.write_text("data:\n  cuhk03: {n_train_ids: 16}\n")
    cuhk = config.load(overlay).data.cuhk03
    assert (cuhk.n_train_ids, cuhk.n_cams, cuhk.cams_per_id, cuhk.n_distractors, cuhk.n_junk) == (16, 2, 2, 0, 0)
    assert config.Params().data.market.n_cams == 6


def _grayworld_rank1(splits) -> float:
    """Rank-1 (Market protocol) of a hand-made feature: mean colour of three body bands after
    dividing by the image's mean colour (which cancels the camera's colour gain)."""
    import numpy as np

    from rgsyn.data import load_image

    def feat(recs):
        out = []
        for r in recs:
            a = np.asarray(load_image(r.path), float)
            a = a / a.reshape(-1, 3).mean(0)
            h, w = a.shape[:2]   # bands drawn for 64x32, scaled to the image's size
            f = np.concatenate([a[y0 * h // 64:y1 * h // 64, w // 4:3 * w // 4].reshape(-1, 3).mean(0)
                                for y0, y1 in ((14, 30), (30, 44), (44, 58))])
            out.append(f / np.linalg.norm(f))
        return np.stack(out)

    q, g = feat(splits.query), feat(splits.gallery)
    sim = q @ g.T
    gp = np.array([r.pid for r in splits.gallery])
    gc = np.array([r.camid for r in splits.gallery])
    hits = []
    for i, r in enumerate(splits.query):
        keep = ~((gp == r.pid) & (gc == r.camid))
        hits.append(gp[keep][np.argmax(sim[i][keep])] == r.pid)
    return float(np.mean(hits))


def test_identity_is_learnable_but_not_trivial(tmp_path):
    from rgsyn.config import Cuhk03World

    dp = DataParams(market=PersonWorld(n_train_ids=2, n_test_ids=24, cams_per_id=3, n_distractors=10, n_junk=0),
                    cuhk03=Cuhk03World(n_train_ids=2, n_test_ids=24, imgs_per_id_cam=2))
    toy_world._render_chunk(0, str(tmp_path), [j for j in toy_world.plan_world(dp)[0] if j.kind == "person"])
    market = _grayworld_rank1(read_market1501(tmp_path / "market1501"))
    labeled = _grayworld_rank1(read_cuhk03(tmp_path / "cuhk03", "labeled"))
    detected = _grayworld_rank1(read_cuhk03(tmp_path / "cuhk03", "detected"))
    chance = 1 / 24
    # world seeds 0-4 at 32x16 (at 64x32: 0.49-0.65, 0.40-0.50, 0.19-0.38)
    assert 8 * chance < market < 0.9            # 0.51-0.60
    assert 8 * chance < labeled < 0.9           # 0.35-0.50
    assert 3 * chance < detected < labeled      # jittered boxes are harder; 0.23-0.29


def test_paper_profile_data_stage_fills_every_declared_output(world, mlflow_tmp):
    """In the paper profile the data stage checks real folders (here: a toy world standing in for
    them) and still writes each output folder that dvc.yaml declares."""
    import yaml

    from rgsyn.stages import data as stage

    world, _ = world
    dvc_outs = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    declared = [next(iter(o)) if isinstance(o, dict) else o for o in dvc_outs["stages"]["data"]["outs"]]
    p = Params(profile="paper")
    p.data.world = False
    p.data.out = "world_checks"
    p.data.paths.market1501 = str(world / "market1501")
    p.data.paths.cuhk03 = str(world / "cuhk03")
    p.data.paths.casia_face = str(world / "casia")
    p.data.paths.verification = str(world / "verification")
    p.data.paths.rfw_bias = str(world / "rfw")
    report = stage.run(p)
    assert report["checks"]["market1501"]["official_match"] is False  # toy counts != official ones
    for out in declared:
        rel = Path("world_checks") / Path(out).relative_to("data/world")
        assert rel.exists(), f"declared output {out} was not written in the paper profile"
    assert (Path("world_checks") / "casia" / "check.json").is_file()
