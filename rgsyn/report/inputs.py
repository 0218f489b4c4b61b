"""The report's inputs: `benchmarks/*/metrics.json` (the suite's runs) and `benchmarks/*/paper.yaml`
(the published numbers), the metric keys and their units, and the suite's variant names."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rgsyn import io, paths
from rgsyn.errors import DataError

NOT_RUN = "not run"
NOT_RECOVERABLE = "n/r"
NOT_APPLICABLE = "not applicable"   # the oracle on real data: there is no world to render from
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
    "syn_oracle": "Real + oracle renders of the toy world (all)",
}
ORACLE_VARIANT, ORACLE_GENERATOR, ORACLE_LABEL = "syn_oracle", "oracle", "oracle (toy-world renders)"
# The headline metric of each benchmark: the ablation panels, the DVC headline metrics and the
# main-table comparison ours - real.
HEADLINE = {"market1501": "mAP", "cuhk03": "mAP", "casia_face": "avg", "rfw_bias": "mean"}
ABLATION_LABELS = {"ours": "Ours (full)", "syn_rl": "No selection", "ours_random_sel": "Random selection",
                   "ours_no_sem": "Without R_sem", "ours_no_cov": "Without R_cov", "ours_no_exp": "Without R_exp",
                   "real": "Real only"}
MAIN_VARIANTS = ("real", "real_re", "syn_cold", "syn_rl", "ours")
ABLATION_VARIANTS = ("ours", "syn_rl", "ours_random_sel", "ours_no_sem", "ours_no_cov", "ours_no_exp", "real")
ABLATION_COLUMNS = (("market1501", "mAP"), ("market1501", "rank1"), ("cuhk03", "mAP"), ("cuhk03", "rank1"),
                    ("casia_face", "avg"), ("rfw_bias", "mean"), ("rfw_bias", "ser"))
GENERATION_COLUMNS = {"identity_accuracy": ("Identity acc., gold (%)", 1, 100.0),
                      "identity_accuracy_reward": ("Identity acc., reward (%)", 1, 100.0), "frechet": ("Fréchet ↓", 2, 1.0), "density": ("Density", 3, 1.0),
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

    def seeds(self, variant: str) -> dict[str, dict]:
        return ((self.metrics or {}).get("variants") or {}).get(variant) or {}

    def by_seed(self, variant: str, key: str) -> dict[str, float]:
        """Per-seed finite values of one metric {seed name: value}, seeds in sorted order."""
        out = {}
        for seed in sorted(self.seeds(variant), key=_seed_order):
            v = (self.seeds(variant)[seed] or {}).get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[seed] = float(v)
        return out

    def values(self, variant: str, key: str) -> list[float]:
        """Per-seed values of one metric, seeds in sorted order; [] when not run."""
        return list(self.by_seed(variant, key).values())


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
        claim_parts(claim, known, f"{path}: claims[{i}]")
    return doc


def claim_parts(claim: dict, known: set[str], where: str = "claim") -> list[dict]:
    """The comparisons a paper.yaml claim makes, each {better, than, metric, value}. A claim names
    either `better`, `than` and `metrics` (several metrics: the claim holds on every one) or
    `all_of`, a list of {better, than, metric[, value]}; more than one part makes it a composite
    claim, which holds only if every part does. A part's value defaults to the claim's."""
    if not isinstance(claim, dict) or not claim.get("text"):
        raise DataError(f"{where}: expected a mapping with 'text'")
    value = claim.get("value")
    if "all_of" in claim:
        raw = claim["all_of"]
        if not isinstance(raw, list) or not raw or not all(isinstance(p, dict) for p in raw):
            raise DataError(f"{where}.all_of: expected a non-empty list of {{better, than, metric}}")
        parts = [{"better": p.get("better"), "than": p.get("than"), "metric": p.get("metric"),
                  "value": p.get("value", value)} for p in raw]
    else:
        metrics = claim.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise DataError(f"{where}: needs 'better', 'than' and a non-empty 'metrics' list, or 'all_of'")
        parts = [{"better": claim.get("better"), "than": claim.get("than"), "metric": m, "value": value}
                 for m in metrics]
    for j, p in enumerate(parts):
        if not p["better"] or not p["than"] or p["metric"] not in known:
            raise DataError(f"{where}: part {j} needs 'better', 'than' and a metric from {sorted(known)}, got {p}")
        if p["value"] is not None and (isinstance(p["value"], bool) or not isinstance(p["value"], (int, float))):
            raise DataError(f"{where}: part {j}: 'value' must be a number (published difference) or null")
    return parts


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
