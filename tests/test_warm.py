"""The warm server: a stage sent to it runs in a forked child with the client's cwd, env and fds,
and the client exits with the stage's status (here: a bad-params error, exit 2, one line)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path):
    return dict(os.environ, TMPDIR=str(tmp_path), RGSYN_WARM="1", RGSYN_WARM_IDLE="60",
                RGSYN_WARM_PRELOAD="yaml", PYTHONPATH=str(REPO))


def test_stage_runs_in_a_child_of_the_server_and_returns_its_status(tmp_path):
    env = _env(tmp_path)
    sock = Path(subprocess.run([sys.executable, "-c", "from rgsyn import warm; print(warm.socket_path())"],
                               env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert str(sock).startswith(str(tmp_path))
    log = tmp_path / "server.log"
    with open(log, "w") as f:
        server = subprocess.Popen([sys.executable, "-m", "rgsyn.warm", "--socket", str(sock)], env=env,
                                  stdout=f, stderr=f, cwd="/")
    try:
        for _ in range(600):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists(), log.read_text()
        work = tmp_path / "work"
        work.mkdir()
        (work / "bad.yaml").write_text("seeds: []\n")
        out = subprocess.run([sys.executable, "-m", "rgsyn.cli", "collect", "--benchmark", "cuhk03",
                              "--params", "bad.yaml"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rgsyn collect: error: ") and "seeds" in lines[0]
        text = log.read_text()
        assert f"rgsyn collect --benchmark cuhk03 --params bad.yaml in {work}" in text
        assert "exit 2" in text
        assert not sock.with_suffix(".starting").exists()    # the client found the server: none started
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_child_with_an_idle_thread_pool_ends(tmp_path):
    """A stage that used a concurrent.futures pool (MLflow's artifact uploads, in `rgsyn report`)
    leaves an idle non-daemon worker; the child must still end (it used to wait on it for ever)."""
    from rgsyn import warm

    pid = os.fork()
    if pid == 0:   # the forked stage child
        import concurrent.futures

        try:
            pool = concurrent.futures.ThreadPoolExecutor(1)
            pool.submit(time.sleep, 0.05).result()
            warm._join_threads()
        except BaseException:
            os._exit(1)
        os._exit(0)
    deadline = time.time() + 30
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the child did not end: it waits on the pool's idle worker")
