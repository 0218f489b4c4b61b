"""The warm server: a stage sent to it runs in a forked child with the client's cwd, env and fds,
and the client exits with the stage's status (here: a bad-params error, exit 2, one line).

It is reachable by its owner only, survives stalled and malformed clients, and gives the result a
cold start gives. The second-user cases make a real user with `useradd` (as root; skipped
otherwise) and run its processes with the system Python (the standard library is all they need).
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from rgsyn import runtime_dir, warm, warm_server

REPO = Path(__file__).resolve().parents[1]
OTHER_PYTHON = "/usr/bin/python3"
STAGE = ["collect", "--benchmark", "cuhk03", "--params", "bad.yaml"]


def _env(tmp: Path, **extra) -> dict:
    env = dict(os.environ, TMPDIR=str(tmp), RGSYN_WARM="1", RGSYN_WARM_IDLE="60",
               RGSYN_WARM_PRELOAD="yaml", PYTHONPATH=str(REPO))
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(extra)
    return env


def _work(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    (work / "bad.yaml").write_text("seeds: []\n")
    return work


def _socket_for(env: dict, cwd: Path) -> Path:
    """The socket a `python -m rgsyn.cli` stage started in `cwd` looks for (cwd is on its sys.path)."""
    out = subprocess.run([sys.executable, "-c", "from rgsyn import warm; print(warm.socket_path())"],
                         env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=60)
    return Path(out.stdout.strip())


def _stage(work: Path, env: dict, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rgsyn.cli", *STAGE], cwd=work, env=dict(env, **extra),
                          capture_output=True, text=True, timeout=120)


def _wait_for(path: Path, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def _server(env: dict, sock: Path, log: Path):
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "rgsyn.warm_server", "--socket", str(sock)], env=env,
                                stdout=f, stderr=f, cwd="/")
    try:
        assert _wait_for(sock), log.read_text()
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _stop_server_on(sock: Path) -> None:
    """Stop a server that a stage started in the background (found by its socket's peer pid)."""
    assert _wait_for(sock), f"no server started on {sock}"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 30
    while time.time() < deadline and runtime_dir.pid_alive(pid):
        time.sleep(0.1)


def _cold_error(work: Path, env: dict) -> str:
    out = _stage(work, env, RGSYN_WARM="0")
    assert out.returncode == 2
    return out.stderr.strip()


def test_stage_runs_in_a_child_of_the_server_and_returns_its_status(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    assert sock.parent == tmp_path / f"rgsyn-{os.getuid()}"
    assert stat.S_IMODE(os.lstat(sock.parent).st_mode) == 0o700
    log = tmp_path / "server.log"
    with _server(env, sock, log):
        out = _stage(work, env)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rgsyn collect: error: ") and "seeds" in lines[0]
        text = log.read_text()
        assert f"rgsyn {' '.join(STAGE)} in {work}" in text
        assert "exit 2" in text
        assert not sock.with_suffix(".starting").exists()    # the client found the server: none started


def test_the_runtime_folder_is_xdg_runtime_dir_when_set(tmp_path, monkeypatch):
    xdg = tmp_path / "run"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert warm.socket_path().parent == xdg / "rgsyn"
    assert stat.S_IMODE(os.lstat(xdg / "rgsyn").st_mode) == 0o700


def _plant(kind: str, folder: Path, tmp: Path) -> None:
    if kind == "symlink":   # to a folder that looks private; the link itself is refused
        target = tmp / "elsewhere"
        target.mkdir(mode=0o700)
        folder.symlink_to(target)
        return
    folder.mkdir(mode=0o755 if kind == "mode 0755" else 0o777)
    os.chmod(folder, 0o755 if kind == "mode 0755" else 0o777)
    if kind == "another owner":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another uid needs root")
        os.chown(folder, 65534, 65534)


@pytest.mark.parametrize("kind", ["another owner", "mode 0755", "symlink"])
def test_a_planted_folder_makes_the_stage_run_cold_with_one_message(tmp_path, kind):
    env, work = _env(tmp_path), _work(tmp_path)
    folder = tmp_path / f"rgsyn-{os.getuid()}"
    _plant(kind, folder, tmp_path)
    out = _stage(work, env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    refusals = [line for line in lines if line.startswith("rgsyn: refusing the runtime folder: ")]
    assert len(refusals) == 1 and str(folder) in refusals[0], out.stderr
    assert [line for line in lines if line not in refusals] == [_cold_error(work, env)]
    assert os.listdir(folder) == []   # no socket, marker or log put into it


def test_a_symlinked_log_is_not_followed(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    sock.with_suffix(".log").symlink_to(victim)
    out = _stage(work, env)
    assert out.returncode == 2
    assert "is a symlink" in out.stderr and "runs in its own process" in out.stderr
    assert victim.read_text() == "mine\n"
    assert not sock.with_suffix(".starting").exists() and not sock.exists()


@pytest.mark.parametrize("marker", ["pid of another process", "old and unreadable", "symlink", "folder"])
def test_a_planted_start_marker_does_not_stop_the_server_starting(tmp_path, marker):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    starting = sock.with_suffix(".starting")
    if marker == "pid of another process":
        starting.write_text("1")
    elif marker == "old and unreadable":
        starting.write_text("not a pid")
        os.utime(starting, (time.time() - 3600,) * 2)
    elif marker == "symlink":
        (tmp_path / "victim.txt").write_text("mine\n")
        starting.symlink_to(tmp_path / "victim.txt")
    else:
        starting.mkdir()
    out = _stage(work, env)     # finds no server: starts one, runs cold
    assert out.returncode == 2, out.stderr
    try:
        assert _wait_for(sock), sock.with_suffix(".log").read_text()
    finally:
        _stop_server_on(sock)
    if marker == "symlink":
        assert (tmp_path / "victim.txt").read_text() == "mine\n"


def _request(work: Path, **override) -> dict:
    req = {"argv": STAGE, "cwd": str(work), "env": dict(os.environ), "path": sys.path,
           "entry": "rgsyn.cli:main", "settings": warm.process_settings()}
    req.update(override)
    return req


def _ask(sock: Path, payload: bytes, fds: list[int], timeout: float = 30) -> bytes:
    """Send one raw request and read the answer until the server closes the connection."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        socket.send_fds(s, [payload], fds) if fds else s.sendall(payload)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        return answer


def _fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_bad_requests_get_an_error_and_leak_no_descriptor(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    with _server(env, sock, tmp_path / "server.log") as server:
        null = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
        try:
            _ask(sock, b"{\n", null)   # let the server settle (lazy imports of its error path)
            before, mine = _fd_count(server.pid), _fd_count()
            cases = [(b"not json\n", null, "not valid JSON"), (b"[1, 2]\n", null, "not a JSON object"),
                     (json.dumps({k: v for k, v in _request(work).items() if k != "argv"}).encode() + b"\n",
                      null, "has no 'argv'"),
                     (json.dumps(_request(work, argv=[])).encode() + b"\n", null, "'argv' is not valid"),
                     (json.dumps(_request(work, entry="os:system")).encode() + b"\n", null, "'entry' is not valid"),
                     (json.dumps(_request(work)).encode() + b"\n", [], "carries 0 descriptors")]
            for payload, fds, expected in cases * 3:
                answer = _ask(sock, payload, fds).decode()
                assert answer.startswith("error ") and expected in answer, answer
            assert _fd_count(server.pid) == before
            assert _fd_count() == mine
        finally:
            for fd in null:
                os.close(fd)
        assert server.poll() is None
        assert _stage(work, env).returncode == 2   # and it still serves
    assert "exit 2" in (tmp_path / "server.log").read_text()


def test_a_stalled_client_does_not_block_the_next_stage(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    log = tmp_path / "server.log"
    with _server(env, sock, log), socket.socket(socket.AF_UNIX) as silent, socket.socket(socket.AF_UNIX) as half:
        silent.connect(str(sock))
        half.connect(str(sock))
        half.sendall(b'{"argv": ["col')
        t0 = time.monotonic()
        out = _stage(work, env)
        assert out.returncode == 2 and time.monotonic() - t0 < 60
        assert f"rgsyn {' '.join(STAGE)} in {work}" in log.read_text()   # served, not run cold
        silent.settimeout(warm_server.REQUEST_SECONDS + 20)
        answer = silent.recv(4096)
        assert answer.startswith(b"error no whole request within"), answer
        assert silent.recv(4096) == b""


def test_a_server_that_never_answers_does_not_hold_the_client(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(warm, "HANDSHAKE_SECONDS", 1.0)
    sock = warm.socket_path()
    with socket.socket(socket.AF_UNIX) as mute:     # ours, listening, never answering
        mute.bind(str(sock))
        mute.listen(1)
        before, t0 = _fd_count(), time.monotonic()
        assert warm.run_stage(STAGE, time.time(), lambda argv: 0) is None   # the caller runs it cold
        assert time.monotonic() - t0 < 10 and _fd_count() == before
        conn, _ = mute.accept()
        with conn:
            conn.settimeout(5)
            assert conn.recv(1 << 20).startswith(b'{"argv": ["collect"')


def test_the_child_takes_the_clients_umask(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    sock = _socket_for(env, work)
    out = work / "toy.yaml"
    settings = dict(warm.process_settings(), umask=0o027)
    req = _request(work, argv=["params", "--profile", "toy", "--out", str(out)], settings=settings,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    with _server(env, sock, tmp_path / "server.log"):
        null = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
        try:
            answer = _ask(sock, json.dumps(req).encode() + b"\n", null, timeout=120).decode()
        finally:
            for fd in null:
                os.close(fd)
    assert answer.startswith("pid ") and answer.splitlines()[-1] == "rc 0", answer
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_import_environment_and_every_sys_path_entry_key_the_server(monkeypatch, tmp_path):
    for var in [k for k in os.environ if k.startswith(warm.IMPORT_ENV)]:
        if var not in ("PATH", "HOME"):
            monkeypatch.delenv(var)
    base = warm.server_key()
    keys = set()
    for var, value in [("PYTHONPATH", "/elsewhere"), ("HF_HOME", str(tmp_path)), ("HF_HUB_OFFLINE", "1"),
                       ("TRANSFORMERS_OFFLINE", "1"), ("TORCH_HOME", str(tmp_path)),
                       ("MLFLOW_TRACKING_URI", "sqlite:///x.db"), ("OMP_NUM_THREADS", "3"),
                       ("PYTHONHASHSEED", "0"), ("LC_ALL", "C")]:
        with monkeypatch.context() as m:
            m.setenv(var, value)
            keys.add(warm.server_key())
    assert len(keys) == 9 and base not in keys
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")   # changes no import
    assert warm.server_key() == base
    monkeypatch.syspath_prepend(str(tmp_path))  # a folder outside site-packages
    assert warm.server_key() != base


def test_a_stage_with_another_pythonpath_imports_what_a_cold_start_imports(tmp_path):
    env, work = _env(tmp_path), _work(tmp_path)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "yaml.py").write_text("raise ImportError('the yaml of the shadow folder')\n")
    other = _env(tmp_path, PYTHONPATH=f"{shadow}{os.pathsep}{REPO}")
    other_sock = _socket_for(other, work)
    with _server(env, _socket_for(env, work), tmp_path / "server.log"):
        warm_run = _stage(work, other)
        try:
            cold_run = _stage(work, other, RGSYN_WARM="0")
            assert other_sock != _socket_for(env, work)
            assert warm_run.returncode == cold_run.returncode != 2
            assert "the yaml of the shadow folder" in warm_run.stderr
            assert "rgsyn collect" not in (tmp_path / "server.log").read_text()
        finally:
            _stop_server_on(other_sock)   # the one the shadowed stage started for its own key


def test_a_child_with_an_idle_thread_pool_ends(tmp_path):
    """A stage that used a concurrent.futures pool (MLflow's artifact uploads, in `rgsyn report`)
    leaves an idle non-daemon worker; the child must still end (it used to wait on it for ever)."""
    pid = os.fork()
    if pid == 0:   # the forked stage child
        import concurrent.futures

        try:
            pool = concurrent.futures.ThreadPoolExecutor(1)
            pool.submit(time.sleep, 0.05).result()
            warm_server._join_threads()
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


# ---------------------------------------------------------------- a second local user

@pytest.fixture
def other_user():
    """A real second user (made with useradd, removed afterwards); skipped unless root."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not os.access(OTHER_PYTHON, os.X_OK):
        pytest.skip("making a second user needs root, useradd and a system Python")
    name = f"rgsyn-t{uuid.uuid4().hex[:10]}"
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True, timeout=60,
                   capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], timeout=60, capture_output=True)


@pytest.fixture
def shared_tmp():
    """A temp dir a second user can reach (pytest's own is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="rgsyn-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as(user, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([OTHER_PYTHON, "-I", "-c", script, *args], user=user.pw_uid, group=user.pw_gid,
                            extra_groups=[], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Its output once it ends; killed if it has not ended within `timeout` (a test never hangs)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=30)


LISTENER = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)
print("ready", flush=True); s.settimeout(60)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.settimeout(5); got = b""
    try:
        while (chunk := c.recv(65536)):
            got += chunk
    except OSError:
        pass
    print(f"got {len(got)}", flush=True)
"""


def test_a_socket_of_another_user_gets_nothing_and_the_stage_runs_cold(other_user, shared_tmp):
    env, work = _env(shared_tmp), _work(shared_tmp)
    sock = _socket_for(env, work)
    drop = shared_tmp / "drop"
    drop.mkdir(mode=0o777)
    os.chmod(drop, 0o777)
    listener = _as(other_user, LISTENER, str(drop / "s.sock"))
    try:
        assert listener.stdout.readline().strip() == "ready", listener.stderr.read()
        os.rename(drop / "s.sock", sock)     # their socket where ours belongs
        owned = _stage(work, env)
        os.lchown(sock, 0, 0)                 # made to look like ours: the listener is still theirs
        peer = _stage(work, env)
    finally:
        listener.terminate()
        got, _ = _finish(listener, 30)
    for out in (owned, peer):
        assert out.returncode == 2 and "runs in its own process" in out.stderr, out.stderr
        assert out.stderr.strip().splitlines()[-1] == _cold_error(work, env)
    assert "not a socket of yours" in owned.stderr
    assert f"runs as uid {other_user.pw_uid}, not as you" in peer.stderr
    assert got.split() == ["got", "0"]   # one connection (the peer check), not a byte sent


CLIENT = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
req = {"argv": ["params", "--profile", "toy", "--out", sys.argv[2]], "cwd": "/", "env": {}, "path": sys.path,
       "entry": "rgsyn.cli:main", "settings": {"umask": 0, "nice": 0, "affinity": None, "rlimits": {}}}
try:
    socket.send_fds(s, [json.dumps(req).encode() + b"\\n"], [0, 1, 2])
    print(repr(s.recv(4096)))
except OSError as e:
    print(type(e).__name__)
"""


def test_a_peer_of_another_user_is_refused_before_its_request_is_read(other_user, shared_tmp):
    env, work = _env(shared_tmp), _work(shared_tmp)
    sock = _socket_for(env, work)
    log = shared_tmp / "server.log"
    written = shared_tmp / "drop" / "owned.yaml"
    written.parent.mkdir(mode=0o777)
    os.chmod(written.parent, 0o777)
    with _server(env, sock, log):
        os.chmod(sock.parent, 0o777)   # as a permissive umask would leave them
        os.chmod(sock, 0o777)
        client = _as(other_user, CLIENT, str(sock), str(written))
        out, err = _finish(client)
        os.chmod(sock.parent, 0o700)
    assert out.strip() in ("b''", "ConnectionResetError", "BrokenPipeError"), err
    assert f"refused a connection from uid {other_user.pw_uid}" in log.read_text()
    assert "pid " not in log.read_text() and not written.exists()
