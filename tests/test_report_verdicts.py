"""The verdicts ("What reproduced"), the oracle ceiling and the compact DVC metrics, from hand-made
metrics files whose paired differences have a known answer."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rgsyn import config, io, paths
from rgsyn.report.oracle import table_oracle
from rgsyn.report.tables import load_benchmarks, table_generation
from rgsyn.report.verdicts import comparisons, metrics_files, table_verdicts

REPO_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SEEDS = ("seed0", "seed1", "seed2")
# Headline values (fractions) per variant and seed. Against `ours`:
#   real        ours - real = +4, +5, +6 points       -> reproduced
#   ours_no_sem ours - x    = -3, -3.5, -2.5          -> contradicted
#   ours_no_cov ours - x    = +2, -2, +0.5            -> inconclusive
#   ours_no_exp ours - x    = +1, +1, +1              -> reproduced (no spread)
#   syn_rl      ours - x    = -1, 0, +1               -> inconclusive; syn_rl - real = half the oracle gain
BASE = {"real": (0.40, 0.42, 0.44), "ours": (0.44, 0.47, 0.50), "ours_no_sem": (0.47, 0.505, 0.525),
        "ours_no_cov": (0.42, 0.49, 0.495), "ours_no_exp": (0.43, 0.46, 0.49),
        "syn_rl": (0.45, 0.47, 0.49), "syn_oracle": (0.50, 0.52, 0.54)}


def _run(bench: str, v: float) -> dict:
    if bench in ("market1501", "cuhk03"):
        return {"mAP": v, "rank1": v + 0.1}
    if bench == "casia_face":
        return {"lfw": v, "agedb": v, "calfw": v, "cfp_fp": v, "cplfw": v, "avg": v}
    return {"African": v, "Asian": v, "Caucasian": v, "Indian": v, "mean": v, "std": 0.0, "ser": 1.0}


def write_benchmarks(root: Path, seeds=SEEDS, oracle: bool = True) -> None:
    for bench in paths.BENCHMARKS:
        variants = {v: {s: _run(bench, vals[i]) for i, s in enumerate(seeds)}
                    for v, vals in BASE.items() if oracle or v != "syn_oracle"}
        generation = {}
        if bench in paths.TRAINED_BENCHMARKS:
            generation = {"rl-full": {"identity_accuracy": 0.25, "frechet": 9.5, "n_images": 96}}
            if oracle:
                generation["oracle"] = {"identity_accuracy": 0.875, "frechet": 1.25, "n_images": 96}
        io.write_json(root / paths.benchmark_metrics(bench), {"variants": variants, "generation": generation})
        shutil.copyfile(REPO_BENCHMARKS / bench / "paper.yaml", root / paths.benchmark_dir(bench) / "paper.yaml")


def _row(claims, bench: str, than: str, metric: str):
    return next(c for c in claims if c.benchmark == bench and c.than == than and c.metric == metric)


@pytest.fixture
def benches(tmp_path):
    write_benchmarks(tmp_path)
    return load_benchmarks(tmp_path)


def test_every_claim_and_the_main_table_row_is_compared(benches):
    claims = comparisons(benches)
    n_claims = sum(len(c["metrics"]) for b in benches.values() for c in b.paper["claims"])
    assert len(claims) == n_claims + len(paths.BENCHMARKS) == 21
    main = _row(claims, "market1501", "real", "mAP")
    assert main.kind == "main table" and main.published == pytest.approx(88.6 - 85.4)
    assert main.result.diff.mean == pytest.approx(5.0) and main.result.n == 3
    assert main.result.p == pytest.approx(0.25)          # 2 / 2^3: the smallest p with 3 seeds
    assert main.verdict == "reproduced"
    assert _row(claims, "cuhk03", "ours_no_sem", "mAP").verdict == "contradicted"
    assert _row(claims, "casia_face", "ours_no_cov", "avg").verdict == "inconclusive"
    # published +2.2 for ours - syn_rl on faces: the suite's -1, 0, +1 points
    sel = _row(claims, "casia_face", "syn_rl", "avg")
    assert sel.published == 2.2 and sel.result.diff.mean == pytest.approx(0.0) and sel.verdict == "inconclusive"
    assert _row(claims, "market1501", "ours_no_exp", "mAP").verdict == "reproduced"


def test_what_reproduced_table_cells(benches):
    claims = comparisons(benches)
    t = table_verdicts(claims, "toy")
    assert t.name == "what_reproduced" and "Published in CI" not in t.df.columns
    row = dict(zip(t.df.columns, t.df.iloc[0]))
    # differences 4, 5, 6: mean 5, s 1, half-width t_{0.975,2} / sqrt(3) = 2.48;
    # detectable (4.303 + 1.061) / sqrt(3) = 3.10
    assert row["Comparison"] == "ours − real, mAP" and row["Published"] == "+3.2"
    assert row["Suite Δ ± 95% CI"] == "+5.0 ± 2.5" and row["n"] == "3" and row["p"] == "0.250"
    assert row["Verdict"] == "reproduced" and row["Detectable effect"] == "3.1"
    # ours - real: 4 main-table rows + 7 RFW group claims; ours - ours_no_exp on 3 benchmarks
    assert t.notes[0] == "Summary: 14 reproduced, 3 contradicted, 4 inconclusive of 21 comparisons."
    paper = table_verdicts(claims, "paper")
    inside = dict(zip(paper.df.columns, paper.df.iloc[0]))["Published in CI"]
    assert inside == "yes"                               # 3.2 lies in 5.0 ± 2.48
    cells = {(r[0], r[2], r[3]): r[-1] for r in paper.df.itertuples(index=False)}
    assert cells[("Face (5 sets)", "ours − syn_rl, Avg", "+2.20")] == "yes"     # 2.2 in 0 ± 2.48
    assert cells[("RFW", "ours − real, African", "+1.00")] == "no"              # 1.0 outside 5 ± 2.48
    assert cells[("RFW", "ours − real, African", "> 0 (no number)")] == "—"


def test_one_seed_reads_inconclusive_without_an_interval(tmp_path):
    write_benchmarks(tmp_path, seeds=("seed0",))
    claims = comparisons(load_benchmarks(tmp_path))
    assert {c.verdict for c in claims} == {"inconclusive"}
    t = table_verdicts(claims, "paper")
    row = dict(zip(t.df.columns, t.df.iloc[0]))
    assert row["Suite Δ ± 95% CI"] == "+4.0 (no interval)" and row["p"] == "—"
    assert row["Verdict"] == "inconclusive (n=1)" and row["Detectable effect"] == "—"
    assert row["Published in CI"] == "—"
    oracle = table_oracle(load_benchmarks(tmp_path), "toy").df
    assert oracle.iloc[0, 2] == "+10.0 (no interval)" and oracle.iloc[0, 4] == "50% (n=1)"


def test_not_run_when_a_variant_is_missing(tmp_path):
    write_benchmarks(tmp_path)
    f = tmp_path / paths.benchmark_metrics("market1501")
    m = io.read_json(f)
    del m["variants"]["ours_no_exp"]
    io.write_json(f, m)
    claims = comparisons(load_benchmarks(tmp_path))
    c = _row(claims, "market1501", "ours_no_exp", "mAP")
    assert c.verdict == "not run" and c.result.n == 0
    assert "not run" in table_verdicts(claims, "toy").df.iloc[3].tolist()


def test_oracle_gain_and_recovered_share(benches):
    t = table_oracle(benches, "toy")
    row = dict(zip(t.df.columns, t.df.iloc[0]))
    # oracle - real = 10, 10, 10 points; syn_rl - real = 5, 5, 5: half of it, no uncertainty
    assert row["Oracle gain (oracle − real)"] == "+10.0 ± 0.0" and row["n"] == "3"
    assert row["Share recovered by syn_rl"] == "50% [50%, 50%]"
    # ours - real = 4, 5, 6 against 10, 10, 10: 50% with Fieller's interval 50 ± 24.8
    assert row["Share recovered by ours"] == "50% [25%, 75%]"
    paper = table_oracle(benches, "paper").df
    assert set(paper.iloc[:, 2]) == {"not applicable"} and set(paper.iloc[:, 5]) == {"not applicable"}


def test_oracle_is_not_run_without_the_variant(tmp_path):
    write_benchmarks(tmp_path, oracle=False)
    b = load_benchmarks(tmp_path)
    assert set(table_oracle(b, "toy").df.iloc[:, 2]) == {"not run"}
    gen = table_generation(b, "paper").df
    assert list(gen.loc[gen["Generator"] == "oracle (toy-world renders)", "Fréchet ↓"]) == ["not applicable"] * 3


def test_generation_table_puts_oracle_images_next_to_synthetic(benches):
    g = table_generation(benches, "toy").df
    market = g[g["Benchmark"] == "Market-1501"]
    assert list(market["Generator"]) == ["rl-full", "oracle (toy-world renders)"]
    assert list(market["Identity acc., gold (%)"]) == ["25.0", "87.5"] and list(market["Fréchet ↓"]) == ["9.50", "1.25"]


def test_compact_dvc_metrics(benches):
    params = config.Params()
    variants = [*params.variants, *params.syn_variants, "syn_oracle"]
    files = metrics_files(benches, comparisons(benches), variants)
    assert "headline-real_re.json" not in files                       # never ran: no row
    real = files["headline-real.json"]
    assert real["market1501"] == 42.0 and real["market1501_ci"] == 4.97   # t_{0.975,2} * 2 / sqrt(3), to 2 decimals
    assert real["n"] == 3 and set(real) == {"n", *paths.BENCHMARKS, *(f"{b}_ci" for b in paths.BENCHMARKS)}
    assert files["verdict-ours-vs-real.json"] == {b: "reproduced" for b in paths.BENCHMARKS}
    assert files["verdict-ours-vs-real-Indian.json"] == {"rfw_bias": "reproduced"}
    assert files["verdict-ours-vs-ours_no_sem.json"]["cuhk03"] == "contradicted"
    assert files["verdict-ours-vs-ours_no_cov.json"]["casia_face"] == "inconclusive"
    # compact: flat files, and every key is a column the headline files already have
    columns = set(real)
    assert all(set(c) <= columns and not any(isinstance(v, dict) for v in c.values()) for c in files.values())
