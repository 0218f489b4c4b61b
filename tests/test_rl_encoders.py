"""The open_clip reward encoder, loaded from a local checkpoint of a tiny random model."""
import json

import pytest
import torch

from rgsyn.errors import CheckpointError
from rgsyn.rl.encoders import OpenClipEncoder, encode_images, load_encoder

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture()
def tiny_clip(tmp_path):
    import open_clip

    cfg = tmp_path / "rgsyn-tiny-clip.json"
    cfg.write_text(json.dumps(TINY))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("rgsyn-tiny-clip")
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return model, ckpt


def test_open_clip_encoder_loads_local_checkpoint(tiny_clip):
    model, ckpt = tiny_clip
    enc = load_encoder("open_clip", ckpt, open_clip_model="rgsyn-tiny-clip")
    assert isinstance(enc, OpenClipEncoder)
    imgs = torch.rand(5, 3, 64, 32)     # any size: resized to the tower's 32x32 input
    f = enc.encode(imgs)
    assert f.shape == (5, 16)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(5))
    # the loaded weights are the saved ones: same features as the original model
    import torch.nn.functional as F

    x = F.interpolate(imgs, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    x = (x - enc.mean) / enc.std
    with torch.no_grad():
        ref = F.normalize(model.eval().encode_image(x), dim=-1)
    torch.testing.assert_close(f, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(encode_images(enc, imgs, batch_size=2), f, atol=1e-6, rtol=1e-5)


def test_open_clip_missing_or_wrong_checkpoint(tiny_clip, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder("open_clip", tmp_path / "nope.pt", open_clip_model="rgsyn-tiny-clip")
    bad = tmp_path / "bad.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_encoder("open_clip", bad, open_clip_model="rgsyn-tiny-clip")


class _MeanEncoder(torch.nn.Module):
    """Records the batches it sees; features = per-channel means (so values can be checked)."""

    input_size = (20, 10)

    def __init__(self):
        super().__init__()
        self.seen = []

    def encode(self, images):
        self.seen.append((tuple(images.shape), images.dtype))
        return images.mean(dim=(2, 3))


def test_real_features_reads_mixed_sizes_at_the_encoder_input(tmp_path):
    """CUHK03-NP's boxes vary in size: each image is resized as it is read, in small batches."""
    from PIL import Image

    from rgsyn.rl.encoders import load_images, real_features

    paths = []
    for i, (w, h, colour) in enumerate([(60, 140, (255, 0, 0)), (64, 128, (0, 255, 0)), (41, 173, (0, 0, 255))]):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (w, h), colour).save(p)
        paths.append(str(p))
    u8 = load_images(paths, (20, 10))
    assert u8.dtype == torch.uint8 and u8.shape == (3, 3, 20, 10)
    enc = _MeanEncoder()
    feats = real_features(enc, [paths[:2], paths[2:]], batch_size=2)
    assert [f.shape for f in feats] == [(2, 3), (1, 3)]
    torch.testing.assert_close(feats[0], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    torch.testing.assert_close(feats[1], torch.tensor([[0, 0, 1.0]]))
    assert enc.seen == [((2, 3, 20, 10), torch.float32), ((1, 3, 20, 10), torch.float32)]
