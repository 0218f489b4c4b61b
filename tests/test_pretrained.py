"""Strict loading of ImageNet backbones from local files (rgsyn.downstream.pretrained)."""
from __future__ import annotations

import pytest
import torch

from rgsyn.downstream import pretrained as pt
from rgsyn.errors import CheckpointError
from fakes.models import write_resnet50_torchvision, write_vit_timm


@pytest.fixture(scope="module")
def r50_file(tmp_path_factory):
    return write_resnet50_torchvision(tmp_path_factory.mktemp("w") / "resnet50.safetensors")


def _reid_resnet50(pretrained=""):
    from rgsyn.downstream.reid import build_reid_model

    return build_reid_model("resnet50", 7, 64, 32, str(pretrained))


def test_resnet50_torchvision_file_loads_strictly(r50_file):
    from safetensors.torch import load_file

    net = _reid_resnet50(r50_file)
    state = load_file(str(r50_file))
    own = net.backbone.state_dict()
    assert torch.equal(own["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    assert torch.equal(own["bn1.running_mean"], state["bn1.running_mean"])
    assert own["classifier.weight"].shape == (7, 2048)   # the new identity head, not the ImageNet fc


def _mutated(tmp_path, src, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    edit(state)
    out = tmp_path / "bad.safetensors"
    save_file(state, str(out))
    return out


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("layer3.1.bn2.weight"), ["missing keys", "layer3.1.bn2.weight (256,)"]),
    (lambda s: s.update({"extra.proj.weight": torch.zeros(3)}), ["unexpected keys", "extra.proj.weight"]),
    (lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)}),
     ["reshaped keys", "conv1.weight (64, 3, 3, 3) (expected (64, 3, 7, 7))"]),
])
def test_bad_weights_file_is_one_clear_error(tmp_path, r50_file, edit, words):
    bad = _mutated(tmp_path, r50_file, edit)
    with pytest.raises(CheckpointError) as e:
        _reid_resnet50(bad)
    msg = str(e.value)
    assert str(bad) in msg and "reid.pretrained" in msg and "torchvision ResNet" in msg
    for w in words:
        assert w in msg


def test_other_format_is_refused(tmp_path):
    """timm ViT keys given to the ResNet-50: every key is wrong, the message lists the first ones."""
    small = write_vit_timm(tmp_path / "vit.safetensors", "vit_tiny_patch16_224")
    with pytest.raises(CheckpointError, match=r"missing keys conv1.weight \(64, 3, 7, 7\).*\(\+\d+ more\)"):
        _reid_resnet50(small)


def test_vit_pos_embed_is_resampled_with_timm(tmp_path):
    import timm
    from safetensors.torch import load_file
    from timm.layers import resample_abs_pos_embed

    f = write_vit_timm(tmp_path / "vit.safetensors", "vit_tiny_patch16_224")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=(256, 128))
    done = pt.load_pretrained(model, f, pt.TIMM_VIT)
    src = load_file(str(f))["pos_embed"]                       # (1, 1 + 14*14, 192)
    assert done["resampled"] == ["pos_embed"] and set(done["dropped"]) == {"head.weight", "head.bias"}
    got = model.pos_embed.detach()
    assert got.shape == (1, 1 + 16 * 8, 192)
    want = resample_abs_pos_embed(src, new_size=[16, 8], old_size=[14, 14], num_prefix_tokens=1)
    torch.testing.assert_close(got, want)
    assert torch.equal(got[:, 0], src[:, 0])                   # class token untouched
    # the grid is an interpolation of the file's, not a fresh init (which would be uncorrelated)
    grid_src = src[0, 1:].reshape(14, 14, -1)
    grid = got[0, 1:].reshape(16, 8, -1)
    assert torch.corrcoef(torch.stack([grid[0, 0], grid_src[0, 0]]))[0, 1] > 0.5


def test_vit_b16_reid_backbone_at_256x128(tmp_path):
    """The configured arch at its real shapes (ViT-B/16, ~86M parameters, 346 MB file)."""
    from rgsyn.downstream.reid import build_reid_model

    f = write_vit_timm(tmp_path / "vit_b16.safetensors")
    net = build_reid_model("vit_b16", 5, 256, 128, str(f))
    assert net.backbone.backbone.pos_embed.shape == (1, 129, 768)
    net.eval()
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, 256, 128)).shape == (1, 768)


def test_face_resnet50_keeps_its_embedding_layer_fresh(r50_file):
    from rgsyn.config import FaceParams
    from rgsyn.downstream.face import build_face_model
    from safetensors.torch import load_file

    p = FaceParams(backbone="resnet50", size=112, embedding_dim=512, pretrained=str(r50_file))
    net = build_face_model(p, 9)
    state = load_file(str(r50_file))
    own = net.backbone.net.state_dict()
    assert torch.equal(own["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert own["fc.weight"].shape == (512, 2048)


def test_face_small_resnet_refuses_pretrained(r50_file):
    from rgsyn.config import FaceParams
    from rgsyn.downstream.face import build_face_model

    with pytest.raises(CheckpointError, match="face.pretrained"):
        build_face_model(FaceParams(pretrained=str(r50_file)), 3)
