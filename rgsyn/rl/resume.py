"""Checkpoints of the RL stage: what one holds and how a run resumes from it.

Every ``rl.checkpoint_every`` updates the stage saves the LoRA tensors, the optimizer state, the
number of updates done, the torch RNG state, the curve rows so far and the frozen first-rollout
reward statistics (``rgsyn.checkpoint.Checkpointer``, outside the DVC outputs, atomic). The key
covers the rl and sampler params, the seed and the cold start's hash, so a checkpoint of other
settings is never resumed. Every rollout is a function of (seed, step) (``rgsyn.rl.rollout``), so a
resumed run reproduces the uninterrupted one, under any process count.
"""
from __future__ import annotations

import torch

from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.generator.bundle import checkpoint_sha256


def rl_checkpointer(params: Params, domain: str, rewards: str, coldstart) -> Checkpointer:
    cfg = to_dict(params)
    return Checkpointer(f"rl-{domain}-{rewards}", {"rl": cfg["rl"], "sampler": cfg["sampler"],
                                                  "seed": int(params.generator_seed),
                                                  "coldstart": checkpoint_sha256(coldstart)})


def save_state(ck: Checkpointer, transformer, optimizer, done: int, rows: list[dict], ref_stats) -> None:
    ck.save({"lora": {n: p.detach().cpu() for n, p in transformer.named_parameters() if "lora_" in n},
             "optimizer": optimizer.state_dict(), "step": done, "rng": torch.get_rng_state(),
             "rows": rows, "ref_stats": ref_stats})


def restore_state(state: dict, transformer, optimizer) -> tuple[int, list[dict], dict | None]:
    """Load a saved state into the LoRA and the optimizer and the torch RNG; returns (updates
    done, curve rows, reference reward statistics)."""
    by_name = dict(transformer.named_parameters())
    with torch.no_grad():
        for n in (n for n in by_name if "lora_" in n):
            by_name[n].copy_(state["lora"][n])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return int(state["step"]), list(state["rows"]), state["ref_stats"]
