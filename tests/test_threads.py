"""The thread count of a stage: its param, else the environment, else its share of the cores.
The registry of running stages lives in the user's private runtime folder: marks another user
could plant (a folder of theirs, a symlink, a file that is not the user's) never count."""
import os
import stat
import tempfile

import pytest

from rgsyn import runtime_dir, threads


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    return tmp_path


def test_param_wins_then_env(clean, monkeypatch):
    assert threads.stage_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.stage_threads(0) == 2
    assert threads.stage_threads(5) == 5


def test_running_stages_share_the_cores(clean):
    threads.register()
    assert threads.stage_threads() == 8
    threads.register(os.getppid())          # a second live stage
    threads.register(2 ** 22 + 12345)       # a dead one: ignored and removed
    assert threads.running_stages() == 2
    assert threads.stage_threads() == 4
    assert not (threads.registry() / str(2 ** 22 + 12345)).exists()


def test_unrelated_load_does_not_change_the_thread_count(clean, monkeypatch):
    # the float results of CPU ops can depend on the thread count: a busy machine must not change
    # a stage's threads (and with them its metrics); only concurrent rgsyn stages share
    threads.register()
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (20.0, 0.0, 0.0))
    assert threads.stage_threads() == 8


@pytest.fixture
def torch_threads(monkeypatch):
    """torch's thread count and the OMP/MKL variables that `apply` writes, restored afterwards."""
    import torch

    for var in threads.THREAD_ENV:   # setenv records the original value (or its absence) for undo
        was = os.environ.get(var)
        monkeypatch.setenv(var, was or "")
        if was is None:
            monkeypatch.delenv(var)
    old = torch.get_num_threads()
    yield torch
    torch.set_num_threads(old)


def test_rebalance_follows_the_stages_running_now(clean, monkeypatch, torch_threads):
    torch = torch_threads
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf"), "wrote": None})
    monkeypatch.setattr(threads, "REBALANCE_EVERY", 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.apply() == 2 and torch.get_num_threads() == 2   # alone: both cores
    other = threads.register(os.getppid())                          # a second stage joins
    assert threads.rebalance() == 1 and torch.get_num_threads() == 1
    with threads.pinned(2):                                         # a stage's threads param
        assert threads.rebalance() is None and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    other.unlink()                                                  # it leaves: both cores again
    assert threads.rebalance() == 2 and torch.get_num_threads() == 2


def test_rebalance_never_overrides_the_environment_or_a_param(clean, monkeypatch, torch_threads):
    torch = torch_threads
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf"), "wrote": None})
    monkeypatch.setattr(threads, "REBALANCE_EVERY", 0.0)
    monkeypatch.setenv("RGSYN_THREADS", "3")
    assert threads.apply() == 3
    threads.register(os.getppid())
    assert threads.rebalance() is None and torch.get_num_threads() == 3
    monkeypatch.delenv("RGSYN_THREADS")
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert threads.apply(5) == 5
    assert threads.rebalance() is None and torch.get_num_threads() == 5


def test_rebalance_checks_at_most_once_per_interval(clean, monkeypatch, torch_threads):
    monkeypatch.setattr(threads, "_state", {"shared": True, "pinned": 0, "checked": float("-inf")})
    monkeypatch.setattr(threads, "REBALANCE_EVERY", 3600.0)
    threads.register()
    assert threads.rebalance() == 8
    threads.register(os.getppid())
    assert threads.rebalance() is None   # within the interval: no re-count


def test_a_later_stage_of_the_same_process_takes_its_own_share(clean, monkeypatch, torch_threads):
    # the smoke regression and the tests run stages in one process: the share that the first stage
    # wrote into OMP_NUM_THREADS (for its worker processes) must not pin every later stage
    torch = torch_threads
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf"), "wrote": None})
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    other = threads.register(os.getppid())              # another stage is running at the first start
    assert threads.apply() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    other.unlink()
    assert threads.apply() == 2 and torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # set by the user after that: a decision again
    assert threads.apply() == 1


def test_a_users_value_equal_to_the_share_stays_a_decision(clean, monkeypatch, torch_threads):
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf"), "wrote": None})
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.apply() == 2 and not threads._state["shared"]
    threads.register(os.getppid())                      # a second stage: the user's 2 still holds
    assert threads.apply() == 2


def test_the_registry_is_in_the_private_runtime_folder(clean):
    d = threads.registry()
    assert d == clean / f"rgsyn-{os.getuid()}" / "stages"
    for folder in (d, d.parent):
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()


def test_marks_that_are_not_the_users_own_files_do_not_count(clean):
    threads.register()
    d = threads.registry()
    victim = clean / "victim.txt"
    victim.write_text("mine\n")
    (d / str(os.getppid())).symlink_to(victim)          # a live pid, but a symlink
    os.mkfifo(d / "1")                                   # a live pid, but a FIFO
    assert threads.running_stages() == 1
    if os.geteuid() == 0:                                # a live pid, but another user's file
        (d / "2").touch()
        os.chown(d / "2", 65534, 65534)
        assert threads.running_stages() == 1
    mark = threads.register(os.getppid())                # replaces the symlink, never follows it
    assert not mark.is_symlink() and victim.read_text() == "mine\n"
    assert threads.running_stages() == 2


@pytest.mark.parametrize("kind", ["another owner", "mode 0777", "symlink", "stages mode 0777"])
def test_a_planted_registry_folder_is_refused_with_one_message(clean, kind, capsys, monkeypatch):
    monkeypatch.setattr(runtime_dir, "_told", set())
    folder = clean / f"rgsyn-{os.getuid()}"
    if kind == "symlink":
        (clean / "theirs").mkdir(mode=0o700)
        folder.symlink_to(clean / "theirs")
        planted = clean / "theirs" / "stages"
    else:
        folder.mkdir(mode=0o700)
        planted = folder / "stages"
    planted.mkdir(mode=0o700)
    if kind == "another owner":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another uid needs root")
        os.chown(folder, 65534, 65534)
    elif kind == "mode 0777":
        os.chmod(folder, 0o777)
    elif kind == "stages mode 0777":
        os.chmod(planted, 0o777)
    for pid in (os.getppid(), 1):                       # marks of live processes in the planted folder
        (planted / str(pid)).touch()
    assert threads.register() is None
    assert threads.running_stages() == 1 and threads.stage_threads() == 8
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rgsyn: ") and "shared thread count" in err[0], err
    assert sorted(os.listdir(planted)) == sorted([str(os.getppid()), "1"])   # nothing added
