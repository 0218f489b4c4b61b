"""Verification protocol and bias statistics on hand-computed cases."""
import numpy as np
import pytest

from rgsyn.metrics import bias_stats, evaluate_verification
from rgsyn.metrics.verification import fold_slices


def _pairs_with_sq_distances(dists, seed=0):
    """Unit embedding pairs whose squared L2 distance is exactly `dists` (scaled: norm is removed)."""
    theta = np.arccos(1 - np.asarray(dists) / 2)
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, (len(dists), 1))
    e1 = np.stack([np.ones_like(theta), np.zeros_like(theta)], 1) * scale
    e2 = np.stack([np.cos(theta), np.sin(theta)], 1) * scale[::-1]
    return e1, e2


def test_two_fold_hand_computed():
    # fold A: same 0.205, 1.205; diff 1.005, 1.605.  fold B: same 0.305, 0.405; diff 0.805, 1.905
    dists = [0.205, 1.205, 1.005, 1.605, 0.305, 0.405, 0.805, 1.905]
    same = [1, 1, 0, 0, 1, 1, 0, 0]
    e1, e2 = _pairs_with_sq_distances(dists)
    out = evaluate_verification(e1, e2, same, n_folds=2)
    # test A with t chosen on B (first best: 0.41) -> 3/4; test B with t chosen on A (0.21) -> 2/4
    assert out["fold_accuracies"] == pytest.approx([0.75, 0.5])
    assert out["accuracy"] == pytest.approx(0.625)
    assert out["std"] == pytest.approx(0.125)
    assert out["threshold"] == pytest.approx((0.41 + 0.21) / 2)
    # FAR 1e-3 allows no impostor: t = 0.80 from B -> TAR(A) 1/2; t = 1.00 from A -> TAR(B) 1
    assert out["tar_at_far"][1e-3] == pytest.approx(0.75)


def test_perfectly_separable_is_one():
    rng = np.random.default_rng(1)
    same = np.tile([1, 0], 50)
    dists = np.where(same == 1, 0.3, rng.uniform(1.1, 3.9, 100))
    e1, e2 = _pairs_with_sq_distances(dists)
    out = evaluate_verification(e1, e2, same)
    assert out["threshold"] == pytest.approx(0.31)  # the first grid value above every genuine pair
    assert out["accuracy"] == 1.0 and out["std"] == 0.0 and out["tar_at_far"][1e-3] == 1.0


def test_folds_are_contiguous_like_kfold():
    assert [(s.start, s.stop) for s in fold_slices(23, 10)] == [
        (0, 3), (3, 6), (6, 9), (9, 11), (11, 13), (13, 15), (15, 17), (17, 19), (19, 21), (21, 23)]


def test_verification_bad_input():
    e = np.ones((20, 4))
    same = np.tile([True, False], 10)
    with pytest.raises(ValueError, match="issame"):
        evaluate_verification(e, e, same[:-1])
    with pytest.raises(ValueError, match="emb2"):
        evaluate_verification(e, e[:, :3], same)
    bad = e.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_verification(e, bad, same)


def test_bias_stats_hand_computed():
    out = bias_stats({"African": 0.9, "Asian": 0.8, "Caucasian": 0.95, "Indian": 0.85})
    assert out["mean"] == pytest.approx(0.875)
    assert out["std"] == pytest.approx(np.sqrt(0.003125))
    assert out["ser"] == pytest.approx(0.2 / 0.05)
    assert out["Asian"] == 0.8
    assert bias_stats({"a": 1.0, "b": 0.9})["ser"] == float("inf")
    with pytest.raises(ValueError, match="fraction"):
        bias_stats({"a": 1.5})
