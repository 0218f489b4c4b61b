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

import pandas as pd

from rgsyn import paths
from rgsyn.report.formats import Table, fmt_delta, fmt_num, fmt_stat, mean_of, scale_of, to_latex, to_markdown, write_tables  # noqa: F401
from rgsyn.report.generation import HACKING_TOLERANCE, table_generation, table_privacy  # noqa: F401
from rgsyn.report.inputs import (ABLATION_COLUMNS, ABLATION_LABELS, ABLATION_VARIANTS, DASH,  # noqa: F401
                                 DATASET_NAMES, FACE_METRICS, MAIN_VARIANTS, METRICS,
                                 NOT_APPLICABLE, NOT_RECOVERABLE, NOT_RUN, RFW_METRICS, VARIANT_LABELS,
                                 Benchmark, _seed_order, as_records, load_benchmarks, load_paper)


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
            suite.append(fmt_stat(vals, scale_of(unit), dec))
            if vals and published is not None:
                delta.append(fmt_delta(mean_of(vals) * scale_of(unit) - float(published), dec))
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
    notes = [f"suite: mean ± half-width of the 95% t-interval over the seeds present "
             f"({', '.join(seeds) or 'none'}), (n=k): the number of seeds with this value; one seed: the "
             "value alone (no interval); accuracies in percent, SER as a ratio.",
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
    """Ablations: each cell `value (Δ vs ours)`; the paper gives no per-ablation numbers (see verdicts).
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
            cell = fmt_stat(vals, scale_of(unit), dec)
            ref = bench.values("ours", k)
            if vals and ref and v != "ours":
                cell += f" ({fmt_delta((mean_of(vals) - mean_of(ref)) * scale_of(unit), dec)})"
            line.append(cell)
        lines.append(line)
    notes = ["Cells: mean ± half-width of the 95% t-interval over the n seeds; in brackets the difference "
             "of the means to ours (same column; its paired interval is in the verdicts table). "
             "SER: lower is fairer. not run: absent from metrics.json.",
             "The paper publishes no per-ablation numbers; its ablation statements are checked in the "
             "verdicts table (What reproduced)."]
    return Table("ablation", "Ablations: reward terms and dynamic sample selection", pd.DataFrame(lines, columns=header),
                 groups=groups,
                 notes=notes)


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


def build_tables(benches: dict[str, Benchmark], profile: str, variants: list[str] = (),
                 hacking_tolerance: float = HACKING_TOLERANCE) -> list[Table]:
    from rgsyn.report.controls import control_rows, table_controls
    from rgsyn.report.oracle import table_oracle
    from rgsyn.report.verdicts import comparisons, table_verdicts

    return [table_controls(control_rows(benches, profile), profile), table_verdicts(comparisons(benches, profile), profile),
            table_reid(benches, profile), table_face(benches, profile),
            table_rfw(benches, profile), table_ablation(benches, list(variants)), table_oracle(benches, profile),
            table_generation(benches, profile, hacking_tolerance), table_privacy(benches), table_references(benches)]

