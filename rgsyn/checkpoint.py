"""Resumable stages: checkpoints live in `.rgsyn/work/<key>/`, outside every DVC output.

DVC deletes a stage's declared outputs before it re-runs the stage, so a checkpoint kept inside
an output would be lost exactly when it is needed. A checkpoint carries a fingerprint of the
params that shaped it; a checkpoint made under other params is ignored, never resumed from.
Under several processes every rank loads the checkpoint, and only rank 0 saves and clears it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rgsyn import distributed, io

WORK_ROOT = Path(".rgsyn") / "work"


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpointer:
    """Save/load one stage's training state atomically; `key` names the stage instance."""

    def __init__(self, key: str, config: Any):
        self.dir = WORK_ROOT / key
        self.fp = fingerprint(config)
        self.path = self.dir / "checkpoint.pt"
        self.saved_at = time.monotonic()   # the stage's start, then its last save (rgsyn.downstream.loop)

    def load(self, map_location: str = "cpu") -> dict | None:
        import torch

        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location=map_location, weights_only=True)
        if state.get("_fingerprint") != self.fp:
            return None
        return state

    def save(self, state: dict) -> None:
        if not distributed.is_main():
            return
        io.torch_save(self.path, {**state, "_fingerprint": self.fp})

    def clear(self) -> None:
        if not distributed.is_main():
            return
        shutil.rmtree(self.dir, ignore_errors=True)
