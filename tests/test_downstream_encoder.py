"""Identity encoders: the `encoder` stage writes two weights-only models that load and encode."""
import pickle

import pytest
import torch

from rgsyn import paths
from rgsyn.downstream.encoder import load_identity_encoder
from rgsyn.errors import CheckpointError
from rgsyn.stages.encoder import run
from test_downstream_training import build_tiny_world, tiny_params


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_tiny_world(tmp_path_factory.mktemp("world"))


@pytest.mark.parametrize("domain,n_classes,dim", [("persons", 16, 512), ("faces", 8, 16)])
def test_encoder_stage_writes_reward_and_gold(world, mlflow_tmp, domain, n_classes, dim):
    p = tiny_params(world)
    p.encoder.epochs = 1
    out = run(p, domain)
    assert out["reward"]["n_classes"] == n_classes   # persons: Market + CUHK03 ids, one label space
    blob = torch.load(paths.encoder_path(domain, "reward"), weights_only=True)
    assert blob["num_classes"] == n_classes
    encs = {w: load_identity_encoder(paths.encoder_path(domain, w)) for w in ("reward", "gold")}
    x = torch.rand(5, 3, 40, 24)   # any size: the encoder resizes itself
    f = encs["reward"].encode(x)
    assert f.shape == (5, dim) and not f.requires_grad
    assert torch.allclose(f.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(f, encs["reward"].encode(x))
    assert not torch.allclose(f, encs["gold"].encode(x))   # different seeds, different models


def test_load_identity_encoder_rejects_missing_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_identity_encoder(tmp_path / "none.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError, match="plain-weights"):
        load_identity_encoder(bad)
    torch.save({"kind": "reid"}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_identity_encoder(tmp_path / "partial.pt")
