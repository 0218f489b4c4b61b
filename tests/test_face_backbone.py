"""The toy face backbone's stem stride: output shapes at odd sizes, and saved encoders that rebuild
the model they were trained as (including files written before the setting existed)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from rgsyn.config import FaceParams
from rgsyn.downstream.encoder import load_identity_encoder, save_identity_encoder
from rgsyn.downstream.face import SmallResNet, build_face_model


@pytest.mark.parametrize("size", [32, 30, 17])
@pytest.mark.parametrize("stride", [1, 2])
def test_small_resnet_embeds_any_side(size, stride):
    net = SmallResNet(8, size, width=4, stem_stride=stride).eval()
    assert net(torch.rand(3, 3, size, size)).shape == (3, 8)


def test_stride_two_quarters_the_first_stage():
    one, two = SmallResNet(8, 32, width=4, stem_stride=1), SmallResNet(8, 32, width=4, stem_stride=2)
    x = torch.rand(1, 3, 32, 32)
    assert one.stem(x).shape[-2:] == (32, 32) and two.stem(x).shape[-2:] == (16, 16)
    assert one.fc.in_features == 4 * 4 * 8 * 8 and two.fc.in_features == 4 * 4 * 4 * 4


@pytest.mark.parametrize("stride", [1, 2])
def test_saved_encoder_rebuilds_its_stride(tmp_path, stride):
    p = FaceParams(size=16, width=4, embedding_dim=8, stem_stride=stride)
    torch.manual_seed(0)
    net = build_face_model(p, 5).eval()
    save_identity_encoder(tmp_path / "m.pt", net, "face", dataclasses.asdict(p), 5)
    enc = load_identity_encoder(tmp_path / "m.pt")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(enc.model.backbone(x), net.backbone(x))


def test_encoder_file_without_the_key_is_stride_one(tmp_path):
    p = FaceParams(size=16, width=4, embedding_dim=8, stem_stride=1)
    net = build_face_model(p, 5).eval()
    config = dataclasses.asdict(p)
    del config["stem_stride"]
    save_identity_encoder(tmp_path / "old.pt", net, "face", config, 5)
    assert load_identity_encoder(tmp_path / "old.pt").model.backbone.stem[0].stride == (1, 1)
