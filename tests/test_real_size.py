"""Paired gains of the real-data-size sweep and its figure."""
import math

import pytest

from rgsyn.real_size import gain_figure, paired_interval, summary


def _rows(real, oracle, size=2, bench="market1501"):
    out = [{"benchmark": bench, "real_per_id": size, "variant": "real", "rule": "", "seed": s, "metric": "mAP",
            "value": v} for s, v in enumerate(real)]
    out += [{"benchmark": bench, "real_per_id": size, "variant": "syn_oracle", "rule": "batch_ids", "seed": s,
             "metric": "mAP", "value": v} for s, v in enumerate(oracle)]
    return out


def test_constant_difference_has_a_zero_width_interval():
    s = summary(_rows([0.1, 0.3, 0.2], [0.15, 0.35, 0.25]))[0]
    assert s["n"] == 3 and s["gain"] == pytest.approx(0.05)
    assert s["lo"] == pytest.approx(0.05) and s["hi"] == pytest.approx(0.05)


def test_interval_matches_the_t_quantile():
    # d = (1, 2, 3): mean 2, sd 1, t_{0.975,2} = 4.302653
    mean, lo, hi = paired_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and lo < 0 < hi


def test_pairs_only_seeds_both_rows_have(tmp_path):
    rows = _rows([0.1, 0.2, 0.3], [0.2, 0.3])
    s = summary(rows)[0]
    assert s["n"] == 2 and s["gain"] == pytest.approx(0.1)
    rows += _rows([0.5, 0.5], [0.4, 0.45], size=4)
    out = gain_figure(rows, tmp_path / "f.png")
    assert out.is_file() and out.stat().st_size > 1000
