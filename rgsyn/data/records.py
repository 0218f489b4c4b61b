"""Plain records the dataset readers return. Readers only list files; they never decode images."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReidRecord:
    """One person image: `pid` as written in the file name, `camid` 0-based (file name c1 -> 0)."""

    path: str
    pid: int
    camid: int


@dataclass
class ReidSplits:
    train: list[ReidRecord] = field(default_factory=list)
    query: list[ReidRecord] = field(default_factory=list)
    gallery: list[ReidRecord] = field(default_factory=list)

    def split(self, name: str) -> list[ReidRecord]:
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """{"train": {"ids": .., "images": ..}, ...}; ids count distinct pids (0000 distractors too)."""
        return {name: {"ids": len({r.pid for r in recs}), "images": len(recs)}
                for name in ("train", "query", "gallery") if (recs := self.split(name))}


@dataclass(frozen=True)
class FaceRecord:
    """One face image of a training identity; `identity` is its folder name."""

    path: str
    identity: str


@dataclass
class PairSet:
    """A verification set: (path_a, path_b, same_identity) in file order, `n_folds` folds of
    `fold_size` consecutive pairs (the LFW 10-fold protocol). Without a header (RFW, .bin) the
    count may not divide: then the first `len % n_folds` folds hold one pair more."""

    pairs: list[tuple[str, str, bool]]
    n_folds: int
    fold_size: int

    def counts(self) -> dict[str, int]:
        n_same = sum(1 for p in self.pairs if p[2])
        return {"pairs": len(self.pairs), "matched": n_same, "mismatched": len(self.pairs) - n_same,
                "folds": self.n_folds, "images": len({p for a, b, _ in self.pairs for p in (a, b)})}
