"""The oracle ceiling: how much of a perfect generator's gain the suite's synthetic data recovers.

Only a procedural world has an oracle: the `syn_oracle` variant trains on real data plus new
renders of the training identities by the toy world itself (toy and smoke profiles). Per benchmark,
on the headline metric, over the seeds that `real`, `syn_oracle` and the variant all ran:
    oracle gain   g_i = oracle_i - real_i             (points; mean ± 95% t-interval)
    share         sum_i(x_i - real_i) / sum_i g_i     (Fieller's 95% interval, `rgsyn.stats.ratio_interval`)
A share is undefined when the oracle gain's interval contains 0: there is then no ceiling to
recover. On real data (the paper profile) there is no world to render from, so every suite cell
reads "not applicable"; it is never filled in.
"""
from __future__ import annotations

import pandas as pd

from rgsyn import paths, stats
from rgsyn.report.formats import Table, fmt_delta, fmt_num, scale_of
from rgsyn.report.inputs import (DASH, DATASET_NAMES, HEADLINE, METRICS, NOT_APPLICABLE, NOT_RUN, ORACLE_VARIANT,
                                 Benchmark)

SHARE_VARIANTS = ("syn_rl", "ours")


def _paired(bench: Benchmark, metric: str, variants: tuple[str, ...]) -> dict[str, list[float]]:
    scale = scale_of(METRICS[bench.name][metric][1])
    runs = {v: bench.by_seed(v, metric) for v in variants}
    seeds = [s for s in runs[variants[0]] if all(s in runs[v] for v in variants)]
    return {v: [runs[v][s] * scale for s in seeds] for v in variants}


def oracle_gain(bench: Benchmark, metric: str) -> stats.Comparison:
    scale = scale_of(METRICS[bench.name][metric][1])
    return stats.compare({s: v * scale for s, v in bench.by_seed(ORACLE_VARIANT, metric).items()},
                         {s: v * scale for s, v in bench.by_seed("real", metric).items()})


def recovered_share(bench: Benchmark, metric: str, variant: str) -> stats.Ratio:
    v = _paired(bench, metric, ("real", ORACLE_VARIANT, variant))
    gain_x = [x - r for x, r in zip(v[variant], v["real"])]
    gain_o = [o - r for o, r in zip(v[ORACLE_VARIANT], v["real"])]
    return stats.ratio_interval(gain_x, gain_o)


def _gain_cell(c: stats.Comparison, dec: int) -> str:
    if c.n == 0:
        return NOT_RUN
    if c.diff.half_width is None:
        return f"{fmt_delta(c.diff.mean, dec)} (no interval)"
    return f"{fmt_delta(c.diff.mean, dec)} ± {fmt_num(c.diff.half_width, dec)}"


def _share_cell(r: stats.Ratio) -> str:
    if r.n == 0:
        return NOT_RUN
    if r.estimate is None:
        return "undefined (no oracle gain)"
    est = f"{r.estimate * 100:.0f}%"
    if r.low is None:
        return f"{est} [interval undefined]" if r.n > 1 else f"{est} (n=1)"
    return f"{est} [{r.low * 100:.0f}%, {r.high * 100:.0f}%]"


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
        shares = [_share_cell(recovered_share(bench, k, v)) if gain.n else NOT_RUN for v in SHARE_VARIANTS]
        lines.append(label + [_gain_cell(gain, dec), str(gain.n)] + shares)
    notes = [
        "Oracle: real data plus new renders of each training identity by the toy world (same identity "
        "factors, fresh nuisance draws, as many images as the generator makes), through the synthetic path "
        "without selection: what a perfect generator would give.",
        "Oracle gain: paired difference over seeds, mean ± half-width of the 95% t-interval (points). "
        "Share: (variant − real) / (oracle − real) summed over the seeds all three ran, with Fieller's 95% "
        "interval; undefined when the oracle gain's interval contains 0 (no ceiling to recover).",
    ]
    if profile == "paper":
        notes.append("Profile paper: real data has no oracle (no world to render new images of the same "
                     "identities), so the rows read 'not applicable'.")
    return Table("oracle", "Oracle ceiling: the gain of a perfect generator and the share recovered",
                 pd.DataFrame(lines, columns=header), n_label_cols=2, notes=notes)
