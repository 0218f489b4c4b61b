import os

import torch
from PIL import Image

from rgsyn.downstream import datasets


def _jpeg(path, colour):
    Image.new("RGB", (8, 16), colour).save(path, quality=95)


def test_decoded_images_are_cached_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [str(tmp_path / f"{i}.jpg") for i in range(3)]
    for i, p in enumerate(paths):
        _jpeg(p, (40 * i, 100, 200))
    first = datasets.load_images(paths, (16, 8))
    cached = list((tmp_path / ".rgsyn" / "cache").glob("images-*.pt"))
    assert len(cached) == 1
    assert torch.equal(datasets.load_images(paths, (16, 8)), first)
    _jpeg(paths[1], (250, 0, 0))
    os.utime(paths[1], ns=(1, 1))  # a different mtime and content: a new cache key
    changed = datasets.load_images(paths, (16, 8))
    assert changed[1, 0].float().mean() > 200 and torch.equal(changed[0], first[0])
    assert len(list((tmp_path / ".rgsyn" / "cache").glob("images-*.pt"))) == 2
