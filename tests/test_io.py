"""Atomic writes: all or nothing, and the same object gives the same bytes (DVC hashes outputs)."""
import pytest
import torch

from rgsyn import io


def test_torch_save_same_object_same_bytes(tmp_path):
    obj = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"kind": "reid"}}
    io.torch_save(tmp_path / "a" / "model.pt", obj)
    io.torch_save(tmp_path / "b" / "model.pt", obj)
    a, b = (tmp_path / "a" / "model.pt").read_bytes(), (tmp_path / "b" / "model.pt").read_bytes()
    assert a == b
    assert torch.equal(torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]["w"], obj["state_dict"]["w"])


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
