"""Downstream training: PK sampling, determinism, resume after a kill, synthetic mixing, face eval."""
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from rgsyn import paths
from rgsyn.config import DataParams, FaceWorld, Params, PersonWorld, PriorWorld
from rgsyn.downstream.datasets import PKSampler
from rgsyn.errors import DataError

TIMING = {"train_seconds", "eval_seconds"}


def tiny_params(world: Path) -> Params:
    p = Params()
    p.device = "cpu"
    dp = p.data.paths
    dp.market1501, dp.cuhk03 = str(world / "market1501"), str(world / "cuhk03")
    dp.casia_face, dp.verification, dp.rfw_bias = str(world / "casia"), str(world / "verification"), str(world / "rfw")
    p.reid = dataclasses.replace(p.reid, backbone="osnet_x0_25", height=32, width=16, epochs=2, steps=0, P=4, K=2,
                                 warmup_epochs=1, syn_per_batch=4, eval_batch_size=64)
    p.face = dataclasses.replace(p.face, size=16, epochs=2, steps=0, batch_size=16, embedding_dim=16, syn_per_batch=4)
    return p


def build_tiny_world(root: Path) -> Path:
    from rgsyn.data.toy.world import build_world

    dp = DataParams(
        market=PersonWorld(n_train_ids=8, n_test_ids=6, imgs_per_id_cam=1, cams_per_id=3, n_distractors=3,
                           n_junk=2, height=32, width=16),
        cuhk03=PersonWorld(n_train_ids=8, n_test_ids=6, n_cams=2, cams_per_id=2, imgs_per_id_cam=2,
                           n_distractors=0, n_junk=0, height=32, width=16),
        faces=FaceWorld(n_train_ids=8, imgs_per_id=4, n_pairs=20, n_rfw_pairs=20, size=16),
        prior=PriorWorld(n_classes=2, imgs_per_class=1, people_per_class=0, size=8))
    build_world(dp, root, progress=False)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_tiny_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------ PK sampling
def test_pk_batches_have_p_ids_times_k_and_are_deterministic():
    labels = torch.tensor([0] * 6 + [1] * 4 + [2] * 4 + [3] * 8 + [4] * 2)
    s = PKSampler(labels, P=3, K=2, seed=5)
    batches = s.epoch(0)
    assert batches and all(len(b) == 6 for b in batches)
    for b in batches:
        ids, counts = torch.unique(labels[b], return_counts=True)
        assert len(ids) == 3 and (counts == 2).all()
    assert [b.tolist() for b in batches] == [b.tolist() for b in PKSampler(labels, 3, 2, 5).epoch(0)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in s.epoch(1)]


def test_pk_identity_with_fewer_than_k_images_is_sampled_with_replacement():
    labels = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2])   # identity 0 has 1 image, K = 4
    s = PKSampler(labels, P=2, K=4, seed=0)
    assert s.n_short == 1
    seen = torch.cat([torch.cat(s.epoch(e)) for e in range(6)])
    zero = seen[labels[seen] == 0]
    assert len(zero) > 0 and (zero == 0).all() and len(zero) % 4 == 0   # repeated, never crashes


def _max_batches(counts: list[int], P: int) -> int:
    """Brute force: the most batches of P distinct identities that the chunk counts allow."""
    return max(b for b in range(sum(counts) // P + 1) if sum(min(c, b) for c in counts) >= P * b)


@pytest.mark.parametrize("counts,P,K", [
    ([8] * 48, 16, 4),                    # the toy Market world: 6 batches, 5 or 6 before the fix
    ([4] * 8, 4, 2),                      # the tiny CUHK03 world of these tests
    ([1, 2, 3, 5, 9, 9, 13, 4, 6, 2, 7], 3, 2),   # uneven, two identities with fewer than K images
])
def test_pk_every_epoch_has_the_same_number_of_batches_on_many_seeds(counts, P, K):
    labels = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    chunks = [max(1, c // K) for c in counts]
    for seed in range(31):
        s = PKSampler(labels, P=P, K=K, seed=seed)
        assert len(s) == _max_batches(chunks, P)
        for epoch in range(4):
            batches = s.epoch(epoch)
            assert len(batches) == len(s), (seed, epoch)
            for b in batches:
                ids, n = torch.unique(labels[b], return_counts=True)
                assert len(ids) == P and (n == K).all()
    # the toy Market world now uses every chunk: one epoch is one pass over the images
    if counts == [8] * 48:
        assert len(PKSampler(labels, P, K, 7)) == 6
        assert sorted(torch.cat(PKSampler(labels, P, K, 7).epoch(0)).tolist()) == list(range(len(labels)))


def test_pk_needs_p_identities():
    with pytest.raises(DataError, match="P=5"):
        PKSampler(torch.tensor([0, 0, 1, 1]), P=5, K=2, seed=0)


# ------------------------------------------------------------------------------ ReID runs
def _strip(m):
    return {k: v for k, v in m.items() if k not in TIMING}


def test_reid_same_seed_same_metrics_and_resume_after_kill(world, workdir):
    from rgsyn.stages.train import train_and_evaluate

    p = tiny_params(world)
    full = train_and_evaluate(p, "market1501", "real", 0, progress=False)
    assert 0.0 <= full["mAP"] <= 1.0 and 0.0 <= full["rank1"] <= full["rank5"] <= full["rank10"] <= 1.0
    assert full["n_real"] == 8 * 3 and full["n_synthetic_used"] == 0
    curve = paths.train_curve("market1501", "real", 0).read_text()
    again = train_and_evaluate(p, "market1501", "real", 0, progress=False)
    assert _strip(again) == _strip(full)
    assert paths.train_curve("market1501", "real", 0).read_text() == curve

    # "kill" after the first epoch: the checkpoint survives, no outputs are written
    paths.run_metrics("market1501", "real", 0).unlink()
    assert train_and_evaluate(p, "market1501", "real", 0, progress=False, stop_after_epoch=1) is None
    assert not paths.run_metrics("market1501", "real", 0).exists()
    ckpts = list(Path(".rgsyn/work").glob("train-market1501-real-seed0/checkpoint.pt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], weights_only=True)
    assert state["epoch"] == 1
    resumed = train_and_evaluate(p, "market1501", "real", 0, progress=False)
    assert _strip(resumed) == _strip(full)
    assert paths.train_curve("market1501", "real", 0).read_text() == curve
    assert not ckpts[0].exists()   # cleared after success

    other = train_and_evaluate(p, "market1501", "real", 1, progress=False)
    assert _strip(other) != _strip(full)


@pytest.mark.parametrize("seed", [0, 7])
def test_reid_stage_completes_on_seeds_whose_epochs_differed(world, workdir, seed):
    """Seed 0 (tiny CUHK03 world) and seed 7 (toy Market world) drew 4 then 3 (6 then 5) batches
    with the old sampler, so the run never counted as completed and `rgsyn train` crashed."""
    from rgsyn.downstream.datasets import PKSampler
    from rgsyn.stages.train import run

    p = tiny_params(world)
    metrics = run(p, "cuhk03", "real", seed)[seed]
    assert 0.0 <= metrics["mAP"] <= 1.0
    assert paths.run_metrics("cuhk03", "real", seed).is_file()
    rows = paths.train_curve("cuhk03", "real", seed).read_text().strip().splitlines()[1:]
    labels = torch.arange(8).repeat_interleave(4)     # 8 identities x 2 cameras x 2 images
    assert metrics["n_real"] == len(labels)
    assert len(rows) == p.reid.epochs * len(PKSampler(labels, p.reid.P, p.reid.K, seed)) == 8


def _write_synthetic_persons(world: Path, benchmark: str, generator: str, pid_shift: int = 0) -> Path:
    out = paths.synthetic_dir(benchmark, generator) / "bounding_box_train"
    out.mkdir(parents=True, exist_ok=True)
    for n, src in enumerate(sorted((world / "market1501" / "bounding_box_train").glob("*.jpg"))):
        pid = int(src.name[:4]) + pid_shift
        shutil.copy(src, out / f"{pid:04d}_c1s9_{n:06d}_00.jpg")
    return out


@pytest.mark.parametrize("variant", ["syn_cold", "ours"])
def test_reid_with_synthetic_and_selection(world, workdir, variant):
    from rgsyn.stages.train import train_and_evaluate

    p = tiny_params(world)
    _write_synthetic_persons(world, "market1501", p.variant(variant).synthetic)
    m = train_and_evaluate(p, "market1501", variant, 0, progress=False)
    steps = len(paths.train_curve("market1501", variant, 0).read_text().splitlines()) - 1
    per_step = p.reid.syn_per_batch
    if variant == "syn_cold":
        assert m["n_synthetic_used"] == steps * per_step
    else:  # lookahead keeps round(fraction * multiplier * syn_per_batch) of the candidates
        keep = round(p.selection.fraction * p.selection.candidate_multiplier * per_step)
        assert m["n_synthetic_used"] == steps * keep
    assert m["n_synthetic_available"] == 8 * 3


def test_synthetic_pid_outside_training_ids_is_an_error(world, workdir):
    from rgsyn.stages.train import train_and_evaluate

    _write_synthetic_persons(world, "market1501", "cold", pid_shift=5000)
    with pytest.raises(DataError, match="not a training identity"):
        train_and_evaluate(tiny_params(world), "market1501", "syn_cold", 0, progress=False)


def test_missing_synthetic_set_is_an_error(world, workdir):
    from rgsyn.stages.train import train_and_evaluate

    with pytest.raises(DataError, match="rgsyn generate"):
        train_and_evaluate(tiny_params(world), "cuhk03", "syn_cold", 0, progress=False)


# ------------------------------------------------------------------------------ faces
def test_face_run_evaluates_five_sets_and_rfw(world, workdir):
    from rgsyn.stages.train import train_and_evaluate
    from rgsyn.paths import RFW_GROUPS, VERIFICATION_SETS

    p = tiny_params(world)
    m = train_and_evaluate(p, "casia_face", "real", 0, progress=False)
    for s in VERIFICATION_SETS:
        assert 0.0 <= m[s] <= 1.0 and m[f"{s}_std"] >= 0.0 and f"{s}_tar_at_far_1e-3" in m
    assert m["avg"] == pytest.approx(sum(m[s] for s in VERIFICATION_SETS) / 5)
    rfw = m["rfw"]
    assert set(RFW_GROUPS) <= set(rfw)
    assert rfw["mean"] == pytest.approx(sum(rfw[g] for g in RFW_GROUPS) / 4)
    assert rfw["ser"] is None or rfw["ser"] >= 1.0
    assert paths.run_metrics("casia_face", "real", 0).is_file()
    assert (paths.downstream_dir("casia_face", "real", 0) / "model.pt").is_file()


def test_face_run_with_mtcnn_alignment_reports_its_counts(world, workdir):
    """`face.align: mtcnn` through the stage: every training and evaluation image passes the
    aligner once (raw folders) and the counts reach the run metrics."""
    from rgsyn.stages.train import train_and_evaluate

    p = tiny_params(world)
    p.face = dataclasses.replace(p.face, align="mtcnn", epochs=1)
    m = train_and_evaluate(p, "casia_face", "real", 0, progress=False)
    assert m["n_align_total"] > m["n_real"]              # training images plus the evaluation sets
    assert m["n_align_fallback"] + m["n_align_as_is"] + m["n_align_given"] <= m["n_align_total"]
    assert 0.0 <= m["avg"] <= 1.0
    assert list((workdir / ".rgsyn" / "cache").glob("landmarks-*.npz"))   # detections cached


def test_face_random_erasing_blanks_patches_only_when_on():
    """The real_re variant's switch reaches face training: erasing zeroes a patch of the
    normalised image (value 0), flip-only augmentation never does."""
    from torchvision.transforms import RandomErasing

    from rgsyn.downstream.face import augment

    torch.manual_seed(0)
    images = torch.randint(1, 255, (8, 3, 16, 16), dtype=torch.uint8)
    plain = augment(images, torch.Generator().manual_seed(1))
    erased = augment(images, torch.Generator().manual_seed(1), RandomErasing(p=1.0, value=0))
    assert (plain == 0).flatten(1).sum(1).max() == 0
    changed = (erased != plain).flatten(1).any(1)
    assert changed.all()                                       # p=1: every image has a patch
    assert torch.all((erased == 0) | (erased == plain))        # only the patch changed, to 0


def test_mtcnn_fallback_is_counted_not_dropped(tmp_path):
    import numpy as np
    from PIL import Image

    from rgsyn.data.align import FaceAligner

    al = FaceAligner(cache_dir=tmp_path)       # the real MTCNN, on the CPU here
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    out = al(noise)
    assert al.n_total == 1 and al.n_fallback == 1
    assert out.size == (112, 112)   # centre crop of the short side, at the template size


def test_pretrained_weights_from_a_local_file(tmp_path):
    from rgsyn.downstream.reid import build_reid_model
    from rgsyn.errors import CheckpointError

    src = build_reid_model("osnet_x0_25", 5, 32, 16)
    torch.save(src.backbone.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(123)
    dst = build_reid_model("osnet_x0_25", 7, 32, 16, pretrained=str(tmp_path / "w.pt"))
    a, b = src.backbone.state_dict(), dst.backbone.state_dict()
    assert torch.equal(a["conv1.conv.weight"], b["conv1.conv.weight"])
    assert b["classifier.weight"].shape[0] == 7       # the head keeps its own size
    with pytest.raises(CheckpointError, match="do not exist"):
        build_reid_model("osnet_x0_25", 7, 32, 16, pretrained=str(tmp_path / "missing.pt"))


def test_cosface_margin_only_on_the_true_class():
    from rgsyn.downstream.face import CosFaceHead

    head = CosFaceHead(4, 3, s=10.0, m=0.5)
    emb = torch.randn(2, 4)
    y = torch.tensor([2, 0])
    plain, margin = head(emb), head(emb, y)
    diff = plain - margin
    assert torch.allclose(diff[0], torch.tensor([0.0, 0.0, 5.0])) and torch.allclose(diff[1], torch.tensor([5.0, 0.0, 0.0]))
    assert plain.abs().max() <= 10.0 + 1e-5


def test_epoch_checkpoints_are_written_when_due_or_forced(tmp_path, monkeypatch):
    from rgsyn.checkpoint import Checkpointer
    from rgsyn.downstream import loop

    monkeypatch.chdir(tmp_path)
    ck = Checkpointer("due-test", {"a": 1})
    assert not loop.checkpoint_due(ck)               # a fresh stage: a toy epoch is not worth a save
    assert loop.checkpoint_due(ck, force=True)       # a stop (kill simulation) always saves
    assert not loop.checkpoint_due(None, force=True)
    monkeypatch.setattr(loop, "SAVE_EVERY_SECONDS", 0.0)
    assert loop.checkpoint_due(ck)                   # long epochs: every one is saved


def test_small_resnet_reid_backbone_follows_torchreid_convention(tmp_path):
    from rgsyn.downstream.reid import build_reid_model
    from rgsyn.errors import CheckpointError

    torch.manual_seed(0)
    net = build_reid_model("small_resnet", 5, 64, 32)
    x = torch.randn(6, 3, 64, 32)
    y = torch.randint(0, 5, (6,))
    net.train()
    logits, feats = net(x, with_features=True)
    assert logits.shape == (6, 5) and feats.shape == (6, 256)
    assert torch.equal(net(x, y), logits)          # the selector's interface: the same logits
    assert net.features(x).shape == (6, 256) and net.training      # eval embedding, mode restored
    # one Adam step moves the classifier the selector's virtual step reads ("backbone.classifier")
    before = net.backbone.classifier.weight.detach().clone()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(net(x, y), y).backward()
    opt.step()
    assert not torch.equal(before, net.backbone.classifier.weight)
    with pytest.raises(CheckpointError, match="small_resnet backbone has no ImageNet weights"):
        build_reid_model("small_resnet", 5, 64, 32, pretrained=str(tmp_path / "w.pt"))


def test_ema_is_what_gets_evaluated_and_it_resumes_after_kill(world, workdir):
    from rgsyn.downstream.face import FaceTask, train_face
    from rgsyn.stages.train import train_and_evaluate

    p = tiny_params(world)
    data = FaceTask(p.face).load(p, "casia_face", None)
    net, info = train_face(data.train, data.num_classes, p.face, 0, progress=False)
    ema_net, ema_info = train_face(data.train, data.num_classes, dataclasses.replace(p.face, ema=0.9), 0,
                                   progress=False)
    # the average does not change the training, only the weights that are returned
    assert [r["loss"] for r in ema_info["history"]] == [r["loss"] for r in info["history"]]
    w, w_ema = net.state_dict(), ema_net.state_dict()
    assert w.keys() == w_ema.keys() and any(not torch.equal(w[k], w_ema[k]) for k in w)

    p.face = dataclasses.replace(p.face, ema=0.9)
    full = train_and_evaluate(p, "casia_face", "real", 0, progress=False)
    paths.run_metrics("casia_face", "real", 0).unlink()
    assert train_and_evaluate(p, "casia_face", "real", 0, progress=False, stop_after_epoch=1) is None
    assert _strip(train_and_evaluate(p, "casia_face", "real", 0, progress=False)) == _strip(full)


def test_real_plus_and_steps_through_the_train_stage(world, workdir):
    from rgsyn.stages.train import train_and_evaluate

    p = tiny_params(world)
    p.reid = dataclasses.replace(p.reid, steps=5)
    real = train_and_evaluate(p, "market1501", "real", 0, progress=False)
    plus = train_and_evaluate(p, "market1501", "real_plus", 0, progress=False)
    assert plus["n_synthetic_used"] == 5 * p.reid.syn_per_batch and real["n_synthetic_used"] == 0
    assert plus["n_synthetic_available"] == plus["n_real"] == real["n_real"]
    assert len(paths.train_curve("market1501", "real_plus", 0).read_text().splitlines()) == 1 + 5
