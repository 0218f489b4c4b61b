"""Resumable stages: checkpoints live in `.rgsyn/work/<key>/`, outside every DVC output.

DVC deletes a stage's declared outputs before it re-runs the stage, so a checkpoint kept inside
an output would be lost exactly when it is needed. A checkpoint carries a fingerprint of the
params that shaped it; a checkpoint made under other params is ignored, never resumed from.
Under several processes every rank loads the checkpoint, and only rank 0 saves and clears it.
A checkpoint that does not load (corrupt, truncated, not a dict) is a CheckpointError naming the
folder to delete to start the stage afresh, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rgsyn import distributed, io
from rgsyn.errors import CheckpointError

WORK_ROOT = Path(".rgsyn") / "work"


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_file(path: Path, expect: type, remedy: str, map_location: str = "cpu") -> Any:
    """`torch.load(weights_only=True)` of a file this project wrote under `.rgsyn/`; a file that
    is corrupt, truncated or holds something other than an `expect` is a CheckpointError naming
    it and saying what to do (`remedy`)."""
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:   # torch raises RuntimeError, UnpicklingError, EOFError, ... on a bad file
        # torch's first sentence says what failed; the rest can advise weights_only=False (unsafe)
        reason = " ".join(str(e).split()).split(". ")[0][:200]
        raise CheckpointError(f"{path} is corrupt or not a file this project wrote "
                              f"({type(e).__name__}: {reason}); {remedy}") from None
    if not isinstance(obj, expect):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a {expect.__name__}; {remedy}")
    return obj


class Checkpointer:
    """Save/load one stage's training state atomically; `key` names the stage instance."""

    def __init__(self, key: str, config: Any):
        self.dir = WORK_ROOT / key
        self.fp = fingerprint(config)
        self.path = self.dir / "checkpoint.pt"
        self.saved_at = time.monotonic()   # the stage's start, then its last save (rgsyn.downstream.loop)

    def load(self, map_location: str = "cpu") -> dict | None:
        """The saved state, or None when there is none or it was made under other params. A file
        that does not load as a dict is a CheckpointError saying which folder to delete."""
        if not self.path.is_file():
            return None
        state = load_file(self.path, dict, f"delete {self.dir} to start the stage afresh", map_location)
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
