"""The thread count of a stage: its param, else the environment, else its share of the cores."""
import os

import pytest

from rgsyn import threads


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(threads.tempfile, "tempdir", str(tmp_path))
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
