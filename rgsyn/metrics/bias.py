"""Demographic bias statistics over RFW groups.

mean and std (numpy, ddof=0, as a population over the groups) of the per-group accuracies, and the
skewed error ratio SER = max_g (1 - acc_g) / min_g (1 - acc_g) (Wang et al., RFW, ICCV 2019 and
later bias papers). SER is 1 for a perfectly balanced model and inf when some group has no error.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["bias_stats"]


def bias_stats(acc_by_group: dict[str, float]) -> dict:
    """{"mean","std","ser", <group>: acc ...} from per-group accuracies (fractions in [0, 1])."""
    if not acc_by_group:
        raise ValueError("bias_stats: no groups given")
    for g, a in acc_by_group.items():
        if not isinstance(a, (int, float, np.floating)) or not math.isfinite(a) or not 0.0 <= a <= 1.0:
            raise ValueError(f"bias_stats: accuracy of group {g!r} is {a!r}; expected a fraction in [0, 1]")
    accs = np.array([float(a) for a in acc_by_group.values()])
    errs = 1.0 - accs
    ser = float("inf") if errs.min() == 0 else float(errs.max() / errs.min())
    out = {g: float(a) for g, a in acc_by_group.items()}
    out.update({"mean": float(accs.mean()), "std": float(accs.std()), "ser": ser})
    return out
