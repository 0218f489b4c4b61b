"""The report's generation tables: quality (gold and reward encoders side by side, with a reward-hacking
flag per RL generator) and privacy (nearest real neighbour), one row per benchmark x generator.

Reward hacking: RL optimises the reward encoder. If, against the cold-started generator of the same
benchmark, an RL generator raised the reward encoder's identity accuracy while the held-out gold
encoder's fell by more than `rl.hacking_tolerance`, the policy learnt to please the reward model,
not to draw the identities; the row says so.
"""
from __future__ import annotations

import math

import pandas as pd

from rgsyn import paths
from rgsyn.report.formats import Table, fmt_stat
from rgsyn.report.inputs import (DATASET_NAMES, GENERATION_COLUMNS, NOT_APPLICABLE, ORACLE_GENERATOR, ORACLE_LABEL,
                                 PRIVACY_COLUMNS, Benchmark, _seed_order)

HACKING_TOLERANCE = 0.05   # rl.hacking_tolerance's default; the report stage passes the params' value
COLD = "cold"
HACKING_COLUMN = "Reward hacking vs cold"


def _generation_order(gens) -> list[str]:
    """Generators in name order, the oracle (the toy world's own renders) last, next to them."""
    return sorted(gens, key=lambda g: (g == ORACLE_GENERATOR, g))


def _runs(entry: dict) -> list[dict]:
    seeded = [entry[s] for s in sorted(entry, key=_seed_order) if s.startswith("seed") and isinstance(entry[s], dict)]
    return seeded or [entry]


def _values(runs: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in runs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
            and math.isfinite(float(r[key]))]


def _mean(entry: dict | None, key: str) -> float | None:
    vals = _values(_runs(entry or {}), key)
    return sum(vals) / len(vals) if vals else None


def hacking_flag(gens: dict, generator: str, tolerance: float) -> str:
    """The reward-hacking cell of one generator row (see the module docstring)."""
    if not generator.startswith("rl-"):
        return "—"
    if COLD not in gens:
        return "no cold-start row to compare"
    d_reward = [_mean(gens[generator], "identity_accuracy_reward"), _mean(gens[COLD], "identity_accuracy_reward")]
    d_gold = [_mean(gens[generator], "identity_accuracy"), _mean(gens[COLD], "identity_accuracy")]
    if None in d_reward or None in d_gold:
        return "not measured"
    dr, dg = (d_reward[0] - d_reward[1]) * 100, (d_gold[0] - d_gold[1]) * 100
    change = f"reward {dr:+.1f}, gold {dg:+.1f} pts"
    if dr > 0 and dg < -tolerance * 100:
        return f"**HACKING**: {change}"
    return f"no ({change})"


def _generation_table(b: dict[str, Benchmark], name: str, title: str, spec: dict, notes: list[str],
                      profile: str = "toy", tolerance: float | None = None) -> Table:
    header = ["Benchmark", "Generator"] + [label for label, _, _ in spec.values()]
    header += [HACKING_COLUMN] if tolerance is not None else []
    lines = []
    for bn in paths.TRAINED_BENCHMARKS:  # rfw_bias evaluates the casia_face models and generators
        gens = ((b[bn].metrics or {}).get("generation") or {})
        for gen in _generation_order(gens):
            runs = _runs(gens[gen] or {})
            line = [DATASET_NAMES[bn], ORACLE_LABEL if gen == ORACLE_GENERATOR else gen]
            for key, (_, dec, scale) in spec.items():
                line.append(fmt_stat(_values(runs, key), scale, dec, with_n=len(runs) > 1))
            if tolerance is not None:
                line.append(hacking_flag(gens, gen, tolerance))
            lines.append(line)
        if profile == "paper" and gens and ORACLE_GENERATOR not in gens:
            lines.append([DATASET_NAMES[bn], ORACLE_LABEL] + [NOT_APPLICABLE] * (len(header) - 2))
    if not lines:
        notes = ["not run: no benchmark's metrics.json has a 'generation' section."] + notes
    return Table(name, title, pd.DataFrame(lines, columns=header), n_label_cols=2, notes=notes)


def table_generation(b: dict[str, Benchmark], profile: str = "toy", tolerance: float = HACKING_TOLERANCE) -> Table:
    return _generation_table(b, "generation", "Generation quality (identity-encoder features)", GENERATION_COLUMNS, [
        "Identity acc. (gold): share of the images whose nearest real identity prototype, in the held-out gold "
        "encoder's features (never optimised against), is the intended identity. Identity acc. (reward): the same "
        "in the features of the reward encoder that RL optimises. Fréchet distance, density and coverage (k "
        "nearest real neighbours) on the gold features; mean R_sem on the reward features.",
        f"{HACKING_COLUMN}: an RL generator's change of both accuracies against the cold-started generator; "
        f"**HACKING** when the reward accuracy rose while the gold accuracy fell by more than {tolerance * 100:g} "
        "points (rl.hacking_tolerance).",
        f"{ORACLE_LABEL}: new renders of the training identities by the toy world itself, what a perfect "
        "generator would give (toy and smoke only; not applicable to real data).",
        "The paper publishes no generation-quality numbers, so there is nothing to compare with."], profile, tolerance)


def table_privacy(b: dict[str, Benchmark]) -> Table:
    return _generation_table(b, "privacy", "Privacy: nearest real training neighbour of each synthetic image",
                             PRIVACY_COLUMNS, [
        "Cosine similarity of each synthetic image's gold identity feature to its nearest real training image; "
        "share > τ: synthetic images closer than the memorisation threshold τ to a real image.",
        "Real→real: the same for each real training image against the other real training images (leave "
        "one out), the yardstick: a synthetic share well above it points at copying, one at or below it "
        "is what two photos of one person already score.",
        "The paper publishes no memorisation numbers."])
