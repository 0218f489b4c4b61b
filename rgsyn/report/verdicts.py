"""What reproduced: a verdict for every published claim, from paired differences over seeds.

A comparison is a claim of `benchmarks/<name>/paper.yaml` (`claims[]`: better, than, metrics,
value), one per metric, or the main-table row `ours` against `real` on the benchmark's headline
metric (its published value: the paper's ours row minus its real row, where both are public).
Differences are in the published unit (points for accuracies) and paired by seed; the statistics
and the verdict rule are those of `rgsyn.stats`.

The verdicts and the headline numbers are also written as compact DVC metrics (`metrics_files`):
one JSON per variant (`headline-<variant>.json`: the headline metric's mean and 95% half-width
per benchmark, and n) and one per compared pair and metric (`verdict-<better>-vs-<than>.json`:
the verdict per benchmark). Every file has the same benchmark keys, so `dvc metrics show` prints
one row per file over nine columns, and `dvc metrics diff` names the file and benchmark whose
verdict changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rgsyn import paths, stats
from rgsyn.report.formats import Table, fmt_delta, fmt_num, scale_of
from rgsyn.report.inputs import DASH, DATASET_NAMES, HEADLINE, METRICS, NOT_RUN, Benchmark

NOT_RUN_VERDICT = "not run"


@dataclass(frozen=True)
class Claim:
    """One comparison: better - than on one metric of one benchmark, and what the suite found."""

    benchmark: str
    kind: str                      # "main table" or "claim"
    text: str
    better: str
    than: str
    metric: str
    published: float | None        # the published difference (points / ratio), None: direction only
    result: stats.Comparison       # in the published unit
    verdict: str                   # reproduced | contradicted | inconclusive | not run
    inside: bool | None            # published value inside the reproduced interval (None: undefined)
    decimals: int = 1              # of the published unit

    def as_dict(self) -> dict:
        r = self.result
        return {"benchmark": self.benchmark, "kind": self.kind, "text": self.text, "better": self.better,
                "than": self.than, "metric": self.metric, "published": self.published, "n": r.n,
                "seeds": list(r.seeds), "diff": r.diff.mean, "ci95_low": r.diff.low, "ci95_high": r.diff.high,
                "p": r.p, "p_exact": r.p_exact, "mde": r.mde, "verdict": self.verdict,
                "published_inside_interval": self.inside}


def _claim(bench: Benchmark, kind: str, text: str, better: str, than: str, metric: str,
           published: float | None) -> Claim:
    scale = scale_of(METRICS[bench.name][metric][1])
    hi = {s: v * scale for s, v in bench.by_seed(better, metric).items()}
    lo = {s: v * scale for s, v in bench.by_seed(than, metric).items()}
    result = stats.compare(hi, lo)
    verdict = NOT_RUN_VERDICT if result.n == 0 else stats.verdict(result, stats.expected_sign(published))
    return Claim(bench.name, kind, " ".join(str(text).split()), better, than, metric, published, result, verdict,
                 stats.published_inside(result, published), 2 if scale == 1.0 else bench.decimals)


def _published_row(bench: Benchmark, variant: str, metric: str) -> float | None:
    for row in (bench.paper or {}).get("rows") or []:
        if row.get("variant") == variant:
            v = (row.get("values") or {}).get(metric)
            return None if v is None else float(v)
    return None


def comparisons(benches: dict[str, Benchmark]) -> list[Claim]:
    out = []
    for bn in paths.BENCHMARKS:
        bench = benches[bn]
        k = HEADLINE[bn]
        ours, real = _published_row(bench, "ours", k), _published_row(bench, "real", k)
        published = None if ours is None or real is None else round(ours - real, 6)
        out.append(_claim(bench, "main table", f"Ours beats the real-only baseline ({METRICS[bn][k][0]}, main table).",
                          "ours", "real", k, published))
        for claim in (bench.paper or {}).get("claims") or []:
            value = claim.get("value")
            for metric in claim["metrics"]:
                out.append(_claim(bench, "claim", claim["text"], claim["better"], claim["than"], metric,
                                  None if value is None else float(value)))
    return out


# ------------------------------------------------------------------------------------ table
def _diff_cell(c: Claim) -> str:
    d, dec = c.result.diff, c.decimals
    if c.result.n == 0:
        return NOT_RUN
    if d.half_width is None:
        return f"{fmt_delta(d.mean, dec)} (no interval)"
    return f"{fmt_delta(d.mean, dec)} ± {fmt_num(d.half_width, dec)}"


def _p_cell(c: Claim) -> str:
    if c.result.p is None:
        return DASH
    return f"{c.result.p:.3f}" + ("" if c.result.p_exact else " (MC)")


def _verdict_cell(c: Claim) -> str:
    if c.verdict == stats.INCONCLUSIVE and c.result.n == 1:
        return "inconclusive (n=1)"
    return c.verdict


def table_verdicts(claims: list[Claim], profile: str) -> Table:
    """The report's opening table: one row per comparison."""
    header = ["Benchmark", "Published statement", "Comparison", "Published", "Suite Δ ± 95% CI", "n", "p",
              "Verdict", "Detectable effect"]
    paper = profile == "paper"
    if paper:
        header.append("Published in CI")
    lines = []
    for c in claims:
        label = METRICS[c.benchmark][c.metric][0]
        pub = "> 0 (no number)" if c.published is None else fmt_delta(c.published, c.decimals)
        mde = DASH if c.result.mde is None else fmt_num(c.result.mde, c.decimals)
        line = [DATASET_NAMES[c.benchmark], c.text, f"{c.better} − {c.than}, {label}", pub, _diff_cell(c),
                str(c.result.n), _p_cell(c), _verdict_cell(c), mde]
        if paper:
            line.append(DASH if c.inside is None else ("yes" if c.inside else "no"))
        lines.append(line)
    counts = {v: sum(c.verdict == v for c in claims) for v in
              (stats.REPRODUCED, stats.CONTRADICTED, stats.INCONCLUSIVE, NOT_RUN_VERDICT)}
    notes = [
        "Summary: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + f" of {len(claims)} comparisons.",
        "Suite Δ: mean over seeds of the paired difference better − than (seeds matched by name), in points "
        "(SER: ratio), ± half-width of its 95% t-interval; n: seeds both variants ran.",
        "Verdict: reproduced = the published direction holds and the interval excludes 0; contradicted = the "
        "opposite direction, interval excluding 0; inconclusive = the interval contains 0 (or, with n = 1, is "
        "undefined). A claim without a number predicts better > than.",
        "p: two-sided exact sign-flip permutation test of the paired differences (scipy.stats.permutation_test; "
        "MC: 9999 random sign patterns beyond 16 seeds). With n seeds its smallest value is 2/2^n "
        "(n = 3: 0.25), so it cannot reach 0.05 below 6 seeds; the verdict follows the interval.",
        "Detectable effect: the paired difference that n seeds detect at the observed spread s_d, "
        "(t_{0.975,n−1} + t_{0.8,n−1}) · s_d / √n (two-sided alpha 0.05, power 0.8).",
    ]
    if any(c.result.n > 1 and c.result.diff.std == 0 for c in claims):
        notes.append("± 0 (zero width): every seed gave the same difference, so the t-interval is that point; "
                     "with coarse metrics (few verification pairs) and few seeds this agreement can be chance.")
    if paper:
        notes.append("Published in CI: whether the published difference lies inside the suite's 95% interval.")
    else:
        notes.append(f"Profile {profile}: the toy world tests the direction of each claim, not its size; "
                     "the published number is shown for reference.")
    return Table("what_reproduced", "What reproduced: published claims, paired over seeds",
                 pd.DataFrame(lines, columns=header), n_label_cols=3, latex_align="lp{5.5cm}lrrrrlr" + ("l" if paper else ""),
                 notes=notes)


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
    """{file name: content} of the verdict files, {"<benchmark>": verdict}: one file per compared
    pair on the headline metric (`verdict-<better>-vs-<than>.json`), one per pair and other metric
    (`verdict-<better>-vs-<than>-<metric>.json`, the RFW groups), so that every file has the
    headline files' columns and a new claim adds a row, not columns. Two claims on the same pair
    and metric (RFW: 'all four groups' and 'minority groups') share one cell, the first claim's
    verdict (both predict better > than, so they agree)."""
    out: dict[str, dict] = {}
    for c in claims:
        suffix = "" if c.metric == HEADLINE[c.benchmark] else f"-{c.metric}"
        out.setdefault(f"verdict-{c.better}-vs-{c.than}{suffix}.json", {}).setdefault(c.benchmark, c.verdict)
    return out


def metrics_files(benches: dict[str, Benchmark], claims: list[Claim], variants: list[str]) -> dict[str, dict]:
    return {**headline_metrics(benches, variants), **verdict_metrics(claims)}
