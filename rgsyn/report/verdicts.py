"""What reproduced: the table of the published claims and their verdicts, and the compact DVC metrics.

The claims, their verdicts and Holm's correction come from `rgsyn.report.claims`; the statistics
from `rgsyn.stats`. A composite claim is one row with its verdict, followed by one row per part
(its own paired difference and raw verdict, indented); only the claim is counted and corrected.

The verdicts and the headline numbers are also written as compact DVC metrics (`metrics_files`):
one JSON per variant (`headline-<variant>.json`: the headline metric's mean and 95% half-width
per benchmark, and n) and one per claim (`verdict-<claim id>.json`: the verdict after Holm per
benchmark). Every file has the same benchmark keys, so `dvc metrics show` prints one row per file
over nine columns, and `dvc metrics diff` names the file and benchmark whose verdict changed. The
controls' files (`rgsyn.report.controls`) sort first.
"""
from __future__ import annotations

import pandas as pd

from rgsyn import paths, stats
from rgsyn.report.claims import NOT_RUN_VERDICT, Claim, Part, comparisons, family_sizes  # noqa: F401
from rgsyn.report.formats import Table, fmt_delta, fmt_num, scale_of
from rgsyn.report.inputs import DASH, DATASET_NAMES, HEADLINE, METRICS, NOT_RUN, Benchmark

PART_MARK = "↳ "


# ------------------------------------------------------------------------------------ cells
def fmt_p(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.3f}" if p >= 0.01 else f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def diff_cell(r: stats.Comparison, dec: int) -> str:
    """`mean ± half-width`, or what stands in for an interval that is not there."""
    d = r.diff
    if r.n == 0:
        return NOT_RUN
    if d.half_width is None:
        return f"{fmt_delta(d.mean, dec)} (no interval)"
    if r.no_spread:
        return f"{fmt_delta(d.mean, dec)}, no spread: {r.n} identical differences"
    return f"{fmt_delta(d.mean, dec)} ± {fmt_num(d.half_width, dec)}"


def seeds_cell(r: stats.Comparison, dec: int) -> str:
    return ", ".join(fmt_delta(x, dec) for x in r.diffs) if r.n else DASH


def verdict_cell(verdict: str, r: stats.Comparison | None = None) -> str:
    if verdict == stats.INCONCLUSIVE and r is not None and r.n == 1:
        return "inconclusive (n=1)"
    if verdict == stats.INCONCLUSIVE and r is not None and r.no_spread:
        return "inconclusive (no spread)"
    if verdict == "mixed":
        return "mixed: not reproduced"
    return verdict


def mde_cell(r: stats.Comparison, dec: int) -> str:
    if r.no_spread:
        return "— (no spread)"
    return DASH if r.mde is None else fmt_num(r.mde, dec)


def flip_cell(r: stats.Comparison) -> str:
    if r.sign_flip_p is None:
        return DASH
    return fmt_p(r.sign_flip_p) + ("" if r.sign_flip_exact else " (MC)")


def _published_cell(p: Part, dec: int) -> str:
    return "> 0 (no number)" if p.published is None else fmt_delta(p.published, dec)


# ------------------------------------------------------------------------------------ table
HEADER = ["Benchmark", "Published statement", "Comparison", "Published", "Suite Δ ± 95% CI", "Per-seed Δ", "n",
          "p (t-test)", "p (Holm)", "Verdict", "Verdict (Holm)", "Detectable effect"]
FLIP = "Sign-flip p (robustness)"


def _part_line(c: Claim, p: Part, flips: bool, indent: bool) -> list[str]:
    r, dec = p.result, c.decimals
    label = f"{p.better} − {p.than}, {METRICS[c.benchmark][p.metric][0]}"
    line = [DATASET_NAMES[c.benchmark] if not indent else "", PART_MARK + label if indent else c.text,
            label, _published_cell(p, dec), diff_cell(r, dec), seeds_cell(r, dec), str(r.n), fmt_p(r.p),
            DASH if indent else fmt_p(c.p_holm), verdict_cell(p.verdict, r),
            DASH if indent else verdict_cell(c.verdict_holm, r), mde_cell(r, dec)]
    return line + ([flip_cell(r)] if flips else [])


def _claim_lines(c: Claim, flips: bool) -> list[list[str]]:
    if not c.composite:
        return [_part_line(c, c.parts[0], flips, indent=False)]
    how = "largest part p" if c.verdict != stats.CONTRADICTED else "Bonferroni over the parts"
    head = [DATASET_NAMES[c.benchmark], c.text, f"all of {len(c.parts)} parts (below)", DASH, DASH, DASH,
            str(min(p.result.n for p in c.parts)), DASH if c.p is None else f"{fmt_p(c.p)} ({how})",
            fmt_p(c.p_holm), verdict_cell(c.verdict), verdict_cell(c.verdict_holm), DASH]
    return [head + ([DASH] if flips else [])] + [_part_line(c, p, flips, indent=True) for p in c.parts]


def _counts(claims: list[Claim], attr: str) -> str:
    counts: dict[str, int] = {}
    for c in claims:
        counts[getattr(c, attr)] = counts.get(getattr(c, attr), 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def summary_notes(claims: list[Claim]) -> list[str]:
    sizes = family_sizes(claims)
    m = sum(sizes.values())
    expected, any_flag = stats.chance_flags(m)
    families = sum(1 for k in sizes.values() if k)
    return [
        f"Summary after Holm: {_counts(claims, 'verdict_holm')} of {len(claims)} claims "
        f"(raw: {_counts(claims, 'verdict')}).",
        f"Chance alone: {m} claims carry a test ("
        + ", ".join(f"{DATASET_NAMES[b]} {k}" for b, k in sizes.items()) + "). If none of the effects existed, "
        f"raw verdicts at alpha {stats.ALPHA:.2f} would flag {expected:.2f} of them on average and at least one "
        f"with probability {any_flag:.0%} (independent tests). Holm holds that probability to at most "
        f"{stats.ALPHA:.0%} within each benchmark (at most {min(1.0, families * stats.ALPHA):.0%} over the "
        f"{families} benchmarks).",
    ]


def method_notes(profile: str) -> list[str]:
    notes = [
        "Suite Δ: mean over seeds of the paired difference better − than (seeds matched by name), in points "
        "(SER: ratio), ± half-width of its 95% t-interval; Per-seed Δ: the differences themselves; n: seeds "
        "both variants ran.",
        "p (t-test): the two-sided paired t-test, the same test as the interval (p < 0.05 exactly when the "
        "interval excludes 0); it decides the raw verdict. p (Holm): adjusted within the benchmark's claims; "
        "a claim keeps its verdict after Holm only if this is below 0.05, else it reads inconclusive.",
        "Verdict (direction): reproduced = the interval excludes 0 on the claimed side; contradicted = on the "
        "other side; inconclusive = it contains 0. A claim without a number predicts better > than. "
        "No spread: every seed gave the same difference, so there is no interval to test with (coarse metrics "
        "over few seeds can agree by chance); it reads inconclusive, never certain.",
        "Composite claims (all of several parts) have one verdict: reproduced only if every part is (p: the "
        "largest part p, a part on the wrong side counting as 1); contradicted if some part is clear of 0 on "
        "the wrong side after Bonferroni over the parts; mixed when decided parts disagree on size. The part "
        "rows (↳) show each comparison's raw verdict and are not corrected on their own.",
        "Detectable effect: the true paired difference that n seeds detect with power 0.8 (two-sided alpha "
        "0.05) at the observed spread, from the exact noncentral t distribution.",
        f"Sign-flip p: the exact sign-flip permutation test of the same differences, shown from "
        f"{stats.SIGN_FLIP_MIN_SEEDS} seeds on as a robustness check only (below that its smallest value, "
        "2/2^n, cannot reach 0.05); it does not decide the verdict.",
    ]
    if profile == "paper":
        notes.append("Profile paper: a claim with a published number is judged against its size. With the "
                     "interval mirrored so that the claim reads positive: consistent = the published value lies "
                     "in it (and 0 does not); smaller = it lies between 0 and the published value; larger = it "
                     "lies above the published value; contradicted = it lies below 0 (the wrong sign); "
                     "inconclusive = it contains 0. Sizes use the raw interval; Holm decides only whether the "
                     "difference from 0 stands.")
    else:
        notes.append(f"Profile {profile}: verdicts test the direction of each claim only, never its size: the "
                     "toy world is not comparable in size with the paper's data. The published number is shown "
                     "for reference.")
    return notes


def table_verdicts(claims: list[Claim], profile: str) -> Table:
    """The table of every published claim: one row per claim, part rows under a composite."""
    flips = any(p.result.sign_flip_p is not None for c in claims for p in c.parts)
    header = HEADER + ([FLIP] if flips else [])
    lines = [line for c in claims for line in _claim_lines(c, flips)]
    return Table("what_reproduced", "What reproduced: published claims, paired over seeds",
                 pd.DataFrame(lines, columns=header), n_label_cols=3,
                 latex_align="lp{5cm}l" + "r" * 6 + "llr" + ("r" if flips else ""),
                 notes=summary_notes(claims) + method_notes(profile))


# ------------------------------------------------------------------------------ DVC metrics
def _rounded(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def headline_metrics(benches: dict[str, Benchmark], variants: list[str]) -> dict[str, dict]:
    """{file name: content} of the headline-<variant>.json files (variants with any run):
    {"<benchmark>": mean, "<benchmark>_ci": 95% half-width, "n": seeds} in points."""
    out = {}
    for v in variants:
        row: dict = {}
        for bn in paths.BENCHMARKS:
            k = HEADLINE[bn]
            vals = benches[bn].values(v, k)
            if not vals:
                continue
            s = stats.summarise([x * scale_of(METRICS[bn][k][1]) for x in vals])
            row[bn], row[f"{bn}_ci"] = _rounded(s.mean), _rounded(s.half_width)
            row["n"] = max(row.get("n", 0), s.n)
        if row:
            out[f"headline-{v}.json"] = row
    return out


def verdict_metrics(claims: list[Claim]) -> dict[str, dict]:
    """{file name: content} of the verdict files, `verdict-<claim id>.json` = {"<benchmark>": the
    claim's verdict after Holm}: claims that several benchmarks share (the main-table row, 'each
    reward term helps') are one row over the benchmark columns."""
    out: dict[str, dict] = {}
    for c in claims:
        out.setdefault(f"verdict-{c.id}.json", {})[c.benchmark] = c.verdict_holm
    return out


def metrics_files(benches: dict[str, Benchmark], claims: list[Claim], variants: list[str],
                  controls: dict[str, dict] | None = None) -> dict[str, dict]:
    return {**(controls or {}), **headline_metrics(benches, variants), **verdict_metrics(claims)}
