"""`rgsyn encoder --domain persons|faces`: train the real-data-only identity encoders of a domain.

Two models per domain, trained by the downstream engine (`rgsyn.downstream.engine`, with the
domain's `ReidTask` / `FaceTask`) on real training data only, without synthetic samples:
- `reward` (seed `encoder.seed`): the features the multi-objective reward is computed on;
- `gold` (seed `encoder.gold_seed`): a held-out model of the same kind, never optimised against,
  used to watch for reward hacking.
persons = the Market-1501 and CUHK03 training splits together (rgsyn.data.splits; CUHK03 labels
offset after Market's); faces = the CASIA-style training split. `encoder.epochs` (when set)
replaces the section's epochs.

Each is saved to `paths.encoder_path(domain, which)` in the identity encoder format of
rgsyn.downstream.encoder (`save_identity_encoder`; loads with `load_identity_encoder`).
"""
from __future__ import annotations

import dataclasses

import torch

from rgsyn.downstream.encoder import save_identity_encoder
from rgsyn.downstream.tasks import domain_task
from rgsyn.errors import CheckpointError


def training_set(params, task, domain: str):
    """(images, number of identities) of a domain's real training splits, in one label space."""
    from rgsyn.data.splits import training_split
    from rgsyn.downstream.datasets import LabelledImages

    benchmarks = ("market1501", "cuhk03") if domain == "persons" else ("casia_face",)
    sets, offset = [], 0
    for bench in benchmarks:
        s, lm = task.training_set(training_split(params, bench))
        s.labels += offset
        offset += len(lm)
        sets.append(s)
    if len(sets) == 1:
        return sets[0], offset
    return LabelledImages(images=torch.cat([s.images for s in sets]), labels=torch.cat([s.labels for s in sets]),
                          camids=torch.cat([s.camids for s in sets]), pids=torch.cat([s.pids for s in sets])), offset


def run(params, domain: str) -> dict:
    """Train and save the reward and gold identity encoders of `domain` (persons | faces)."""
    from rgsyn import distributed, paths, threads, tracking
    from rgsyn.checkpoint import Checkpointer
    from rgsyn.downstream import engine

    if domain not in paths.DOMAINS:
        raise CheckpointError(f"encoder: unknown domain {domain!r}; choose one of {list(paths.DOMAINS)}")
    task = domain_task(params, domain)
    config = dataclasses.asdict(task.p)
    data, num_classes = training_set(params, task, domain)
    out = {}
    with tracking.stage_run(params, "encoder", run_name=f"encoder-{domain}") as run:
        tracking.log_params_section(run, params, "encoder", task.name)
        for which, seed in (("reward", params.encoder.seed), ("gold", params.encoder.gold_seed)):
            ck = Checkpointer(f"encoder-{domain}-{which}", {"config": config, "seed": seed, "n": len(data),
                                                            "classes": num_classes})
            on_step = lambda s, r, w=which: run.log_metrics({f"{w}.loss": r["loss"]}, step=s)  # noqa: E731
            with threads.pinned(task.p.threads):
                net, info = engine.train(task, data, num_classes, seed, device=params.device, checkpointer=ck,
                                         on_step=on_step, precision=params.compute.precision)
            if distributed.is_main():   # every rank holds the same weights; one writes them
                save_identity_encoder(paths.encoder_path(domain, which), net, task.name, config, num_classes)
            ck.clear()
            distributed.barrier()   # the file exists before any rank moves on
            run.log_metrics({f"{which}.train_seconds": info["train_seconds"]})
            out[which] = {"train_seconds": info["train_seconds"], "final_loss": info["history"][-1]["loss"],
                          "n_images": len(data), "n_classes": num_classes}
            if distributed.is_main():
                print(f"encoder {domain}/{which}: {len(data)} images, {num_classes} ids, "
                      f"{info['train_seconds']:.1f} s -> {paths.encoder_path(domain, which)}")
    return out
