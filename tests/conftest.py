"""Shared pytest options: `--runslow` opts into slow tests, `--regen-goldens` rewrites the exact
goldens (tests/golden_exact.json) instead of comparing against them. The smoke goldens
(benchmarks/<name>/golden_smoke.json) need a measured spread, so they come from
`python benchmarks/smoke_spread.py OUT --write-goldens`, not from one test run."""
from __future__ import annotations

import os

import pytest

# Stages that tests start as `python -m rgsyn.cli ...` run in their own process, never through (or
# starting) a warm server that would outlive the test run; tests/test_warm.py tests the server.
os.environ.setdefault("RGSYN_WARM", "0")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--regen-goldens", action="store_true", default=False,
                     help="regenerate tests/golden_exact.json instead of checking it (the smoke goldens: "
                          "benchmarks/smoke_spread.py --write-goldens)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    """An isolated MLflow store and working directory for a stage test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path
