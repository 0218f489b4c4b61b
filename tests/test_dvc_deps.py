"""dvc.yaml's code deps follow the imports: each stage lists exactly the rgsyn files its command runs
(scripts/dvc_deps.py computes them; `--write` regenerates the lists)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dvc_deps", REPO / "scripts" / "dvc_deps.py")
dvc_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dvc_deps)

STAGES = dvc_deps.stage_bodies(dvc_deps.load((REPO / "dvc.yaml").read_text()))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_code_deps_are_its_import_closure(stage):
    body = STAGES[stage]
    want = set(dvc_deps.expected_code_deps(body["cmd"]))
    have = {d for d in body["deps"] if dvc_deps.is_code(d)}
    missing, surplus = sorted(want - have), sorted(have - want)
    assert not missing and not surplus, (
        f"dvc.yaml stage {stage} ({body['cmd']}): missing code deps {missing}, surplus {surplus}; "
        "run `python scripts/dvc_deps.py --write`")


def test_code_deps_are_files_that_exist():
    for stage, body in STAGES.items():
        for dep in body["deps"]:
            if dvc_deps.is_code(dep):
                assert (REPO / dep).is_file(), f"stage {stage}: {dep} is not a file (one module an entry)"


def test_report_edit_retrains_nothing():
    """The design's contract: no training, generation or RL stage runs report code."""
    for stage, body in STAGES.items():
        if "rgsyn report" in body["cmd"]:
            continue
        report = [d for d in body["deps"] if d.startswith(("rgsyn/report/", "rgsyn/stages/report.py"))]
        assert not report, f"stage {stage} depends on report code {report}"


def test_train_runs_the_readers_it_loads_images_with():
    train = set(dvc_deps.expected_code_deps("${launcher} rgsyn train --benchmark market1501"))
    assert {"rgsyn/data/market.py", "rgsyn/config.py", "rgsyn/io.py", "rgsyn/cli.py",
            "rgsyn/__main__.py"} <= train
    assert "rgsyn/estimate.py" not in train   # a lazy import of another command's handler


def test_check_passes_on_the_repo_and_write_is_idempotent(tmp_path):
    text = (REPO / "dvc.yaml").read_text()
    new, changed = dvc_deps.rewrite(text)
    assert changed == [] and new == text
    assert subprocess.run([sys.executable, str(REPO / "scripts" / "dvc_deps.py"), "--check"],
                          cwd=REPO, capture_output=True).returncode == 0


def test_write_replaces_only_the_code_entries(tmp_path):
    text = (REPO / "dvc.yaml").read_text()
    stale = text.replace("rgsyn/stages/collect.py, ", "rgsyn/estimate.py, ", 1)
    assert stale != text
    doc = dvc_deps.load(stale)
    assert dvc_deps.differences(doc) == {"collect": (["rgsyn/stages/collect.py"], ["rgsyn/estimate.py"])}
    new, changed = dvc_deps.rewrite(stale)
    assert changed == ["collect"] and new == text
    assert yaml.safe_load(new) == yaml.safe_load(text)


# ------------------------------------------------------------------------------- the closure itself
def _package(root: Path, files: dict[str, str]) -> Path:
    for name, src in files.items():
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(src))
    return root


@pytest.fixture
def fake(tmp_path):
    return _package(tmp_path, {
        "rgsyn/__init__.py": "",
        "rgsyn/cli.py": '''
            import importlib
            from rgsyn.errors import E

            def _stage(t):
                return importlib.import_module(t)

            def main():
                from rgsyn import clock
                parser(cmd_other)
                _stage("rgsyn.stages.x:run")

            def parser(handler):
                pass

            def cmd_other():
                from rgsyn import estimate
                _stage("rgsyn.heavy:run")
            ''',
        "rgsyn/errors.py": "",
        "rgsyn/clock.py": "",
        "rgsyn/estimate.py": "",
        "rgsyn/heavy.py": "",
        "rgsyn/stages/__init__.py": "",
        "rgsyn/stages/x.py": '''
            from typing import TYPE_CHECKING
            from . import helper
            if TYPE_CHECKING:
                from rgsyn import heavy

            def run():
                from rgsyn.lib import deep
            ''',
        "rgsyn/stages/helper.py": "",
        "rgsyn/lib/__init__.py": "",
        "rgsyn/lib/deep.py": "import rgsyn.lib.deeper\n",
        "rgsyn/lib/deeper.py": "",
        "rgsyn/lib/unused.py": "",
    })


def test_closure_follows_lazy_and_relative_imports_not_other_handlers(fake):
    mods = dvc_deps.closure(set(), ["main"], root=fake)
    files = dvc_deps.module_paths(mods, root=fake)
    assert files == ["rgsyn/__init__.py", "rgsyn/cli.py", "rgsyn/clock.py", "rgsyn/errors.py",
                     "rgsyn/lib/__init__.py", "rgsyn/lib/deep.py", "rgsyn/lib/deeper.py",
                     "rgsyn/stages/__init__.py", "rgsyn/stages/helper.py", "rgsyn/stages/x.py"]


def test_closure_of_a_handler_takes_its_lazy_imports_and_targets(fake):
    files = dvc_deps.module_paths(dvc_deps.closure(set(), ["cmd_other"], root=fake), root=fake)
    assert files == ["rgsyn/__init__.py", "rgsyn/cli.py", "rgsyn/errors.py", "rgsyn/estimate.py",
                     "rgsyn/heavy.py"]


def test_unknown_dispatcher_function_is_a_clear_error(fake):
    with pytest.raises(SystemExit, match="no function nope"):
        dvc_deps.closure(set(), ["nope"], root=fake)


def test_a_line_that_is_not_an_rgsyn_command_is_refused():
    with pytest.raises(ValueError, match="not an `rgsyn <command>` line"):
        dvc_deps.command_modules("python train.py")
    with pytest.raises(ValueError, match="neither in cli.STAGES"):
        dvc_deps.command_modules("rgsyn frobnicate")


def test_closure_covers_what_python_imports():
    """Cross-check against the interpreter: every rgsyn module that importing `rgsyn collect`'s code
    loads is in the static closure (which adds the imports inside functions)."""
    code = ("import sys, rgsyn.cli, rgsyn.stages.collect, rgsyn.warm, rgsyn.stage_clock, rgsyn.threads, "
            "rgsyn.config, rgsyn.distributed; print(' '.join(m for m in sys.modules if m.startswith('rgsyn')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    static = dvc_deps.command_modules("rgsyn collect --benchmark market1501")
    assert loaded and loaded <= static, sorted(loaded - static)
