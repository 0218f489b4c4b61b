"""The oracle ceiling: how much of a perfect generator's gain the suite's synthetic data recovers.

Only a procedural world has an oracle: the `syn_oracle` variant trains on real data plus new
renders of the training identities by the toy world itself (toy and smoke profiles). Per benchmark,
on the headline metric, over one set of seeds: those that `real`, `syn_oracle` and every share
variant that ran at all have in common, so that the gain and each share rest on the same seeds:
    oracle gain   g_i = oracle_i - real_i             (points; mean ± 95% t-interval)
    share         sum_i(x_i - real_i) / sum_i g_i     (Fieller's 95% set, `rgsyn.stats.ratio_interval`)
Fieller's set is printed as what it is: an interval, the complement of an interval (when the oracle
gain is not clear of 0 the set can be two half-lines, which may exclude 0), a half-line or the whole
line. On real data (the paper profile) there is no world to render from, so every suite cell
reads "not applicable"; it is never filled in.
"""
from __future__ import annotations

import pandas as pd

from rgsyn import paths, stats
from rgsyn.report.formats import Table, scale_of
from rgsyn.report.inputs import (DASH, DATASET_NAMES, HEADLINE, METRICS, NOT_APPLICABLE, NOT_RUN, ORACLE_VARIANT,
                                 Benchmark)
from rgsyn.report.verdicts import diff_cell

SHARE_VARIANTS = ("syn_rl", "ours")


def common_seeds(bench: Benchmark, metric: str) -> list[str]:
    """The seeds that real, the oracle and every share variant that ran at all have in common."""
    runs = [bench.by_seed(v, metric) for v in ("real", ORACLE_VARIANT, *SHARE_VARIANTS)]
    return [s for s in runs[0] if all(s in r for r in runs if r)]


def _on(bench: Benchmark, variant: str, metric: str, seeds: list[str]) -> dict[str, float]:
    scale = scale_of(METRICS[bench.name][metric][1])
    run = bench.by_seed(variant, metric)
    return {s: run[s] * scale for s in seeds if s in run}


def oracle_gain(bench: Benchmark, metric: str) -> stats.Comparison:
    seeds = common_seeds(bench, metric)
    return stats.compare(_on(bench, ORACLE_VARIANT, metric, seeds), _on(bench, "real", metric, seeds))


def recovered_share(bench: Benchmark, metric: str, variant: str) -> stats.Ratio:
    seeds = common_seeds(bench, metric)
    real, oracle, x = (_on(bench, v, metric, seeds) for v in ("real", ORACLE_VARIANT, variant))
    if len(x) != len(seeds):                          # the variant has not run
        return stats.Ratio(0, None, None, None, None)
    return stats.ratio_interval([x[s] - real[s] for s in seeds], [oracle[s] - real[s] for s in seeds])


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def fieller_cell(r: stats.Ratio) -> str:
    """The estimate and Fieller's set, written as the set it is."""
    if r.n == 0:
        return NOT_RUN
    if r.estimate is None:
        return "undefined (oracle gain exactly 0)"
    est = _pct(r.estimate)
    if r.kind is None:
        return f"{est} (n=1)"
    if r.kind == stats.INTERVAL:
        return f"{est} [{_pct(r.low)}, {_pct(r.high)}]"
    if r.kind == stats.COMPLEMENT:
        return f"{est} (−∞, {_pct(r.low)}] ∪ [{_pct(r.high)}, ∞)"
    if r.kind == stats.HALF_LINE:
        return f"{est} [{_pct(r.low)}, ∞)" if r.low is not None else f"{est} (−∞, {_pct(r.high)}]"
    return f"{est} (−∞, ∞): whole line"


def table_oracle(benches: dict[str, Benchmark], profile: str) -> Table:
    header = ["Benchmark", "Metric", "Oracle gain (oracle − real)", "n"] + [f"Share recovered by {v}"
                                                                        for v in SHARE_VARIANTS]
    lines = []
    for bn in paths.BENCHMARKS:
        bench, k = benches[bn], HEADLINE[bn]
        label = [DATASET_NAMES[bn], METRICS[bn][k][0]]
        if profile == "paper":
            lines.append(label + [NOT_APPLICABLE, DASH] + [NOT_APPLICABLE] * len(SHARE_VARIANTS))
            continue
        gain = oracle_gain(bench, k)
        dec = bench.decimals if scale_of(METRICS[bn][k][1]) != 1.0 else 2
        shares = [fieller_cell(recovered_share(bench, k, v)) if gain.n else NOT_RUN for v in SHARE_VARIANTS]
        lines.append(label + [diff_cell(gain, dec), str(gain.n)] + shares)
    notes = [
        "Oracle: real data plus new renders of each training identity by the toy world (same identity "
        "factors, fresh nuisance draws, as many images as the generator makes), through the synthetic path "
        "without selection: what a perfect generator would give.",
        "Oracle gain: paired difference over seeds, mean ± half-width of the 95% t-interval (points); n: the "
        "seeds that real, the oracle and every share variant that ran have in common, so that the gain and "
        "the shares use the same seeds.",
        "Share: (variant − real) / (oracle − real) summed over those seeds, with Fieller's 95% set printed as "
        "what it is: [a, b] an interval; (−∞, a] ∪ [b, ∞) the complement of an interval, when the oracle "
        "gain is not clear of 0 (the set can then exclude 0 and still be unbounded); a half-line; or "
        "(−∞, ∞), the whole line: the data say nothing about the share.",
    ]
    if profile == "paper":
        notes.append("Profile paper: real data has no oracle (no world to render new images of the same "
                     "identities), so the rows read 'not applicable'.")
    return Table("oracle", "Oracle ceiling: the gain of a perfect generator and the share recovered",
                 pd.DataFrame(lines, columns=header), n_label_cols=2, notes=notes)
