"""The controls, which open the report: can this run see an effect, and only a real one?

Per benchmark, on its headline metric, paired over seeds (`rgsyn.stats.compare`):
- positive: `syn_oracle` - `real`. A perfect generator (new renders of the training identities by
  the toy world) must read as a gain. Holm over the four benchmarks; reproduced = the gain is clear
  of 0 after the correction. If it is not reproduced on every benchmark, the run cannot support any
  verdict, and the report says so in its first line. Real data has no oracle: the paper profile has
  no positive control, and the first line says that instead.
- negative: `syn_shuffled` - `real`, the oracle images with their identity labels permuted: it must
  not read as a gain. Judged on the raw p (no correction), so that passing is the harder reading.
- compute-matched: `real_plus` - `real`, every synthetic slot of a batch filled with another
  augmented real draw: what the larger batch alone gives. The synthetic rows (`syn_cold`, `syn_rl`,
  `ours`) are also compared with `real_plus`, so that a gain is not a batch-size effect. Holm over
  the four benchmarks, read as gain / loss / no clear difference.
A variant that has not run reads "not run"; the toy-only controls read "not applicable" in `paper`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rgsyn import paths, stats
from rgsyn.report.formats import Table, scale_of
from rgsyn.report.inputs import DASH, DATASET_NAMES, HEADLINE, METRICS, NOT_APPLICABLE, NOT_RUN, Benchmark
from rgsyn.report.verdicts import diff_cell, fmt_p, mde_cell, seeds_cell

GAIN, LOSS, NO_DIFFERENCE = "gain", "loss", "no clear difference"
PASSES, FAILS = "passes: no gain", "fails: reads as a gain"


@dataclass(frozen=True)
class Control:
    key: str            # the DVC metrics file: control-<key>.json
    role: str
    better: str
    than: str
    expected: str
    toy_only: bool


CONTROLS = (
    Control("positive", "positive", "syn_oracle", "real", "gain (> 0)", True),
    Control("negative", "negative", "syn_shuffled", "real", "no gain", True),
    Control("compute-matched", "compute-matched", "real_plus", "real", "(batch-size effect)", False),
    *(Control(f"{v}-vs-real_plus", "synthetic vs compute-matched", v, "real_plus", "gain (> 0)", False)
      for v in ("syn_cold", "syn_rl", "ours")),
)


@dataclass(frozen=True)
class ControlRow:
    control: Control
    benchmark: str
    result: stats.Comparison | None     # None: not applicable in this profile
    p_holm: float | None
    reading: str
    decimals: int = 1

    def as_dict(self) -> dict:
        return {"control": self.control.key, "role": self.control.role, "benchmark": self.benchmark,
                "better": self.control.better, "than": self.control.than, "p_holm": self.p_holm,
                "reading": self.reading, **(self.result.as_dict() if self.result else {})}


def _compare(bench: Benchmark, better: str, than: str) -> stats.Comparison:
    k = HEADLINE[bench.name]
    scale = scale_of(METRICS[bench.name][k][1])
    return stats.compare({s: v * scale for s, v in bench.by_seed(better, k).items()},
                         {s: v * scale for s, v in bench.by_seed(than, k).items()})


def _decimals(bench: Benchmark) -> int:
    return 2 if scale_of(METRICS[bench.name][HEADLINE[bench.name]][1]) == 1.0 else bench.decimals


def _reading(ctl: Control, r: stats.Comparison, p_holm: float | None) -> str:
    if r.n == 0:
        return NOT_RUN
    if r.p is None:
        return "untested: n=1" if r.n == 1 else "untested: no spread"
    if ctl.key == "negative":                        # the raw p: passing is the harder reading
        return FAILS if r.p < stats.ALPHA and r.diff.mean > 0 else PASSES
    clear = p_holm is not None and p_holm < stats.ALPHA
    if ctl.key == "positive":
        return stats.INCONCLUSIVE if not clear else stats.REPRODUCED if r.diff.mean > 0 else stats.CONTRADICTED
    return NO_DIFFERENCE if not clear else GAIN if r.diff.mean > 0 else LOSS


def control_rows(benches: dict[str, Benchmark], profile: str) -> list[ControlRow]:
    rows = []
    for ctl in CONTROLS:
        if ctl.toy_only and profile == "paper":
            rows += [ControlRow(ctl, bn, None, None, NOT_APPLICABLE, _decimals(benches[bn])) for bn in paths.BENCHMARKS]
            continue
        results = [_compare(benches[bn], ctl.better, ctl.than) for bn in paths.BENCHMARKS]
        adjusted = stats.holm([r.p for r in results])
        rows += [ControlRow(ctl, bn, r, ph, _reading(ctl, r, ph), _decimals(benches[bn]))
                 for bn, r, ph in zip(paths.BENCHMARKS, results, adjusted)]
    return rows


def first_line(rows: list[ControlRow], profile: str) -> str:
    """The report's first statement: whether the positive control lets the verdicts be read."""
    if profile == "paper":
        return ("Profile paper: real data has no oracle, so no positive control guards the verdicts below; "
                "they rest on the paired tests alone.")
    positive = [r for r in rows if r.control.key == "positive"]
    failed = [f"{DATASET_NAMES[r.benchmark]} ({r.reading})" for r in positive if r.reading != stats.REPRODUCED]
    if failed:
        return ("This run cannot support any verdict: the positive control (syn_oracle − real) is not reproduced "
                f"on {', '.join(failed)}, after Holm over the four benchmarks.")
    line = ("Positive control reproduced on all four benchmarks (syn_oracle − real, Holm over the four): the run "
            "can detect a perfect generator's gain.")
    fails = [DATASET_NAMES[r.benchmark] for r in rows if r.control.key == "negative" and r.reading == FAILS]
    if fails:
        line += f" But the negative control (syn_shuffled − real) reads as a gain on {', '.join(fails)}."
    return line


def table_controls(rows: list[ControlRow], profile: str) -> Table:
    header = ["Control", "Benchmark", "Comparison", "Expected", "Suite Δ ± 95% CI", "Per-seed Δ", "n",
              "p (t-test)", "p (Holm, 4 benchmarks)", "Reading", "Detectable effect"]
    lines = []
    for r in rows:
        bn, k = r.benchmark, HEADLINE[r.benchmark]
        dec = r.decimals
        label = [r.control.role, DATASET_NAMES[bn], f"{r.control.better} − {r.control.than}, {METRICS[bn][k][0]}",
                 r.control.expected]
        if r.result is None:
            lines.append(label + [NOT_APPLICABLE] + [DASH] * 4 + [NOT_APPLICABLE, DASH])
            continue
        res = r.result
        lines.append(label + [diff_cell(res, dec), seeds_cell(res, dec), str(res.n), fmt_p(res.p),
                              DASH if r.control.key == "negative" else fmt_p(r.p_holm), r.reading,
                              mde_cell(res, dec)])
    notes = [
        "Positive: a perfect generator must read as a gain; reproduced = clear of 0 after Holm over the four "
        "benchmarks. Unless it is reproduced on all four, no verdict of this run can be trusted.",
        "Negative: the oracle images with permuted identity labels; passes unless its raw t-test (no "
        "correction, the stricter reading) shows a gain.",
        "Compute-matched: real data filling every synthetic slot of the batch. Synthetic rows against it: a "
        "gain over real_plus is not a batch-size effect. gain / loss: clear of 0 after Holm over the four "
        "benchmarks; no clear difference otherwise.",
        "Suite Δ, Per-seed Δ, p and Detectable effect as in the verdicts table (paired t-test over seeds, "
        "headline metric). not run: the variant has not run.",
    ]
    if profile == "paper":
        notes.append("Profile paper: real data has no oracle (no world to render new images of the same "
                     "identities), so the positive and negative controls are not applicable.")
    return Table("controls", "Controls: positive, negative and compute-matched", pd.DataFrame(lines, columns=header),
                 n_label_cols=4, notes=notes)


def control_metrics(rows: list[ControlRow]) -> dict[str, dict]:
    """{file name: content}: `control-<key>.json` = {"<benchmark>": reading}; the names sort before
    the headline and verdict files, so `dvc metrics show` opens with the controls."""
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(f"control-{r.control.key}.json", {})[r.benchmark] = r.reading
    return out
