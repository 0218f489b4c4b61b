"""A corrupt, truncated or foreign file where a stage keeps its checkpoint (`.rgsyn/work/<key>/`) or
its decoded-image cache (`.rgsyn/cache/`) is one CheckpointError naming the file and saying what
to delete to start afresh (the CLI prints it as one line and exits 2, as any RgsynError)."""
from __future__ import annotations

import pytest
import torch

from rgsyn import checkpoint
from rgsyn.checkpoint import Checkpointer
from rgsyn.errors import CheckpointError


def _damage(path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 40)
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not-a-dict":
        torch.save([torch.zeros(3)], path)
    elif how == "unsafe-global":         # weights_only refuses it: never run
        torch.save({"x": torch.nn.Linear(2, 2)}, path)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "not-a-dict", "unsafe-global"])
def test_corrupt_checkpoint_names_the_folder_to_delete(tmp_path, monkeypatch, how):
    monkeypatch.setattr(checkpoint, "WORK_ROOT", tmp_path / ".rgsyn" / "work")
    ck = Checkpointer("train-market1501-ours-seed0", {"lr": 0.1})
    ck.save({"step": 3, "weights": torch.ones(4)})
    assert ck.load()["step"] == 3                  # a whole checkpoint resumes
    _damage(ck.path, how)
    with pytest.raises(CheckpointError) as e:
        ck.load()
    msg = str(e.value)
    assert str(ck.path) in msg and f"delete {ck.dir} to start the stage afresh" in msg
    assert "\n" not in msg and "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    ck.clear()                                     # the remedy the message gives works
    assert ck.load() is None


def test_checkpoint_of_other_params_is_still_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "WORK_ROOT", tmp_path)
    Checkpointer("k", {"lr": 0.1}).save({"step": 1})
    assert Checkpointer("k", {"lr": 0.2}).load() is None


def test_corrupt_image_cache_names_the_file(tmp_path, monkeypatch):
    from PIL import Image

    from rgsyn.downstream import datasets

    monkeypatch.setattr(datasets, "CACHE_DIR", tmp_path / "cache")
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (6, 4), (40 * i, 0, 0)).save(paths[-1])
    first = datasets.load_images(paths, (4, 6))
    cache = next((tmp_path / "cache").glob("images-*.pt"))
    assert torch.equal(datasets.load_images(paths, (4, 6)), first)     # read back from the cache
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{cache} is corrupt .*; delete {cache} to decode the images afresh"):
        datasets.load_images(paths, (4, 6))
    torch.save({"not": "a tensor"}, cache)
    with pytest.raises(CheckpointError, match=r"holds a dict, expected a Tensor; delete .* to decode the images afresh"):
        datasets.load_images(paths, (4, 6))
