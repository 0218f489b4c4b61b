"""The published claims, one verdict each: the comparisons a claim makes, how a composite claim is
decided, and Holm's correction within each benchmark's family of claims.

A claim is the main-table row `ours` against `real` on the benchmark's headline metric (published
value: the paper's ours row minus its real row, where both are public) or an entry of
`benchmarks/<name>/paper.yaml` `claims[]` (`rgsyn.report.inputs.claim_parts`). Each part is one
paired comparison over seeds in the published unit (`rgsyn.stats.compare`) with its own verdict:
- toy and smoke profiles: direction only (`rgsyn.stats.direction_verdict`), whatever the
  published size, because the toy world is not comparable in size with the paper's data;
- paper profile: a claim with a published number is judged against it (`rgsyn.stats.size_verdict`:
  consistent / smaller / larger / contradicted / inconclusive); a claim without one by direction.

A composite claim (several parts: "better on all four groups", "each reward term helps") gets one
verdict, an intersection-union test: it is reproduced (consistent) only if every part is, with
p = the largest part p (a part on the wrong side counts as p = 1). It is contradicted when some part
is clear of 0 on the wrong side after Bonferroni over its k parts (p = k · the smallest such p).
Otherwise it is inconclusive when a part is, or takes the parts' common verdict (e.g. all smaller),
or `mixed` when decided parts disagree (e.g. one consistent, one smaller): not reproduced.

Holm: within each benchmark, the claims that have a p form one family; a claim keeps its raw
verdict after the correction only if its Holm-adjusted p is below 0.05, else it reads inconclusive.
The size comparison (consistent / smaller / larger) stays on the raw 95% interval.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from rgsyn import paths, stats
from rgsyn.report.formats import scale_of
from rgsyn.report.inputs import HEADLINE, METRICS, Benchmark, claim_parts

NOT_RUN_VERDICT = "not run"
MIXED = "mixed"
MAIN_CLAIM_ID = "ours-vs-real"


@dataclass(frozen=True)
class Part:
    """One paired comparison better - than on one metric, in the published unit."""

    better: str
    than: str
    metric: str
    published: float | None            # the published difference; None: direction only
    result: stats.Comparison
    verdict: str

    def as_dict(self) -> dict:
        return {"better": self.better, "than": self.than, "metric": self.metric, "published": self.published,
                "verdict": self.verdict, **self.result.as_dict()}


@dataclass(frozen=True)
class Claim:
    """A published statement and the suite's one verdict for it, raw and after Holm."""

    benchmark: str
    id: str
    kind: str                          # "main table" or "claim"
    text: str
    parts: tuple[Part, ...]
    by_size: bool                      # judged against the published size (paper profile, signed claim)
    verdict: str                       # raw
    p: float | None                    # the p that decides the raw verdict
    p_holm: float | None = None
    verdict_holm: str | None = None
    decimals: int = 1

    @property
    def composite(self) -> bool:
        return len(self.parts) > 1

    def as_dict(self) -> dict:
        return {"benchmark": self.benchmark, "id": self.id, "kind": self.kind, "text": self.text,
                "composite": self.composite, "judged": "size" if self.by_size else "direction",
                "verdict": self.verdict, "p": self.p, "p_holm": self.p_holm, "verdict_holm": self.verdict_holm,
                "parts": [p.as_dict() for p in self.parts]}


def part_verdict(result: stats.Comparison, published: float | None, by_size: bool) -> str:
    if result.n == 0:
        return NOT_RUN_VERDICT
    if by_size and published is not None:
        return stats.size_verdict(result, published)
    return stats.direction_verdict(result, stats.expected_sign(published))


def _part(bench: Benchmark, better: str, than: str, metric: str, published: float | None, by_size: bool) -> Part:
    scale = scale_of(METRICS[bench.name][metric][1])
    hi = {s: v * scale for s, v in bench.by_seed(better, metric).items()}
    lo = {s: v * scale for s, v in bench.by_seed(than, metric).items()}
    result = stats.compare(hi, lo)
    return Part(better, than, metric, published, result, part_verdict(result, published, by_size))


def combine(parts: list[Part], by_size: bool) -> tuple[str, float | None]:
    """(verdict, deciding p) of a claim from its parts (the module docstring gives the rule)."""
    if len(parts) == 1:
        return parts[0].verdict, parts[0].result.p
    if any(p.verdict == NOT_RUN_VERDICT for p in parts):
        return NOT_RUN_VERDICT, None
    wrong = [p.result.p for p in parts if p.result.p is not None
             and p.result.diff.mean * stats.expected_sign(p.published) < 0]
    contra_p = min(1.0, len(parts) * min(wrong)) if wrong else None
    if contra_p is not None and contra_p < stats.ALPHA:
        return stats.CONTRADICTED, contra_p
    if any(p.result.p is None for p in parts):       # a part without a test (n = 1 or no spread)
        return stats.INCONCLUSIVE, None
    support_p = max(p.result.p if p.result.diff.mean * stats.expected_sign(p.published) > 0 else 1.0
                    for p in parts)
    verdicts = {p.verdict for p in parts}
    if verdicts <= set(stats.SUPPORTING):
        return (stats.CONSISTENT if by_size and stats.CONSISTENT in verdicts else stats.REPRODUCED), support_p
    if stats.INCONCLUSIVE in verdicts or stats.CONTRADICTED in verdicts:
        return stats.INCONCLUSIVE, support_p
    return (verdicts.pop() if len(verdicts) == 1 else MIXED), support_p


def _claim(bench: Benchmark, kind: str, cid: str, text: str, specs: list[dict], by_size_profile: bool) -> Claim:
    by_size = by_size_profile and any(s["value"] is not None for s in specs)
    parts = [_part(bench, s["better"], s["than"], s["metric"], None if s["value"] is None else float(s["value"]),
                   by_size) for s in specs]
    verdict, p = combine(parts, by_size)
    scale = scale_of(METRICS[bench.name][specs[0]["metric"]][1])
    return Claim(bench.name, cid, kind, " ".join(str(text).split()), tuple(parts), by_size, verdict, p,
                 decimals=2 if scale == 1.0 else bench.decimals)


def _published_row(bench: Benchmark, variant: str, metric: str) -> float | None:
    for row in (bench.paper or {}).get("rows") or []:
        if row.get("variant") == variant:
            v = (row.get("values") or {}).get(metric)
            return None if v is None else float(v)
    return None


def claim_id(claim: dict) -> str:
    if claim.get("id"):
        return str(claim["id"])
    parts = claim_parts(claim, {m for ms in METRICS.values() for m in ms})
    return f"{parts[0]['better']}-vs-{parts[0]['than']}" + ("" if len(parts) > 1 else f"-{parts[0]['metric']}")


def benchmark_claims(bench: Benchmark, profile: str) -> list[Claim]:
    """The main-table claim and the paper.yaml claims of one benchmark, raw verdicts."""
    by_size = profile == "paper"
    k = HEADLINE[bench.name]
    ours, real = _published_row(bench, "ours", k), _published_row(bench, "real", k)
    published = None if ours is None or real is None else round(ours - real, 6)
    out = [_claim(bench, "main table", MAIN_CLAIM_ID,
                  f"Ours beats the real-only baseline ({METRICS[bench.name][k][0]}, main table).",
                  [{"better": "ours", "than": "real", "metric": k, "value": published}], by_size)]
    for claim in (bench.paper or {}).get("claims") or []:
        specs = claim_parts(claim, set(METRICS[bench.name]), f"{bench.name} claim")
        out.append(_claim(bench, "claim", claim_id(claim), claim["text"], specs, by_size))
    return out


def adjusted(claims: list[Claim]) -> list[Claim]:
    """Holm within the list (one family): p_holm and the verdict after the correction."""
    ps = stats.holm([c.p for c in claims])
    out = []
    for c, ph in zip(claims, ps):
        keep = ph is not None and ph < stats.ALPHA
        out.append(replace(c, p_holm=ph, verdict_holm=c.verdict if keep or c.p is None else stats.INCONCLUSIVE))
    return out


def comparisons(benches: dict[str, Benchmark], profile: str = "toy") -> list[Claim]:
    """Every claim of every benchmark, Holm-corrected within each benchmark."""
    return [c for bn in paths.BENCHMARKS for c in adjusted(benchmark_claims(benches[bn], profile))]


def family_sizes(claims: list[Claim]) -> dict[str, int]:
    """Per benchmark, the number of claims with a test (the Holm family's m)."""
    out = {bn: 0 for bn in paths.BENCHMARKS}
    for c in claims:
        out[c.benchmark] += c.p is not None
    return out
