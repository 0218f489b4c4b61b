"""The machine-independent half of the regression check: what must agree on any CPU.

tests/test_regression_smoke.py checks the metrics of trained smoke models within their measured
spread across instruction sets and seeds; the steps below involve no training, so they are held to
much more than that (the golden values live in tests/golden_exact.json, remade with
`pytest tests/test_regression_exact.py --regen-goldens`):

- the toy world's bytes: the SHA-256 of every file of the smoke world (exact);
- the evaluation protocol on fixed inputs: `evaluate_reid` on a fixed distance matrix with ties and
  `evaluate_verification` on fixed embeddings (exact: the inputs are small integers, so the re-ID
  distances are exact in any summation order and the ties are real ties, ordered by the protocol);
- a forward pass of a fixed model: `SmallReidResNet` built after `torch.manual_seed(0)` (uniform
  initialisations only) on a fixed input, to FORWARD_RTOL of the features' largest magnitude
  (measured: the AVX-512, AVX2 and scalar code paths of one machine differ by at most 1.2e-7 of it;
  the world and the protocol are also identical with numpy's AVX2/AVX-512 kernels disabled).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rgsyn import config
from rgsyn.data.toy.world import build_world
from rgsyn.downstream.small_resnet import SmallReidResNet
from rgsyn.metrics import evaluate_reid, evaluate_verification

GOLDEN = Path(__file__).with_name("golden_exact.json")
FORWARD_RTOL = 1e-5   # measured: at most 1.2e-7 between the AVX-512, AVX2 and scalar paths


def world_digest(root: Path) -> str:
    """SHA-256 over (relative path, bytes) of every file under root, in sorted path order."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def fixed_reid_inputs():
    """Queries and gallery from integer features: every distance is an exact small integer, so
    there are ties, and no code path can order them differently."""
    rng = np.random.default_rng(7)
    q_pids, g_pids = rng.integers(1, 9, 24), np.r_[rng.integers(0, 9, 72), -1, -1]
    q_cams, g_cams = rng.integers(0, 3, 24), rng.integers(0, 3, 74)
    qf = rng.integers(-3, 4, (24, 6)) + 2 * q_pids[:, None]
    gf = rng.integers(-3, 4, (74, 6)) + 2 * np.abs(g_pids)[:, None]
    dist = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1).astype(np.float32)
    return dist, q_pids, g_pids, q_cams, g_cams


def fixed_verification_inputs():
    rng = np.random.default_rng(11)
    e1 = rng.integers(-4, 5, (200, 8)).astype(np.float64)
    same = np.arange(200) % 2 == 0
    e2 = np.where(same[:, None], e1 + rng.integers(-2, 3, (200, 8)), rng.integers(-4, 5, (200, 8)))
    return e1, e2.astype(np.float64), same


def protocol_results() -> dict:
    reid = evaluate_reid(*fixed_reid_inputs(), max_rank=10)
    ver = evaluate_verification(*fixed_verification_inputs())
    return {"reid": {"mAP": float(reid["mAP"]), "cmc": [float(c) for c in reid["cmc"][:10]]},
            "verification": {"accuracy": float(ver["accuracy"]), "std": float(ver["std"]),
                             "threshold": float(ver["threshold"]),
                             "tar_at_far": {str(k): float(v) for k, v in ver["tar_at_far"].items()},
                             "fold_accuracies": [float(a) for a in ver["fold_accuracies"]]}}


def forward_features() -> np.ndarray:
    torch.manual_seed(0)
    net = SmallReidResNet(num_classes=8, width=8).eval()
    x = (torch.arange(2 * 3 * 64 * 32, dtype=torch.float32).reshape(2, 3, 64, 32) % 17 - 8) / 8
    with torch.no_grad():
        return net(x).double().numpy()


@pytest.fixture(scope="module")
def golden(request):
    if request.config.getoption("--regen-goldens"):
        return None
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: run pytest {__file__} --regen-goldens"
    return json.loads(GOLDEN.read_text())


def regen(key: str, value) -> None:
    data = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    data[key] = value
    GOLDEN.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_toy_world_bytes_are_exact(golden, tmp_path):
    dp = config.from_dict(config.profile_dict("smoke")).data
    build_world(dp, tmp_path / "world", workers=1, progress=False)
    digest = world_digest(tmp_path / "world")
    if golden is None:
        return regen("world_sha256", digest)
    assert digest == golden["world_sha256"], ("the smoke profile's toy world changed: its bytes must be "
                                              "the same on every machine (same seed, same files)")


def test_evaluation_protocol_is_exact(golden):
    got = protocol_results()
    if golden is None:
        return regen("protocol", got)
    assert got == golden["protocol"], f"the evaluation protocol changed on fixed inputs: {got}"


def test_fixed_model_forward(golden):
    got = forward_features()
    if golden is None:
        return regen("forward_features", got.tolist())
    want = np.asarray(golden["forward_features"])
    assert got.shape == want.shape
    scale = np.abs(want).max()
    worst = np.abs(got - want).max() / scale
    assert worst <= FORWARD_RTOL, (f"a forward pass of the fixed SmallReidResNet moved by {worst:.3g} of its "
                                   f"largest feature (allowed {FORWARD_RTOL:g})")
