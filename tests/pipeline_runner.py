"""Run the stages of dvc.yaml in one process, in DVC's dependency order.

The smoke regression uses this instead of `dvc repro` so it pays Python's import cost once rather
than once per stage; the stages, their order and their command lines still come from dvc.yaml
through DVC's own parser, so the test runs exactly what `dvc repro` would.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rgsyn import config

REPO = Path(__file__).resolve().parents[1]


def prepare(workdir: Path, profile: str = "smoke") -> Path:
    """A fresh project folder: dvc.yaml, the profile's params.yaml and the published numbers."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", workdir / "dvc.yaml")
    (workdir / "params.yaml").write_text(yaml.safe_dump(config.profile_dict(profile), sort_keys=False))
    for paper in (REPO / "benchmarks").glob("*/paper.yaml"):
        dst = workdir / "benchmarks" / paper.parent.name / "paper.yaml"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paper, dst)
    shutil.copy(REPO / "benchmarks" / "sweep_real_size.csv", workdir / "benchmarks")   # a dep of the report stage
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=workdir, check=True)
    return workdir


def stage_commands(workdir: Path) -> list[tuple[str, str]]:
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        graph = repo.index.graph.reverse(copy=True)  # edges dependency -> dependent
        order = nx.lexicographical_topological_sort(graph, key=lambda s: s.addressing)
        return [(s.name, s.cmd) for s in order]


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_all(workdir: Path, log=print) -> dict[str, float]:
    """Run every stage; return seconds per stage. A failing stage raises with its name."""
    from rgsyn.cli import main

    timings = {}
    for name, cmd in stage_commands(workdir):
        argv = shlex.split(cmd)
        assert argv[0] == "rgsyn", f"stage {name}: only `rgsyn` commands run in-process, got {cmd!r}"
        t0 = time.perf_counter()
        with _cwd(workdir):
            rc = main(argv[1:])
        if rc != 0:
            raise RuntimeError(f"stage {name} ({cmd}) exited {rc}")
        timings[name] = time.perf_counter() - t0
        log(f"{name}: {timings[name]:.1f}s")
    return timings


def dvc_repro_in_process(workdir: Path, log=print) -> dict[str, float]:
    """The real `dvc repro` (DVC's own graph, hashing, run cache, dvc.lock and cache) with each
    stage's `rgsyn ...` command run in this process instead of a shell, so the pipeline pays the
    import cost once. `dvc status` afterwards sees exactly what a shell-run `dvc repro` leaves."""
    from dvc.repo import Repo
    from dvc.stage import run as dvc_run

    from rgsyn.cli import main

    timings: dict[str, float] = {}

    def in_process(executable, cmd, **kwargs):
        from dvc.stage.exceptions import StageCmdFailedError

        argv = shlex.split(cmd)
        assert argv[0] == "rgsyn", f"only `rgsyn` commands run in-process, got {cmd!r}"
        t0 = time.perf_counter()
        with _cwd(Path(kwargs.get("cwd") or workdir)):
            rc = main(argv[1:])
        timings[cmd] = time.perf_counter() - t0
        log(f"{cmd}: {timings[cmd]:.1f}s")
        if rc != 0:
            raise StageCmdFailedError(cmd, rc)

    original = dvc_run._run
    dvc_run._run = in_process
    try:
        with _cwd(workdir), Repo(str(workdir)) as repo:
            repo.reproduce()
    finally:
        dvc_run._run = original
    return timings
