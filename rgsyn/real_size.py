"""The real-data-size regime: oracle (and method) gains over `real` against real images per identity.

Reads the long CSV of `benchmarks/sweep_real_size.py` (`benchmark,real_per_id,variant,rule,seed,
metric,value`). For every benchmark x size x synthetic row (variant and candidate rule) the gain is
the paired difference d_s = value(row, seed s) - value(real, seed s) over the seeds both have; its
95% interval is the Student-t interval mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)
(scipy.stats.t). Pairing by seed is what common random numbers make meaningful: for one seed
both rows start from the same weights and see the same real batches.

`gain_figure(rows, out)` draws the gain with its interval against the size, one line per row
present (`syn_rl`, `ours`, `syn_oracle`; `real` is the zero line).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

ROWS_ORDER = ("syn_oracle", "ours", "syn_rl")


def read_rows(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def paired_interval(d: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the paired differences; with one seed the interval is (nan, nan)."""
    from scipy import stats

    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = stats.tstd(d)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summary(rows: list[dict]) -> list[dict]:
    """One dict per benchmark x size x synthetic row: n, real mean, gain mean and 95% interval."""
    real, syn = {}, {}
    for r in rows:
        key = (r["benchmark"], int(r["real_per_id"]))
        if r["variant"] == "real":
            real.setdefault(key, {})[int(r["seed"])] = float(r["value"])
        else:
            syn.setdefault(key + (r["variant"], r["rule"]), {})[int(r["seed"])] = float(r["value"])
    out = []
    for (bench, size, variant, rule), vals in sorted(syn.items()):
        base = real.get((bench, size), {})
        seeds = sorted(set(vals) & set(base))
        if not seeds:
            continue
        mean, lo, hi = paired_interval([vals[s] - base[s] for s in seeds])
        out.append({"benchmark": bench, "real_per_id": size, "variant": variant, "rule": rule, "n": len(seeds),
                    "metric": next(r["metric"] for r in rows if r["benchmark"] == bench),
                    "real": sum(base[s] for s in seeds) / len(seeds),
                    "row": sum(vals[s] for s in seeds) / len(seeds), "gain": mean, "lo": lo, "hi": hi})
    return out


def format_summary(summ: list[dict]) -> str:
    lines = ["| benchmark | real/id | row | rule | n | real | row | gain | 95% interval |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summ:
        lines.append(f"| {s['benchmark']} | {s['real_per_id']} | {s['variant']} | {s['rule']} | {s['n']} | "
                     f"{100 * s['real']:.1f} | {100 * s['row']:.1f} | {100 * s['gain']:+.1f} | "
                     f"[{100 * s['lo']:+.1f}, {100 * s['hi']:+.1f}] |")
    return "\n".join(lines)


def gain_figure(rows: list[dict], out: str | Path, rule: str = "batch_ids") -> Path:
    """Gain over `real` (points, x 100) against real images per identity, one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = [s for s in summary(rows) if s["rule"] in (rule, "")]
    benches = sorted({s["benchmark"] for s in summ})
    fig, axes = plt.subplots(1, max(1, len(benches)), figsize=(4.2 * max(1, len(benches)), 3.2), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        ax.axhline(0, color="grey", lw=1, label="real")
        for variant in ROWS_ORDER:
            pts = sorted((s["real_per_id"], s) for s in summ if s["benchmark"] == bench and s["variant"] == variant)
            if not pts:
                continue
            x = [p for p, _ in pts]
            y = [100 * s["gain"] for _, s in pts]
            err = [[100 * (s["gain"] - s["lo"]) for _, s in pts], [100 * (s["hi"] - s["gain"]) for _, s in pts]]
            err = None if any(math.isnan(e) for e in err[0]) else err
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=variant)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({s["real_per_id"] for s in summ if s["benchmark"] == bench}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        metric = next(s["metric"] for s in summ if s["benchmark"] == bench)
        ax.set_xlabel("real images per identity")
        ax.set_ylabel(f"{metric} gain over real (points)")
        ax.set_title(bench)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)
    return out
