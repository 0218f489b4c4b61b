"""A stage's wall time as DVC sees it: from the start of its process to its end, imports included.

MLflow's start and end of a stage run miss what happens before the run opens (starting Python,
importing torch and the other libraries, reading params) and after it closes. The CLI takes the
process start (`process_start`) and, when the stage ends, adds two metrics to the stage's run:

  stage.process_seconds  = end of the stage - start of its process   (what DVC waited for)
  stage.startup_seconds  = start of the MLflow run - start of its process (the fixed cost before it)
  stage.warm             = 1 when the warm server ran it, else 0
  stage.runs             = the MLflow runs the stage opened (`train`: one per seed); all of these
                           are on its first run only

Under the warm server (`rgsyn.warm`) the process DVC started is the thin client; its start time
travels to the forked stage in `RGSYN_PROCESS_START`. When one Python process runs several stages
(the smoke test runs them in-process), only the first one counts from the process start; later
ones count from their own call.
"""
from __future__ import annotations

import os
import sys
import time

_state: dict = {"used": False, "start": None, "run": None, "runs": 0, "warm": False}


def _linux_process_start() -> float | None:
    """Start time of this process (/proc/self/stat field 22, in clock ticks after boot)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None


def process_start() -> float:
    """Epoch seconds at which the process that DVC started began (see the module docstring)."""
    env = os.environ.pop("RGSYN_PROCESS_START", None)
    if _state["used"]:
        return time.time()
    _state["used"] = True
    _state["warm"] = bool(env)
    if env:
        try:
            return float(env)
        except ValueError:
            pass
    return _linux_process_start() or time.time()


def begin(start: float | None = None) -> float:
    _state["start"] = process_start() if start is None else start
    _state["run"] = None
    return _state["start"]


def note_run(run_id: str, start_ms: int) -> None:
    """Called when a stage opens an MLflow run (`rgsyn.tracking.stage_run`). A stage that opens
    several (`train`: one per seed) records its times on the first one, with their number in
    `stage.runs`: its start-up is the time before the first run opened, and its process time
    counts once."""
    if _state["run"] is None or _state["start"] is None:   # outside a CLI stage: the newest run
        _state["run"], _state["runs"] = (run_id, start_ms), 1
    else:
        _state["runs"] += 1


def finish() -> dict[str, float] | None:
    """Log the stage's process wall time and start-up time to its MLflow run (if it opened one)."""
    run, start = _state["run"], _state["start"]
    _state["run"], _state["start"] = None, None
    if run is None or start is None or "mlflow" not in sys.modules:
        return None
    now = time.time()
    values = {"stage.process_seconds": now - start, "stage.startup_seconds": max(0.0, run[1] / 1000.0 - start),
              "stage.warm": float(_state["warm"]),   # 1: forked by the warm server (rgsyn.warm)
              "stage.runs": float(_state["runs"])}
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        stamp = int(now * 1000)
        MlflowClient().log_batch(run[0], metrics=[Metric(k, v, stamp, 0) for k, v in values.items()])
    except Exception as e:  # noqa: BLE001 - timing is a report extra; never fail a finished stage for it
        print(f"rgsyn: could not record the stage's wall time in MLflow ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    return values


def run_seconds(run, key: str) -> float:
    """`stage.process_seconds` / `stage.startup_seconds` of an MLflow run; NaN for runs made before
    they were recorded."""
    metrics = getattr(run.data, "metrics", None) or {}
    v = metrics.get(f"stage.{key}")
    return float(v) if v is not None else float("nan")
