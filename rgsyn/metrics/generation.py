"""Generation quality and privacy on identity-encoder features (real vs synthetic).

- `frechet_distance`: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of Gaussians fitted to
  the two feature sets (the FID formula, Heusel et al. 2017, here on identity-encoder features).
- `density_coverage`: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
  Models", eq. (3)-(4). With B(r_i, NND_k(r_i)) the ball around real sample r_i whose radius is
  the distance to its k-th nearest real neighbour:
      density  = 1/(k M) sum_j sum_i 1[g_j in B(r_i, NND_k(r_i))]
      coverage = 1/N     sum_i 1[exists j: g_j in B(r_i, NND_k(r_i))]
  (Euclidean distances; N real, M generated).
- `memorisation`: per synthetic sample, the cosine similarity of its nearest real training sample;
  the mean, the max and the share above `threshold` (a synthetic image that close to a training
  image is a likely copy of a real person).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

__all__ = ["frechet_distance", "density_coverage", "memorisation"]


def _as_2d(x, name: str, min_rows: int = 1) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (N, D) feature matrix, got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} rows, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return a


def _same_dim(a: np.ndarray, b: np.ndarray, fn: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{fn}: feature dims differ ({a.shape[1]} vs {b.shape[1]})")


def frechet_distance(feat_real, feat_gen) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (N >= 2 each)."""
    r, g = _as_2d(feat_real, "feat_real", 2), _as_2d(feat_gen, "feat_gen", 2)
    _same_dim(r, g, "frechet_distance")
    mu_r, mu_g = r.mean(0), g.mean(0)
    s_r, s_g = np.cov(r, rowvar=False), np.cov(g, rowvar=False)
    s_r, s_g = np.atleast_2d(s_r), np.atleast_2d(s_g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s_r @ s_g)
        if not np.isfinite(covmean).all():
            # singular product (fewer samples than dims): regularise both covariances slightly
            eps = 1e-6 * np.eye(s_r.shape[0])
            covmean = linalg.sqrtm((s_r + eps) @ (s_g + eps))
    covmean = np.real(covmean)
    diff = mu_r - mu_g
    value = float(diff @ diff + np.trace(s_r) + np.trace(s_g) - 2 * np.trace(covmean))
    return max(value, 0.0)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def density_coverage(feat_real, feat_gen, k: int = 5) -> dict[str, float]:
    """Density and coverage of Naeem et al. 2020 (k nearest real neighbours define the balls)."""
    r, g = _as_2d(feat_real, "feat_real", k + 1), _as_2d(feat_gen, "feat_gen", 1)
    _same_dim(r, g, "density_coverage")
    if k < 1:
        raise ValueError(f"density_coverage: k must be >= 1, got {k}")
    d_rr = _pairwise(r, r)
    # k-th nearest neighbour excluding the point itself (column 0 of the sort is the self-distance)
    radii = np.sort(d_rr, axis=1)[:, k]
    d_rg = _pairwise(r, g)                      # (N, M)
    inside = d_rg < radii[:, None]
    density = float(inside.sum() / (k * g.shape[0]))
    coverage = float((d_rg.min(axis=1) < radii).mean())
    return {"density": density, "coverage": coverage}


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def real_reference(feat_train, threshold: float = 0.95) -> dict[str, float]:
    """The memorisation check's yardstick: each real training sample's nearest OTHER real training
    sample (leave-one-out). Two photos of one person are often this close in an identity encoder's
    space, so a synthetic share above the threshold means copying only where it clearly exceeds
    the real one. Needs at least two samples."""
    tn = _unit_rows(_as_2d(feat_train, "feat_train", min_rows=2))
    sims = tn @ tn.T
    np.fill_diagonal(sims, -np.inf)
    nn = sims.max(axis=1)
    return {"nn_sim_mean": float(nn.mean()), "share_above": float((nn > threshold).mean())}


def memorisation(feat_train, feat_gen, threshold: float = 0.95) -> dict[str, float]:
    """Nearest-real-training-neighbour cosine similarity of every synthetic sample."""
    t, g = _as_2d(feat_train, "feat_train"), _as_2d(feat_gen, "feat_gen")
    _same_dim(t, g, "memorisation")
    nn = (_unit_rows(g) @ _unit_rows(t).T).max(axis=1)
    return {"nn_sim_mean": float(nn.mean()), "nn_sim_max": float(nn.max()),
            "share_above": float((nn > threshold).mean()), "threshold": float(threshold)}
