"""The report's tables: numbers from fake metrics.json files (two seeds) beside the published ones
from the repository's paper.yaml files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from rgsyn import config, io, paths
from rgsyn.errors import DataError
from rgsyn.report.inputs import METRICS, claim_parts
from rgsyn.report.tables import (build_tables, load_benchmarks, load_paper, table_ablation, table_face,
                                 table_generation, table_reid, table_rfw, to_latex, to_markdown, write_tables)

REPO_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ALL_VARIANTS = [*config.Params().variants, *getattr(config.Params(), "syn_variants", {})]


def _reid(v: float) -> dict:
    return {"mAP": v, "rank1": v + 0.2, "rank5": v + 0.3, "rank10": v + 0.35}


def _face(v: float) -> dict:
    d = {"lfw": v + 0.1, "agedb": v, "calfw": v + 0.02, "cfp_fp": v + 0.04, "cplfw": v - 0.02}
    d["avg"] = sum(d.values()) / 5
    return d


def _rfw(v: float) -> dict:
    g = {"African": v, "Asian": v + 0.02, "Caucasian": v + 0.06, "Indian": v + 0.04}
    errs = [1 - x for x in g.values()]
    return {**g, "mean": sum(g.values()) / 4, "std": 0.0258, "ser": max(errs) / min(errs)}


def write_fake_benchmarks(root: Path, drop: dict[str, set[str]] | None = None) -> None:
    """metrics.json for every benchmark: two seeds per variant, distinct values per variant,
    plus the repository's paper.yaml files. `drop`: variants left out per benchmark."""
    drop = drop or {}
    offsets = {v: 0.01 * i for i, v in enumerate(ALL_VARIANTS)}
    makers = {"market1501": (_reid, 0.40), "cuhk03": (_reid, 0.30), "casia_face": (_face, 0.70),
              "rfw_bias": (_rfw, 0.60)}
    for bench, (make, base) in makers.items():
        variants = {v: {"seed0": make(base + offsets[v]), "seed1": make(base + offsets[v] + 0.02)}
                    for v in ALL_VARIANTS if v not in drop.get(bench, set())}
        generation = {}
        if bench in paths.TRAINED_BENCHMARKS:
            generation = {"cold": {"frechet": 12.5, "density": 0.8, "coverage": 0.55, "nn_sim_mean": 0.42,
                                   "nn_sim_max": 0.91, "nn_sim_share_above": 0.0125, "nn_threshold": 0.85,
                                   "n_images": 96},
                          "rl-full": {"frechet": 9.25, "density": 1.1, "coverage": 0.65, "nn_sim_mean": 0.47,
                                      "nn_sim_max": 0.93, "nn_sim_share_above": 0.025, "nn_threshold": 0.85,
                                      "n_images": 96, "mean_reward_sem": 0.731}}
        io.write_json(root / paths.benchmark_metrics(bench), {"variants": variants, "generation": generation})
        shutil.copyfile(REPO_BENCHMARKS / bench / "paper.yaml", root / paths.benchmark_dir(bench) / "paper.yaml")


def _line(table, method_prefix: str, source: str | None = None, offset: int = 0) -> list[str]:
    """The cells of the row of `table` whose label starts with method_prefix (offset: following
    lines). A list, because the stacked tables repeat column names across benchmarks."""
    df = table.df
    idx = [i for i, m in enumerate(df.iloc[:, 0]) if str(m).startswith(method_prefix)]
    assert idx, f"no row {method_prefix!r} in {table.name}"
    row = df.iloc[idx[0] + offset]
    if source is not None:
        assert row.iloc[1] == source
    return list(row)


@pytest.fixture
def benches(tmp_path):
    write_fake_benchmarks(tmp_path, drop={"cuhk03": {"real_re"}})
    return load_benchmarks(tmp_path)


def test_reid_table_mean_std_delta_and_not_run(benches):
    t = table_reid(benches, "toy")
    cols = list(t.df.columns)
    assert cols[:2] == ["Method", "Source"] and cols[2:] == ["mAP", "R-1", "mAP", "R-1"]
    assert t.groups == [("Market-1501", 2), ("CUHK03-NP", 2)]
    # Market real: seeds 0.40 and 0.42 -> 41.0 ± 12.7: sample std 1.414, standard error 1.0, times
    # t_{0.975, 1} = 12.706 (the half-width of the 95% t-interval with two seeds)
    suite = _line(t, "ResNet-50 base [real]", "suite (toy)", 0)
    assert suite[2] == "41.0 ± 12.7 (n=2)"
    paper = _line(t, "ResNet-50 base [real]", "paper", 1)
    assert paper[2:] == ["85.4", "n/r", "74.1", "76.5"]
    delta = _line(t, "ResNet-50 base [real]", "Δ", 2)
    # 41.0 - 85.4 = -44.4; R-1 published value not recoverable -> no delta; CUHK03 31.0 - 74.1 = -43.1, R-1 51.0 - 76.5 = -25.5
    assert delta[2:] == ["-44.4", "—", "-43.1", "-25.5"]
    # real_re was not run on CUHK03: 'not run', never a number; its Market cells are filled
    re_suite = _line(t, "Random Erasing [real_re]", "suite (toy)")
    assert re_suite[4:] == ["not run", "not run"] and re_suite[2] != "not run"
    assert _line(t, "Random Erasing [real_re]", "Δ", 2)[4:] == ["—", "—"]


def test_reid_table_reported_baselines_and_suite_only_rows(benches):
    t = table_reid(benches, "toy")
    for method, values in {"FineGPR": ["82.4", "92.6", "36.4", "37.9"], "GIF-SD": ["74.9", "88.9", "71.7", "74.6"],
                           "IDiff": ["85.4", "94.4", "73.1", "75.4"]}.items():
        row = _line(t, method, "reported")
        assert row[2:] == values
    # suite variants without a published row appear once, before Ours, with their own numbers
    labels = list(t.df.iloc[:, 0])
    assert labels.index(next(m for m in labels if "[syn_rl]" in m)) < labels.index("Ours [ours]")
    assert labels.index("ResNet-50 base [real]") < labels.index("Random Erasing [real_re]")
    ours = _line(t, "Ours [ours]", "suite (toy)")
    # ours offset = 0.01 * index of 'ours' in the variant list
    v = 0.40 + 0.01 * ALL_VARIANTS.index("ours")
    assert ours[2] == f"{(v + 0.01) * 100:.1f} ± 12.7 (n=2)"


def test_face_and_rfw_tables(benches):
    face = table_face(benches, "toy")
    assert list(face.df.columns[2:]) == ["LFW", "AgeDB", "CALFW", "CFP-FP", "CPLFW", "Avg"]
    real = _line(face, "Real subset [real]", "suite (toy)")
    assert real[2] == "81.00 ± 12.71 (n=2)"     # lfw: 0.80 and 0.82
    assert _line(face, "Real subset [real]", "Δ", 2)[2] == f"{81.00 - 91.58:.2f}"
    assert [_line(face, m, "reported")[2] for m in ("DCFace", "IDiff-Face", "NegFaceDiff")] \
        == ["87.97", "90.65", "91.70"]
    rfw = table_rfw(benches, "toy")
    assert list(rfw.df.columns[2:]) == ["African", "Asian", "Caucasian", "Indian", "Mean", "Std", "SER"]
    row = _line(rfw, "Real subset [real]", "suite (toy)")
    # SER stays a ratio: errors 0.40/0.34 and 0.38/0.32 -> 1.176, 1.1875 -> mean 1.18, half-width
    # 12.706 * 0.00813 / sqrt(2) = 0.073
    assert row[-1] == "1.18 ± 0.07 (n=2)"
    assert row[-2] == "2.58 ± 0.00 (n=2)"      # std over groups, in points
    ours_delta = _line(rfw, "Ours [ours]", "Δ", 2)
    v = 0.60 + 0.01 * ALL_VARIANTS.index("ours") + 0.01 + 0.03   # seed mean + mean group offset
    assert ours_delta[6] == f"{v * 100 - 69.78:+.2f}"
    # a row whose published values are all unknown has no Δ line
    assert _line(rfw, "Real subset [real]", None, 2)[0] == "Real + random erasing [real_re]"


def test_ablation(benches):
    t = table_ablation(benches, ALL_VARIANTS + ["ours_extra"])
    assert t.groups == [("Market-1501", 2), ("CUHK03-NP", 2), ("Face (5 sets)", 1), ("RFW", 2)]
    assert list(t.df.columns) == ["Variant", "mAP", "R-1", "mAP", "R-1", "Avg", "Mean", "SER"]
    assert t.df.iloc[0, 0].endswith("[ours]")
    assert t.df.iloc[0, 1].endswith("± 12.7 (n=2)")
    no_sem = next(list(r) for r in t.df.itertuples(index=False) if r[0].endswith("[ours_no_sem]"))
    diff = (ALL_VARIANTS.index("ours_no_sem") - ALL_VARIANTS.index("ours")) * 1.0
    assert no_sem[1].endswith(f"({diff:+.1f})")
    assert t.df.iloc[-1, 0] == "ours_extra [ours_extra]" and set(t.df.iloc[-1, 1:]) == {"not run"}


def test_generation_and_privacy(benches):
    g = table_generation(benches)
    row = next(dict(zip(g.df.columns, r)) for r in g.df.itertuples(index=False) if r[1] == "rl-full")
    assert row["Fréchet ↓"] == "9.25" and row["Coverage"] == "0.650" and row["Images"] == "96"
    assert row["Identity acc., gold (%)"] == "not run"
    cold = next(dict(zip(g.df.columns, r)) for r in g.df.itertuples(index=False) if r[1] == "cold")
    assert cold["Mean R_sem"] == "not run"
    assert set(g.df["Benchmark"]) == {"Market-1501", "CUHK03-NP", "Face (5 sets)"}
    tables = {t.name: t for t in build_tables(benches, "toy")}
    priv = tables["privacy"].df
    assert list(priv.loc[priv["Generator"] == "rl-full", "Share > τ (%)"])[0] == "2.5"


def test_markdown_and_latex(benches, tmp_path):
    tables = build_tables(benches, "toy")
    written = write_tables(tables, tmp_path / "out")
    assert len(written) == 2 * len(tables) and all(p.stat().st_size > 0 for p in written)
    md = (tmp_path / "out" / "table1_reid.md").read_text()
    assert "Market-1501 mAP" in md and "41.0 ± 12.7 (n=2)" in md and "reported" in md and "not run" in md
    assert [t.name for t in tables[:2]] == ["controls", "what_reproduced"]
    tex = to_latex(next(t for t in tables if t.name == "table1_reid"))
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\caption{person re-ID, mAP and R-1 (\%)}" in tex and r"\label{tab:table1_reid}" in tex
    assert r"\multicolumn{2}{c}{Market-1501}" in tex and r"\cmidrule(lr){3-4}" in tex
    assert r"41.0 $\pm$ 12.7 (n=2)" in tex and r" & $-$44.4 & " in tex and r"ResNet-50 base [real]" in tex and "$\\Delta$" in tex
    assert "[syn\\_rl]" in tex and "[syn_rl]" not in tex
    assert r"\begin{tabular}{lp{5cm}lrrrrrrllr}" in to_latex(tables[1])
    assert len(tables[1].df.columns) == len("lp{5cm}lrrrrrrllr") - len("p{5cm}") + 1     # one spec per column


def test_missing_seed_is_marked_and_references_listed(tmp_path):
    write_fake_benchmarks(tmp_path)
    f = tmp_path / paths.benchmark_metrics("market1501")
    m = io.read_json(f)
    del m["variants"]["ours"]["seed1"]
    io.write_json(f, m)
    benches = load_benchmarks(tmp_path)
    ours = _line(table_reid(benches, "toy"), "Ours [ours]", "suite (toy)")
    v = 0.40 + 0.01 * ALL_VARIANTS.index("ours")
    assert ours[2] == f"{v * 100:.1f} (n=1)" and ours[4].endswith("± 12.7 (n=2)")
    refs = {t.name: t for t in build_tables(benches, "toy")}["references"].df
    bot = refs[refs["System"] == "BoT strong baseline, ResNet-50"]
    assert list(bot["Published (%)"]) == ["mAP 85.9, R-1 94.5"]


def test_missing_metrics_file_is_not_run(tmp_path):
    write_fake_benchmarks(tmp_path)
    (tmp_path / paths.benchmark_metrics("cuhk03")).unlink()
    t = table_reid(load_benchmarks(tmp_path), "toy")
    ours = _line(t, "Ours [ours]", "suite (toy)")
    assert ours[4:] == ["not run", "not run"] and ours[2] != "not run"
    assert any("cuhk03/metrics.json is missing" in n for n in t.notes)
    gen = to_markdown(table_generation(load_benchmarks(tmp_path)))
    assert "CUHK03-NP" not in gen and "Market-1501" in gen


def test_paper_yaml_validation(tmp_path):
    good = yaml.safe_load((REPO_BENCHMARKS / "market1501" / "paper.yaml").read_text())
    bad = dict(good, rows=[dict(good["rows"][0], values={"mAP": 1.0, "top1": 2.0})])
    p = tmp_path / "paper.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(DataError, match=r"rows\[0\]\.values: unknown metric 'top1'"):
        load_paper(p, "market1501")
    p.write_text(yaml.safe_dump(dict(good, rows=[dict(good["rows"][2], reported=False)])))
    with pytest.raises(DataError, match="FineGPR"):
        load_paper(p, "market1501")
    part = {"better": "ours", "than": "real", "metric": "top1"}
    p.write_text(yaml.safe_dump(dict(good, claims=[{"id": "x", "text": "t", "all_of": [part]}])))
    with pytest.raises(DataError, match=r"claims\[0\]: part 0 needs"):
        load_paper(p, "market1501")
    p.write_text(yaml.safe_dump(dict(good, claims=[{"id": "x", "text": "t", "better": "ours", "than": "real"}])))
    with pytest.raises(DataError, match="non-empty 'metrics' list, or 'all_of'"):
        load_paper(p, "market1501")


@pytest.mark.parametrize("bench", paths.BENCHMARKS)
def test_repository_paper_yaml(bench):
    doc = load_paper(REPO_BENCHMARKS / bench / "paper.yaml", bench)
    mapping = {r["method"]: r["variant"] for r in doc["rows"]}
    assert mapping.get("Ours") == "ours"
    assert all(v is None or v in ALL_VARIANTS for v in mapping.values())
    reported = {r["method"] for r in doc["rows"] if r["reported"]}
    expected = {"market1501": {"FineGPR", "GIF-SD", "IDiff"}, "cuhk03": {"FineGPR", "GIF-SD", "IDiff"},
                "casia_face": {"DCFace", "IDiff-Face", "NegFaceDiff"},
                "rfw_bias": {"DCFace", "IDiff-Face", "NegFaceDiff"}}[bench]
    assert reported == expected
    assert all(r["source"] for r in doc["rows"])
    ids = [claim["id"] for claim in doc.get("claims") or []]
    assert len(ids) == len(set(ids)) and "ours-vs-real" not in ids      # the main-table claim's id
    for claim in doc.get("claims") or []:
        for part in claim_parts(claim, set(METRICS[bench])):
            assert part["better"] in ALL_VARIANTS and part["than"] in ALL_VARIANTS


def test_numbers_that_round_to_zero_have_no_minus_sign():
    from rgsyn.report.tables import fmt_delta, fmt_num

    assert fmt_num(-0.02, 1) == "0.0" and fmt_num(-0.4, 0) == "0" and fmt_num(-0.06, 1) == "-0.1"
    assert fmt_delta(-0.004, 2) == "+0.00" and fmt_delta(-1.25, 1) == "-1.2"
    assert fmt_num(-10.0, 1) == "-10.0"
