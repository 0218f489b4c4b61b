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
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf")})
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
    monkeypatch.setattr(threads, "_state", {"shared": False, "pinned": 0, "checked": float("-inf")})
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
