"""The report's figures (seaborn, Agg backend): ablation bars, RFW per-group bars, RL reward
curves and the RL KL / clip fraction per denoising step. Every function returns the written PNG's path, or None when it has nothing to draw, so the
report can say "not run" instead of drawing an empty axis."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from rgsyn import io, paths  # noqa: E402
from rgsyn.report.tables import (ABLATION_VARIANTS, DATASET_NAMES, MAIN_VARIANTS, METRICS,  # noqa: E402
                                 scale_of)

ABLATION_PANELS = (("market1501", "mAP"), ("cuhk03", "mAP"), ("casia_face", "avg"), ("rfw_bias", "mean"))
REWARD_METRICS = ("reward", "reward_sem", "reward_cov", "reward_exp", "kl", "gold")


def _save(fig, path: Path) -> Path:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _percent(records: pd.DataFrame) -> pd.DataFrame:
    df = records.copy()
    df["value"] = [v * scale_of(METRICS[b][m][1]) for b, m, v in zip(df.benchmark, df.metric, df.value)]
    return df


def ablation_bars(records: pd.DataFrame, out: Path) -> Path | None:
    """One panel per benchmark's headline metric; a bar per ablation variant (mean over seeds,
    error bar = std over seeds, dots = single seeds)."""
    panels = [(b, m) for b, m in ABLATION_PANELS
              if not records[(records.benchmark == b) & (records.metric == m)
                             & records.variant.isin(ABLATION_VARIANTS)].empty]
    if not panels:
        return None
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (b, m) in zip(axes[0], panels):
        df = _percent(records[(records.benchmark == b) & (records.metric == m)
                              & records.variant.isin(ABLATION_VARIANTS)])
        order = [v for v in ABLATION_VARIANTS if v in set(df.variant)]
        colours = {v: ("#d9822b" if v == "ours" else "#9aa5b8" if v == "real" else "#4c72b0") for v in order}
        sns.barplot(data=df, x="variant", y="value", order=order, errorbar="sd", ax=ax,
                    hue="variant", hue_order=order, palette=colours, legend=False, capsize=0.15)
        sns.stripplot(data=df, x="variant", y="value", order=order, color="0.1", size=4, jitter=0.15, ax=ax)
        lo, hi = df.value.min(), df.value.max()
        pad = max((hi - lo) * 0.6, 1.0)
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        ax.set_title(f"{DATASET_NAMES[b]}: {METRICS[b][m][0]}")
        ax.set_xlabel("")
        ax.set_ylabel(f"{METRICS[b][m][0]} (%)")
        ax.tick_params(axis="x", rotation=40)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    fig.suptitle("Ablations (mean ± std over seeds; dots: single seeds)")
    fig.tight_layout()
    return _save(fig, out)


def rfw_group_bars(records: pd.DataFrame, out: Path) -> Path | None:
    df = records[(records.benchmark == "rfw_bias") & records.metric.isin(paths.RFW_GROUPS)
                 & records.variant.isin(MAIN_VARIANTS)]
    if df.empty:
        return None
    df = _percent(df)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    order = [v for v in MAIN_VARIANTS if v in set(df.variant)]
    sns.barplot(data=df, x="metric", y="value", hue="variant", order=list(paths.RFW_GROUPS),
                hue_order=order, errorbar="sd", palette="viridis", capsize=0.1, ax=ax)
    lo, hi = df.value.min(), df.value.max()
    pad = max((hi - lo) * 0.5, 1.0)
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax.set_xlabel("RFW group")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title("RFW accuracy per group (mean ± std over seeds)")
    ax.legend(title="variant", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return _save(fig, out)


def reward_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    """curves: columns run (run name), step, metric, value — one panel per metric."""
    if curves.empty:
        return None
    metrics = [m for m in REWARD_METRICS if m in set(curves.metric)]
    sns.set_theme(style="whitegrid", context="notebook")
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    runs = sorted(set(curves.run))
    palette = dict(zip(runs, sns.color_palette("tab10", len(runs))))
    for ax, m in zip(axes.flat, metrics):
        sns.lineplot(data=curves[curves.metric == m], x="step", y="value", hue="run", hue_order=runs,
                     palette=palette, marker="o", markersize=3, ax=ax, legend=False)
        ax.set_title(m)
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=palette[r], marker="o", label=r) for r in runs]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(runs)), bbox_to_anchor=(0.5, -0.02 - 0.04 * (len(runs) > 4)))
    fig.suptitle("RL fine-tuning (DPOK): rewards, KL and held-out gold score per policy update")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, out)


def per_timestep_figure(stats: pd.DataFrame, out: Path) -> Path | None:
    """stats: columns run, timestep, sigma, metric (kl | clip_frac), value — KL (log axis) and clip
    fraction against the denoising step, one line per RL run; the x labels carry each step's sigma."""
    if stats.empty:
        return None
    sns.set_theme(style="whitegrid", context="notebook")
    panels = [m for m in ("kl", "clip_frac") if m in set(stats.metric)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    runs = sorted(set(stats.run))
    palette = dict(zip(runs, sns.color_palette("tab10", len(runs))))
    steps = sorted(set(stats.timestep))
    sigma = stats.groupby("timestep")["sigma"].first()
    for ax, m in zip(axes.flat, panels):
        sns.lineplot(data=stats[stats.metric == m], x="timestep", y="value", hue="run", hue_order=runs,
                     palette=palette, marker="o", ax=ax, legend=False)
        if m == "kl" and (stats[stats.metric == m].value > 0).all():
            ax.set_yscale("log")
        ax.set_xticks(steps)
        ax.set_xticklabels([f"{i}\nσ={sigma[i]:.3g}" for i in steps], fontsize=8)
        ax.set_xlabel("denoising step (index into the schedule)")
        ax.set_ylabel("")
        ax.set_title({"kl": "KL to the cold start (per transition)", "clip_frac": "clip fraction"}[m])
    handles = [plt.Line2D([], [], color=palette[r], marker="o", label=r) for r in runs]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(runs)), bbox_to_anchor=(0.5, -0.06 - 0.05 * (len(runs) > 4)))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, out)
