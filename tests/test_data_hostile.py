"""The hostile-input corpus (tests/hostile_files.py) through the CLI, one child process per case:
`rgsyn data check` exits 2 with one error line naming the file (no traceback), within a time limit
(the cases that used to hang), within a bounded peak resident memory (the child's `ru_maxrss`, read
by a small parent process with `getrusage(RUSAGE_CHILDREN)`), and writes nothing outside its
working folder's `.rgsyn/`.

Memory bound: a hostile case may use at most `RSS_MARGIN_MB` more than the same benchmark's valid
folder (measured in the same way, in the same session). Measured on Linux, Python 3.11: valid
folders 32-52 MB, every hostile case 28-51 MB. Before the readers checked their input the 9-byte
memo-index pickle took 540 MB, a 9000x9000 PNG in a Market folder was decoded (420 MB), the
nested-tuple key crashed the process (SIGSEGV) and the RecordIO header of 3.4e38 never finished.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_files import CASES, VALID

REPO = Path(__file__).resolve().parents[1]
RSS_MARGIN_MB = 32          # hostile case peak RSS <= valid folder's peak RSS + this
TIMEOUT_S = 60              # a case that runs longer is a hang


# Runs the command given and prints its exit status and its peak RSS (KB). Measured from this small
# process rather than from pytest: on Linux a child's ru_maxrss starts from the RSS of the process
# it was forked from, so only a small parent lets the child's own peak show.
_MEASURE = """
import resource, subprocess, sys
try:
    code = subprocess.run(sys.argv[2:], timeout=float(sys.argv[1]), stdout=subprocess.DEVNULL).returncode
except subprocess.TimeoutExpired:
    code = 124
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_check(benchmark: str, root: Path, work: Path) -> tuple[int, str, float]:
    """(exit status, stderr, peak RSS in MB) of `rgsyn data check` in a child process run in
    `work`, with HOME and TMPDIR beside it so that stray writes are seen; 124 when it ran past
    `TIMEOUT_S` (then it was killed)."""
    work.mkdir(parents=True, exist_ok=True)
    for d in ("home", "tmp"):
        (work.parent / d).mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RGSYN_WARM": "0",
           "HOME": str(work.parent / "home"), "TMPDIR": str(work.parent / "tmp")}
    cmd = [sys.executable, "-m", "rgsyn.cli", "data", "check", "--benchmark", benchmark, "--root", str(root),
           "--profile", "toy"]
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(TIMEOUT_S), *cmd], cwd=work, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S + 60)
    code, rss_kb = proc.stdout.split()
    return int(code), proc.stderr, int(rss_kb) / 1024


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_dir()}


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory) -> dict[str, float]:
    """Peak RSS (MB) of `data check` on a valid folder of each benchmark; each must pass."""
    out = {}
    for benchmark, make in VALID.items():
        base = tmp_path_factory.mktemp(f"valid-{benchmark}")
        make(base / "data")
        code, err, rss = run_check(benchmark, base / "data", base / "work")
        assert code == 0, f"valid {benchmark} folder fails: {err}"
        out[benchmark] = rss
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_one_clear_error(name, tmp_path, baseline_rss):
    case = CASES[name]
    root = tmp_path / "data"
    case.make(root)
    before = tree(tmp_path)
    code, err, rss = run_check(case.benchmark, root, tmp_path / "work")
    assert code != 124, f"data check did not finish in {TIMEOUT_S} s"
    assert code == 2, f"exit {code} (expected 2); stderr: {err[-2000:]}"
    # stderr: progress bars, then the one-line error
    assert "Traceback" not in err and err.count("rgsyn data: error: ") == 1, err
    message = err[err.index("rgsyn data: error: "):].splitlines()[0]
    assert re.search(case.error, message), f"{message!r} does not match {case.error!r}"
    assert ".rgsyn" not in message.split(" (unpacked to ")[0]   # named by the dataset file, not a cache
    limit = baseline_rss[case.benchmark] + RSS_MARGIN_MB
    assert rss <= limit, f"peak RSS {rss:.0f} MB > {limit:.0f} MB (valid folder + {RSS_MARGIN_MB} MB)"
    after = tree(tmp_path)
    written = {k for k in after.keys() - before.keys() if not k.startswith(("work/.rgsyn", "stderr.txt"))}
    assert written == {"work", "home", "tmp"} - before.keys(), f"files written outside work/.rgsyn: {written}"
    changed = {k for k in before if k in after and after[k] != before[k] and not Path(tmp_path, k).is_dir()}
    assert not changed, f"dataset files changed: {changed}"
    leftovers = [p for p in (tmp_path / "work").rglob("*") if ".tmp-" in p.name]
    assert not leftovers, f"a half-written cache folder was left behind: {leftovers}"


def test_one_image_referenced_many_times_is_read_once(tmp_path, baseline_rss):
    """A valid .bin whose one image is referenced 20000 times: read as one bytes object, decoded
    once by `data check`, unpacked to one file by `read_verification` (not 20000 copies)."""
    from hostile_files import shared_image, verification
    from rgsyn.data import read_bin, read_verification

    verification(tmp_path / "data", shared_image(20_000))
    code, err, rss = run_check("verification", tmp_path / "data", tmp_path / "work")
    assert code == 0, err
    assert rss <= baseline_rss["verification"] + RSS_MARGIN_MB
    images, issame = read_bin(tmp_path / "data" / "lfw.bin")
    assert len(images) == 20_000 and len(issame) == 10_000 and all(b is images[0] for b in images)
    ps = read_verification(tmp_path / "data", "lfw", cache_dir=tmp_path / "cache")
    assert len(ps.pairs) == 10_000 and {a for a, _, _ in ps.pairs} == {ps.pairs[0][1]}
    written = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(written) == 2                                   # the image and the stamp
    assert sum(p.stat().st_size for p in written) <= (tmp_path / "data" / "lfw.bin").stat().st_size
