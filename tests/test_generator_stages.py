"""prior -> coldstart -> generate on a tiny world made here; resume after kill; NaN stop; bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import encoders as fake_encoders
from rgsyn import paths
from rgsyn.config import Params
from rgsyn.errors import CheckpointError, DataError, TrainingDiverged
from rgsyn.generator import bundle, identity_head


def _img(path: Path, colour, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    arr = np.clip(np.array(colour)[None, None] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_world(root: Path) -> None:
    for k, c in enumerate([(200, 30, 30), (30, 30, 200)]):
        for n in range(4):
            _img(root / "prior" / f"{k:03d}_cls" / f"{n:04d}.png", c)
    for pid, c in [(2, (250, 0, 0)), (7, (0, 250, 0))]:
        for n in range(3):
            _img(root / "market1501" / "bounding_box_train" / f"{pid:04d}_c{n + 1}s1_{n:06d}_00.jpg", c, (8, 16))
    for pid, c in [(1, (0, 0, 250)), (5, (250, 250, 0)), (9, (0, 250, 250))]:
        for n in range(2):
            _img(root / "cuhk03" / "labeled" / "bounding_box_train" / f"{pid:04d}_c{n + 1}s1_{n:06d}_00.jpg",
                 c, (8, 16))
    for ident, c in [("0000001", (100, 50, 20)), ("0000002", (20, 50, 100))]:
        for n in range(3):
            _img(root / "casia" / ident / f"{n:03d}.jpg", c)


def tiny_params(root: Path) -> Params:
    p = Params()
    p.device = "cpu"
    d = p.data.paths
    d.prior, d.market1501, d.cuhk03, d.casia_face = (str(root / x) for x in ("prior", "market1501", "cuhk03", "casia"))
    a = p.prior.arch
    a.sample_size, a.patch_size, a.num_layers, a.num_attention_heads, a.attention_head_dim = 8, 2, 1, 2, 8
    p.prior.steps, p.prior.batch_size, p.prior.checkpoint_every = 4, 4, 2
    p.coldstart.steps, p.coldstart.batch_size, p.coldstart.checkpoint_every = 4, 4, 2
    p.coldstart.train_lora = False   # the paper setting: frozen backbone, head only
    p.sampler.num_inference_steps = 3
    p.generate.per_identity, p.generate.batch_size, p.generate.grid_identities = 3, 4, 2
    p.reid.height, p.reid.width, p.face.size = 16, 8, 8
    return p


@pytest.fixture
def world(mlflow_tmp, monkeypatch):
    make_world(mlflow_tmp / "w")
    fake_encoders.install(monkeypatch)
    return mlflow_tmp


def test_prior_coldstart_generate_end_to_end(world):
    from rgsyn.data.faces import read_id_folders
    from rgsyn.data.market import read_market1501
    from rgsyn.stages import coldstart, prior
    from rgsyn.stages import generate as synthesis

    p = tiny_params(world / "w")
    prior.run(p)
    pb = bundle.load_generator(paths.prior_dir())
    assert identity_head.num_labels(pb.transformer) == 2 and [d["label"] for d in pb.identities] == ["000_cls", "001_cls"]
    coldstart.run(p, "persons")
    cb = bundle.load_generator(paths.coldstart_dir("persons"))
    ids = json.loads((paths.coldstart_dir("persons") / "identities.json").read_text())
    assert [(d["row"], d["benchmark"], d["label"]) for d in ids] == [
        (0, "market1501", 2), (1, "market1501", 7), (2, "cuhk03", 1), (3, "cuhk03", 5), (4, "cuhk03", 9)]
    assert identity_head.num_labels(cb.transformer) == 5
    # the backbone is frozen: everything but the identity tables equals the prior
    prior_sd = pb.transformer.state_dict()
    for k, v in cb.transformer.state_dict().items():
        if "class_embedder" not in k:
            assert torch.equal(v, prior_sd[k]), k
    # the identity rows moved away from zero during training
    assert identity_head.label_embedders(cb.transformer)[0].embedding_table.weight[:5].abs().sum() > 0

    m = synthesis.run(p, "market1501", "cold")
    syn = paths.synthetic_dir("market1501", "cold")
    recs = read_market1501(syn, splits=("train",)).train
    assert len(recs) == 2 * 3 and sorted({r.pid for r in recs}) == [2, 7]
    assert all(Image.open(r.path).size == (8, 16) for r in recs)
    manifest = (syn / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,identity,row,seed,checkpoint_sha256" and len(manifest) == 7
    assert bundle.checkpoint_sha256(paths.coldstart_dir("persons")) in manifest[1]
    saved = json.loads(paths.generation_metrics("market1501", "cold").read_text())
    for key in ("frechet", "density", "coverage", "nn_sim_mean", "nn_sim_share_above", "nn_threshold",
                "n_images", "mean_reward_sem", "identity_accuracy", "identity_accuracy_reward"):
        assert key in saved
    assert saved == pytest.approx(m) and saved["n_images"] == 6 and 0 <= saved["mean_reward_sem"] <= 1
    assert paths.generation_metrics("market1501", "cold").with_name("market1501-cold-grid.png").is_file()
    assert not (Path(".rgsyn/work") / "generate-market1501-cold").exists()

    coldstart.run(p, "faces")
    synthesis.run(p, "casia_face", "cold")
    faces = read_id_folders(paths.synthetic_dir("casia_face", "cold"))
    assert sorted({r.identity for r in faces}) == ["0000001", "0000002"] and len(faces) == 6


def test_generate_resumes_after_kill_without_redoing_batches(world, monkeypatch):
    from rgsyn.stages import coldstart, prior
    from rgsyn.stages import generate as synthesis
    from rgsyn.generator.sampler import PolicySampler

    p = tiny_params(world / "w")
    p.generate.per_identity, p.generate.batch_size = 5, 3   # 10 images, 4 batches
    prior.run(p)
    coldstart.run(p, "persons")
    synthesis.run(p, "market1501", "cold")
    syn = paths.synthetic_dir("market1501", "cold")
    reference = {f.name: f.read_bytes() for f in (syn / "bounding_box_train").iterdir()}
    ref_manifest = (syn / "manifest.csv").read_text()

    calls = {"n": 0}
    real_sample = PolicySampler.sample

    def killed_after_two(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_sample(self, *a, **k)

    monkeypatch.setattr(PolicySampler, "sample", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        synthesis.run(p, "market1501", "cold")
    work = Path(".rgsyn/work/generate-market1501-cold")
    assert len(list((work / "parts").iterdir())) == 2
    calls["n"] = 100
    counted = []
    monkeypatch.setattr(PolicySampler, "sample", lambda self, *a, **k: counted.append(1) or real_sample(self, *a, **k))
    synthesis.run(p, "market1501", "cold")
    assert len(counted) == 2     # only the two unfinished batches were sampled
    assert {f.name: f.read_bytes() for f in (syn / "bounding_box_train").iterdir()} == reference
    assert (syn / "manifest.csv").read_text() == ref_manifest


def test_generate_needs_encoder_and_matching_identities(world):
    from rgsyn.stages import coldstart, prior
    from rgsyn.stages import generate as synthesis

    p = tiny_params(world / "w")
    prior.run(p)
    coldstart.run(p, "persons")
    paths.encoder_path("persons", "reward").unlink()
    with pytest.raises(CheckpointError, match="identity encoder .* is missing"):
        synthesis.run(p, "market1501", "cold")
    paths.encoder_path("persons", "reward").write_bytes(b"x")
    paths.encoder_path("persons", "gold").unlink()
    with pytest.raises(CheckpointError, match="gold.pt is missing"):
        synthesis.run(p, "market1501", "cold")
    paths.encoder_path("persons", "gold").write_bytes(b"x")
    # a new identity appears in the dataset after cold start
    _img(world / "w" / "market1501" / "bounding_box_train" / "0011_c1s1_000001_00.jpg", (9, 9, 9), (8, 16))
    with pytest.raises(DataError, match="has 2 market1501 identities but the market1501 training split has 3"):
        synthesis.run(p, "market1501", "cold")
    with pytest.raises(Exception, match="'rl-nope' is not allowed"):
        synthesis.run(p, "market1501", "rl-nope")


def test_coldstart_without_prior_is_a_clear_error(world):
    from rgsyn.stages import coldstart

    with pytest.raises(CheckpointError, match="not a generator bundle"):
        coldstart.run(tiny_params(world / "w"), "persons")


def test_training_resumes_exactly_and_stops_on_nan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from rgsyn.checkpoint import Checkpointer
    from rgsyn.generator.autoencoder import PixelAutoencoder
    from rgsyn.generator.datasets import ImageSet
    from rgsyn.generator.training import train_denoising
    from test_generator_dit import tiny_bundle

    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 255, (6, 3, 8, 8), generator=g, dtype=torch.uint8),
                    torch.tensor([0, 1, 2, 3, 4, 0]), [], [])

    def train(b, ck, run=None, ae=None):
        return train_denoising(transformer=b.transformer, trainable=list(b.transformer.parameters()), data=data,
                               autoencoder=ae or PixelAutoencoder(), scheduler=b.scheduler, steps=6,
                               batch_size=4, lr=1e-2, seed=0, null_label=5, checkpointer=ck,
                               checkpoint_every=2, device="cpu", run=run, log_every=1)

    full = tiny_bundle()
    train(full, None)

    class Killer:
        def log_metrics(self, metrics, step=None):
            if step == 4:
                raise KeyboardInterrupt

    b = tiny_bundle()
    ck = Checkpointer("t", {"x": 1})
    with pytest.raises(KeyboardInterrupt):
        train(b, ck, run=Killer())
    assert torch.load(ck.path, weights_only=True)["step"] == 4
    resumed = tiny_bundle()
    stats = train(resumed, ck)
    assert stats["resumed_from"] == 4
    for (k, v), (_, w) in zip(full.transformer.state_dict().items(), resumed.transformer.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k

    class NanAE(PixelAutoencoder):
        def encode(self, images):
            return images * float("nan")

    with pytest.raises(TrainingDiverged, match="at step 0"):
        train(tiny_bundle(), None, ae=NanAE())


def test_prior_and_coldstart_do_not_depend_on_the_global_rng(world):
    """A stage run in a fresh process must give the same weights as one run after other work:
    the toy DiT's initial weights and the LoRA's initial A matrices come from the stage's seed,
    not from whatever state torch's global RNG is in."""
    from safetensors.torch import load_file

    from rgsyn.stages import coldstart, prior

    p = tiny_params(world / "w")
    p.coldstart.train_lora = True

    def weights(folder: Path) -> dict:
        return load_file(next((folder / "transformer").glob("*.safetensors")))

    out = []
    for disturb in (1, 2):
        torch.manual_seed(1000 + disturb)   # other work ran before, differently each time
        prior.run(p)
        torch.rand(disturb * 7)
        coldstart.run(p, "faces")
        out.append((weights(paths.prior_dir()), weights(paths.coldstart_dir("faces"))))
    for a, b in zip(out[0], out[1]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
