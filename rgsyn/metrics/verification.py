"""Face verification: the insightface / LFW 10-fold protocol.

Embeddings are L2-normalised; a pair is "same" when the squared Euclidean distance between its
normalised embeddings is below a threshold (equivalently cosine > 1 - t / 2). The pairs are split
into `n_folds` contiguous folds (the order of pairs.txt, as insightface's unshuffled KFold does); for
each fold the threshold is the one on the grid [0, 4) step 0.01 with the best accuracy on the other
folds (the first one on ties), and accuracy is measured on the held-out fold. Reported: mean and
std (numpy, ddof=0) of the fold accuracies, the mean threshold, and TAR at FAR = 1e-3.

TAR@FAR: for each fold, the threshold is the largest grid value whose false-accept rate on the
other folds is <= FAR (0 accepted impostors if the other folds hold fewer than 1/FAR impostors);
TAR is the true-accept rate on the held-out fold with it; the mean over folds is reported. This
follows insightface's `calculate_val` without its interpolation between grid points.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["evaluate_verification", "fold_slices", "l2_normalise"]

THRESHOLDS = np.arange(0.0, 4.0, 0.01)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def fold_slices(n: int, n_folds: int) -> list[slice]:
    """Contiguous folds; the first n % n_folds folds get one extra pair (as sklearn's KFold)."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def evaluate_verification(emb1, emb2, issame, n_folds: int = 10, far_targets=(1e-3,)) -> dict:
    """10-fold verification accuracy of pairs (emb1[i], emb2[i]) labelled issame[i].

    Returns {"accuracy": mean, "std": std over folds, "threshold": mean chosen threshold (squared L2
    distance of normalised embeddings), "tar_at_far": {far: tar}, "fold_accuracies": list}.
    Raises ValueError on mismatched lengths, NaN/inf embeddings, too few pairs for the folds, or a
    fold layout without both kinds of pairs.
    """
    e1 = _to_numpy(emb1, "emb1").astype(np.float64)
    e2 = _to_numpy(emb2, "emb2").astype(np.float64)
    same = _to_numpy(issame, "issame").astype(bool).reshape(-1)
    if e1.ndim != 2 or e2.shape != e1.shape:
        raise ValueError(f"evaluate_verification: emb1 {e1.shape} and emb2 {e2.shape} must both be "
                         "(num_pairs, dim)")
    if len(same) != len(e1):
        raise ValueError(f"evaluate_verification: issame has {len(same)} entries but there are "
                         f"{len(e1)} embedding pairs")
    if not (np.isfinite(e1).all() and np.isfinite(e2).all()):
        raise ValueError("evaluate_verification: embeddings contain NaN or inf")
    if n_folds < 2 or len(same) < n_folds:
        raise ValueError(f"evaluate_verification: need n_folds >= 2 and at least n_folds pairs, got "
                         f"n_folds={n_folds} with {len(same)} pairs")
    if same.all() or not same.any():
        raise ValueError("evaluate_verification: issame must contain both matched and mismatched pairs")
    dist = ((l2_normalise(e1) - l2_normalise(e2)) ** 2).sum(1)
    # accepted[t, i]: pair i is called "same" at threshold t
    accepted = dist[None, :] < THRESHOLDS[:, None]
    correct = accepted == same[None, :]
    accs, thrs = [], []
    tars = {far: [] for far in far_targets}
    for sl in fold_slices(len(same), n_folds):
        train = np.ones(len(same), bool)
        train[sl] = False
        best = int(np.argmax(correct[:, train].mean(1)))
        thrs.append(THRESHOLDS[best])
        accs.append(correct[best, sl].mean())
        impostors = train & ~same
        far_train = accepted[:, impostors].mean(1) if impostors.any() else np.zeros(len(THRESHOLDS))
        genuine_test = np.zeros(len(same), bool)
        genuine_test[sl] = same[sl]
        for far in far_targets:
            ok = np.nonzero(far_train <= far)[0]
            t = int(ok.max()) if len(ok) else 0
            tars[far].append(accepted[t, genuine_test].mean() if genuine_test.any() else np.nan)
    accs = np.asarray(accs)
    return {"accuracy": float(accs.mean()), "std": float(accs.std()), "threshold": float(np.mean(thrs)),
            "tar_at_far": {far: float(np.nanmean(v)) if not np.isnan(v).all() else float("nan")
                           for far, v in tars.items()},
            "fold_accuracies": [float(a) for a in accs]}
