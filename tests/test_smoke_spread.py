"""The tolerance rule of benchmarks/smoke_spread.py and the within-run comparisons it checks."""
from __future__ import annotations

import importlib.util
import math

import pytest

from pipeline_runner import REPO
from test_regression_smoke import derived_metrics, verify_results

_spec = importlib.util.spec_from_file_location("smoke_spread", REPO / "benchmarks" / "smoke_spread.py")
smoke_spread = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke_spread)



def test_derived_metrics_are_seed_means_and_paired_differences():
    m = {"variants.real.seed0.mAP": 0.2, "variants.real.seed1.mAP": 0.4,
         "variants.syn_oracle.seed0.mAP": 0.5, "variants.syn_oracle.seed1.mAP": 0.3,
         "generation.cold.frechet": 0.10, "generation.rl-full.frechet": 0.08}
    d = derived_metrics(m)
    assert d["seedmean.real.mAP"] == pytest.approx(0.3) and d["seedmean.syn_oracle.mAP"] == pytest.approx(0.4)
    assert d["paired.syn_oracle_minus_real.mAP"] == pytest.approx(0.1)
    assert d["paired.rl-full_minus_cold.frechet"] == pytest.approx(-0.02)
    assert "paired.real_minus_real.mAP" not in d and "paired.cold_minus_cold.frechet" not in d


def test_seed_spread_of_per_seed_values_and_their_mean():
    m = {"variants.v.seed0.rank1": 0.25, "variants.v.seed1.rank1": 0.5,
         "variants.real.seed0.rank1": 0.5, "variants.real.seed1.rank1": 0.5}
    assert smoke_spread.seed_spread(m, "variants.v.seed1.rank1") == 0.25
    assert smoke_spread.seed_spread(m, "seedmean.v.rank1") == pytest.approx(0.25 / math.sqrt(2))
    assert smoke_spread.seed_spread(m, "paired.v_minus_real.rank1") == pytest.approx(0.25 / math.sqrt(2))
    assert smoke_spread.seed_spread(m, "generation.cold.frechet") == 0.0


def records(*values_per_run):
    return [{"metrics": {b: dict(v) for b in smoke_spread.BENCHMARKS}} for v in values_per_run]


def test_goldens_rule_exact_counts_spread_tolerance_and_family_pooling():
    runs = records({"generation.cold.n_images": 32.0, "generation.cold.identity_accuracy_reward": 0.125,
                    "generation.oracle.identity_accuracy_reward": 0.5},
                   {"generation.cold.n_images": 32.0, "generation.cold.identity_accuracy_reward": 0.125,
                    "generation.oracle.identity_accuracy_reward": 0.4375})
    g = smoke_spread.goldens(runs)["cuhk03"]
    assert g["generation.cold.n_images"] == {"expected": 32.0, "tolerance": 0.0, "spread": 0.0}
    moved = g["generation.oracle.identity_accuracy_reward"]
    assert moved["expected"] == 0.5 and moved["tolerance"] == pytest.approx(1.5 * 0.0625)
    # did not move here, but its family did: it gets the family's tolerance
    assert g["generation.cold.identity_accuracy_reward"]["tolerance"] == pytest.approx(1.5 * 0.0625)
    # the generator difference moved as much as the oracle did
    assert g["paired.oracle_minus_cold.identity_accuracy_reward"]["tolerance"] == pytest.approx(1.5 * 0.0625)


def test_an_unmoved_share_gets_one_step_and_a_break_outside_the_spread_fails():
    runs = records({"generation.cold.identity_accuracy": 0.28125}, {"generation.cold.identity_accuracy": 0.28125})
    g = smoke_spread.goldens(runs)["market1501"]
    assert g["generation.cold.identity_accuracy"]["tolerance"] == pytest.approx(1 / 32)
    assert verify_results({"generation.cold.identity_accuracy": 0.3125}, g, "market1501") == []
    failures = verify_results({"generation.cold.identity_accuracy": 0.375}, g, "market1501")
    assert len(failures) == 1 and "generation.cold.identity_accuracy = 0.375" in failures[0]
