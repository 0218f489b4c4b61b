"""What the RL stage records per update: the curve CSV, the MLflow metrics and the hacking guard.

Curves. The paper's combined reward is standardised over each batch, so its batch mean is ~0 by
construction and cannot show progress. The ``reward`` curve therefore standardises the raw terms
with the statistics of the FIRST rollout (the cold-start policy), frozen for the run
(``reference_stats``, ``fixed_combined``): a rising ``reward`` means the policy beats the cold
start. ``reward_sem/cov/exp`` are raw batch means (``reward_exp`` is the group-level R_exp).

MLflow also gets, per update, the KL and the clip fraction of each trained denoising step
(``kl_step<i>``, ``clip_frac_step<i>``; i indexes the schedule).

Reward-hacking guard (``hacking_signal``): over ``rl.hacking_window`` updates the reward rose while
the held-out gold accuracy fell by more than ``rl.hacking_tolerance`` (window means, compared with
the window before); the stage then warns or stops (``rl.hacking_guard``).
"""
from __future__ import annotations

import csv
import io as _io

import numpy as np
import torch

from rgsyn.errors import TrainingDiverged
from rgsyn.rl.rewards import REWARD_NAMES

CURVE_COLUMNS = ("step", "reward", "reward_sem", "reward_cov", "reward_exp", "kl", "gold", "clip_frac",
                 "grad_norm", "ratio_mean", "seconds")


class RewardHackingStop(TrainingDiverged):
    """The reward rose while the held-out gold score fell (rl.hacking_guard = stop)."""


def hacking_signal(rewards: list[float], golds: list[float], window: int, tolerance: float) -> bool:
    """True when the mean reward of the last ``window`` updates rose over the window before while
    the mean gold score fell by more than ``tolerance``."""
    if len(rewards) < 2 * window:
        return False
    r_now, r_before = np.mean(rewards[-window:]), np.mean(rewards[-2 * window:-window])
    g_now, g_before = np.mean(golds[-window:]), np.mean(golds[-2 * window:-window])
    return bool(r_now > r_before and g_now < g_before - tolerance)


def curve_text(rows: list[dict]) -> str:
    """The curve CSV (``CURVE_COLUMNS``, floats to 6 significant digits)."""
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CURVE_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in CURVE_COLUMNS})
    return buf.getvalue()


def reference_stats(raw: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """[mean, std] of each raw reward term over a batch (the first rollout's, frozen for the run)."""
    out = {}
    for k in REWARD_NAMES:
        r = raw[k].float()
        out[k] = [float(r.mean()), float(r.std(unbiased=False))]
    return out


def fixed_combined(raw: dict[str, torch.Tensor], stats: dict[str, list[float]],
                   weights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The combined reward with each term standardised by the frozen first-rollout statistics."""
    z = {}
    for k in REWARD_NAMES:
        mean, std = stats[k]
        r = raw[k].float()
        z[k] = (r - mean) / std if std > 1e-6 else torch.zeros_like(r)
    return torch.tanh(sum(float(getattr(weights, k)) * z[k] for k in REWARD_NAMES)), z


def merge_stats(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """One update's DPOK statistics over the ranks: the mean, and the min / max of the ratio extremes."""
    if len(per_rank) == 1:
        return per_rank[0]
    out = {}
    for k in per_rank[0]:
        vals = [d[k] for d in per_rank]
        out[k] = min(vals) if k == "ratio_min" else max(vals) if k == "ratio_max" else float(np.mean(vals))
    return out


def update_record(step: int, rewards, stats: dict[str, float], per_step: dict, grad_norm: float,
                  ref_stats: dict, weights, seconds: float) -> tuple[dict, dict]:
    """(curve row, MLflow metrics) of one update from its ``RolloutRewards`` and merged DPOK ``stats``."""
    raw, combined = rewards.raw, rewards.combined
    fixed, z_fixed = fixed_combined(raw, ref_stats, weights)
    row = {"step": step, "reward": float(fixed.mean()), "reward_sem": float(raw["sem"].mean()),
           "reward_cov": float(raw["cov"].mean()), "reward_exp": float(raw["exp_group"].mean()),
           "kl": stats["kl"], "gold": rewards.gold, "clip_frac": stats["clip_frac"], "grad_norm": grad_norm,
           "ratio_mean": stats["ratio_mean"], "seconds": seconds}
    metrics = {**{k: v for k, v in row.items() if k != "step"},
               "reward_batch": float(combined.mean()), "reward_batch_std": float(combined.std()),
               "ratio_min": stats["ratio_min"], "ratio_max": stats["ratio_max"], "pg_loss": stats["pg_loss"],
               "reward_exp_loo": float(raw["exp"].mean())}
    for i, v in per_step.items():   # per denoising step (index into the schedule)
        metrics[f"kl_step{i}"] = v["kl"]
        metrics[f"clip_frac_step{i}"] = v["clip_frac"]
    for k in REWARD_NAMES:
        metrics[f"reward_{k}_std"] = float(z_fixed[k].mean())   # standardised (frozen stats)
        metrics[f"reward_{k}_batch_spread"] = float(raw[k].float().std(unbiased=False))
    return row, metrics


def run_summary(rows: list[dict], n_traj: int, t_roll: float, t_upd: float, n_new: int) -> dict:
    """Reward and gold over the first and last third of the updates, and the throughput."""
    third = max(1, len(rows) // 3)

    def mean(key, part):
        return float(np.mean([r[key] for r in part])) if rows else 0.0

    return {"reward_first": mean("reward", rows[:third]), "reward_last": mean("reward", rows[-third:]),
            "gold_first": mean("gold", rows[:third]), "gold_last": mean("gold", rows[-third:]),
            "trajectories_per_s": n_traj / t_roll if t_roll > 0 else 0.0,
            "seconds_per_update": t_upd / n_new, "seconds_per_rollout": t_roll / n_new}
