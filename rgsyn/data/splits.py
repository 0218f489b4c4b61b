"""The real training split of a benchmark: which images, with which identity, train benchmark B.

Every consumer asks here: the downstream `train` stage, the identity encoders, the generator's
real-image lists (oracle renders, generation metrics), the RL reward's real reference images and the
cost estimate's dataset sizes. One answer, so that they cannot disagree:

- market1501: `bounding_box_train/` of `data.paths.market1501` (junk `-1` excluded), identity = pid;
- cuhk03: `<data.paths.cuhk03_mode>/bounding_box_train/` of `data.paths.cuhk03`, identity = pid;
- casia_face: the identity folders of `data.paths.casia_face`, identity = folder name.

Records come in the reader's order (sorted by path). Labels are the identities sorted, numbered
0..C-1 (`TrainingSplit.label_map`); a synthetic set, whose files carry the real identity they were
generated for, maps onto the same labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from rgsyn.errors import DataError
from rgsyn.paths import TRAINED_BENCHMARKS


@dataclass(frozen=True)
class TrainingSplit:
    """A benchmark's real training records (`ReidRecord` or `FaceRecord`, in reader order)."""

    benchmark: str
    records: list

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def identities(self) -> list:
        """The identity of every record: the int pid (persons) or the folder name (faces)."""
        return [identity_of(r) for r in self.records]

    def label_map(self) -> dict:
        """identity -> label: the identities sorted, numbered from 0."""
        return label_map(self.identities)

    def __len__(self) -> int:
        return len(self.records)


def identity_of(record) -> Hashable:
    """A record's identity key: `pid` for a person record, `identity` for a face record."""
    return int(record.pid) if hasattr(record, "pid") else record.identity


def label_map(identities) -> dict:
    """identity -> label, the distinct identities sorted and numbered 0..C-1."""
    return {k: i for i, k in enumerate(sorted(set(identities)))}


def training_split(params, benchmark: str) -> TrainingSplit:
    """The real training split of `benchmark` (one of TRAINED_BENCHMARKS), read from `params.data.paths`."""
    p = params.data.paths
    if benchmark == "market1501":
        from rgsyn.data.market import read_market1501

        return TrainingSplit(benchmark, read_market1501(p.market1501, splits=("train",)).train)
    if benchmark == "cuhk03":
        from rgsyn.data.cuhk03 import read_cuhk03

        return TrainingSplit(benchmark, read_cuhk03(p.cuhk03, mode=p.cuhk03_mode, splits=("train",)).train)
    if benchmark == "casia_face":
        from rgsyn.data.faces import read_id_folders

        return TrainingSplit(benchmark, read_id_folders(p.casia_face))
    raise DataError(f"benchmark {benchmark!r} has no training split; choose one of {list(TRAINED_BENCHMARKS)}")
