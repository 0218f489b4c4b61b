"""The report's tables: read `benchmarks/*/metrics.json` and `paper.yaml`, build the tables of the
paper next to the suite's numbers, and write them as Markdown and LaTeX (booktabs).

Conventions (shown in every table's legend):
- run metrics are fractions in [0, 1] and are rendered in percent (SER stays a ratio);
- with several seeds a cell is `mean ± std` (sample std, ddof=1, over seeds);
- `Δ` = suite mean - published value, in points of the published unit;
- `not run`: the variant (or the metric) is absent from metrics.json — never filled in;
- `n/r`: the paper has the row but the value is not recoverable from its public copies;
- `reported`: a baseline the suite cannot run; only its published number is shown.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rgsyn import io, paths
from rgsyn.errors import DataError

NOT_RUN = "not run"
NOT_RECOVERABLE = "n/r"
DASH = "—"

# Metric keys of metrics.json, their column labels and units (percent = fraction x 100).
REID_METRICS = {"mAP": ("mAP", "percent"), "rank1": ("R-1", "percent")}
FACE_METRICS = {"lfw": ("LFW", "percent"), "agedb": ("AgeDB", "percent"), "calfw": ("CALFW", "percent"),
                "cfp_fp": ("CFP-FP", "percent"), "cplfw": ("CPLFW", "percent"), "avg": ("Avg", "percent")}
RFW_METRICS = {**{g: (g, "percent") for g in paths.RFW_GROUPS}, "mean": ("Mean", "percent"),
               "std": ("Std", "percent"), "ser": ("SER", "ratio")}
METRICS = {"market1501": REID_METRICS, "cuhk03": REID_METRICS, "casia_face": FACE_METRICS,
           "rfw_bias": RFW_METRICS}
DATASET_NAMES = {"market1501": "Market-1501", "cuhk03": "CUHK03-NP", "casia_face": "Face (5 sets)",
                 "rfw_bias": "RFW"}
DEFAULT_DECIMALS = {"market1501": 1, "cuhk03": 1, "casia_face": 2, "rfw_bias": 2}

# The suite's own variants (params.variants keys) as they are named in the tables.
VARIANT_LABELS = {
    "real": "Real only",
    "real_re": "Real + random erasing",
    "syn_cold": "Real + cold-start synthetic (all)",
    "syn_rl": "Real + RL synthetic (all)",
    "ours": "Ours (RL synthetic + lookahead selection)",
    "ours_no_sem": "Ours without R_sem",
    "ours_no_cov": "Ours without R_cov",
    "ours_no_exp": "Ours without R_exp",
    "ours_random_sel": "Ours with random selection",
}
ABLATION_LABELS = {"ours": "Ours (full)", "syn_rl": "No selection", "ours_random_sel": "Random selection",
                   "ours_no_sem": "Without R_sem", "ours_no_cov": "Without R_cov", "ours_no_exp": "Without R_exp",
                   "real": "Real only"}
MAIN_VARIANTS = ("real", "real_re", "syn_cold", "syn_rl", "ours")
ABLATION_VARIANTS = ("ours", "syn_rl", "ours_random_sel", "ours_no_sem", "ours_no_cov", "ours_no_exp", "real")
ABLATION_COLUMNS = (("market1501", "mAP"), ("market1501", "rank1"), ("cuhk03", "mAP"), ("cuhk03", "rank1"),
                    ("casia_face", "avg"), ("rfw_bias", "mean"), ("rfw_bias", "ser"))
GENERATION_COLUMNS = {"frechet": ("Fréchet ↓", 2, 1.0), "density": ("Density", 3, 1.0),
                      "coverage": ("Coverage", 3, 1.0), "mean_reward_sem": ("Mean R_sem", 3, 1.0),
                      "n_images": ("Images", 0, 1.0)}
PRIVACY_COLUMNS = {"nn_sim_mean": ("NN sim. mean", 3, 1.0), "nn_sim_max": ("NN sim. max", 3, 1.0),
                   "nn_sim_share_above": ("Share > τ (%)", 1, 100.0),
                   "real_nn_sim_mean": ("Real→real NN sim. mean", 3, 1.0),
                   "real_nn_share_above": ("Real→real share > τ (%)", 1, 100.0), "nn_threshold": ("τ", 2, 1.0)}


# ---------------------------------------------------------------------------------- inputs
@dataclass
class Benchmark:
    """One benchmark's inputs: its metrics.json (None if absent) and its paper.yaml (None if absent)."""

    name: str
    metrics: dict | None
    paper: dict | None

    @property
    def decimals(self) -> int:
        return int((self.paper or {}).get("decimals", DEFAULT_DECIMALS.get(self.name, 1)))

    @property
    def n_seeds(self) -> int:
        """The most seeds any variant has (a cell with fewer values is marked `(n=k)`)."""
        return max((len(s or {}) for s in ((self.metrics or {}).get("variants") or {}).values()), default=0)

    def seeds(self, variant: str) -> dict[str, dict]:
        return ((self.metrics or {}).get("variants") or {}).get(variant) or {}

    def values(self, variant: str, key: str) -> list[float]:
        """Per-seed values of one metric, seeds in sorted order; [] when not run."""
        out = []
        for seed in sorted(self.seeds(variant), key=_seed_order):
            v = self.seeds(variant)[seed].get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out


def _seed_order(name: str) -> tuple[int, str]:
    m = re.search(r"\d+", name)
    return (int(m.group()) if m else 1 << 30, name)


def load_paper(path: Path, benchmark: str) -> dict:
    """Read and validate a paper.yaml (schema 1); DataError names the key that is wrong."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise DataError(f"{path}: expected a mapping with 'schema: 1'")
    known = set(METRICS[benchmark])
    for i, row in enumerate(doc.get("rows") or []):
        where = f"{path}: rows[{i}]"
        if not isinstance(row, dict) or "method" not in row or not isinstance(row.get("values"), dict):
            raise DataError(f"{where}: expected 'method' and a 'values' mapping")
        if bool(row.get("reported")) != (row.get("variant") is None):
            raise DataError(f"{where} ({row['method']}): 'reported: true' goes with 'variant: null' and only then")
        for key, v in row["values"].items():
            if key not in known:
                raise DataError(f"{where}.values: unknown metric {key!r}; expected one of {sorted(known)}")
            if v is not None and not isinstance(v, (int, float)):
                raise DataError(f"{where}.values.{key}: expected a number or null, got {v!r}")
    for i, claim in enumerate(doc.get("claims") or []):
        bad = [k for k in claim.get("metrics") or [] if k not in known]
        if bad or not claim.get("better") or not claim.get("than"):
            raise DataError(f"{path}: claims[{i}]: needs 'better', 'than' and metrics from {sorted(known)}")
    return doc


def load_benchmarks(root: Path = Path(".")) -> dict[str, Benchmark]:
    out = {}
    for name in paths.BENCHMARKS:
        mpath = root / paths.benchmark_metrics(name)
        ppath = root / paths.benchmark_dir(name) / "paper.yaml"
        metrics = None
        if mpath.is_file():
            try:
                metrics = io.read_json(mpath)
            except ValueError as e:
                raise DataError(f"{mpath}: not valid JSON: {e}") from None
            if not isinstance(metrics, dict):
                raise DataError(f"{mpath}: expected a mapping with 'variants' and 'generation'")
        paper = load_paper(ppath, name) if ppath.is_file() else None
        out[name] = Benchmark(name, metrics, paper)
    return out


# ------------------------------------------------------------------------------ formatting
def scale_of(unit: str) -> float:
    return 100.0 if unit == "percent" else 1.0


def mean_std(values: list[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def fmt_num(x: float, decimals: int) -> str:
    s = f"{x:.{decimals}f}"
    return s[1:] if s.startswith("-") and not s.strip("-0.") else s   # no "-0.0" for a tiny negative


def fmt_stat(values: list[float], scale: float, decimals: int, n_expected: int = 0) -> str:
    """`mean ± std` (several seeds), `mean` (one seed) or `not run` (none); `(n=k)` is appended
    when fewer than n_expected seeds have the value."""
    if not values:
        return NOT_RUN
    m, s = mean_std([v * scale for v in values])
    out = fmt_num(m, decimals) + ("" if s is None else f" ± {fmt_num(s, decimals)}")
    return out + (f" (n={len(values)})" if len(values) < n_expected else "")


def fmt_delta(d: float, decimals: int) -> str:
    s = fmt_num(d, decimals)
    return s if s.startswith("-") else f"+{s}"


# -------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A rendered table: string cells in `df`; `groups` are spanning header cells over the
    columns after the first `n_label_cols` (label, span); `breaks` are row indices that start a
    new block (a rule or extra space before them)."""

    name: str
    title: str
    df: pd.DataFrame
    n_label_cols: int = 1
    groups: list[tuple[str, int]] | None = None
    breaks: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    latex_align: str | None = None   # a tabular column spec overriding the default l...r...


def _paper_rows(bench: Benchmark) -> list[dict]:
    return list((bench.paper or {}).get("rows") or [])


def comparison_rows(benches: list[Benchmark]) -> list[dict]:
    """Rows of a paper table over one or more benchmarks: the published rows in the paper's order
    (merged by method name across benchmarks) with the suite's main variants that have no
    published row placed before the 'ours' row. Each row: method, variant, reported, paper values
    per benchmark."""
    rows: list[dict] = []
    by_method: dict[str, dict] = {}
    for bench in benches:
        for prow in _paper_rows(bench):
            row = by_method.get(prow["method"])
            if row is None:
                row = {"method": prow["method"], "variant": prow.get("variant"),
                       "reported": bool(prow.get("reported")), "paper": {}}
                by_method[prow["method"]] = row
                rows.append(row)
            row["paper"][bench.name] = prow["values"]
    covered = {r["variant"] for r in rows if r["variant"]}
    extra = {v: {"method": VARIANT_LABELS[v], "variant": v, "reported": False, "paper": {}}
             for v in MAIN_VARIANTS if v not in covered}
    # real at the top, real_re right after real, the synthetic variants just before ours, ours last
    if "real" in extra:
        rows.insert(0, extra.pop("real"))
    if "real_re" in extra:
        at = next((i + 1 for i, r in enumerate(rows) if r["variant"] == "real"), 0)
        rows.insert(at, extra.pop("real_re"))
    ours = extra.pop("ours", None)
    at = next((i for i, r in enumerate(rows) if r["variant"] == "ours"), len(rows))
    rows[at:at] = list(extra.values())
    return rows + ([ours] if ours else [])


def comparison_table(name: str, title: str, benches: list[Benchmark], metric_keys: dict[str, list[str]],
                     profile: str) -> Table:
    """A paper table in stacked form: per method a `suite` line, a `paper` line and a `Δ` line
    (reported baselines: a single `reported` line)."""
    columns = [(b, k) for b in metric_keys for k in metric_keys[b]]
    bench_of = {b.name: b for b in benches}
    header = ["Method", "Source"] + [METRICS[b][k][0] for b, k in columns]
    lines: list[list[str]] = []
    breaks: list[int] = []
    for row in comparison_rows(benches):
        variant = row["variant"]
        label = row["method"] if variant is None else f"{row['method']} [{variant}]"
        breaks.append(len(lines))
        suite, paper, delta = [], [], []
        has_paper = bool(row["paper"])
        has_published = any(v is not None for vals in row["paper"].values() for v in vals.values())
        for b, k in columns:
            bench = bench_of[b]
            unit = METRICS[b][k][1]
            dec = bench.decimals if unit == "percent" else 2
            published = row["paper"].get(b, {}).get(k) if b in row["paper"] else None
            paper.append(DASH if b not in row["paper"] else
                         NOT_RECOVERABLE if published is None else fmt_num(float(published), dec))
            if variant is None:
                continue
            vals = bench.values(variant, k)
            suite.append(fmt_stat(vals, scale_of(unit), dec, bench.n_seeds))
            if vals and published is not None:
                delta.append(fmt_delta(mean_std(vals)[0] * scale_of(unit) - float(published), dec))
            else:
                delta.append(DASH)
        if variant is None:
            lines.append([label, "reported"] + paper)
            continue
        lines.append([label, f"suite ({profile})"] + suite)
        if has_paper:
            lines.append(["", "paper"] + paper)
            if has_published:
                lines.append(["", "Δ"] + delta)
    groups = None
    if len(metric_keys) > 1:
        groups = [(DATASET_NAMES[b], len(ks)) for b, ks in metric_keys.items()]
    return Table(name, title, pd.DataFrame(lines, columns=header), n_label_cols=2, groups=groups,
                 breaks=breaks[1:], notes=legend(benches))


def legend(benches: list[Benchmark]) -> list[str]:
    seeds = sorted({s for b in benches for v in ((b.metrics or {}).get("variants") or {}).values()
                    for s in (v or {})}, key=_seed_order)
    notes = [f"suite: mean ± std (ddof=1) over the seeds present ({', '.join(seeds) or 'none'}); "
             "(n=k): only k seeds have this value; accuracies in percent, SER as a ratio.",
             "Δ: suite mean − published value. not run: absent from metrics.json. "
             "n/r: not recoverable from the public copies of the paper. "
             "reported: a baseline the suite cannot run (published number only). —: no published row."]
    for b in benches:
        if b.metrics is None:
            notes.append(f"{paths.benchmark_metrics(b.name)} is missing: every suite value of "
                         f"{DATASET_NAMES[b.name]} is 'not run'.")
        if b.paper is None:
            notes.append(f"{paths.benchmark_dir(b.name) / 'paper.yaml'} is missing: no published values.")
        elif b.paper.get("source"):
            notes.append(f"{DATASET_NAMES[b.name]} published values: {' '.join(str(b.paper['source']).split())}")
    return notes


def table_reid(b: dict[str, Benchmark], profile: str) -> Table:
    return comparison_table("table1_reid", "Table 1: person re-ID, mAP and R-1 (%)",
                            [b["market1501"], b["cuhk03"]],
                            {"market1501": ["mAP", "rank1"], "cuhk03": ["mAP", "rank1"]}, profile)


def table_face(b: dict[str, Benchmark], profile: str) -> Table:
    return comparison_table("table2_face", "Table 2: face verification accuracy (%), trained on CASIA(-style) data",
                            [b["casia_face"]], {"casia_face": list(FACE_METRICS)}, profile)


def table_rfw(b: dict[str, Benchmark], profile: str) -> Table:
    return comparison_table("table3_rfw", "Table 3: RFW accuracy per group (%), mean, std (points) and SER",
                            [b["rfw_bias"]], {"rfw_bias": list(RFW_METRICS)}, profile)


def table_ablation(b: dict[str, Benchmark], variants: list[str] = ()) -> Table:
    """Ablations: each cell `value (Δ vs ours)`; the paper gives no per-ablation numbers (see claims).
    `variants`: the params' variants; any the suite does not name is appended as its own row."""
    cols = [(bn, k) for bn, k in ABLATION_COLUMNS]
    header = ["Variant"] + [METRICS[bn][k][0] for bn, k in cols]
    groups = [(DATASET_NAMES[bn], sum(1 for c in cols if c[0] == bn)) for bn in dict.fromkeys(c[0] for c in cols)]
    lines = []
    for v in [*ABLATION_VARIANTS, *[v for v in variants if v not in VARIANT_LABELS]]:
        line = [f"{ABLATION_LABELS.get(v, v)} [{v}]"]
        for bn, k in cols:
            bench, unit = b[bn], METRICS[bn][k][1]
            dec = bench.decimals if unit == "percent" else 2
            vals = bench.values(v, k)
            cell = fmt_stat(vals, scale_of(unit), dec, bench.n_seeds)
            ref = bench.values("ours", k)
            if vals and ref and v != "ours":
                cell += f" ({fmt_delta((mean_std(vals)[0] - mean_std(ref)[0]) * scale_of(unit), dec)})"
            line.append(cell)
        lines.append(line)
    notes = ["Cells: mean ± std over seeds; in brackets the difference to ours (same column). "
             "SER: lower is fairer. not run: absent from metrics.json.",
             "The paper publishes no per-ablation numbers; its ablation statements are checked in the "
             "claims table."]
    return Table("ablation", "Ablations: reward terms and dynamic sample selection", pd.DataFrame(lines, columns=header),
                 groups=groups,
                 notes=notes)


def table_claims(b: dict[str, Benchmark]) -> Table:
    """Published statements (paper.yaml claims) beside the suite's difference better - than."""
    lines = []
    for bn in paths.BENCHMARKS:
        bench = b[bn]
        for claim in (bench.paper or {}).get("claims") or []:
            for k in claim["metrics"]:
                unit = METRICS[bn][k][1]
                dec = bench.decimals if unit == "percent" else 2
                hi, lo = bench.values(claim["better"], k), bench.values(claim["than"], k)
                published = claim.get("value")
                paper = "> 0 (no number)" if published is None else fmt_delta(float(published), dec)
                if hi and lo:
                    diff = (mean_std(hi)[0] - mean_std(lo)[0]) * scale_of(unit)
                    suite = fmt_delta(diff, dec)
                    expected_sign = 1.0 if published is None else math.copysign(1.0, float(published))
                    agrees = "yes" if diff * expected_sign > 0 else "no"
                    delta = DASH if published is None else fmt_delta(diff - float(published), dec)
                else:
                    suite, agrees, delta = NOT_RUN, DASH, DASH
                lines.append([DATASET_NAMES[bn], " ".join(str(claim["text"]).split()),
                              f"{claim['better']} − {claim['than']}, {METRICS[bn][k][0]}", paper, suite, delta,
                              agrees])
    header = ["Benchmark", "Published statement", "Suite comparison", "Paper", "Suite", "Δ", "Same sign"]
    return Table("claims", "Published ablation and bias statements beside the suite", pd.DataFrame(lines, columns=header),
                 n_label_cols=3, latex_align="lp{6.5cm}lrrrr", notes=["Paper/Suite: difference in points (better − than); Δ: suite − paper."])


def _generation_table(b: dict[str, Benchmark], name: str, title: str, spec: dict, notes: list[str]) -> Table:
    header = ["Benchmark", "Generator"] + [label for label, _, _ in spec.values()]
    lines = []
    for bn in paths.TRAINED_BENCHMARKS:  # rfw_bias evaluates the casia_face models and generators
        gens = ((b[bn].metrics or {}).get("generation") or {})
        for gen in sorted(gens):
            entry = gens[gen] or {}
            seeded = [entry[s] for s in sorted(entry, key=_seed_order)
                      if s.startswith("seed") and isinstance(entry[s], dict)]
            runs = seeded or [entry]
            line = [DATASET_NAMES[bn], gen]
            for key, (_, dec, scale) in spec.items():
                vals = [float(r[key]) for r in runs if isinstance(r.get(key), (int, float))
                        and not isinstance(r.get(key), bool) and math.isfinite(float(r[key]))]
                line.append(fmt_stat(vals, scale, dec))
            lines.append(line)
    if not lines:
        notes = ["not run: no benchmark's metrics.json has a 'generation' section."] + notes
    return Table(name, title, pd.DataFrame(lines, columns=header), n_label_cols=2, notes=notes)


def table_generation(b: dict[str, Benchmark]) -> Table:
    return _generation_table(b, "generation", "Generation quality (identity-encoder features)", GENERATION_COLUMNS, [
        "Fréchet distance between real and synthetic identity features (lower is closer); density and "
        "coverage with k nearest real neighbours; mean R_sem of the kept samples.",
        "The paper publishes no generation-quality numbers, so there is nothing to compare with."])


def table_privacy(b: dict[str, Benchmark]) -> Table:
    return _generation_table(b, "privacy", "Privacy: nearest real training neighbour of each synthetic image",
                             PRIVACY_COLUMNS, [
        "Cosine similarity of each synthetic image's identity feature to its nearest real training image; "
        "share > τ: synthetic images closer than the memorisation threshold τ to a real image.",
        "Real→real: the same for each real training image against the other real training images (leave "
        "one out), the yardstick: a synthetic share well above it points at copying, one at or below it "
        "is what two photos of one person already score.",
        "The paper publishes no memorisation numbers."])


def table_references(b: dict[str, Benchmark]) -> Table:
    """Numbers of other public systems listed in paper.yaml `references` (orientation only)."""
    lines = []
    for bn in paths.BENCHMARKS:
        for ref in (b[bn].paper or {}).get("references") or []:
            vals = ", ".join(f"{METRICS[bn][k][0]} {fmt_num(float(v), b[bn].decimals)}"
                             for k, v in ref["values"].items() if v is not None and k in METRICS[bn])
            lines.append([DATASET_NAMES[bn], ref["method"], vals, " ".join(str(ref.get("source", "")).split())])
    return Table("references", "Reference numbers of other public systems (published, for orientation)",
                 pd.DataFrame(lines, columns=["Benchmark", "System", "Published (%)", "Source"]), n_label_cols=4,
                 notes=["Not produced by the suite and not comparable with the toy profile; listed in "
                        "benchmarks/*/paper.yaml under 'references'."])


# ---------------------------------------------------------------------------------- output
def to_markdown(t: Table) -> str:
    out = [f"### {t.title}", ""]
    if t.df.empty:
        out.append(f"_{NOT_RUN}_")
    else:
        df = t.df
        if t.groups:
            names = [g for g, span in t.groups for _ in range(span)]
            df = df.copy()
            df.columns = list(df.columns[:t.n_label_cols]) + [
                f"{g} {c}" for g, c in zip(names, df.columns[t.n_label_cols:])]
        align = ("left",) * t.n_label_cols + ("right",) * (len(df.columns) - t.n_label_cols)
        out.append(df.to_markdown(index=False, disable_numparse=True, colalign=align))
    out += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "−": "$-$", "→": r"$\to$", "↓": r"$\downarrow$",
                  "τ": r"$\tau$", ">": r"$>$", "é": r"\'e"}


def latex_escape(s: str) -> str:
    s = str(s)
    if re.match(r"^-\d", s):          # a negative number: a real minus sign, not a hyphen
        s = "−" + s[1:]
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    n = len(t.df.columns)
    align = t.latex_align or "l" * t.n_label_cols + "r" * (n - t.n_label_cols)
    caption = latex_escape(re.sub(r"^Table \d+: ", "", t.title))   # LaTeX numbers the tables itself
    out = ["% generated by `rgsyn report`; needs \\usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
           r"\footnotesize" if n > 7 else r"\small", f"\\caption{{{caption}}}", f"\\label{{tab:{t.name}}}",
           f"\\begin{{tabular}}{{{align}}}", r"\toprule"]
    if t.groups:
        cells, rules, col = [""] * t.n_label_cols, [], t.n_label_cols + 1
        for label, span in t.groups:
            cells.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        out += [" & ".join(cells) + r" \\", " ".join(rules)]
    out += [" & ".join(latex_escape(c) for c in t.df.columns) + r" \\", r"\midrule"]
    if t.df.empty:
        out.append(f"\\multicolumn{{{n}}}{{c}}{{{NOT_RUN}}} \\\\")
    for i, row in enumerate(t.df.itertuples(index=False)):
        if i in t.breaks:
            out.append(r"\addlinespace")
        out.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def build_tables(benches: dict[str, Benchmark], profile: str, variants: list[str] = ()) -> list[Table]:
    return [table_reid(benches, profile), table_face(benches, profile), table_rfw(benches, profile),
            table_ablation(benches, list(variants)), table_claims(benches), table_generation(benches), table_privacy(benches),
            table_references(benches)]


def write_tables(tables: list[Table], out_dir: Path) -> list[Path]:
    written = []
    for t in tables:
        for suffix, text in ((".md", to_markdown(t)), (".tex", to_latex(t))):
            p = out_dir / f"{t.name}{suffix}"
            io.write_text(p, text)
            written.append(p)
    return written


def as_records(benches: dict[str, Benchmark]) -> pd.DataFrame:
    """Long frame of every run value: benchmark, variant, seed, metric, value (fraction)."""
    recs: list[dict[str, Any]] = []
    for bn, bench in benches.items():
        for v, seeds in ((bench.metrics or {}).get("variants") or {}).items():
            for seed, m in (seeds or {}).items():
                for k, val in (m or {}).items():
                    if k in METRICS[bn] and isinstance(val, (int, float)) and not isinstance(val, bool):
                        recs.append({"benchmark": bn, "variant": v, "seed": seed, "metric": k, "value": float(val)})
    return pd.DataFrame(recs, columns=["benchmark", "variant", "seed", "metric", "value"])
