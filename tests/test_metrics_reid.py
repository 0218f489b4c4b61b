"""ReID evaluator: agreement with torchreid, hand-computed cases, ties and bad input."""
import warnings

import numpy as np
import pytest
import torch

from rgsyn.metrics import evaluate_reid

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics.rank import eval_market1501


def _random_case(seed, nq, ng, n_ids, n_cams, dtype=np.float32):
    rng = np.random.default_rng(seed)
    d = rng.random((nq, ng)).astype(dtype)
    return (d, rng.integers(1, n_ids, nq), rng.integers(0, n_ids, ng),  # gallery pid 0 = distractor
            rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng))


@pytest.mark.parametrize("seed,nq,ng,n_ids,n_cams,chunk", [
    (0, 40, 300, 15, 4, 7), (1, 120, 1500, 60, 6, 64), (2, 33, 90, 5, 2, 1000), (3, 64, 500, 100, 6, 16)])
def test_matches_torchreid_on_random_inputs(seed, nq, ng, n_ids, n_cams, chunk):
    d, qp, gp, qc, gc = _random_case(seed, nq, ng, n_ids, n_cams)
    cmc_ref, map_ref = eval_market1501(d, qp, gp, qc, gc, 50)
    out = evaluate_reid(d, qp, gp, qc, gc, max_rank=50, chunk_size=chunk)
    assert out["mAP"] == pytest.approx(map_ref, abs=1e-6)
    assert out["cmc"].shape == cmc_ref.shape
    np.testing.assert_allclose(out["cmc"], cmc_ref, atol=1e-6)


def test_matches_torchreid_float64_and_torch_inputs():
    d, qp, gp, qc, gc = _random_case(5, 50, 400, 20, 3, dtype=np.float64)
    cmc_ref, map_ref = eval_market1501(d, qp, gp, qc, gc, 10)
    out = evaluate_reid(torch.from_numpy(d), torch.from_numpy(qp), torch.from_numpy(gp),
                        torch.from_numpy(qc), torch.from_numpy(gc), max_rank=10)
    assert out["mAP"] == pytest.approx(map_ref, abs=1e-6)
    np.testing.assert_allclose(out["cmc"], cmc_ref, atol=1e-6)


def test_hand_computed_ap_and_cmc_with_same_camera_and_junk():
    # query pid 1, camera 0. Gallery (distance): same pid+cam (0.0, removed), junk -1 (0.05, ignored),
    # pid 2 (0.1), pid 1 cam 1 (0.2), distractor pid 0 (0.3), pid 1 cam 2 (0.4).
    d = np.array([[0.0, 0.05, 0.1, 0.2, 0.3, 0.4]])
    gp = np.array([1, -1, 2, 1, 0, 1])
    gc = np.array([0, 1, 1, 1, 1, 2])
    out = evaluate_reid(d, np.array([1]), gp, np.array([0]), gc, max_rank=4)
    # kept ranking: pid2, pid1, pid0, pid1 -> positives at ranks 2 and 4
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    np.testing.assert_allclose(out["cmc"], [0, 1, 1, 1])


def test_two_queries_average_and_invalid_query_skipped():
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.1, 0.1]])
    gp = np.array([5, 6, 7])
    gc = np.array([1, 1, 1])
    # query 0 (pid 5): rank 1 -> AP 1; query 1 (pid 5): rank 3 -> AP 1/3; query 2 (pid 9): not in gallery
    out = evaluate_reid(d, np.array([5, 5, 9]), gp, np.array([0, 0, 0]), gc, max_rank=3)
    assert out["mAP"] == pytest.approx((1 + 1 / 3) / 2)
    np.testing.assert_allclose(out["cmc"], [0.5, 0.5, 1.0])


def test_ties_are_broken_by_gallery_index():
    # a negative and a positive at exactly the same distance: the lower gallery index ranks first
    q = dict(q_pids=np.array([1]), q_camids=np.array([0]))
    neg_first = evaluate_reid(np.array([[0.5, 0.5]]), g_pids=np.array([2, 1]), g_camids=np.array([1, 1]), **q)
    pos_first = evaluate_reid(np.array([[0.5, 0.5]]), g_pids=np.array([1, 2]), g_camids=np.array([1, 1]), **q)
    assert neg_first["mAP"] == pytest.approx(0.5) and neg_first["cmc"][0] == 0
    assert pos_first["mAP"] == pytest.approx(1.0) and pos_first["cmc"][0] == 1


def test_ties_match_a_stable_full_sort_reference():
    # quantised distances force many exact ties; compare with torchreid run on a distance matrix
    # whose ties are pre-broken by gallery index (stable order), which is the documented rule
    rng = np.random.default_rng(7)
    d = rng.integers(0, 5, (30, 200)).astype(np.float32)
    qp, gp = rng.integers(1, 10, 30), rng.integers(0, 10, 200)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 200)
    ranks = np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float64)
    cmc_ref, map_ref = eval_market1501(ranks, qp, gp, qc, gc, 20)
    out = evaluate_reid(d, qp, gp, qc, gc, max_rank=20, chunk_size=8)
    assert out["mAP"] == pytest.approx(map_ref, abs=1e-6)
    np.testing.assert_allclose(out["cmc"], cmc_ref, atol=1e-6)


def test_distractors_stay_as_negatives():
    base = evaluate_reid(np.array([[0.2, 0.1]]), np.array([1]), np.array([1, 3]), np.array([0]),
                         np.array([1, 1]))
    with_distractor = evaluate_reid(np.array([[0.2, 0.1]]), np.array([1]), np.array([1, 0]),
                                    np.array([0]), np.array([1, 1]))
    assert base["mAP"] == pytest.approx(0.5)
    assert with_distractor["mAP"] == pytest.approx(0.5)
    only_junk = evaluate_reid(np.array([[0.2, 0.1]]), np.array([1]), np.array([1, -1]), np.array([0]),
                              np.array([1, 1]))
    assert only_junk["mAP"] == pytest.approx(1.0)


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate_reid(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1]))


def test_bad_input_is_rejected():
    d = np.zeros((2, 3), dtype=np.float32)
    ok = dict(q_pids=np.array([1, 2]), g_pids=np.array([1, 2, 3]), q_camids=np.array([0, 0]),
              g_camids=np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_reid(d, **{**ok, "g_pids": np.array([1, 2])})
    with pytest.raises(ValueError, match="q_camids"):
        evaluate_reid(d, **{**ok, "q_camids": np.array([0])})
    bad = d.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_reid(bad, **ok)
