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
