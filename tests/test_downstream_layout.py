"""The downstream nets' memory layout: channels-last only where oneDNN's CPU kernels are safe.

A stride-2 1x1 convolution with fewer than 16 input channels corrupts the heap in its channels-last
weight gradient (rgsyn.downstream.datasets.layout_for); the corruption crashed the test run later,
in unrelated code. The last test trains such a net under glibc's malloc checks, which abort the
process at the first corrupted block.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rgsyn.downstream.datasets import channels_last_safe, layout_for
from rgsyn.downstream.face import CosFaceHead, FaceNet, SmallResNet
from rgsyn.downstream.reid import ReidNet
from rgsyn.downstream.small_resnet import SmallReidResNet

MALLOC_DEBUG = Path("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0")


@pytest.mark.parametrize("width,safe", [(4, False), (8, False), (15, False), (16, True), (32, True)])
def test_narrow_strided_shortcuts_keep_nchw(width, safe):
    assert channels_last_safe(SmallResNet(8, 16, width=width)) is safe
    assert channels_last_safe(SmallReidResNet(num_classes=4, width=width)) is safe
    face = FaceNet(SmallResNet(8, 16, width=width), CosFaceHead(8, 3))
    want = torch.channels_last if safe else torch.contiguous_format
    assert face.layout == want == layout_for(face.backbone)
    assert face.backbone.stem[0].weight.is_contiguous(memory_format=want)
    reid = ReidNet(SmallReidResNet(num_classes=4, width=width))
    assert reid.layout == want
    assert reid.backbone.stem[0].weight.is_contiguous(memory_format=want)


def test_a_stride_one_1x1_conv_does_not_force_nchw():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, 1), torch.nn.Conv2d(4, 8, 3, 2))
    assert channels_last_safe(net)


def test_both_layouts_give_the_same_features():
    torch.manual_seed(0)
    narrow, wide = SmallResNet(8, 16, width=4), SmallResNet(8, 16, width=16)
    x = torch.randn(3, 3, 16, 16)
    for backbone in (narrow, wide):
        ref = backbone.eval()(x)
        net = FaceNet(backbone, CosFaceHead(8, 3))
        torch.testing.assert_close(net.embed(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not MALLOC_DEBUG.exists(), reason="glibc's malloc-check library is not on this machine")
def test_training_a_narrow_net_leaves_the_heap_intact():
    """Before the guard this aborted ('corrupted double-linked list' or similar) within a few steps:
    batches of 3 and 5 through a width-4 face net, weight gradients included. It needs two threads
    (one thread ran clean), so the child runs with two whatever the machine has."""
    code = (
        "import torch\n"
        "from rgsyn.downstream.face import CosFaceHead, FaceNet, SmallResNet\n"
        "torch.manual_seed(0)\n"
        "for i in range(20):\n"
        "    for b in (3, 5):\n"
        "        net = FaceNet(SmallResNet(8, 16, width=4), CosFaceHead(8, 3))\n"
        "        net(torch.randn(b, 3, 16, 16), torch.arange(b) % 3).sum().backward()\n"
        "print('heap intact')\n")
    env = dict(os.environ, LD_PRELOAD=str(MALLOC_DEBUG),
               GLIBC_TUNABLES="glibc.malloc.check=3:glibc.malloc.perturb=165", OMP_NUM_THREADS="2", RGSYN_THREADS="2")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "heap intact" in r.stdout, r.stderr[-2000:]
