"""Which downstream task trains what: `benchmark_task` for the models of the `train` stage,
`domain_task` for the identity encoders of the `encoder` stage. `rgsyn estimate` sizes both stages
with the same tasks (their `real_batch`, `steps` and params section)."""
from __future__ import annotations

import dataclasses

from rgsyn.errors import ConfigError
from rgsyn.paths import TRAINED_BENCHMARKS


def benchmark_task(params, benchmark: str):
    """The downstream task of `benchmark`: faces (CosFace, `face` params) for casia_face, else person re-ID."""
    if benchmark not in TRAINED_BENCHMARKS:
        raise ConfigError(f"train: unknown benchmark {benchmark!r}; choose one of {list(TRAINED_BENCHMARKS)}")
    if benchmark == "casia_face":
        from rgsyn.downstream.face import FaceTask

        return FaceTask(params.face)
    from rgsyn.downstream.reid import ReidTask

    return ReidTask(params.reid)


def domain_task(params, domain: str):
    """The task (`ReidTask` for persons, `FaceTask` for faces) the identity encoder of `domain`
    (persons | faces) trains by, with `encoder.epochs` (when set) and no synthetic samples."""
    from rgsyn.downstream.face import FaceTask
    from rgsyn.downstream.reid import ReidTask

    task_cls, section = (ReidTask, params.reid) if domain == "persons" else (FaceTask, params.face)
    if params.encoder.epochs:   # counted in epochs of the encoder's split, whatever the section's `steps`
        section = dataclasses.replace(section, epochs=params.encoder.epochs, steps=0)
    return task_cls(dataclasses.replace(section, syn_per_batch=0))
